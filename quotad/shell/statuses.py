"""The daemon's retained statuses: the township's, each firm's and the daemon's own, each published when it changed,
at most every 5 s, at least every 5 minutes. A part of `quotad.shell.daemon.Daemon`, kept apart."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from quotad.core.outputs import Message, topic
from quotad.core.views import (
    daemon_status,
    event_now,
    firm_status_messages,
    firm_status_topic,
    township_status_messages,
)

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from quotad.shell.delivery import Courier
    from quotad.shell.journal import Journal
    from quotad.shell.sinks import InfluxSink, MqttSink

__all__ = ["Publishing"]

_STATUS_MIN_S, _STATUS_MAX_S = 5.0, 300.0
_STATUS_CHUNK = 20  # firm statuses published at a time: paho keeps 20 QoS 1 messages in flight
_STATUS_SPAN_S = 0.5  # what a tick may spend publishing firms' statuses


class Publishing:
    """The statuses, mixed into the daemon (which owns the attributes below)."""

    journal: Journal
    mqtt_sink: MqttSink | None
    influx_sink: InfluxSink | None
    couriers: dict[str, Courier]  # the notice channels' (quotad.shell.noticing)
    prefix: str | None
    _stop: asyncio.Event
    _status_sent: dict[str, tuple[str, float]]
    _dirty: set[str]  # firms whose status may have changed since it was last built
    _resend: deque[tuple[float, str]]  # (when, firm) of each firm status published, oldest first

    def _statuses_afresh(self) -> None:
        """Every status built and published afresh at the next tick: a new day, a reload, the retained state
        replaced on the broker."""
        self._status_sent.clear()
        self._dirty = {firm.id for firm in self.journal.policy.firms}

    def _touched(self, firms: Iterable[str | None]) -> None:
        """These firms' statuses may have changed (their readings, their orders): built again when due."""
        self._dirty.update(firm for firm in firms if firm is not None)

    async def _statuses(self, now: int) -> None:
        """The retained statuses, each published when it changed, at most every 5 s, at least every 5 minutes.

        They share the sink's connection with the alerts, and paho keeps 20 QoS 1 messages in flight: statuses
        published all at once queue ahead of the next alert, which waits for their acknowledgements. With a
        thousand firms that was 80-140 ms, every 5 s (issue 13). So the firms' statuses go a chunk of 20 at a
        time, the next once the broker acknowledged it (an alert waits behind one chunk at most), only those that
        may be published now are built, and a tick spends at most half a second on them (the rest: the next)."""
        sink, prefix = self.mqtt_sink, self.prefix
        if sink is None or prefix is None:
            return
        engine = self.journal.engine
        at, real = event_now(engine, now), time.monotonic()
        town = engine.policy.township.id
        # built only when one of them may be published (not within the last 5 s): the township's projection sums
        # the trailing hour's pieces (300,000 for 1,000 meters reporting 10 times a second), 20 ms every second
        township_topics = (topic(prefix, town, "status", "township"), topic(prefix, town, "schedule", "today"))
        messages: list[Message] = []
        if any(self._status_due(t, real) for t in township_topics):
            messages += township_status_messages(engine, prefix, at)
        if self.influx_sink is not None or self.couriers:
            messages.append(self._daemon_status(now))
        for message in messages:
            self._publish_status(sink, message, real)
        dirty, resend = self._dirty, self._resend
        while resend and real - resend[0][0] >= _STATUS_MAX_S:  # at least every 5 minutes, changed or not
            dirty.add(resend.popleft()[1])
        # Only the firms whose status may have changed are built: with 10,000 firms, building them all every 5 s
        # held the loop about 150 ms each second (measured on the console's pages, issue 15).
        due = [
            firm for firm in engine.policy.firms
            if firm.id in dirty and self._status_due(firm_status_topic(prefix, town, firm.id), real)
        ]  # fmt: skip
        deadline = real + _STATUS_SPAN_S
        for start in range(0, len(due), _STATUS_CHUNK):
            await asyncio.sleep(0)
            if engine is not self.journal.engine or self._stop.is_set() or time.monotonic() > deadline:
                return  # the rest at the next tick; after a reload, under the new policy
            firms = due[start : start + _STATUS_CHUNK]
            chunk = firm_status_messages(engine, prefix, at, firms)
            infos = []
            for firm, message in zip(firms, chunk, strict=True):
                dirty.discard(firm.id)
                if (info := self._publish_status(sink, message, real)) is not None:
                    infos.append(info)
                    resend.append((real, firm.id))
            await sink.acknowledged(infos, deadline)

    def _status_due(self, status_topic: str, real: float) -> bool:
        """Whether the status may be published now (never sent, or not within the last 5 s)."""
        sent = self._status_sent.get(status_topic)
        return sent is None or real - sent[1] >= _STATUS_MIN_S

    def _publish_status(self, sink: MqttSink, message: Message, real: float) -> mqtt.MQTTMessageInfo | None:
        """Publish `message` if it changed (and was not sent within 5 s) or was not sent within 5 minutes; what
        paho returned, when it was published."""
        sent = self._status_sent.get(message.topic)
        core = message.payload.rsplit(',"updated"', 1)[0]
        if sent is not None:
            age = real - sent[1]
            if age < _STATUS_MIN_S or (sent[0] == core and age < _STATUS_MAX_S):
                return None
        self._status_sent[message.topic] = (core, real)
        return sink.publish_now(message)

    def _daemon_status(self, now: int) -> Message:
        """The InfluxDB outbox (the database's state, what waits, the bound and what gave way to it) and each notice
        channel's queue (`channel:<name>`: "ok" or the channel's last answer, the notices waiting, delivered)."""
        assert self.prefix is not None
        outboxes: dict[str, dict[str, Any]] = {}
        influx = self.influx_sink
        if influx is not None:
            outboxes["influx"] = {"state": influx.fault or "ok", **influx.bound.status()}
        for courier in self.couriers.values():
            state = "ok" if courier.trouble is None else str(courier.trouble)
            pending = self.journal.store.backlog(courier.sink)
            outboxes[courier.sink] = {"state": state, "pending": pending, "delivered": courier.delivered}
        updated = self.journal.engine.calendar.local(now).isoformat(timespec="seconds")
        return daemon_status(self.prefix, self.journal.policy.township.id, outboxes, updated)

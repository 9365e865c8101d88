"""The MQTT meter source: subscribes to every MQTT meter's topic and hands each valid reading on.

- A paho-mqtt 2.x client (MQTT 3.1.1, persistent session) made by `quotad.shell.mqtt.mqtt_client` and run on an
  asyncio loop by `quotad.shell.mqtt.Driver`: reading, handling and acknowledging on one thread; reconnection with
  the driver's back-off (1 s to 30 s); the daemon passes its loop to `start`, and without one the source runs a
  loop of its own on a thread. The client is a `quotad.shell.mqtt.BufferedClient`: it reads the socket 64 KB at a
  time and hands each whole QoS 0/1 PUBLISH to `_on_publish` itself (paho's reading takes every other packet, and
  gives `_on_message` what it reads). Subscriptions (QoS 1) are made in `on_connect`, so every
  reconnection resubscribes; while quotad is away the broker queues the QoS 1 messages of its session, and a
  retained reading is delivered again on each resubscription (harmless: the ledger ignores a reading not newer
  than the meter's last).
- Topic → meter is an exact map; each payload is parsed by `quotad.meters.formats.parse_payload` with the
  meter's `format`. A bad payload is counted per topic and logged (the first on a topic, then every 100th,
  with the count: `quotad.shell.pacing.Tally`); a message on a topic of no meter is counted. Nothing raises out of
  paho's callbacks.
- `on_reading` is called on the loop's thread, one message at a time, in arrival order. An exception it raises
  is logged and counted, never propagated into paho.
- With `on_delivery` instead, each reading comes with its `ack`: the broker is told the message was received
  (PUBACK) only when `ack()` is called, once the reading is durable; until then the broker keeps it and sends it
  again after a reconnection. The daemon acks after the journal's commit, so a crash loses no reading. The
  PUBACKs asked for together (a batch) are written together, soon after, on the loop: one packet. Bad
  payloads and messages on no meter's topic are acknowledged at once (they are counted and logged, and done).
- `hold`: while it returns True (the daemon's inbox is full) the socket is not read: a broker's backlog stays on
  the broker, never grows in memory, and nothing is dropped.
- A lost broker is logged once per outage (WARNING), its return once (INFO).
- It never publishes anything.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK
from paho.mqtt.reasoncodes import ReasonCode

from quotad.config.daemon import MqttSettings
from quotad.core.errors import ReadingError
from quotad.core.policy import Meter
from quotad.core.readings import Reading
from quotad.core.sources import default_topic
from quotad.meters.formats import Format, parse_payload
from quotad.meters.source import Context
from quotad.schedule.calendar import Micros
from quotad.shell.mqtt import BufferedClient, Driver, client_id, mqtt_client
from quotad.shell.pacing import Tally

__all__ = ["Ack", "MeterTopic", "MqttMeters", "default_topic", "meter_topics"]

log = logging.getLogger(__name__)
MeterTopic = tuple[str, str, Format]  # (meter id, topic, payload format)
Ack = Callable[[], object]  # tells the broker a message is safely received


def meter_topics(meters: Iterable[Meter], prefix: str, township: str) -> list[MeterTopic]:
    """(meter id, topic, format) of each of `meters` read over MQTT."""
    return [(m.id, m.mqtt.topic_for(prefix, township, m.id), m.mqtt.format) for m in meters if m.mqtt is not None]


_client_id = client_id  # the module's name for it; `client_id` is also MqttMeters' parameter


_PUBACK = struct.Struct("!BBH")  # MQTT 3.1.1's PUBACK: its type, its remaining length (2), the message id


def _done() -> None:
    """The acknowledgement of a message that needs none (QoS 0, or paho acknowledges it)."""


def _wall_clock() -> Micros:
    return time.time_ns() // 1000


def _topic_map(meters: Sequence[MeterTopic]) -> dict[str, tuple[str, Format]]:
    """Topic → (meter, format). The topics come from a validated policy (quotad.config.load checks each is a concrete
    topic, under the daemon's prefix, and that no two meters share one); the source only consumes them."""
    topics = {topic: (meter_id, fmt) for meter_id, topic, fmt in meters}
    assert len(topics) == len(meters), "two meters on one topic: the policy was not validated"
    return topics


class MqttMeters:
    """Readings of MQTT meters, from a broker, to `on_reading` or `on_delivery` (called on the loop's thread)."""

    def __init__(
        self,
        meters: Sequence[MeterTopic],
        settings: MqttSettings,
        tz: ZoneInfo,
        on_reading: Callable[[Reading], None] | None = None,
        *,
        on_delivery: Callable[[Reading, Ack], None] | None = None,
        hold: Callable[[], bool] | None = None,
        client_id: str | None = None,
        now: Callable[[], Micros] | None = None,
    ) -> None:
        """`meters`: (meter id, topic, format) each; `settings`: the broker (`[mqtt]`); `now`: the arrival time of a
        message, for the formats that carry none (default: the wall clock). `client_id` (default `<[mqtt]
        client_id>-meters`) must differ from every other client of the daemon."""
        self.topics = _topic_map(meters)
        self.host, self.port, self.tz, self.keepalive_s = settings.host, settings.port, tz, settings.keepalive_s
        self._on_reading, self._on_delivery, self._now = on_reading, on_delivery, now or _wall_clock
        self._malformed: Tally[str] = Tally()  # per topic
        self._unknown: Tally[str] = Tally()  # one key: messages on no meter's topic
        self._failures: Tally[str] = Tally()  # one key: readings the handler failed on
        self.received = 0
        self.delivered = 0
        self.connections = 0
        self.refused_topics: list[str] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._down = False
        self._subscribe_mid: int | None = None
        # A persistent session with QoS 1 subscriptions: while quotad is down or reconnecting, the broker keeps the
        # meters' messages for it, so no reading is lost (the broker's max_queued_messages must allow it).
        client = mqtt_client(settings, client_id or _client_id(settings, "meters"), clean=False, buffered=True)
        assert isinstance(client, BufferedClient)
        self.client = client
        if on_delivery is not None:
            self.client.manual_ack_set(True)
        self._acks: collections.deque[int] = collections.deque()  # QoS 1 message ids to acknowledge, soon
        self._acks_due = False
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_publish_bytes = self._on_publish
        self._driver = Driver(
            self.client, "mqtt-meters", progress=lambda: self.received, unreachable=self._unreachable, hold=hold
        )
        self.where = {meter_id: f"MQTT topic {topic}" for meter_id, topic, _fmt in meters}

    @classmethod
    def from_config(cls, meters: Sequence[Meter], context: Context) -> MqttMeters | None:
        """The source of the policy's MQTT meters, reading the daemon's broker into its inbox; None without `[mqtt]`
        (the configuration warned: they are not read)."""
        settings = context.mqtt
        if settings is None:
            return None
        policy = context.policy
        return cls(
            meter_topics(meters, settings.topic_prefix, policy.township.id), settings, policy.township.tz,
            on_delivery=context.inbox.put, hold=context.inbox.full, now=context.clock.now,
        )  # fmt: skip

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> list[asyncio.Task[None]]:
        """Connect in the background on `loop` (from that loop's thread), or on a loop of its own on a thread of
        its own when none is given; returns at once (no task of the caller's to cancel). See `wait_connected`."""
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        self._driver.start(loop)
        return []

    async def ready(self, timeout: float) -> bool:
        """Connected and subscribed within `timeout` s (the daemon says READY=1 then)."""
        return await asyncio.to_thread(self._ready.wait, timeout)

    def stop(self) -> None:
        """Disconnect (what is not acknowledged stays with the broker). Idempotent."""
        self._ready.clear()
        self._driver.stop()

    def wait_connected(self, timeout: float) -> bool:
        """True once connected and subscribed to every meter topic (the broker acknowledged), within `timeout` s."""
        return self._ready.wait(timeout)

    def _unreachable(self, exc: Exception) -> None:
        if not self._down:
            log.warning("cannot reach MQTT meter broker %s:%d (%s); retrying", self.host, self.port, exc)
        self._down = True

    # --- stats ----------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Connected and subscribed to every meter topic."""
        return self._ready.is_set()

    @property
    def malformed_total(self) -> int:
        with self._lock:
            return self._malformed.total

    @property
    def malformed(self) -> dict[str, int]:
        """Malformed payloads so far, per topic."""
        with self._lock:
            return dict(self._malformed.counts)

    @property
    def unknown(self) -> int:
        return self._unknown.total

    @property
    def callback_errors(self) -> int:
        return self._failures.total

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters, for logs and status."""
        with self._lock:
            return {
                "connected": self._ready.is_set(),
                "connections": self.connections,
                "received": self.received,
                "delivered": self.delivered,
                "malformed": dict(self._malformed.counts),
                "unknown": self.unknown,
                "callback_errors": self.callback_errors,
            }

    def status(self) -> dict[str, Any]:
        return {"kind": "mqtt", "broker": f"{self.host}:{self.port}", **self.stats}

    # --- paho callbacks (the loop's thread) -----------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if reason.is_failure:
            if not self._down:
                log.warning("MQTT meter broker %s:%d refused the connection: %s", self.host, self.port, reason)
            self._down = True
            return
        self.connections += 1
        self._driver.connected()
        if self._down or self.connections == 1:
            state = "is back" if self.connections > 1 else "connected"
            log.info("MQTT meter broker %s:%d %s; %d meter topics", self.host, self.port, state, len(self.topics))
        self._down = False
        if not self.topics:
            self._ready.set()
            return
        result, mid = client.subscribe([(topic, 1) for topic in self.topics])
        if result != mqtt.MQTT_ERR_SUCCESS:  # the connection dropped meanwhile: on_disconnect follows
            log.debug("subscribing failed (%s); will retry on reconnection", result)
        self._subscribe_mid = mid

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Any) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [topic for topic, code in zip(self.topics, codes, strict=False) if code.is_failure]
        if refused and refused != self.refused_topics:
            log.error("MQTT broker refused the subscription to %d meter topic(s): %s", len(refused), ", ".join(refused))
        self.refused_topics = refused
        self._ready.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        self._ready.clear()
        if self._driver.stopping:
            return
        if not self._down:
            log.warning("MQTT meter broker %s:%d lost (%s); reconnecting", self.host, self.port, reason)
        self._down = True

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._handle(message.topic, bytes(message.payload), message.mid, message.qos)
        except Exception:  # never into paho: an exception there would break its reading of the socket
            log.exception("unexpected error handling an MQTT meter message")

    def _on_publish(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        """A message as `BufferedClient` hands it on (most of them), without paho's MQTTMessage."""
        try:
            self._handle(topic, payload, mid, qos)
        except Exception:
            log.exception("unexpected error handling an MQTT meter message")

    # --- messages -------------------------------------------------------------------------------------------

    def _handle(self, topic: str, payload: bytes, mid: int = 0, qos: int = 0) -> None:
        self.received += 1  # counters written by the loop's thread alone: no lock on the path of every message
        if self._on_delivery is None or not qos:
            ack: Ack = _done
        else:
            ack = partial(self._ack, mid) if qos == 1 else partial(self.client.ack, mid, qos)
        entry = self.topics.get(topic)
        if entry is None:
            ack()
            with self._lock:
                count = self._unknown.hit("")
            if count is not None:
                log.info("message on %s, which is no meter's topic (%d such so far)", topic, count)
            return
        meter_id, fmt = entry
        try:
            reading = parse_payload(fmt, payload, meter_id, self._now(), self.tz)
        except ReadingError as exc:
            ack()
            self._count_malformed(topic, str(exc))
            return
        try:
            if self._on_delivery is not None:
                self._on_delivery(reading, ack)
            else:
                assert self._on_reading is not None
                self._on_reading(reading)
        except Exception:
            ack()  # what the handler could not take is counted and logged: not asked for again
            with self._lock:
                count = self._failures.hit("")
            if count is not None:
                log.exception("the reading handler failed on %s (%d failures so far)", topic, count)
            return
        self.delivered += 1

    def _ack(self, mid: int) -> None:
        """Acknowledge the QoS 1 message `mid` (from any thread). The PUBACKs asked for meanwhile go together, soon,
        on the loop: the daemon acknowledges a batch of up to a thousand readings at once, which paho wrote as a
        thousand packets, a system call each."""
        self._acks.append(mid)
        if not self._acks_due:
            self._acks_due = True
            self._driver.soon(self._write_acks)

    def _write_acks(self) -> None:
        self._acks_due = False  # before taking them: an ack asked for from now on asks for another write
        acks = self._acks
        mids = [acks.popleft() for _ in range(len(acks))]
        if mids:  # what paho's `ack` queues for each, in one packet (a connection lost drops it, as it would them)
            packet = b"".join([_PUBACK.pack(PUBACK, 2, mid) for mid in mids])
            self.client._packet_queue(PUBACK, packet, 0, 0)

    def _count_malformed(self, topic: str, reason: str) -> None:
        with self._lock:
            count = self._malformed.hit(topic)
        if count is not None:
            log.warning("malformed payload on %s (%d so far on this topic): %s", topic, count, reason)

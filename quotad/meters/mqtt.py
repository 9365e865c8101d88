"""The MQTT meter source: subscribes to every MQTT meter's topic and hands each valid reading on.

- A paho-mqtt 2.x client (MQTT 3.1.1, persistent session) run on an asyncio loop through paho's external-loop
  API: the loop watches the socket and calls paho to read and write, so a message is parsed, handed on and
  acknowledged on one thread, without a network thread contending for the interpreter lock or a wake-up per
  acknowledgement (the MQTT ingestion bench measured that at twice the cost of the daemon's own work). The
  daemon passes its loop to `start`; without one, the source runs a loop of its own on a thread.
- Reconnection is ours: after a lost connection or a failed attempt it retries with a delay doubling from 1 s to
  30 s (paho's own network thread does the same); the blocking connect (TCP, TLS handshake) runs on a worker
  thread so that an unreachable broker never stalls the loop. Keepalive pings are sent by `loop_misc` once a
  second. Subscriptions (QoS 1) are made in `on_connect`, so every reconnection resubscribes; while quotad
  is away the broker queues the QoS 1 messages of its session, and a retained reading is delivered again on
  each resubscription (harmless: the ledger ignores a reading not newer than the meter's last).
- Topic → meter is an exact map; each payload is parsed by `quotad.meters.formats.parse_payload` with the
  meter's `format`. A bad payload is counted per topic and logged (the first on a topic, then every 100th,
  with the count); a message on a topic of no meter is counted. Nothing raises out of paho's callbacks.
- `on_reading` is called on the loop's thread, one message at a time, in arrival order. An exception it raises
  is logged and counted, never propagated into paho.
- With `on_delivery` instead, each reading comes with its `ack`: the broker is told the message was received
  (PUBACK) only when `ack()` is called, once the reading is durable; until then the broker keeps it and sends it
  again after a reconnection. The daemon acks after the journal's commit, so a crash loses no reading. Bad
  payloads and messages on no meter's topic are acknowledged at once (they are counted and logged, and done).
- `hold`: while it returns True (the daemon's inbox is full) the socket is not read: a broker's backlog stays on
  the broker, never grows in memory, and nothing is dropped.
- A lost broker is logged once per outage (WARNING), its return once (INFO).
- It never publishes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from quotad.config.policy import Meter
from quotad.errors import ConfigError, Problem, ReadingError
from quotad.meters.formats import FORMATS, Format, parse_payload
from quotad.readings import Reading
from quotad.schedule.calendar import Micros

__all__ = ["Ack", "MeterTopic", "MqttMeters", "default_topic", "meter_topics"]

log = logging.getLogger(__name__)
MeterTopic = tuple[str, str, Format]  # (meter id, topic, payload format)
Ack = Callable[[], object]  # tells the broker a message is safely received
_LOG_EVERY = 100  # after the first, one warning per this many bad payloads on a topic
_READS_PER_WAKE = 500  # packets read per readiness of the socket, before other tasks get their turn
_MIN_DELAY_S, _MAX_DELAY_S = 1.0, 30.0  # reconnection back-off


def default_topic(prefix: str, township: str, meter_id: str) -> str:
    """The topic of an MQTT meter whose `[meters.mqtt]` names none (SPEC: `P/T/meters/<meter id>`)."""
    return f"{prefix}/{township}/meters/{meter_id}"


def meter_topics(meters: Iterable[Meter], prefix: str, township: str) -> list[MeterTopic]:
    """(meter id, topic, format) of each of `meters` read over MQTT."""
    return [
        (m.id, m.mqtt.topic or default_topic(prefix, township, m.id), m.mqtt.format)
        for m in meters
        if m.mqtt is not None
    ]


def _done() -> None:
    """The acknowledgement of a message that needs none (QoS 0, or paho acknowledges it)."""


def _wall_clock() -> Micros:
    return time.time_ns() // 1000


def _topic_map(meters: Sequence[MeterTopic]) -> dict[str, tuple[str, Format]]:
    topics: dict[str, tuple[str, Format]] = {}
    problems: list[Problem] = []
    for meter_id, topic, fmt in meters:
        where = f"meters.{meter_id}.mqtt"
        if not topic or "+" in topic or "#" in topic:
            problems.append(Problem("policy", 0, f"{where}.topic", f"not a concrete topic: {topic!r}"))
        elif topic in topics:
            problems.append(Problem("policy", 0, f"{where}.topic", f"{topic} is also meter {topics[topic][0]}'s"))
        if fmt not in FORMATS:
            problems.append(Problem("policy", 0, f"{where}.format", f"unknown format {fmt!r}"))
        topics.setdefault(topic, (meter_id, fmt))
    if problems:
        raise ConfigError(problems)
    return topics


class MqttMeters:
    """Readings of MQTT meters, from a broker, to `on_reading` or `on_delivery` (called on the loop's thread)."""

    def __init__(
        self,
        meters: Sequence[MeterTopic],
        host: str,
        port: int,
        tz: ZoneInfo,
        on_reading: Callable[[Reading], None] | None = None,
        *,
        on_delivery: Callable[[Reading, Ack], None] | None = None,
        hold: Callable[[], bool] | None = None,
        client_id: str = "quotad-meters",
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | str | None = None,
        keepalive_s: int = 60,
        now: Callable[[], Micros] | None = None,
    ) -> None:
        """`meters`: (meter id, topic, format) each; `now`: the arrival time of a message, for the formats that
        carry none (default: the wall clock). `client_id` must differ from every other client of the daemon."""
        self.topics = _topic_map(meters)
        self.host, self.port, self.tz, self.keepalive_s = host, port, tz, keepalive_s
        self._on_reading, self._on_delivery, self._now = on_reading, on_delivery, now or _wall_clock
        self._hold = hold
        self.malformed: dict[str, int] = {}
        self.unknown = 0
        self.received = 0
        self.delivered = 0
        self.callback_errors = 0
        self.connections = 0
        self.refused_topics: list[str] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._down = False
        self._stopping = False
        self._subscribe_mid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id = 0
        self._own_thread: threading.Thread | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._gone: asyncio.Event | None = None  # set when the connection ends (made on the loop)
        self._sock: socket.socket | None = None
        self._held = False
        self.client = mqtt.Client(
            # A persistent session with QoS 1 subscriptions: while quotad is down or reconnecting, the broker keeps
            # the meters' messages for it, so no reading is lost (the broker's max_queued_messages must allow it).
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if on_delivery is not None:
            self.client.manual_ack_set(True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_socket_open = self._on_socket_open
        self.client.on_socket_close = self._on_socket_close
        self.client.on_socket_register_write = self._on_register_write
        self.client.on_socket_unregister_write = self._on_unregister_write

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Connect in the background on `loop` (from that loop's thread), or on a loop of its own on a thread of
        its own when none is given; returns at once. See `wait_connected`."""
        self._stopping = False
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        if loop is not None:
            self._begin(loop)
            return
        own = asyncio.new_event_loop()
        started = threading.Event()

        def begin() -> None:
            self._begin(own)
            started.set()

        def serve() -> None:
            asyncio.set_event_loop(own)
            own.call_soon(begin)
            own.run_forever()
            own.close()

        self._own_thread = threading.Thread(target=serve, name="mqtt-meters", daemon=True)
        self._own_thread.start()
        started.wait(5.0)

    def _begin(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._loop_thread_id = loop, threading.get_ident()
        self._gone = asyncio.Event()
        # the first attempt starts now, on a worker thread: a caller that blocks the loop a while (the daemon's
        # restore) finds the connection made and its CONNACK waiting
        first = loop.run_in_executor(None, self.client.reconnect)
        self._supervisor = loop.create_task(self._supervise(first), name="mqtt meters")

    def stop(self) -> None:
        """Disconnect (what is not acknowledged stays with the broker) and end the connection's task. From the
        loop's thread, the DISCONNECT is written as the loop goes on; with a loop of its own, the loop ends too.
        Idempotent."""
        self._stopping = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if self._own_thread is None:
            self._halt()
            return
        if self._own_thread.is_alive():
            done = threading.Event()

            def halt() -> None:
                self._halt()
                done.set()

            loop.call_soon_threadsafe(halt)
            done.wait(5.0)
            flushed = time.monotonic() + 2.0  # the DISCONNECT written, the socket closed
            while self._sock is not None and time.monotonic() < flushed:
                time.sleep(0.01)
            loop.call_soon_threadsafe(loop.stop)
            self._own_thread.join(5.0)

    def _halt(self) -> None:
        self._ready.clear()
        self.client.disconnect()
        if self._gone is not None and self._sock is None:
            self._gone.set()
        if self._supervisor is not None and self._sock is None:
            self._supervisor.cancel()

    def wait_connected(self, timeout: float) -> bool:
        """True once connected and subscribed to every meter topic (the broker acknowledged), within `timeout` s."""
        return self._ready.wait(timeout)

    async def _supervise(self, first: asyncio.Future[Any] | None) -> None:
        """Connect, keep alive, and reconnect with back-off until stopped."""
        assert self._loop is not None
        assert self._gone is not None
        loop, gone, delay = self._loop, self._gone, _MIN_DELAY_S
        while not self._stopping:
            gone.clear()
            connections = self.connections
            attempt, first = first or loop.run_in_executor(None, self.client.reconnect), None
            try:
                await attempt
            except (OSError, ValueError) as exc:  # refused, unreachable, TLS failure, name not resolved
                if not self._down and not self._stopping:
                    log.warning("cannot reach MQTT meter broker %s:%d (%s); retrying", self.host, self.port, exc)
                self._down = True
            else:
                while not gone.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(gone.wait(), 1.0)
                    if not gone.is_set() and self.client.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                        break  # keepalive unanswered: paho closed the socket and said so (on_disconnect)
                if self.connections > connections:
                    delay = _MIN_DELAY_S  # it was connected: the next attempt starts the back-off afresh
            if self._stopping:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY_S)

    # --- the socket, on the loop ----------------------------------------------------------------------------

    def _on_loop(self, call: Callable[[], object]) -> None:
        """Run `call` on the loop's thread (paho calls back from the connecting worker thread too)."""
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread_id:
            call()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(call)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        def watch() -> None:
            self._sock, self._held = sock, False
            assert self._loop is not None
            self._loop.add_reader(sock, self._read)

        self._on_loop(watch)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        def unwatch() -> None:
            assert self._loop is not None
            assert self._gone is not None
            with contextlib.suppress(ValueError, OSError):  # already closed by paho
                self._loop.remove_reader(sock)
                self._loop.remove_writer(sock)
            if self._sock is sock:
                self._sock = None
            self._gone.set()
            if self._stopping and self._supervisor is not None:
                self._supervisor.cancel()

        self._on_loop(unwatch)

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        def watch() -> None:
            assert self._loop is not None
            watched = self._sock
            if watched is not None and watched is sock:  # not a socket paho has since replaced
                self._loop.add_writer(watched, client.loop_write)

        self._on_loop(watch)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        def unwatch() -> None:
            assert self._loop is not None
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_writer(sock)

        self._on_loop(unwatch)

    def _read(self) -> None:
        """The socket is readable: read packets while they come (and TLS holds decrypted bytes), then let the
        loop go on; while `hold` says so, stop reading the socket."""
        client, sock = self.client, self._sock
        for _ in range(_READS_PER_WAKE):
            before = self.received
            if client.loop_read() != mqtt.MQTT_ERR_SUCCESS or self._sock is not sock:
                return  # the connection is gone: paho closed it and said so
            if self._hold is not None and self._hold():
                self._pause()
                return
            if self.received == before and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return  # nothing more to read now (or a packet that was no message: the loop calls again)

    def _pause(self) -> None:
        assert self._loop is not None
        if self._sock is not None and not self._held:
            self._held = True
            self._loop.remove_reader(self._sock)
            self._loop.call_later(0.005, self._resume)

    def _resume(self) -> None:
        assert self._loop is not None
        if not self._held:
            return
        if self._sock is None:
            self._held = False
        elif self._hold is not None and self._hold() and not self._stopping:
            self._loop.call_later(0.005, self._resume)
        else:
            self._held = False
            self._loop.add_reader(self._sock, self._read)

    # --- stats ----------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Connected and subscribed to every meter topic."""
        return self._ready.is_set()

    @property
    def malformed_total(self) -> int:
        with self._lock:
            return sum(self.malformed.values())

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters, for logs and status."""
        with self._lock:
            return {
                "connected": self._ready.is_set(),
                "connections": self.connections,
                "received": self.received,
                "delivered": self.delivered,
                "malformed": dict(self.malformed),
                "unknown": self.unknown,
                "callback_errors": self.callback_errors,
            }

    # --- paho callbacks (the loop's thread) -----------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if reason.is_failure:
            if not self._down:
                log.warning("MQTT meter broker %s:%d refused the connection: %s", self.host, self.port, reason)
            self._down = True
            return
        self.connections += 1
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
        if self._gone is not None:
            self._on_loop(self._gone.set)
        if self._stopping:
            return
        if not self._down:
            log.warning("MQTT meter broker %s:%d lost (%s); reconnecting", self.host, self.port, reason)
        self._down = True

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._handle(message.topic, bytes(message.payload), message.mid, message.qos)
        except Exception:  # never into paho: an exception there would break its reading of the socket
            log.exception("unexpected error handling an MQTT meter message")

    # --- messages -------------------------------------------------------------------------------------------

    def _handle(self, topic: str, payload: bytes, mid: int = 0, qos: int = 0) -> None:
        self.received += 1  # counters written by paho's thread alone: no lock on the path of every message
        ack = partial(self.client.ack, mid, qos) if self._on_delivery is not None and qos else _done
        entry = self.topics.get(topic)
        if entry is None:
            ack()
            with self._lock:
                self.unknown += 1
                count = self.unknown
            if count == 1 or count % _LOG_EVERY == 0:
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
                self.callback_errors += 1
                count = self.callback_errors
            if count == 1 or count % _LOG_EVERY == 0:
                log.exception("the reading handler failed on %s (%d failures so far)", topic, count)
            return
        self.delivered += 1

    def _count_malformed(self, topic: str, reason: str) -> None:
        with self._lock:
            count = self.malformed[topic] = self.malformed.get(topic, 0) + 1
        if count == 1 or count % _LOG_EVERY == 0:
            log.warning("malformed payload on %s (%d so far on this topic): %s", topic, count, reason)

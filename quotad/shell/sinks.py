"""The daemon's outputs: deliver each outbox in order, delete only what was acknowledged.

`MqttSink` publishes with QoS 1 over MQTT 5 and counts a message delivered when its PUBACK arrives with a success
code; a refusal (e.g. 0x87 "not authorized" from an ACL) keeps the message in the outbox, retried, and says so
in the log: over MQTT 3.1.1 a refused PUBLISH is acknowledged like any other and the alert would be silently
lost. `InfluxSink` writes
batches of line protocol (`v1`: POST /write of InfluxDB 1.x; `v2`: influxdb-client's write API) and counts
them delivered on a 2xx answer. While a sink's peer is down its outbox grows, enforcement goes on, and the
InfluxDB outbox stays within its bound (its oldest telemetry gives way; the MQTT outbox holds only alerts, orders
and notices, which never do).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from functools import partial

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from quotad.config.daemon import InfluxSettings, MqttSettings, read_secret
from quotad.core.errors import StoreError
from quotad.core.outputs import Message
from quotad.shell.bounds import OutboxBound
from quotad.shell.keepalive import TIMEOUT_S, KeptAlive
from quotad.shell.mqtt import Driver, client_id, mqtt_client
from quotad.shell.pacing import Backoff
from quotad.shell.store import Store

__all__ = ["InfluxSink", "MqttSink"]

log = logging.getLogger(__name__)
_WINDOW = 200  # outbox messages published and not yet answered, at most
_SESSION_S = 7 * 24 * 3600  # how long the broker keeps the sink's session (its messages in flight) while away


class MqttSink:
    """Publishes the `mqtt` outbox, and retained statuses directly (a status is state, re-sent anyway). Its client
    runs on the daemon's loop (`quotad.shell.mqtt.Driver`): publications, acknowledgements and callbacks all on the
    loop's thread."""

    def __init__(self, settings: MqttSettings, store: Store, daemon_topic: str) -> None:
        self.settings, self.store, self.daemon_topic = settings, store, daemon_topic
        self.client = mqtt_client(settings, client_id(settings), clean=False, v5=True)
        self.client.will_set(daemon_topic, "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.refused: dict[int, str] = {}  # mid -> the broker's reason, for PUBACKs with a failure code
        self._refusals_logged: set[str] = set()
        self._refused_topics: set[str] = set()
        self.connected = asyncio.Event()
        self.delivered = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._was_down = False
        self._stopping = False
        self._said: Message | None = None  # the daemon topic's state, said again after each reconnection
        # the deliver loop waits for the first unanswered PUBACK (they come in order): paho's thread wakes it then
        self._awaited_mid: int | None = None
        self._answered = asyncio.Event()
        self._driver = Driver(self.client, "mqtt-sink", unreachable=self._unreachable)

    def start(self) -> None:
        """Connect in the background, on the running loop."""
        self._loop = asyncio.get_running_loop()
        session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        session.SessionExpiryInterval = _SESSION_S  # messages in flight survive a reconnection, as in 3.1.1's
        self.client.connect_async(
            self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s,
            clean_start=False, properties=session,
        )  # fmt: skip
        self._driver.start(self._loop)

    def _unreachable(self, exc: Exception) -> None:
        if not self._was_down and not self._stopping:
            where = f"{self.settings.host}:{self.settings.port}"
            log.warning("cannot reach MQTT broker %s (%s); alerts wait in the outbox", where, exc)
        self._was_down = True

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker %s:%d refused the connection: %s", self.settings.host, self.settings.port, reason)
            return
        self._driver.connected()
        if self._was_down:
            log.info("MQTT broker %s:%d is back", self.settings.host, self.settings.port)
        self._was_down = False
        said = self._said
        if said is not None:  # the last will may have said `offline` meanwhile
            client.publish(said.topic, said.payload, qos=1, retain=True)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.connected.set)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        if not self._was_down and not self._stopping:
            log.warning(
                "MQTT broker %s:%d lost (%s); alerts wait in the outbox", self.settings.host, self.settings.port, reason
            )
        self._was_down = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.connected.clear)
            self._loop.call_soon_threadsafe(self._answered.set)  # no answer will come: stop waiting for it

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: ReasonCode, props: object) -> None:
        if mid == self._awaited_mid and self._loop is not None:
            self._loop.call_soon_threadsafe(self._answered.set)
        if not reason.is_failure:
            self.refused.pop(mid, None)  # a status's refusal left under a mid now reused: not this message's
        else:
            self.refused[mid] = str(reason)
            if str(reason) not in self._refusals_logged:  # once per reason; the outbox also names its topic
                self._refusals_logged.add(str(reason))
                where = f"{self.settings.host}:{self.settings.port}"
                log.warning("MQTT broker %s refuses publications: %s", where, reason)

    def publish_now(self, message: Message) -> mqtt.MQTTMessageInfo | None:
        """Fire-and-forget (QoS 1) for state that is re-published anyway: statuses, the schedule, notices. Returns
        paho's handle of the message, or None when not connected (nothing was published)."""
        if not self.connected.is_set():
            return None
        return self.client.publish(message.topic, message.payload or None, qos=1, retain=message.retain)

    async def acknowledged(self, infos: list[mqtt.MQTTMessageInfo], deadline: float) -> None:
        """Wait until the broker acknowledged every one of `infos`, or the connection is lost, or `deadline`
        (time.monotonic()) passes."""
        while infos and self.connected.is_set() and time.monotonic() < deadline:
            if all(info.is_published() for info in infos):
                return
            await asyncio.sleep(0.002)

    def say(self, message: Message) -> None:
        """Publish the daemon's state (retained) now, and again after every reconnection."""
        self._said = message
        self.publish_now(message)

    async def deliver(self, wake: asyncio.Event, refused_retry_s: float = 30.0) -> None:
        """Deliver the outbox forever, in order; a message is removed once the broker acknowledged it. Messages are
        published as they are queued, while earlier ones wait for their PUBACK (at most 200 unanswered): an alert
        never waits for the previous one's acknowledgement, which mosquitto (Nagle's algorithm on, its default)
        may hold 40 ms behind another PUBACK. A message the broker refuses goes behind the newer ones (what
        follows is not held back) and is tried again; when nothing else waits, after `refused_retry_s`. What is
        unanswered when the connection drops, or after 30 s, is published again."""
        flight: collections.deque[tuple[int, str, mqtt.MQTTMessageInfo]] = collections.deque()
        last, since = 0, time.monotonic()  # the last seq in flight; when the first in flight was published
        while True:
            if not self.connected.is_set() or (flight and time.monotonic() - since > 30.0):
                flight.clear()  # unanswered: they stay in the outbox, published again from the oldest
                last = 0
                await self.connected.wait()
            wake.clear()
            if not flight:  # from the oldest: a seq is max + 1, so an emptied outbox numbers its rows afresh
                last = 0
            if len(flight) < _WINDOW:
                for item in self.store.pending("mqtt", _WINDOW - len(flight), after=last):
                    message = Message.from_json(item.body)
                    info = self.client.publish(message.topic, message.payload or None, qos=1, retain=message.retain)
                    if not flight:
                        since = time.monotonic()
                    flight.append((item.seq, message.topic, info))
                    last = item.seq
            answered = []
            while flight and flight[0][2].is_published():
                answered.append(flight.popleft())
                since = time.monotonic()
            if answered:
                refused = await self._settle(answered, refused_retry_s)
                if refused and not flight and len(self.store.pending("mqtt", refused + 1)) == refused:
                    await asyncio.sleep(refused_retry_s)  # nothing waits but what the broker refuses
                continue
            self._answered.clear()
            self._awaited_mid = flight[0][2].mid if flight else None
            if flight and flight[0][2].is_published():
                continue  # answered between the look and the clear
            waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(self._answered.wait())]
            # paho calls on_publish just before it marks the message published: the 10 ms look is the fallback
            await asyncio.wait(waiters, timeout=0.01 if flight else None, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            self._awaited_mid = None

    async def _settle(self, answered: list[tuple[int, str, mqtt.MQTTMessageInfo]], refused_retry_s: float) -> int:
        """Remove what the broker took from the outbox; move what it refused behind the newer messages. Returns
        how many it refused."""
        delivered, refused = [], []
        for seq, topic, info in answered:
            reason = self.refused.pop(info.mid, None)
            if reason is None:
                delivered.append(seq)
                if topic in self._refused_topics:
                    self._refused_topics.discard(topic)
                    log.warning("MQTT broker now takes %s: the messages it refused are delivered", topic)
            else:
                refused.append(seq)
                if topic not in self._refused_topics:
                    self._refused_topics.add(topic)
                    log.error(
                        "MQTT broker refused %s (%s): kept in the outbox and tried again every %.0f s; check the "
                        "broker's ACL for quotad's user", topic, reason, refused_retry_s,
                    )  # fmt: skip
        if delivered:
            await durably(partial(self.store.acknowledge, "mqtt", delivered))
            self.delivered += len(delivered)
        if refused:  # behind the newer messages: one refused topic never holds back the others
            await durably(partial(self.store.requeue, "mqtt", refused))
        return len(refused)

    async def stop(self) -> None:
        """Say `offline` (retained), then disconnect: the last will is for when we cannot say it."""
        self._stopping = True
        if self.connected.is_set():
            said = self.client.publish(self.daemon_topic, "offline", qos=1, retain=True)
            deadline = time.monotonic() + 2.0
            while not said.is_published() and self.connected.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        self._driver.stop()
        await self._driver.closed(2.0)


async def durably(write: Callable[[], None], retry_s: float = 1.0) -> None:
    """Do `write` on the store, trying again while the state directory refuses it (a full disk): what was delivered
    is removed from the outbox before anything else is sent, so that nothing is sent twice."""
    logged = False
    while True:
        try:
            write()
        except StoreError as exc:
            if not logged:
                log.warning("%s: what was delivered stays marked as waiting until the write goes through", exc)
                logged = True
            await asyncio.sleep(retry_s)
        else:
            return


class _Refused(RuntimeError):
    """The database refused the credentials (HTTP 401 or 403)."""


class InfluxSink:
    """Writes the `influx` outbox in batches; a batch is removed when the database answered 2xx. While the database
    is away, or refuses the credentials, the batch is tried again with backoff (2 s doubling up to 30 s), and the
    outbox is kept within its bound (`quotad.shell.bounds`). v1 authenticates with HTTP Basic auth (`username`,
    `password_file`: what every InfluxDB 1.x takes), or sends `token_file`'s line as `Authorization: Token`."""

    def __init__(self, settings: InfluxSettings, store: Store) -> None:
        self.settings, self.store = settings, store
        self.token: str | None = None  # token_file's line (v2, or v1's Token header): read by `_authorization`
        self.authorization = self._authorization()
        self.bound = OutboxBound(store, "influx", settings.outbox_max_mb, settings.outbox_max_age_h)
        self.delivered = 0
        self.down = False
        self.fault: str | None = None  # what keeps the points waiting: "unavailable" or "not authorized"
        self._v2_api: object | None = None
        self._v1: KeptAlive | None = None  # v1's connection, kept open between batches

    def _authorization(self) -> str | None:
        """The v1 Authorization header, from the secret files (read again after a refusal: an operator may fix
        the file without a restart)."""
        settings = self.settings
        if settings.username is not None and settings.password_file is not None:
            password = read_secret(settings.password_file).get_secret_value()
            return "Basic " + base64.b64encode(f"{settings.username}:{password}".encode()).decode()
        if settings.token_file is not None:
            self.token = read_secret(settings.token_file).get_secret_value()
        return f"Token {self.token}" if self.token else None

    async def deliver(self, wake: asyncio.Event, retry_s: float = 2.0, max_retry_s: float = 30.0) -> None:
        backoff = Backoff(retry_s, max_retry_s)
        while True:
            self.bound.enforce()
            pending = self.store.pending_text("influx", 5000)
            if pending is None:
                self.bound.caught_up()
                wake.clear()
                await wake.wait()
                continue
            last, body = pending
            try:
                await asyncio.to_thread(self._write, body)
            except (OSError, urllib.error.URLError, RuntimeError) as exc:
                self._failed(exc)
                await self._pause(backoff.next())  # the bound is kept by this loop alone: never with a batch in flight
                continue
            if self.down:
                log.info("InfluxDB at %s is back", self.settings.url)
            self.down, self.fault = False, None
            backoff.reset()
            await durably(partial(self.store.acknowledge_through, "influx", last))
            self.delivered += body.count("\n") + 1  # points

    def _failed(self, exc: Exception) -> None:
        """Say once per outage (and again if its kind changes) why the points wait."""
        url = self.settings.url
        fault = "not authorized" if isinstance(exc, _Refused) else "unavailable"
        if fault != self.fault:
            if fault == "unavailable":
                log.warning("InfluxDB at %s unavailable (%s); points wait in the outbox", url, exc)
            else:
                log.error(
                    "InfluxDB at %s refused the credentials (not authorized: %s); points wait in the outbox and are "
                    "tried again with backoff%s", url, exc, self._credentials_hint(),
                )  # fmt: skip
        self.down, self.fault = True, fault
        if fault == "not authorized":
            with contextlib.suppress(OSError):  # the next try reads the secret files afresh
                self.authorization = self._authorization()
            self._v2_api = None

    def _credentials_hint(self) -> str:
        settings = self.settings
        if settings.api == "v1" and settings.username is None and settings.token_file is not None:
            return (
                "; InfluxDB 1.x before 1.8 (Debian 12's 1.6) does not take token_file: set username and "
                "password_file in [influx]"
            )
        if settings.username is None and settings.token_file is None:
            wanted = "username and password_file" if settings.api == "v1" else "token_file"
            return f"; none were given: set {wanted} in [influx]"
        return ""

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds` before trying again, keeping the outbox within its bound meanwhile (once a second)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, left))
            self.bound.enforce()

    def _write(self, body: str) -> None:
        if self.settings.api == "v2":
            self._write_v2(body)
            return
        database, _, policy = self.settings.bucket.partition("/")
        query = {"db": database, "precision": "ns", **({"rp": policy} if policy else {})}
        url = f"{self.settings.url}/write?{urllib.parse.urlencode(query)}"
        if self._v1 is None:
            self._v1 = KeptAlive.for_url(url)
        if self._v1 is not None:
            status, answer = self._v1.post(url, body.encode(), self.authorization)
            if not 200 <= status < 300:
                raise _http_error(status, answer, self.settings.url)
            return
        request = urllib.request.Request(url, data=body.encode(), method="POST")  # through a proxy, or credentials
        if self.authorization:  # in the URL: urllib's handlers, a connection per batch
            request.add_header("Authorization", self.authorization)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise _http_error(exc.code, exc.read(), self.settings.url) from None

    def _write_v2(self, body: str) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.domain.write_precision import WritePrecision

        if self._v2_api is None:
            client = InfluxDBClient(
                url=self.settings.url, token=self.token or "", org=self.settings.org or "", timeout=10_000
            )
            self._v2_api = client.write_api(write_options=SYNCHRONOUS)
        try:
            self._v2_api.write(  # type: ignore[attr-defined]
                bucket=self.settings.bucket, org=self.settings.org, record=body, write_precision=WritePrecision.NS
            )
        except Exception as exc:  # influxdb-client raises its ApiException, urllib3's errors, ...
            refused = getattr(exc, "status", None) in _NOT_AUTHORIZED
            raise (_Refused if refused else RuntimeError)(str(exc)) from None


_NOT_AUTHORIZED = (401, 403)


def _http_error(status: int, body: bytes, base: str) -> RuntimeError:
    detail = body.decode(errors="replace")[:300].strip()
    msg = f"HTTP {status} from {base}/write: {detail}"
    return (_Refused if status in _NOT_AUTHORIZED else RuntimeError)(msg)

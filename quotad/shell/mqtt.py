"""MQTT in quotad's shell: one client factory, one driver, one reconnection policy.

Every MQTT client of quotad is made and driven here: the MQTT meter source, the daemon's sink and its look at what
is retained, the inspectors' commands (`alerts`, `status`), the simulator and the demo.

- `mqtt_client(settings, client_id, clean=..., v5=...)`: a paho 2.x client with the daemon file's credentials
  (the password file) and TLS (a CA file); `client_id(settings, role)` names each client of quotad apart.
- `Driver`: a paho client run on an asyncio loop through paho's external-loop API, with reconnection. The loop
  watches the client's socket and calls paho to read and write: a message is read, handled and acknowledged on one
  thread, with no network thread contending for the interpreter lock and no wake-up per acknowledgement (the MQTT
  ingestion bench measured paho's own thread, acknowledged from a loop, at three times the CPU per message). Given
  no loop (the commands, which are not asynchronous), the driver runs one of its own on a thread of its own.
- Reconnection: the driver connects, and after a lost connection or a failed attempt retries after the delays of a
  `quotad.shell.pacing.Backoff` (1 s doubling to 30 s unless the caller bounds it otherwise; from the first delay
  again once a connection was made). The blocking connect (TCP, TLS handshake) runs on a worker thread, so an
  unreachable broker never stalls the loop, and the first attempt starts at once, before the loop runs. Keepalive:
  `loop_misc` once a second while connected. paho's own reconnection (`loop_start`) is never used.

Packets are read while they come (at most `_READS_PER_WAKE` per readiness, and on while TLS or a `BufferedClient`
holds bytes read: the meter source's client reads its socket 64 KB at a time, where paho reads three times a packet).
While `hold()` is true the socket is not read: a broker's backlog stays on the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from quotad.config.daemon import MqttSettings, read_secret
from quotad.shell.pacing import Backoff

__all__ = ["BufferedClient", "Driver", "client_id", "mqtt_client"]


_RECV_BYTES = 1 << 16
_PUBLISH_QOS_0_1 = (0x30, 0x32)  # a PUBLISH's first byte, its DUP and RETAIN flags masked out
_V5 = MQTTProtocolVersion.MQTTv5  # (whose PUBLISH carries properties: paho's reading)


class BufferedClient(mqtt.Client):
    """A paho client that reads its socket 64 KB at a time. paho asks for each packet in three reads (its type, its
    length, the rest): three system calls per message, a third of the time the meter source spent in paho on a
    live stream (bench/mqtt_live.py). `buffered`: bytes read wait here, which the socket no longer shows as
    readable (the driver reads on while there are). Errors and the end of the stream come from paho's own read,
    handled by paho as before."""

    _rbuf: bytes = b""
    _rpos: int = 0
    _rsock: object = None  # the socket the buffered bytes came from: a new connection starts afresh
    # Set by a source that takes its messages as (topic, payload, message id, QoS): see `_packet_read`.
    on_publish_bytes: Callable[[str, bytes, int, int], None] | None = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rsock is not self._sock:
            self._rbuf, self._rpos, self._rsock = b"", 0, self._sock
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            buf, pos = super()._sock_recv(_RECV_BYTES), 0  # raises as paho's does; b"": the broker closed it
            if not buf:
                return buf
            self._rbuf = buf
        self._rpos = pos + bufsize
        return buf[pos : pos + bufsize]

    @property
    def buffered(self) -> bool:
        return self._rpos < len(self._rbuf) and self._rsock is self._sock

    def _packet_read(self) -> MQTTErrorCode:
        """With `on_publish_bytes` set (an MQTT 3.1.1 session): a QoS 0 or 1 PUBLISH whole in the buffer goes
        straight to it, as paho's reading would give it to `on_message`, without paho's MQTTMessage, topic
        matching, locks and packet state: half the source's time in paho on a live stream. Every other packet, one
        read only in part, or one this does not take (QoS 2, a topic that is no UTF-8, a malformed one): paho's
        own reading, from the same buffer."""
        handler, buf, pos = self.on_publish_bytes, self._rbuf, self._rpos
        if handler is None or self._in_packet["command"] or self._rsock is not self._sock or self._protocol == _V5:
            return super()._packet_read()
        size = len(buf)
        if pos + 1 >= size or buf[pos] & 0xF6 not in _PUBLISH_QOS_0_1:
            return super()._packet_read()
        qos, length, at, shift = buf[pos] >> 1 & 3, 0, pos + 1, 0
        while at < size and shift < 28:  # the remaining length: at most 4 bytes, 7 bits each
            byte = buf[at]
            length, at, shift = length | (byte & 0x7F) << shift, at + 1, shift + 7
            if byte < 0x80:
                break
        else:
            return super()._packet_read()
        end = at + length
        if end > size:
            return super()._packet_read()  # not whole yet: paho reads what there is and keeps it
        topic_end = at + 2 + (buf[at] << 8 | buf[at + 1]) if at + 1 < end else end + 1
        start = topic_end + 2 if qos else topic_end
        if topic_end == at + 2 or start > end:
            return super()._packet_read()  # no topic, or longer than the packet: paho says what is wrong
        try:
            topic = buf[at + 2 : topic_end].decode()
        except UnicodeDecodeError:
            return super()._packet_read()
        mid = buf[topic_end] << 8 | buf[topic_end + 1] if qos else 0
        self._rpos = end
        self._last_bytes_received = time.monotonic()  # (paho's keepalive reads it)
        handler(topic, buf[start:end], mid, qos)
        if qos and not self._manual_ack:
            return self._send_puback(mid)  # what paho does after `on_message`
        return mqtt.MQTT_ERR_SUCCESS


def mqtt_client(
    settings: MqttSettings, client_id: str, *, clean: bool, v5: bool = False, buffered: bool = False
) -> mqtt.Client:
    """A paho 2.x client for `settings`: credentials from the password file, TLS when a CA file is named.
    `v5`: MQTT 5, whose session is chosen at connection (`connect_async(clean_start=...)`), not here; otherwise
    MQTT 3.1.1 with a session `clean` or kept. `buffered`: a `BufferedClient` (for a stream of many messages)."""
    kind = BufferedClient if buffered else mqtt.Client
    if v5:
        client = kind(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
    else:
        client = kind(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean, protocol=MQTTProtocolVersion.MQTTv311
        )
    if settings.username is not None:
        password = read_secret(settings.password_file).get_secret_value() if settings.password_file else None
        client.username_pw_set(settings.username, password)
    if settings.ca_file is not None:
        client.tls_set(ca_certs=str(settings.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.max_queued_messages_set(0)
    return client


def client_id(settings: MqttSettings, role: str = "") -> str:
    """The id of one of quotad's clients: `[mqtt] client_id` for the sink, `<client_id>-<role>` for the others (a
    broker drops the older of two connections with one id, so each client has its own)."""
    return f"{settings.client_id}-{role}" if role else settings.client_id


_READS_PER_WAKE = 500  # packets read per readiness of the socket, before other tasks get their turn
_HOLD_CHECK_S = 0.005  # while held, how often `hold` is asked again


class Driver:
    """Drives `client` (its host and port set by `connect_async`) on an asyncio loop until `stop`.

    `progress()` counts the messages handled so far (reading goes on while packets bring messages; without it, one
    read per readiness); `hold()` says to stop reading for now; `unreachable(exc)` is told of each failed connection
    attempt; `backoff`: the delays between attempts (default 1 s doubling to 30 s), from the first again after a
    connection the broker accepted (the client's `on_connect` may say so at once with `connected()`)."""

    def __init__(
        self,
        client: mqtt.Client,
        name: str,
        *,
        progress: Callable[[], int] | None = None,
        unreachable: Callable[[Exception], None] | None = None,
        hold: Callable[[], bool] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.client, self.name = client, name
        self._progress, self._unreachable, self._hold = progress or _none, unreachable or _ignore, hold
        self.backoff = backoff or Backoff(1.0, 30.0)
        self.stopping = False
        self._properties: Any = None  # the DISCONNECT's, given to `stop`
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id = 0
        self._own_thread: threading.Thread | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._gone: asyncio.Event | None = None  # set when the socket closes (made on the loop)
        self._sock: socket.socket | None = None
        self._held = False
        self._connected_once = False  # since the current attempt began: the back-off starts afresh
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write

    def connected(self) -> None:
        """Tell the driver the broker accepted the connection (from `on_connect`)."""
        self._connected_once = True

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Connect in the background on `loop` (from that loop's thread), or on a loop of its own on a thread of
        its own; returns at once."""
        self.stopping = False
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

        self._own_thread = threading.Thread(target=serve, name=self.name, daemon=True)
        self._own_thread.start()
        started.wait(5.0)

    def _begin(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._loop_thread_id = loop, threading.get_ident()
        self._gone = asyncio.Event()
        # the first attempt starts now: a caller that then blocks the loop a while (the daemon's restore) finds
        # the connection made and its CONNACK waiting
        first = loop.run_in_executor(None, self.client.reconnect)
        self._supervisor = loop.create_task(self._supervise(first), name=self.name)

    def stop(self, properties: Any = None) -> None:
        """Disconnect (a DISCONNECT with `properties`, MQTT 5) and end the connection's task. From the loop's
        thread, the DISCONNECT is written as the loop goes on (`closed` waits for it); with a loop of its own,
        that loop ends too. Idempotent."""
        self.stopping = True
        self._properties = properties
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

    async def closed(self, timeout: float) -> bool:
        """Wait (on the driver's loop) up to `timeout` s for the connection's socket to close, as it does once a
        DISCONNECT asked by `stop` is written; True when it has."""
        deadline = time.monotonic() + timeout
        while self._sock is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self._sock is None

    def _halt(self) -> None:
        # connected: written by the loop, then paho closes the socket (which ends _supervise)
        self.client.disconnect(properties=self._properties)
        if self._sock is None and self._supervisor is not None:
            self._supervisor.cancel()  # not connected: waiting out a back-off, or an attempt (see _on_socket_open)

    async def _supervise(self, first: asyncio.Future[Any] | None) -> None:
        """Connect, keep alive, and reconnect with back-off until stopped."""
        assert self._loop is not None
        assert self._gone is not None
        loop, gone, backoff = self._loop, self._gone, self.backoff
        while not self.stopping:
            gone.clear()
            self._connected_once = False
            attempt, first = first or loop.run_in_executor(None, self.client.reconnect), None
            try:
                await attempt
            except (OSError, ValueError) as exc:  # refused, unreachable, TLS failure, name not resolved
                if not self.stopping:
                    self._unreachable(exc)
            else:
                while not gone.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(gone.wait(), 1.0)
                    self._connected_once = self._connected_once or self.client.is_connected()
                    if not gone.is_set() and self.client.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                        break  # keepalive unanswered: paho closed the socket and said so (on_disconnect)
                if self._connected_once:
                    backoff.reset()
            if self.stopping:
                break
            await asyncio.sleep(backoff.next())

    # --- the socket, on the loop ----------------------------------------------------------------------------

    def _on_loop(self, call: Callable[[], object]) -> None:
        """Run `call` on the loop's thread (paho calls back from the connecting worker thread too)."""
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread_id:
            call()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(call)

    def soon(self, call: Callable[[], object]) -> None:
        """Run `call` on the loop's thread, soon (after what runs now); from any thread. Dropped once the loop is
        closed."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread_id:
            loop.call_soon(call)
        else:
            loop.call_soon_threadsafe(call)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        def watch() -> None:
            assert self._loop is not None
            self._sock, self._held = sock, False
            self._loop.add_reader(sock, self._read)
            if self.stopping:  # stopped while this attempt was under way: leave at once
                client.disconnect()

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
        """The socket is readable: read packets while they come (and TLS or the client holds bytes read), then let
        the loop go on; while `hold` says so, stop reading the socket."""
        client, sock = self.client, self._sock
        if self._held:
            return  # a call made soon (below) before the hold
        for _ in range(_READS_PER_WAKE):
            before = self._progress()
            if client.loop_read() != mqtt.MQTT_ERR_SUCCESS or self._sock is not sock:
                return  # the connection is gone: paho closed it and said so
            if self._hold is not None and self._hold():
                self._pause()
                return
            if self._progress() == before and not self._pending(sock):
                return  # nothing more to read now (or a packet that was no message: the loop calls again)
        if self._pending(sock):  # bytes already read, which the socket's readiness will not announce
            assert self._loop is not None
            self._loop.call_soon(self._read)

    def _pending(self, sock: Any) -> bool:
        """Bytes read from the socket and not yet handled: decrypted by TLS, or buffered by the client."""
        client = self.client
        return (isinstance(client, BufferedClient) and client.buffered) or (
            isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
        )

    def _pause(self) -> None:
        assert self._loop is not None
        if self._sock is not None and not self._held:
            self._held = True
            self._loop.remove_reader(self._sock)
            self._loop.call_later(_HOLD_CHECK_S, self._resume)

    def _resume(self) -> None:
        assert self._loop is not None
        if not self._held:
            return
        if self._sock is None:
            self._held = False
        elif self._hold is not None and self._hold() and not self.stopping:
            self._loop.call_later(_HOLD_CHECK_S, self._resume)
        else:
            self._held = False
            self._loop.add_reader(self._sock, self._read)
            if self._pending(self._sock):
                self._loop.call_soon(self._read)


def _none() -> int:
    return 0


def _ignore(exc: Exception) -> None:
    """A failed connection attempt nobody asked to hear of: the driver tries again."""

"""`BufferedClient`'s own reading of PUBLISH packets against paho's: the same messages, whatever the packets and
however the stream is cut (a differential property test guarding the speed shortcut)."""

from __future__ import annotations

import socket
import struct
from typing import Any

import paho.mqtt.client as mqtt
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from quotad.shell.mqtt import BufferedClient

Message = tuple[str, bytes, int, int]


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(topic: bytes, payload: bytes, qos: int, mid: int, flags: int) -> bytes:
    """An MQTT 3.1.1 PUBLISH (`flags`: DUP 0x08 and RETAIN 0x01)."""
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"") + payload
    return bytes([0x30 | qos << 1 | flags]) + _remaining(len(body)) + body


def read_all(client: mqtt.Client, chunks: list[bytes]) -> list[Message]:
    """Feed `chunks` to `client` through a socket, reading after each as the driver does; what it handed on."""
    got: list[Message] = []

    def on_message(c: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # paho hands it on; reading its topic raises (the source logs it)
            topic = f"not UTF-8: {message._topic!r}"
        got.append((topic, bytes(message.payload), message.mid, message.qos))

    if client.on_message is None:
        client.on_message = on_message
    if isinstance(client, BufferedClient):
        client.on_publish_bytes = lambda topic, payload, mid, qos: got.append((topic, payload, mid, qos))
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client._sock = ours
    try:
        for chunk in chunks:
            theirs.sendall(chunk)
            for _ in range(100_000):
                before = len(got)
                assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
                buffered = isinstance(client, BufferedClient) and client.buffered
                if len(got) == before and not buffered:
                    break
    finally:
        client._sock = None
        ours.close()
        theirs.close()
    return got


def client(kind: type[mqtt.Client]) -> mqtt.Client:
    made = kind(CallbackAPIVersion.VERSION2, client_id="t", protocol=MQTTProtocolVersion.MQTTv311)
    made.manual_ack_set(True)  # nothing written back: only what is read is compared
    return made


packets = st.lists(
    st.tuples(
        st.one_of(st.text(min_size=1, max_size=40).map(str.encode), st.binary(min_size=1, max_size=8)),
        st.binary(max_size=300),  # up to two bytes of remaining length
        st.sampled_from([0, 1]),
        st.integers(1, 65535),
        st.sampled_from([0, 1, 8, 9]),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(packets, st.lists(st.integers(1, 400), max_size=20))
def test_the_same_messages_as_paho_however_the_stream_is_cut(packets: list[Any], cuts: list[int]) -> None:
    stream = b"".join(publish(*packet) for packet in packets)
    chunks, at = [], 0
    for size in cuts:
        chunks.append(stream[at : at + size])
        at += size
    chunks = [c for c in chunks if c] + ([stream[at:]] if stream[at:] else [])
    theirs = read_all(client(mqtt.Client), chunks)
    assert read_all(client(BufferedClient), chunks) == theirs
    assert len(theirs) == len(packets)


def test_a_stream_of_many_messages_is_read_whole_and_mostly_by_its_own_reading() -> None:
    stream = b"".join(publish(f"t/m{n}".encode(), b'{"ts":1,"energy_kwh":%d}' % n, 1, n % 65535 + 1, 0)
                      for n in range(5000))  # fmt: skip
    buffered, by_paho = client(BufferedClient), []

    def on_message(c: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        by_paho.append((message.topic, bytes(message.payload), message.mid, message.qos))

    buffered.on_message = on_message
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    got = read_all(buffered, chunks)
    # paho's reading: the packet that starts a read of the socket, and one cut between two reads (it keeps what came)
    assert len(by_paho) <= 2 * len(chunks)
    got = sorted(got + by_paho, key=lambda m: m[2])
    assert [m[0] for m in got] == [f"t/m{n}" for n in range(5000)]
    assert got[1234] == ("t/m1234", b'{"ts":1,"energy_kwh":1234}', 1235, 1)

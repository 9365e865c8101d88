"""MQTT ingestion against a live stream: 100,000 readings of 1,000 meters written to mosquitto as fast as a raw
socket can, through the whole daemon until the effect of the last reading arrives on MQTT; beside a bare subscriber.

A real mosquitto and a real influxd on loopback. The policy: 1,000 MQTT meters of 1,000 firms (kind `large`), of
which one per round is "planted": its firm has a 1,000 kWh daily limit, its counter stays at 0 and its reading is
the stream's very last one, at 850 kWh (0.85 of the limit). Each round, a publisher in its own process (no MQTT
library: PUBLISH packets prepared beforehand, QoS 1, written straight to a socket, its PUBACKs drained by a
thread) writes 100 sweeps of the 1,000 meters, then, alternately:
- the floor: a bare paho subscriber (QoS 0) in its own process, counting the 100,000 messages (the same packets,
  their topics under `bench0/` instead of `quotad/`, so that quotad is idle meanwhile); timed from the
  publisher's first byte to the last message counted;
- quotad: `quotad run` (its persistent session, QoS 1, already subscribed; InfluxDB sink live), timed from the
  publisher's first byte until the planted firm's notice arrives on `quotad/t/alerts/notice/<firm>` at an
  inspector's client: every reading before it parsed, counted, journaled, acknowledged once durable.
Both times use CLOCK_MONOTONIC (time.perf_counter) across processes. Prints each round, and last:
`mqtt_live: X readings/s, floor Y msgs/s, ratio R` (medians of the rounds; target >= 0.50).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.alert_latency import readings_journaled, township_head
from tests.brokers import Mosquitto
from tests.services import Influx1

METERS, SWEEPS = 1000, 100
TOPIC = "quotad/t/meters/m{n}"
FLOOR_TOPICS = (b"quotad/t/meters/", b"bench0/t/meters/")  # the floor's stream: as long, no meter of quotad's


def policy_text(rounds: int) -> str:
    text = township_head()
    for n in range(METERS):
        limit = "daily_limit_kwh = 1000\n" if n < rounds else ""
        text += (
            f'[[firms]]\nid = "f{n}"\nname = "企业 {n}"\nkind = "large"\n{limit}'
            f'[[meters]]\nid = "m{n}"\nfirm = "f{n}"\n[meters.mqtt]\n'
        )
    return text


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(topic: str, payload: bytes, mid: int) -> bytes:
    """An MQTT 3.1.1 PUBLISH, QoS 1."""
    name = topic.encode()
    body = struct.pack("!H", len(name)) + name + struct.pack("!H", mid) + payload
    return b"\x32" + _remaining(len(body)) + body


def connect_packet(client_id: str) -> bytes:
    ident = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02" + struct.pack("!H", 60) + struct.pack("!H", len(ident)) + ident
    return b"\x10" + _remaining(len(body)) + body


def stream(planted: int, counters: list[float], after: float) -> tuple[bytes, float]:
    """100 sweeps of the 1,000 meters (the planted one last in each), stamped 0.1 s apart in the recent past and
    after `after` (the previous stream's last stamp: a reading not newer than its meter's last is not counted);
    the planted meter's last reading crosses 0.8 of its firm's limit. Returns the packets and the last stamp."""
    base = max(round(time.time() - 15, 1), after + 0.1)
    order = [n for n in range(METERS) if n != planted] + [planted]
    packets = []
    mid = 0
    for k in range(SWEEPS):
        for n in order:
            if n == planted:
                kwh = 850.0 if k == SWEEPS - 1 else counters[n]
            else:
                kwh = counters[n] = round(counters[n] + 0.01, 3)
            mid = mid % 65535 + 1
            payload = b'{"ts":%.1f,"energy_kwh":%s}' % (base + k / 10, repr(kwh).encode())
            packets.append(publish_packet(TOPIC.format(n=n), payload, mid))
    counters[planted] = 850.0
    return b"".join(packets), base + (SWEEPS - 1) / 10


def publisher(port: int, path: str) -> None:
    """Its own process: CONNECT, then the prepared packets as fast as the socket takes them; prints the
    perf_counter of the first byte, and exits once every PUBACK came."""
    data = Path(path).read_bytes()
    expected = METERS * SWEEPS * 4  # a PUBACK is 4 bytes
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(connect_packet(f"bench-raw-{os.getpid()}"))
        assert sock.recv(4)[:2] == b"\x20\x02", "no CONNACK"
        got = 0

        def drain() -> None:
            nonlocal got
            while got < expected:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    return
                got += len(chunk)

        reader = threading.Thread(target=drain)
        reader.start()
        print(f"{time.perf_counter():.6f}", flush=True)
        view = memoryview(data)
        for start in range(0, len(data), 1 << 16):
            sock.sendall(view[start : start + (1 << 16)])
        reader.join(120)
        assert got >= expected, f"{got // 4} PUBACKs of {expected // 4}"
        sock.sendall(b"\xe0\x00")


def subscriber(port: int, expected: int) -> None:
    """Its own process: a bare paho subscriber (QoS 0) on the meters' topics; prints `ready`, then the
    perf_counter of the `expected`-th message."""
    count = 0
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-floor-{os.getpid()}")

    def on_message(c: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal count
        count += 1
        if count == expected:
            print(f"{time.perf_counter():.6f}", flush=True)
            c.disconnect()

    client.on_message = on_message
    client.on_subscribe = lambda *args: print("ready", flush=True)
    client.on_connect = lambda c, *args: c.subscribe(FLOOR_TOPICS[1].decode() + "#", qos=0)
    client.connect("127.0.0.1", port)
    client.loop_forever()


def run_publisher(broker: Mosquitto, packets: Path) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, "--publisher", str(packets), "--port", str(broker.port)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def floor_round(broker: Mosquitto, packets: Path) -> float:
    command = [sys.executable, __file__, "--subscriber", str(METERS * SWEEPS), "--port", str(broker.port)]
    counting = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert counting.stdout is not None
    assert counting.stdout.readline().strip() == "ready"
    sending = run_publisher(broker, packets)
    out, _ = sending.communicate(timeout=120)
    last = float(counting.communicate(timeout=120)[0].strip())
    return last - float(out.strip())


def quotad_round(broker: Mosquitto, packets: Path, planted: int) -> float:
    arrived = threading.Event()
    at: list[float] = []
    inspector = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-inspector-{planted}")

    def on_message(c: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic == f"quotad/t/alerts/notice/f{planted}":
            at.append(time.perf_counter())
            arrived.set()

    subscribed = threading.Event()
    inspector.on_message = on_message
    inspector.on_subscribe = lambda *args: subscribed.set()
    inspector.connect(*broker.address)
    inspector.loop_start()
    inspector.subscribe("quotad/t/alerts/#", qos=1)
    assert subscribed.wait(10)
    sending = run_publisher(broker, packets)
    assert arrived.wait(300), "the planted alert never arrived"
    out, _ = sending.communicate(timeout=120)
    inspector.disconnect()
    inspector.loop_stop()
    return at[0] - float(out.strip())


def start_daemon(directory: Path, broker: Mosquitto, influx: Influx1, rounds: int) -> subprocess.Popen[bytes]:
    (directory / "policy.toml").write_text(policy_text(rounds), encoding="utf-8")
    config = directory / "quotad.toml"
    config.write_text(
        f'policy = "policy.toml"\nstate_dir = "{directory}/state"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "quotad-bench"\n'
        f'[influx]\napi = "v1"\nurl = "{influx.url}"\nbucket = "quotad"\n',
        encoding="utf-8",
    )
    log = directory / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen([sys.executable, "-m", "quotad", "run", "-c", str(config)], stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while "quotad serving" not in log.read_text(encoding="utf-8"):
        assert daemon.poll() is None, log.read_text(encoding="utf-8")
        assert time.monotonic() < deadline, "quotad did not start within 60 s"
        time.sleep(0.05)
    return daemon


def main(rounds: int) -> None:
    n = METERS * SWEEPS
    floors, ours = [], []
    extra = "max_queued_messages 1000000\n"  # the daemon's session may hold a whole stream while it catches up
    with tempfile.TemporaryDirectory(prefix="quotad-bench-") as tmp, Mosquitto(extra=extra) as broker:
        directory = Path(tmp)
        with Influx1(directory / "influx") as influx:
            daemon = start_daemon(directory, broker, influx, rounds)
            try:
                counters, last = [1000.0] * METERS, 0.0
                for n_planted in range(rounds):
                    counters[n_planted] = 0.0
                for r in range(rounds):
                    packets, floor_packets = directory / f"stream{r}.bin", directory / f"floor{r}.bin"
                    data, last = stream(r, counters, last)
                    packets.write_bytes(data)
                    floor_packets.write_bytes(data.replace(*FLOOR_TOPICS))
                    # the same bytes under topics of no meter for the floor (quotad's session does not get them)
                    if r % 2:
                        ours.append(n / quotad_round(broker, packets, r))
                        floors.append(n / floor_round(broker, floor_packets))
                    else:
                        floors.append(n / floor_round(broker, floor_packets))
                        ours.append(n / quotad_round(broker, packets, r))
                    print(f"round {r + 1}: floor {floors[-1]:.0f} msgs/s, quotad {ours[-1]:.0f} readings/s", flush=True)
            finally:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(60)
            journaled = readings_journaled(directory / "state")
    assert journaled == rounds * n, f"{journaled} readings journaled of {rounds * n}"
    mine, bare = statistics.median(ours), statistics.median(floors)
    print(f"{METERS} MQTT meters, {n} readings a round, {rounds} rounds; {journaled} readings journaled, all of them")
    print(f"mqtt_live: {mine:.0f} readings/s, floor {bare:.0f} msgs/s, ratio {mine / bare:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--publisher", help=argparse.SUPPRESS)
    parser.add_argument("--subscriber", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publisher:
        publisher(args.port, args.publisher)
    elif args.subscriber:
        subscriber(args.port, args.subscriber)
    else:
        main(args.rounds)

"""MQTT ingestion: readings/s through the whole daemon, beside a bare paho subscriber, same broker, same messages.

A real mosquitto and a real influxd on loopback; the shipped township plus 200 general firms with an MQTT meter
each (JSON payloads). Each round queues N readings (300 a meter, one a minute) on the broker for two persistent
sessions, then drains them one after the other (the order alternates):
- the floor: a bare paho subscriber (QoS 1, the same topics) counting the messages;
- quotad: `quotad run` as a process: parse, ledger, rules, journal and outboxes in SQLite, each reading
  acknowledged once durable, alerts and points delivered to MQTT and InfluxDB; timed by watching its journal.
Both are timed from their first message to their last. Prints, last:
`mqtt_ingest: X readings/s, floor Y msgs/s, ratio R`.
Environment: PROFILE=FILE runs the daemon under cProfile (its main thread) into FILE; INFLUX_DOWN=1 points the
daemon at a closed port, so the points pile up in the outbox and influxd's work is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.brokers import Mosquitto
from tests.services import Influx1
from tests.shell.township import township_files

FIRMS, PER_METER = 200, 300
START = 1287504000  # 2010-10-20 00:00 +08:00; the daemon's clock starts a day later: no reading is "ahead"
V1 = '[influx]\napi = "v1"\nurl = "{url}"\nbucket = "quotad"'


def topics() -> list[str]:
    return [f"quotad/xx-town/meters/x-{n:04d}-main" for n in range(FIRMS)]


def setup(directory: Path, broker: Mosquitto, influx: Influx1) -> Path:
    url = "http://127.0.0.1:9" if os.environ.get("INFLUX_DOWN") else influx.url
    config = township_files(directory, broker.port, V1.format(url=url), speed=1.0,
                            start="2010-10-21T00:00:00+08:00")  # fmt: skip
    with (directory / "township.toml").open("a", encoding="utf-8") as policy:
        for n in range(FIRMS):
            policy.write(
                f'\n[[firms]]\nid = "x-{n:04d}"\nname = "示例企业 {n:04d}"\nkind = "general"\nbaseline_kwh = 4000\n'
                f'\n[[meters]]\nid = "x-{n:04d}-main"\nfirm = "x-{n:04d}"\n[meters.mqtt]\nformat = "json"\n'
            )
    return config


def publish_round(broker: Mosquitto, k: int) -> int:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-meters-{k}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(*broker.address)
    client.loop_start()
    infos = []
    for minute in range(k * PER_METER, (k + 1) * PER_METER):
        for n, topic in enumerate(topics()):
            kwh = round(1000 + minute * (0.05 + n % 7 / 100), 3)
            payload = json.dumps({"ts": START + 60 * minute, "energy_kwh": kwh})
            infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
    return len(infos)


class Floor:
    """A bare paho subscriber with a persistent session on the meters' topics, timing the messages it counts."""

    def __init__(self, broker: Mosquitto) -> None:
        self.broker, self.count, self.first, self.last, self.expected = broker, 0, 0.0, 0.0, 0
        self.done = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-floor", clean_session=False)
        self.client.on_message = self._on_message

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.count += 1
        if self.count == 1:
            self.first = time.perf_counter()
        if self.count == self.expected:
            self.last = time.perf_counter()
            self.done.set()

    def subscribe(self) -> None:
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(*self.broker.address)
        self.client.loop_start()
        self.client.subscribe([(topic, 1) for topic in topics()])
        assert subscribed.wait(10)
        self.client.disconnect()
        self.client.loop_stop()

    def drain(self, expected: int) -> float:
        self.count, self.expected = 0, expected
        self.done.clear()
        self.client.connect(*self.broker.address)
        self.client.loop_start()
        assert self.done.wait(120), f"the floor got {self.count} of {expected}"
        self.client.disconnect()
        self.client.loop_stop()
        return (expected - 1) / (self.last - self.first)


class Daemon:
    """`quotad run`, timed through its journal."""

    def __init__(self, directory: Path, config: Path) -> None:
        self.dir, self.config = directory, config
        self.log = directory / "daemon.log"

    def launch(self) -> subprocess.Popen[bytes]:
        out = self.log.open("ab")
        profile = ["-m", "cProfile", "-o", os.environ["PROFILE"]] if os.environ.get("PROFILE") else []
        command = [sys.executable, *profile, "-m", "quotad", "run", "-c", str(self.config)]
        return subprocess.Popen(command, stdout=out, stderr=out)

    def start(self) -> subprocess.Popen[bytes]:
        start = len(self.log.read_bytes()) if self.log.exists() else 0
        process = self.launch()
        deadline = time.monotonic() + 60
        while "quotad serving" not in self.log.read_text(encoding="utf-8", errors="replace")[start:]:
            assert process.poll() is None, self.log.read_text(encoding="utf-8")[-3000:]
            assert time.monotonic() < deadline, "quotad did not start within 60 s"
            time.sleep(0.05)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0

    def subscribe(self) -> None:
        self.stop(self.start())  # the persistent session and its subscriptions now exist on the broker

    def drain(self, expected: int) -> float:
        db = sqlite3.connect(f"file:{self.dir / 'state' / 'quotad.db'}?mode=ro", uri=True)
        base = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        process = self.launch()  # sampled from its launch: readings flow as soon as it connects
        samples: list[tuple[float, int]] = []
        deadline = time.monotonic() + 300
        while True:
            journaled = self._readings(db, base)
            samples.append((time.perf_counter(), journaled))
            if journaled >= expected:
                break
            assert process.poll() is None, "quotad exited"
            assert time.monotonic() < deadline, "quotad did not journal every reading within 300 s"
            time.sleep(0.05)  # a reader polling every 5 ms slowed the writer by a tenth (WAL readers)
        self.stop(process)
        assert self._readings(db, base) == expected, "a reading journaled twice"
        db.close()
        t_first = next(t for t, n in samples if n >= 1)
        t_last = next(t for t, n in samples if n >= expected)
        return (expected - 1) / (t_last - t_first)

    @staticmethod
    def _readings(db: sqlite3.Connection, base: int) -> int:
        """The reading events after `base`: events are numbered without reuse and only reading events are compacted
        away behind a snapshot, so the numbers past `base` less the other events past it count them all."""
        newest = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        others = db.execute("SELECT COUNT(*) FROM events WHERE kind != 'reading' AND seq > ?", (base,)).fetchone()[0]
        return int(newest) - base - int(others)


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="quotad-bench-") as tmp, Mosquitto() as broker:
        directory = Path(tmp)
        with Influx1(directory / "influx") as influx:
            daemon, floor = Daemon(directory, setup(directory, broker, influx)), Floor(broker)
            daemon.subscribe()
            floor.subscribe()
            floor_rates, quotad_rates = [], []
            for k in range(rounds):
                n = publish_round(broker, k)
                if k % 2:
                    quotad_rates.append(daemon.drain(n))
                    floor_rates.append(floor.drain(n))
                else:
                    floor_rates.append(floor.drain(n))
                    quotad_rates.append(daemon.drain(n))
                rates = f"floor {floor_rates[-1]:.0f} msgs/s, quotad {quotad_rates[-1]:.0f}/s"
                print(f"round {k + 1}: {n} readings; {rates}", flush=True)
            points = influx.query("SELECT COUNT(energy_kwh) FROM meter_reading")
    ours, bare = statistics.median(quotad_rates), statistics.median(floor_rates)
    stored = points[0]["count"] if points else 0
    print(f"{FIRMS} MQTT meters, {rounds} rounds; meter_reading points in InfluxDB: {stored}")
    print(f"mqtt_ingest: {ours:.0f} readings/s, floor {bare:.0f} msgs/s, ratio {ours / bare:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args().rounds)

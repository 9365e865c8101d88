"""The example township with every meter on MQTT, fed a fixed feed by the test: what the daemon then journals,
raises and delivers can be compared with the core's replay of the same feed, reading for reading.

Real mosquitto, real influxd, `quotad run` as a process on a simulated clock that starts just after the feed ends
(the feed is in the past: nothing is refused as stamped ahead, and the orders it issues stand).
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from quotad.config.load import load
from quotad.core.engine import Engine
from quotad.core.feed import counters
from quotad.core.policy import Policy
from quotad.core.readings import Reading
from quotad.schedule.calendar import MICROS_PER_S
from tests.brokers import Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[2]
FEED_START = dt.date(2010, 10, 19)  # two days: the paper mill's and the seven firms' (Shengda is cut off on 10-20)
CLOCK_START = "2010-10-21T00:00:00+08:00"


def all_on_mqtt(directory: Path) -> Path:
    """The example policy with its Modbus meters read over MQTT instead (JSON on their default topics)."""
    text = (ROOT / "config" / "township.toml").read_text(encoding="utf-8")
    text = re.sub(r"\[meters\.(?:modbus|dlt645)\]\n(?:[a-z_]+ = [^\n]*\n)+", '[meters.mqtt]\nformat = "json"\n', text)
    text = re.sub(r"\nmax_kw = \d+", "", text)
    path = directory / "township.toml"
    path.write_text(text, encoding="utf-8")
    return path


def daemon_file(directory: Path, state: Path, broker: Mosquitto, influx_url: str | None) -> Path:
    influx = f'[influx]\napi = "v1"\nurl = "{influx_url}"\nbucket = "quotad"\n' if influx_url else ""
    config = directory / "quotad.toml"
    config.write_text(
        f'policy = "township.toml"\nstate_dir = "{state}"\n{influx}'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "quotad-feedtown"\n'
        f"[clock]\nstart = {CLOCK_START}\nspeed = 1\n",
        encoding="utf-8",
    )
    return config


def feed(policy: Policy, days: int = 2, step_s: int = 600) -> list[Reading]:
    return list(counters(policy, FEED_START, days, step_s=step_s, seed=5))


def replayed(policy: Policy, readings: list[Reading]) -> list[str]:
    """The alert ids the core raises over `readings`, in order: what an uninterrupted daemon journals."""
    engine = Engine(policy)
    return [a.id for r in readings for a in engine.ingest(r)]


def policy_of(config: Path) -> Policy:
    return load(config).policy


class Publisher:
    """Publishes readings to their meters' topics (QoS 1, in order), from a thread, `rate` per second."""

    def __init__(self, broker: Mosquitto, readings: list[Reading], rate: float = 2000.0) -> None:
        self.readings, self.rate, self.sent = readings, rate, 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"meters-{free_port()}")
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(100)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Publisher:
        self.thread.start()
        return self

    def _run(self) -> None:
        started = time.monotonic()
        for i, reading in enumerate(self.readings):
            payload = json.dumps({"ts": reading.t / MICROS_PER_S, "energy_kwh": reading.energy_kwh})
            self.client.publish(f"quotad/xx-town/meters/{reading.meter}", payload, qos=1).wait_for_publish(10)
            self.sent = i + 1
            ahead = started + (i + 1) / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    def join(self, timeout: float = 120.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the feed was not published in time"
        self.client.loop_stop()
        self.client.disconnect()


def journaled_readings(state: Path) -> list[tuple[str, int]]:
    """(meter, t) of each reading event in the journal, in order (read-only, beside the daemon)."""
    db = sqlite3.connect(f"file:{state / 'quotad.db'}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT body FROM events WHERE kind = 'reading' ORDER BY seq").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()
    return [(body["reading"][0], body["reading"][1]) for body in (json.loads(b) for (b,) in rows)]


def journal_of(state: Path, kind: str) -> list[dict[str, object]]:
    db = sqlite3.connect(f"file:{state / 'quotad.db'}?mode=ro", uri=True, timeout=10)
    try:
        return [json.loads(b) for (b,) in db.execute("SELECT body FROM events WHERE kind = ? ORDER BY seq", (kind,))]
    finally:
        db.close()


@contextmanager
def small_disk(where: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of `size_mb` mounted at `where` for the test (root is needed, as for the suite's apt-get)."""
    where.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(where)]
    if os.geteuid() != 0:
        command = ["sudo", "-n", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"cannot mount a small file system for the disk-full tests: {done.stderr}"
    try:
        yield where
    finally:
        unmount = ["umount", "-l", str(where)]
        subprocess.run(unmount if os.geteuid() == 0 else ["sudo", "-n", *unmount], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of `disk` with one file; returns it (delete it to give the space back)."""
    filler = disk / "filler"
    with filler.open("ab", buffering=0) as handle:
        for chunk in (1 << 20, 1 << 12, 1):
            block = b"\0" * chunk
            while True:
                try:
                    handle.write(block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    return filler


RECORDED_DAY = ROOT / "config" / "recorded" / "2010-10-20.jsonl"


def seed_recorded_day(state: Path, policy: Policy, then: dt.time, channels: frozenset[str] = frozenset()) -> None:
    """Journal the recorded day 2010-10-20 into `state` as a daemon would have (with `channels`, the notices it
    makes wait in their queues), and one reading at `then` on 10-21: the township's event time when a daemon
    started on that state begins."""
    from quotad.commands.replay import read_readings
    from quotad.schedule.calendar import to_micros
    from quotad.shell.journal import Journal
    from quotad.shell.store import Store

    journal = Journal(Store(state), policy, None, False)
    journal.channels = channels
    last = None
    for _n, reading in read_readings(RECORDED_DAY, sys.stderr):
        journal.record_reading(reading)
        if reading.meter == "sd-main":
            last = reading
    assert last is not None
    moment = to_micros(dt.datetime.combine(dt.date(2010, 10, 21), then, policy.township.tz))
    journal.record_reading(Reading("sd-main", moment, last.energy_kwh + 1.0))
    journal.store.close()

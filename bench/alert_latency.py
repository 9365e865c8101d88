"""Alert latency: a reading published → its alert received by an inspector on MQTT, at 1,000 readings/s.

A real mosquitto; `quotad run` as a process on the real clock, with 200 background meters publishing 5 readings/s
each (1,000/s in all, QoS 1) and 400 trigger firms (general, 1,000 kWh monthly quota). Every 50 ms one trigger
firm's meter jumps to 850 kWh: its notice (80%) is raised, journaled, and published on
`quotad/t/alerts/notice/<firm>`, where an inspector's client (QoS 1) takes its arrival time. In the same run and
the same load, every 50 ms a bare message goes from the same publisher to a bare subscriber: the floor (one MQTT
round trip; the alert makes two, plus the daemon). Prints the percentiles, and last:
`alert_latency: p99 X ms, floor p99 Y ms, ratio R` (p50 on the line before; target p99 < 50 ms).
"""

from __future__ import annotations

import argparse
import calendar
import datetime as dt
import json
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

BACKGROUND, PER_S = 200, 5

# The readings journaled: events are numbered without reuse and only reading events are compacted away behind a
# snapshot (the register is kept), so the newest number less the other events counts them all.
READINGS_JOURNALED = (
    "SELECT (SELECT COALESCE(MAX(seq), 0) FROM events) - (SELECT COUNT(*) FROM events WHERE kind != 'reading')"
)


def readings_journaled(state: Path) -> int:
    """How many readings the daemon whose state directory is `state` journaled (once it has stopped)."""
    db = sqlite3.connect(state / "quotad.db")
    try:
        return int(db.execute(READINGS_JOURNALED).fetchone()[0])
    finally:
        db.close()


def township_head() -> str:
    """The benchmarks' township: no cap that matters, a control period of this month."""
    today = dt.date.today()
    last = calendar.monthrange(today.year, today.month)[1]
    return (
        '[township]\nid = "t"\nname = "基准镇"\ndaily_cap_kwh = 100000000\n'
        f"[control]\nstart = {today.replace(day=1)}\nend = {today.replace(day=last)}\n"
    )


def policy_text(triggers: int) -> str:
    text = township_head()
    for kind, count, quota in (("b", BACKGROUND, 10**8), ("a", triggers, 1000)):
        for n in range(count):
            text += (
                f'[[firms]]\nid = "{kind}{n}"\nname = "企业 {kind}{n}"\nkind = "general"\nmonthly_quota_kwh = {quota}\n'
                f'[[meters]]\nid = "{kind}{n}-m"\nfirm = "{kind}{n}"\n[meters.mqtt]\n'
            )
    return text


class Clocked:
    """A subscriber noting when each message arrives (perf_counter), by topic."""

    def __init__(self, broker: Mosquitto, client_id: str, topic: str) -> None:
        self.arrived: dict[str, float] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = lambda c, u, m: self.arrived.setdefault(m.topic, time.perf_counter())
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(*broker.address)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def payload(kwh: float) -> str:
    return json.dumps({"ts": round(time.time(), 3), "energy_kwh": kwh})


def main(triggers: int) -> None:
    with tempfile.TemporaryDirectory(prefix="quotad-bench-") as tmp, Mosquitto() as broker:
        directory = Path(tmp)
        (directory / "policy.toml").write_text(policy_text(triggers), encoding="utf-8")
        config = directory / "quotad.toml"
        config.write_text(
            f'policy = "policy.toml"\nstate_dir = "{directory}/state"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "quotad-bench"\n',
            encoding="utf-8",
        )
        log = directory / "daemon.log"
        with log.open("wb") as out:
            command = [sys.executable, "-m", "quotad", "run", "-c", str(config)]
            daemon = subprocess.Popen(command, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 60
            while "quotad serving" not in log.read_text(encoding="utf-8"):
                assert daemon.poll() is None, log.read_text(encoding="utf-8")
                assert time.monotonic() < deadline, "quotad did not start within 60 s"
                time.sleep(0.05)
            inspector = Clocked(broker, "bench-inspector", "quotad/t/alerts/#")
            bare = Clocked(broker, "bench-bare", "bench/ping/#")
            meters = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-meters")
            meters.max_inflight_messages_set(1000)
            meters.connect(*broker.address)
            meters.loop_start()
            for n in range(triggers):  # baselines: a meter's first reading only sets it
                meters.publish(f"quotad/t/meters/a{n}-m", payload(0.0), qos=1)
            sent_alert, sent_ping, background = run_load(meters, triggers)
            time.sleep(2.0)
            meters.disconnect()
            meters.loop_stop()
            inspector.close()
            bare.close()
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
        journaled = readings_journaled(directory / "state")
    assert journaled == background + 2 * triggers, f"{journaled} readings journaled of {background + 2 * triggers}"
    alerts = [inspector.arrived[t] - s for t, s in sent_alert.items() if t in inspector.arrived]
    pings = [bare.arrived[t] - s for t, s in sent_ping.items() if t in bare.arrived]
    assert len(alerts) == triggers, f"{triggers - len(alerts)} alerts never arrived: see {log}"
    assert len(pings) == triggers
    ours, floor = percentiles(alerts), percentiles(pings)
    print(f"{journaled} readings journaled, all that were sent")
    print(f"{triggers} alerts at {BACKGROUND * PER_S} readings/s: p50 {ours[0]:.1f} ms (floor {floor[0]:.1f} ms), "
          f"max {max(alerts) * 1000:.1f} ms (floor {max(pings) * 1000:.1f} ms)")  # fmt: skip
    print(f"alert_latency: p99 {ours[1]:.1f} ms, floor p99 {floor[1]:.1f} ms, ratio {ours[1] / floor[1]:.1f}")


def run_load(meters: mqtt.Client, triggers: int) -> tuple[dict[str, float], dict[str, float], int]:
    """1,000 background readings/s in 10 ms slices; a trigger and a ping every 50 ms. Returns the send times of
    the alerts' readings and of the pings, by the topic that answers them, and how many background readings."""
    sent_alert, sent_ping = {}, {}
    counters = [1000.0] * BACKGROUND
    start = time.perf_counter() + 1.0  # a second of background load first
    slice_s, per_slice = 0.01, BACKGROUND * PER_S // 100
    k = 0
    fired = 0
    while fired < triggers:
        time.sleep(max(0.0, start + k * slice_s - time.perf_counter()))
        for j in range(per_slice):
            n = (k * per_slice + j) % BACKGROUND
            counters[n] += 0.01
            meters.publish(f"quotad/t/meters/b{n}-m", payload(round(counters[n], 3)), qos=1)
        now = time.perf_counter()
        if now >= start + 1.0 and k % 5 == 0:
            sent_alert[f"quotad/t/alerts/notice/a{fired}"] = time.perf_counter()
            meters.publish(f"quotad/t/meters/a{fired}-m", payload(850.0), qos=1)
            sent_ping[f"bench/ping/{fired}"] = time.perf_counter()
            meters.publish(f"bench/ping/{fired}", b"ping", qos=1)
            fired += 1
        k += 1
    return sent_alert, sent_ping, k * per_slice


def percentiles(latencies: list[float]) -> tuple[float, float]:
    """p50 and p99 in ms."""
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=400)
    main(parser.parse_args().alerts)

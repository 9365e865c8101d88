"""Alert latency under issue 13's conditions, in 10 runs: a reading published → its alert received on MQTT.

A real mosquitto and a real influxd (the InfluxDB sink live); `quotad run` as a process on the real clock, with
1,000 MQTT meters each publishing one reading a second (1,000 readings/s, QoS 1, in 10 ms slices): 500 firms
with a 1,000 kWh daily limit (kind `large`, no group) and 500 background firms without one. Every firm's first
reading sets its counter at 0; then each second 50 of the limited firms report 850 kWh (one every 20 ms), which
crosses 0.8 of the limit: the notice is raised, journaled, and published on `quotad/t/alerts/notice/<firm>`,
where an inspector's client (QoS 1) takes its arrival time. Right after each such reading a bare message goes
from the same publisher to a bare subscriber: the floor (one MQTT round trip; the alert makes two, plus the
daemon). A run is 11 s of load (11,000 readings, 500 alerts) on a fresh daemon and state directory; the broker
and influxd are shared by the runs. Prints every run's p50/p99, and last:
`alert_latency_10: worst p99 X ms, floor p99 Y ms, ratio R` (the floor of that same run; target: p99 < 50 ms
in every run).
Environment: BROKER_EXTRA: lines added to mosquitto's configuration (e.g. "set_tcp_nodelay true"); LATE=1
prints when the alerts later than 20 ms were sent (perf_counter); ASYNCIO_DEBUG=1 runs the daemon with
PYTHONASYNCIODEBUG=1 (asyncio logs a callback or task step holding the loop over 100 ms; each run's daemon log
is copied to ./alert_latency_10.runN.log); QUOTAD_LOG=FILE appends the daemons' logs to FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.alert_latency import Clocked, percentiles, readings_journaled, township_head
from tests.brokers import Mosquitto
from tests.services import Influx1

LIMITED, BACKGROUND, PER_SECOND = 500, 500, 50  # 50 of the limited firms cross 0.8 each second
SLICES = 100  # a second in 10 ms slices


def policy_text() -> str:
    text = township_head()
    for kind, count, limit in (("a", LIMITED, "daily_limit_kwh = 1000\n"), ("b", BACKGROUND, "")):
        for n in range(count):
            text += (
                f'[[firms]]\nid = "{kind}{n}"\nname = "企业 {kind}{n}"\nkind = "large"\n{limit}'
                f'[[meters]]\nid = "{kind}{n}-m"\nfirm = "{kind}{n}"\n[meters.mqtt]\n'
            )
    return text


def payload(kwh: float) -> bytes:
    return json.dumps({"ts": round(time.time(), 3), "energy_kwh": kwh}).encode()


def load(meters: mqtt.Client, seconds: int) -> tuple[dict[str, float], dict[str, float], int]:
    """Second 0: every meter's first reading; seconds 1..`seconds`: every meter again, and the limited firms n with
    n % seconds == s - 1 report 850 kWh. Returns the send times of the crossing readings and of the pings, by the
    topic that answers each, and how many readings were published."""
    sent_alert: dict[str, float] = {}
    sent_ping: dict[str, float] = {}
    per_slice = LIMITED // SLICES, BACKGROUND // SLICES
    background = [1000.0] * BACKGROUND
    limited = [0.0] * LIMITED
    start = time.perf_counter() + 0.2
    published = 0
    for second in range(seconds + 1):
        for j in range(SLICES):
            time.sleep(max(0.0, start + second + j / SLICES - time.perf_counter()))
            for n in range(j * per_slice[1], (j + 1) * per_slice[1]):
                background[n] += 0.01
                meters.publish(f"quotad/t/meters/b{n}-m", payload(round(background[n], 3)), qos=1)
            for n in range(j * per_slice[0], (j + 1) * per_slice[0]):
                crossing = second > 0 and n % seconds == second - 1
                if crossing:
                    limited[n] = 850.0
                    sent_alert[f"quotad/t/alerts/notice/a{n}"] = time.perf_counter()
                meters.publish(f"quotad/t/meters/a{n}-m", payload(limited[n]), qos=1)
                if crossing:
                    sent_ping[f"bench/ping/{n}"] = time.perf_counter()
                    meters.publish(f"bench/ping/{n}", b"ping", qos=1)
            published += per_slice[0] + per_slice[1]
    return sent_alert, sent_ping, published


def one_run(k: int, directory: Path, broker: Mosquitto, influx: Influx1) -> tuple[list[float], list[float], Path]:
    """One run on a fresh daemon: the alerts' and the pings' latencies (s), and the daemon's log."""
    run_dir = directory / f"run{k}"
    run_dir.mkdir()
    (run_dir / "policy.toml").write_text(policy_text(), encoding="utf-8")
    config = run_dir / "quotad.toml"
    config.write_text(
        f'policy = "policy.toml"\nstate_dir = "{run_dir}/state"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "quotad-bench-{k}"\n'
        f'[influx]\napi = "v1"\nurl = "{influx.url}"\nbucket = "quotad"\n',
        encoding="utf-8",
    )
    log = run_dir / "daemon.log"
    env = {**os.environ, **({"PYTHONASYNCIODEBUG": "1"} if os.environ.get("ASYNCIO_DEBUG") else {})}
    with log.open("wb") as out:
        daemon = subprocess.Popen([sys.executable, "-m", "quotad", "run", "-c", str(config)],
                                  stdout=out, stderr=out, env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "quotad serving" not in log.read_text(encoding="utf-8"):
            assert daemon.poll() is None, log.read_text(encoding="utf-8")
            assert time.monotonic() < deadline, "quotad did not start within 60 s"
            time.sleep(0.05)
        inspector = Clocked(broker, f"bench-inspector-{k}", "quotad/t/alerts/#")
        bare = Clocked(broker, f"bench-bare-{k}", "bench/ping/#")
        meters = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-meters-{k}")
        meters.max_inflight_messages_set(0)
        meters.connect(*broker.address)
        meters.loop_start()
        sent_alert, sent_ping, published = load(meters, LIMITED // PER_SECOND)
        deadline = time.monotonic() + 10
        while len(inspector.arrived) < len(sent_alert) and time.monotonic() < deadline:
            time.sleep(0.1)
        meters.disconnect()
        meters.loop_stop()
        inspector.close()
        bare.close()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
    if os.environ.get("QUOTAD_LOG"):
        with open(os.environ["QUOTAD_LOG"], "a", encoding="utf-8") as copy:
            copy.write(f"== run {k + 1}\n{log.read_text(encoding='utf-8', errors='replace')}")
    journaled = readings_journaled(run_dir / "state")
    assert journaled == published, f"{journaled} readings journaled of {published}: see {log}"
    alerts = [inspector.arrived[t] - s for t, s in sent_alert.items() if t in inspector.arrived]
    pings = [bare.arrived[t] - s for t, s in sent_ping.items() if t in bare.arrived]
    assert len(alerts) == LIMITED, f"{LIMITED - len(alerts)} alerts never arrived: see {log}"
    assert len(pings) == LIMITED
    if os.environ.get("LATE"):  # when the alerts late by over 20 ms were sent (perf_counter, as the daemon's)
        late = sorted((s, inspector.arrived[t] - s) for t, s in sent_alert.items() if inspector.arrived[t] - s > 0.02)
        print("late:", " ".join(f"{at:.2f}:{seconds * 1000:.0f}ms" for at, seconds in late))
    return alerts, pings, log


def main(runs: int) -> None:
    worst: tuple[float, float] | None = None
    slow: list[str] = []
    extra = os.environ.get("BROKER_EXTRA", "")
    with tempfile.TemporaryDirectory(prefix="quotad-bench-") as tmp, Mosquitto(extra=extra) as broker:
        directory = Path(tmp)
        with Influx1(directory / "influx") as influx:
            for k in range(runs):
                alerts, pings, log = one_run(k, directory, broker, influx)
                ours, floor = percentiles(alerts), percentiles(pings)
                print(f"run {k + 1}: p50 {ours[0]:.1f} ms, p99 {ours[1]:.1f} ms, max {max(alerts) * 1000:.1f} ms; "
                      f"floor p50 {floor[0]:.1f} ms, p99 {floor[1]:.1f} ms", flush=True)  # fmt: skip
                if worst is None or ours[1] > worst[0]:
                    worst = ours[1], floor[1]
                text = log.read_text(encoding="utf-8", errors="replace")
                slow += [f"run {k + 1}: {line}" for line in text.splitlines() if "seconds" in line and "took" in line]
                if os.environ.get("ASYNCIO_DEBUG"):
                    shutil.copy(log, f"alert_latency_10.run{k + 1}.log")
    for line in slow:
        print(line)
    assert worst is not None
    print(f"{LIMITED} alerts a run at {LIMITED + BACKGROUND} readings/s, InfluxDB sink live, {runs} runs")
    ours, floor = worst
    print(f"alert_latency_10: worst p99 {ours:.1f} ms, floor p99 {floor:.1f} ms, ratio {ours / floor:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    main(parser.parse_args().runs)

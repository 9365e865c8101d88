"""Reload: SIGHUP to a running `quotad run` holding 10,000 meters' state, with a policy edit; beside loading it.

A real mosquitto; the policy of bench/memory.py (2,000 general firms, 5 MQTT meters each). The state directory is
filled through the daemon's own journal (as bench/restart.py does): every meter read every `--every-min` minutes
for `--days` days (by default 6-hourly for 30 days: 1.2 million reading events, snapshots every 20,000 as the
daemon's). The daemon is started with $NOTIFY_SOCKET on a datagram socket of ours, so that we see its READY=1 and
its WATCHDOG=1 pings (one a second). Each round edits the township's `standby_kwh` (50 → 51, 52, ...: a new
policy, as an operator's edit is), sends SIGHUP and times until the daemon logs `policy reloaded`; meanwhile the
longest gap between two WATCHDOG=1 pings says whether systemd (WatchdogSec=30s in deploy/systemd) would have
killed it. The floor is what a reload cannot avoid: loading and validating the same edited policy
(`quotad.config.load.load`, in a fresh interpreter, its imports not counted). Prints, last:
`reload: X s, floor Y s, ratio R` (median of the rounds; target < 1 s, and no watchdog gap near 30 s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

from bench.memory import FIRMS, PER_FIRM, policy_text
from tests.brokers import Mosquitto

WATCHDOG_S = 30.0  # deploy/systemd/quotad.service
FLOOR = (
    "import sys, time, pathlib\nfrom quotad.config.load import load\n"
    "t0 = time.perf_counter()\nload(pathlib.Path(sys.argv[1]))\nprint(time.perf_counter() - t0)"
)


def fill(state: Path, text: str, days: int, every_min: int) -> int:
    """The daemon's state after `days` of readings of every meter every `every_min` minutes; returns the events."""
    from quotad.core.policy import Policy
    from quotad.core.readings import Reading
    from quotad.schedule.calendar import MICROS_PER_S
    from quotad.shell.journal import Journal
    from quotad.shell.store import Store

    policy = Policy.model_validate(tomllib.loads(text))
    journal = Journal(Store(state), policy, prefix="quotad", influx=False)
    journal.restore()
    meters = [m.id for m in policy.meters]
    start = 1285862400 * MICROS_PER_S  # 2010-10-01 00:00 +08:00
    step = every_min * 60 * MICROS_PER_S
    for k in range(days * 1440 // every_min):
        with journal.store.batch():
            for n, meter in enumerate(meters):
                journal.record_reading(Reading(meter, start + k * step, 1000.0 + k * (1 + n % 7) * 0.05))
    events = journal.store.last_event()
    journal.store.close()
    return events


class Notifications:
    """Our $NOTIFY_SOCKET: every message the daemon sends, with its arrival time (perf_counter)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[tuple[float, str]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.ready = threading.Event()
        self._stop = False
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            text = data.decode(errors="replace")
            self.messages.append((time.perf_counter(), text))
            if "READY=1" in text.split("\n"):
                self.ready.set()

    def longest_gap(self, since: float, until: float) -> float:
        """The longest time without a WATCHDOG=1 between `since` and `until` (counting both ends)."""
        pings = [t for t, text in self.messages if "WATCHDOG=1" in text.split("\n") and since <= t <= until]
        marks = [since, *pings, until]
        return max(b - a for a, b in itertools.pairwise(marks))

    def close(self) -> None:
        self._stop = True
        self.thread.join()
        self.sock.close()


def wait_for_log(log: Path, text: str, offset: int, timeout: float) -> float:
    """perf_counter when `text` appears in `log` after byte `offset` (polled every 5 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        with log.open("rb") as handle:
            handle.seek(offset)
            if text.encode() in handle.read():
                return time.perf_counter()
        assert time.monotonic() < deadline, f"no {text!r} in {log} within {timeout} s"
        time.sleep(0.005)


def main(rounds: int, days: int, every_min: int) -> None:
    with tempfile.TemporaryDirectory(prefix="quotad-bench-") as tmp, Mosquitto() as broker:
        directory = Path(tmp)
        text = policy_text()
        policy = directory / "policy.toml"
        policy.write_text(text, encoding="utf-8")
        config = directory / "quotad.toml"
        config.write_text(
            f'policy = "policy.toml"\nstate_dir = "{directory}/state"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "quotad-bench"\n'
            f"[clock]\nstart = {(dt.datetime(2010, 10, 1, 0, 5) + dt.timedelta(days=days)).isoformat()}+08:00\n"
            "speed = 1.0\n",
            encoding="utf-8",
        )
        t0 = time.perf_counter()
        events = fill(directory / "state", text, days, every_min)
        print(f"{FIRMS * PER_FIRM} meters; {events} journal events ({days} days, every {every_min} min), "
              f"filled in {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
        notes = Notifications(directory / "notify.sock")
        log = directory / "daemon.log"
        with log.open("wb") as out:
            env = {**os.environ, "NOTIFY_SOCKET": str(notes.path)}
            command = [sys.executable, "-m", "quotad", "run", "-c", str(config)]
            daemon = subprocess.Popen(command, stdout=out, stderr=out, env=env)
        times, gaps, floors = [], [], []
        try:
            assert notes.ready.wait(300), log.read_text(encoding="utf-8")[-3000:]
            time.sleep(2.0)  # a few watchdog pings before the first reload
            for r in range(rounds):
                edited = re.sub(r"(\[township\]\n)", rf"\1standby_kwh = {51 + r}\n", text, count=1)
                policy.write_text(edited, encoding="utf-8")
                offset = log.stat().st_size
                sent = time.perf_counter()
                daemon.send_signal(signal.SIGHUP)
                done = wait_for_log(log, "policy reloaded", offset, 600)
                assert "reload refused" not in log.read_text(encoding="utf-8", errors="replace")[offset:]
                time.sleep(2.5)  # the pings after it, for the gap
                times.append(done - sent)
                gaps.append(notes.longest_gap(sent, time.perf_counter()))
                floor = subprocess.run([sys.executable, "-c", FLOOR, str(config)], capture_output=True, text=True,
                                       check=True)  # fmt: skip
                floors.append(float(floor.stdout))
                print(f"round {r + 1}: standby_kwh {51 + r}: reloaded in {times[-1]:.2f} s, longest watchdog gap "
                      f"{gaps[-1]:.2f} s; loading the policy alone {floors[-1]:.2f} s", flush=True)  # fmt: skip
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(120)
            notes.close()
    ours, floor = statistics.median(times), statistics.median(floors)
    missed = "would have missed" if max(gaps) >= WATCHDOG_S else "would not have missed"
    print(f"longest watchdog gap {max(gaps):.2f} s: systemd's watchdog ({WATCHDOG_S:.0f} s) {missed}")
    print(f"reload: {ours:.2f} s, floor {floor:.2f} s, ratio {ours / floor:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--every-min", type=int, default=360)
    args = parser.parse_args()
    main(args.rounds, args.days, args.every_min)

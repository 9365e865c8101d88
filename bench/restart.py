"""Restart: `quotad run` killed with SIGKILL, started again, until it serves (READY=1) with 10,000 meters' state.

A real mosquitto; a policy of 2,000 general firms with 5 MQTT meters each. The state directory is first filled
through the daemon's own journal: 65 one-minute rounds of every meter and most of a 66th (659,998 readings: a
full trailing hour of pieces in the state), the journal snapshotting every 20,000 events as the daemon's does,
so that 19,999 events follow the last snapshot: the most a restart may have to replay (the daemon also
snapshots every 5 minutes). Then, rounds of: start the daemon, wait for READY=1 on $NOTIFY_SOCKET (the
journal restored, the 10,000 meter topics subscribed and acknowledged by the broker), kill -9. The floor is the
interpreter starting with the same imports. Prints, last: `restart: X s, floor Y s, ratio R` (target < 2 s).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from bench.memory import FIRMS, PER_FIRM, policy_text
from quotad.core.policy import Policy
from quotad.core.readings import Reading
from quotad.schedule.calendar import MICROS_PER_S
from quotad.shell.journal import Journal
from quotad.shell.store import Store
from tests.brokers import Mosquitto

IMPORTS = "import quotad.cli, quotad.shell.daemon"
ROUNDS = 65


def fill(state: Path, policy: Policy) -> int:
    """The daemon's state after 65 one-minute rounds of every meter; returns the events after the snapshot."""
    journal = Journal(Store(state), policy, prefix="quotad", influx=False)
    journal.restore()
    meters = [m.id for m in policy.meters]
    start = 1287532800 * MICROS_PER_S  # 2010-10-20 08:00 +08:00
    for k in range(ROUNDS + 1):
        with journal.store.batch():
            for n, meter in enumerate(meters[: None if k < ROUNDS else 9_998]):
                journal.record_reading(Reading(meter, start + k * 60 * MICROS_PER_S, 1000.0 + k * (1 + n % 7) * 0.05))
    store = journal.store
    latest = store.latest_snapshot()
    assert latest is not None
    after = store.last_event() - latest[0]
    store.close()
    return after


def until_ready(config: Path, log: Path) -> tuple[float, subprocess.Popen[bytes]]:
    """Start the daemon; seconds until it says READY=1."""
    path = str(config.parent / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        if os.path.exists(path):
            os.unlink(path)
        listener.bind(path)
        listener.settimeout(60)
        with log.open("ab") as out:
            t0 = time.perf_counter()
            daemon = subprocess.Popen(
                [sys.executable, "-m", "quotad", "run", "-c", str(config)],
                stdout=out, stderr=out, env={**os.environ, "NOTIFY_SOCKET": path},
            )  # fmt: skip
        while True:
            message = listener.recv(4096).decode()
            if "READY=1" in message.split("\n"):
                return time.perf_counter() - t0, daemon


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="quotad-bench-") as tmp, Mosquitto() as broker:
        directory = Path(tmp)
        text = policy_text()
        (directory / "policy.toml").write_text(text, encoding="utf-8")
        config = directory / "quotad.toml"
        config.write_text(
            f'policy = "policy.toml"\nstate_dir = "{directory}/state"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "quotad-bench"\n'
            "[clock]\nstart = 2010-10-20T09:10:00+08:00\nspeed = 1.0\n",
            encoding="utf-8",
        )
        replay = fill(directory / "state", Policy.model_validate(tomllib.loads(text)))
        log = directory / "daemon.log"
        times = []
        for _ in range(rounds + 1):
            seconds, daemon = until_ready(config, log)
            times.append(seconds)
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(10)
        restored = [line for line in log.read_text(encoding="utf-8").splitlines() if "state restored" in line]
    floors = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", IMPORTS], check=True)
        floors.append(time.perf_counter() - t0)
    ours, floor = statistics.median(times[1:]), statistics.median(floors)
    print(f"{FIRMS * PER_FIRM} meters; {replay} journal events after the snapshot; first start {times[0]:.2f} s")
    print(f"after kill -9: {', '.join(f'{t:.2f}' for t in times[1:])} s; {restored[-1]}")
    print(f"restart: {ours:.2f} s, floor {floor:.2f} s, ratio {ours / floor:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args().rounds)

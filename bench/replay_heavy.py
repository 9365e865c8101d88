"""Replay on a heavy day: readings/s of `quotad replay` when everything fires, beside json.loads of the same lines.

A 3-day, 1-minute feed of the example township (config/township.toml, 2010-10-19 to 21) where every meter draws
0.5-8 kWh a minute (uniform, seeded): the township is over its cap every day, firms are cut off and breach their
orders daily (about 100 alerts). The policy is the example's without its `max_kw` lines (as in the tests' township:
up to 480 kW would be anomalies on most meters, 60,000 of them). quotad is `quotad replay -c quotad.toml FEED` as
a whole process, its start-up subtracted:
each round times the heavy feed and a feed of one reading per meter (the interpreter, the imports, the policy),
and the best round of each is taken. The floor is json.loads of the same lines in this process (best round).
Prints, last: `replay_heavy: X readings/s, floor Y readings/s, ratio R` (target >= 0.30).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TZ = dt.timezone(dt.timedelta(hours=8))  # the example township's Asia/Shanghai, without DST


def meters() -> list[str]:
    """The example township's meter ids, in policy order (read from the file: no quotad import)."""
    text = (ROOT / "config" / "township.toml").read_text(encoding="utf-8")
    return re.findall(r'^\[\[meters\]\]\nid = "([^"]+)"', text, flags=re.MULTILINE)


def feed_lines(days: int, seed: int = 13) -> list[str]:
    rng = random.Random(seed)
    ids = meters()
    counters = dict.fromkeys(ids, 1000.0)
    start = dt.datetime(2010, 10, 19, tzinfo=TZ)
    lines = []
    for minute in range(days * 1440):
        ts = (start + dt.timedelta(minutes=minute)).isoformat()
        for meter in ids:
            if minute:
                counters[meter] += rng.uniform(0.5, 8.0)
            lines.append(json.dumps({"meter": meter, "ts": ts, "energy_kwh": round(counters[meter], 3)}))
    return lines


def config(directory: Path) -> Path:
    """The example's daemon file and policy in `directory`, the policy without `max_kw`."""
    policy = (ROOT / "config" / "township.toml").read_text(encoding="utf-8")
    (directory / "township.toml").write_text(re.sub(r"\nmax_kw = \d+", "", policy), encoding="utf-8")
    daemon = directory / "quotad.toml"
    daemon.write_text((ROOT / "config" / "quotad.toml").read_text(encoding="utf-8"), encoding="utf-8")
    return daemon


def replay_seconds(daemon: Path, feed: Path) -> tuple[float, int]:
    """Seconds of `quotad replay` over `feed` as a whole process, and how many alerts it wrote."""
    command = [sys.executable, "-m", "quotad", "replay", "-c", str(daemon), str(feed)]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, check=True)
    seconds = time.perf_counter() - t0
    assert not done.stderr.strip(), done.stderr.decode()[-2000:]
    return seconds, done.stdout.count(b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    lines = feed_lines(args.days)
    n = len(lines)
    with tempfile.TemporaryDirectory(prefix="quotad-bench-") as tmp:
        heavy, tiny, daemon = Path(tmp) / "heavy.jsonl", Path(tmp) / "tiny.jsonl", config(Path(tmp))
        heavy.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tiny.write_text("\n".join(lines[: len(meters())]) + "\n", encoding="utf-8")
        floors, heavies, tinies, alerts = [], [], [], 0
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for line in lines:
                json.loads(line)
            floors.append(time.perf_counter() - t0)
            seconds, alerts = replay_seconds(daemon, heavy)
            heavies.append(seconds)
            tinies.append(replay_seconds(daemon, tiny)[0])
    ours_s = min(heavies) - min(tinies)
    ours, floor = n / ours_s, n / min(floors)
    print(f"{n} readings ({args.days} days x {len(meters())} meters at 1 min, 0.5-8 kWh a minute), {alerts} alerts, "
          f"{args.rounds} rounds; whole process {min(heavies):.2f} s, start-up {min(tinies):.2f} s")  # fmt: skip
    print(f"replay_heavy: {ours:.0f} readings/s, floor {floor:.0f} readings/s, ratio {ours / floor:.2f}")


if __name__ == "__main__":
    main()

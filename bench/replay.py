"""Replay throughput: readings/s of `quotad replay`'s loop beside the floor (json.loads of the same lines).

Generates a 3-day feed of the example township at 1-minute resolution (config/township.toml), then times,
in the same run and alternately: the floor (only json.loads of each line) and quotad (parse, ledger,
rules, alerts serialised). Prints, as its last line: `replay: X readings/s, floor Y readings/s, ratio R`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from quotad.commands.replay import replay
from quotad.config.load import load
from quotad.core.feed import counters, to_jsonl
from quotad.schedule.calendar import Calendar

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    policy = load(ROOT / "config" / "township.toml").policy
    cal = Calendar(policy.township.timezone)
    with tempfile.TemporaryDirectory() as tmp:
        feed = Path(tmp) / "feed.jsonl"
        with feed.open("w", encoding="utf-8") as out:
            for reading in counters(policy, dt.date(2010, 10, 19), args.days, 60, seed=7):
                out.write(to_jsonl(reading, cal) + "\n")
        lines = feed.read_text(encoding="utf-8").splitlines()
        n = len(lines)
        floor_times, quotad_times, alerts = [], [], 0
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for line in lines:
                json.loads(line)
            floor_times.append(time.perf_counter() - t0)
            sink = io.StringIO()
            t0 = time.perf_counter()
            alerts = replay(policy, feed, sink, sys.stderr)
            quotad_times.append(time.perf_counter() - t0)
    # the best round of each: on a shared machine the floor's rounds alone vary by half, and the least
    # disturbed round is the steadiest estimate of either (the same rule for both)
    floor = n / min(floor_times)
    ours = n / min(quotad_times)
    meters = len(policy.meters)
    print(f"{n} readings ({args.days} days x {meters} meters at 1 min), {alerts} alerts, {args.rounds} rounds")
    print(f"replay: {ours:.0f} readings/s, floor {floor:.0f} readings/s, ratio {ours / floor:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Reload and snapshots of 10,000 meters' state, and the bound of the state directory (issue 13, fault 2).

A policy of 2,000 general firms with 5 meters each (bench/memory.py's). Part 1, the engine alone: 61 one-minute
rounds of every meter (a full trailing hour: 610,000 pieces), then the reload of a policy edit (standby_kwh
50 -> 51) as the daemon makes it: the state exported under the old policy, the engine built from it under the
new one; then what a snapshot costs (the copy on the loop, the encoding on a worker thread) and what a restart
costs to read it. Part 2, the journal as the daemon writes it: rounds of every meter in batches, a snapshot every
SNAPSHOT_EVERY events and the journal compacted behind the older kept snapshot; the events table and the file
are sampled, to show they level off. Prints, last: `reload: X s (target < 1 s)`.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
import tomllib
from pathlib import Path

from bench.memory import policy_text
from quotad.core.engine import Engine
from quotad.core.policy import Policy
from quotad.core.readings import Reading
from quotad.schedule.calendar import MICROS_PER_S
from quotad.shell import journal as journal_module
from quotad.shell import snapshots
from quotad.shell.journal import Journal
from quotad.shell.store import Store

START = 1287532800 * MICROS_PER_S  # 2010-10-20 08:00 +08:00


def rounds(meters: list[str], first: int, count: int) -> list[list[Reading]]:
    """One-minute rounds of every meter, each at its own second of the minute, each drawing its own amount (as
    varied as real pieces, for the snapshot's size: regular numbers would compress to nothing)."""
    minute, out = 60 * MICROS_PER_S, []
    counters = [1000.0 + n for n in range(len(meters))]
    for k in range(first + count):
        batch = []
        for n, meter in enumerate(meters):
            counters[n] += 0.001 * ((n * 7919 + k * 104729) % 997)
            batch.append(Reading(meter, START + k * minute + (n * 37 % 60_000) * 1000, round(counters[n], 3)))
        if k >= first:
            out.append(batch)
    return out


def timed(what: str, results: dict[str, float], run: object) -> object:
    started = time.perf_counter()
    value = run()  # type: ignore[operator]
    results[what] = time.perf_counter() - started
    return value


def engine_part(policy: Policy, edited: Policy) -> dict[str, float]:
    engine = Engine(policy)
    meters = [m.id for m in policy.meters]
    for batch in rounds(meters, 0, 61):
        for reading in batch:
            engine.ingest(reading)
    results: dict[str, float] = {}
    state = timed("export", results, engine.state)
    reloaded = timed("build", results, lambda: Engine(edited, state))  # type: ignore[arg-type]
    assert isinstance(reloaded, Engine)
    captured = snapshots.Captured(0, reloaded.state(), {}, "bench")
    blob = timed("encode", results, captured.encode)
    assert isinstance(blob, bytes)
    results["blob_mb"] = len(blob) / 1e6
    decoded = timed("decode", results, lambda: snapshots.decode(blob))
    timed("restore", results, lambda: Engine(edited, decoded[0]))  # type: ignore[index]
    results["pieces"] = len(state.trailing)  # type: ignore[attr-defined]
    return results


def journal_part(policy: Policy, count: int) -> list[tuple[int, int, int, float, float]]:
    """(round, reading events kept, all events, file MB, compaction s) after each round."""
    journal_module.SNAPSHOT_EVERY = 20_000
    meters = [m.id for m in policy.meters]
    samples = []
    with tempfile.TemporaryDirectory(prefix="quotad-bench-") as tmp:
        store = Store(Path(tmp))
        journal = Journal(store, policy, prefix="quotad", influx=False)
        journal.auto_snapshot = False  # as the daemon: the snapshot follows a batch, off the ingest path
        covered, compaction = 0, 0.0
        for k, batch in enumerate(rounds(meters, 0, count)):
            for i in range(0, len(batch), 500):
                with store.batch():
                    for reading in batch[i : i + 500]:
                        journal.record_reading(reading)
                if journal.last_event - covered >= journal_module.SNAPSHOT_EVERY:
                    journal.snapshot()
                    covered = journal.last_event
                    started = time.perf_counter()
                    journal.compact()
                    compaction = time.perf_counter() - started
            readings = store.db.execute("SELECT COUNT(*) FROM events WHERE kind = 'reading'").fetchone()[0]
            events = store.last_event()
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            size = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
            samples.append((k + 1, int(readings), events, size, compaction))
        pages = dict(
            sqlite3.connect(Path(tmp) / "quotad.db").execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")
        )
        store.close()
    print("  tables:", {name: f"{size / 1e6:.1f} MB" for name, size in sorted(pages.items())})
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--journal-rounds", type=int, default=12, help="one-minute rounds journaled in part 2")
    args = parser.parse_args()
    policy = Policy.model_validate(tomllib.loads(policy_text()))
    edited = Policy.model_validate(
        tomllib.loads(policy_text().replace("daily_cap_kwh", "standby_kwh = 51\ndaily_cap_kwh"))
    )
    if args.journal_rounds:
        print(f"part 2: the journal of {len(policy.meters)} meters, a snapshot every 20,000 events, compacted")
        for k, readings, events, size, compaction in journal_part(policy, args.journal_rounds):
            print(f"  after round {k:2d}: {readings:6d} reading events kept of {events:6d}, state dir {size:5.1f} MB, "
                  f"last compaction {compaction:.3f} s")  # fmt: skip
    r = engine_part(policy, edited)
    print(f"part 1: {len(policy.meters)} meters, {r['pieces']:.0f} trailing-hour pieces")
    print(f"  export {r['export']:.3f} s, build under the edited policy {r['build']:.3f} s")
    print(f"  snapshot: encode {r['encode']:.3f} s (worker thread), {r['blob_mb']:.1f} MB; "
          f"restart: decode {r['decode']:.3f} s, build {r['restore']:.3f} s")  # fmt: skip
    print(f"reload: {r['export'] + r['build']:.2f} s (target < 1 s)")


if __name__ == "__main__":
    main()

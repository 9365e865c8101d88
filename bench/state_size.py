"""State size: what `state_dir` grows by, for the README's figures (no floor: a size, not a speed).

Journals a simulated feed of the example township (config/township.toml, 1-minute readings) through the daemon's
own `Journal` and `Store`, in the transactions a live daemon makes: one per Modbus poll round (the meters polled
together), one per MQTT reading (each meter publishes at its own moment), with both sinks away: the outboxes keep
everything, as while InfluxDB and the broker are down. Then reads the pages SQLite allocated to
each table (`dbstat`: what the file grows by, free space inside the pages included). Prints, last:
`state_size: journal X KB per meter per day, influx outbox Y KB per 1,000 readings`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import sqlite3
import tempfile
from pathlib import Path

from quotad.config.load import load
from quotad.core.feed import counters
from quotad.shell.journal import Journal
from quotad.shell.store import Store

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=2)
    args = parser.parse_args()
    policy = load(ROOT / "config" / "township.toml").policy
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        journal = Journal(store, policy, prefix="quotad", influx=True)
        journal.settle_multipliers()
        readings, alerts = 0, 0
        polled = {m.id for m in policy.meters if m.modbus is not None}
        feed = counters(policy, dt.date(2010, 10, 19), args.days, 60, seed=7)
        for _t, minute in itertools.groupby(feed, key=lambda r: r.t):
            ordered = sorted(minute, key=lambda r: r.meter not in polled)
            batches = [[r for r in ordered if r.meter in polled], *([r] for r in ordered if r.meter not in polled)]
            for batch in batches:
                with store.batch():
                    for reading in batch:
                        alerts += len(journal.record_reading(reading))
                        readings += 1
        store.close()
        db = sqlite3.connect(Path(tmp) / "quotad.db")
        pages = dict(db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
        sinks = dict(db.execute("SELECT sink, SUM(length(CAST(body AS BLOB))) FROM outbox GROUP BY sink").fetchall())
        rows = dict(db.execute("SELECT sink, COUNT(*) FROM outbox GROUP BY sink").fetchall())
        db.close()
    meter_days = len(policy.meters) * args.days
    events = pages.get("events", 0)
    outbox = pages.get("outbox", 0) + pages.get("outbox_sink", 0)
    print(f"{readings} readings ({args.days} days x {len(policy.meters)} meters at 1 min), {alerts} alerts")
    for name, size in sorted(pages.items()):
        print(f"  {name}: {size / 1e6:.2f} MB")
    for sink, size in sorted(sinks.items()):
        print(f"  outbox {sink}: {rows[sink]} rows, bodies {size / 1e6:.2f} MB")
    influx_share = sinks.get("influx", 0) / max(1, sum(sinks.values()))
    print(
        f"state_size: journal {events / meter_days / 1e3:.0f} KB per meter per day, "
        f"influx outbox {outbox * influx_share / readings:.0f} KB per 1,000 readings"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

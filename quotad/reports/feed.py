"""Where a report's figures come from: a readings file (`--replay`, as `quotad replay` runs it), or the daemon's
journal (its events replayed in order through a fresh engine, as a restart without a snapshot does, opened
read-only beside a running daemon). Both feed one `Collector` the same way, so the same readings give the same
report. Only the journal's own record is used for what people did and what was raised (what was sent wins).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from quotad.commands.replay import Command, read_commands, read_readings
from quotad.core.enforcement import apply
from quotad.core.engine import Engine
from quotad.core.errors import QuotadError, ReadingError
from quotad.core.i18n import _
from quotad.core.policy import Policy
from quotad.core.reports.collect import Collected, Collector
from quotad.core.state import order_from_json
from quotad.shell.journal import Journal
from quotad.shell.store import Store

__all__ = ["from_journal", "from_readings"]


def from_readings(
    policy: Policy, readings: Path, commands: Path | None = None, errors: TextIO = sys.stderr
) -> tuple[Engine, Collected]:
    """The engine and the collected data after `readings` (and the people's `commands`), as `quotad replay` runs
    them; a malformed line is said on `errors` and skipped."""
    engine = Engine(policy)
    collector = Collector(engine, lists=True)
    people = read_commands(commands, errors) if commands is not None else []
    meters = engine.ledger.meters
    for line_no, reading in read_readings(readings, errors):
        if people and people[0][0] < reading.t:
            _people(engine, collector, people, reading.t, errors)
        collector.before(engine, reading.t)
        previous = meters[reading.meter].last_t if reading.meter in meters else None
        orders = dict(engine.orders)
        try:
            alerts = engine.ingest(reading)
        except ReadingError as exc:
            print(f"{readings}:{line_no}: skipped: {exc}", file=errors)
            continue
        collector.reading(engine, reading.meter, reading.t, previous)
        if alerts:
            collector.alerts([a.payload() for a in alerts])
            for firm, order in engine.orders.items():  # those it made or changed, as the journal records them
                if orders.get(firm) is not order:
                    collector.order(order)
    _people(engine, collector, people, None, errors)
    return engine, collector.finish(engine)


def _people(engine: Engine, collector: Collector, people: list[Command], before: int | None, errors: TextIO) -> None:
    while people and (before is None or people[0][0] < before):
        _t, n, body = people.pop(0)
        try:
            order, alerts = apply(engine, body)
        except (QuotadError, KeyError) as exc:
            print(f"commands:{n}: skipped: {exc}", file=errors)
            continue
        if order is not None:
            collector.order(order)
        collector.alerts([a.payload() for a in alerts])


def from_journal(store: Store, policy: Policy) -> tuple[Engine, Collected]:
    """The engine and the collected data after every event of `store`'s journal (opened read-only)."""
    journal = Journal(store, policy, None, influx=False)
    engine = journal.engine
    collector = Collector(engine, lists=False)
    meters = engine.ledger.meters
    compacted = store.compacted_through()
    if compacted:
        print(_("quotad report: the journal's plain readings up to event {event} were compacted away behind a "
                "snapshot: the curve and the readings received of those days are incomplete").format(event=compacted),
              file=sys.stderr)  # fmt: skip
    for event in store.events():
        kind, body = event.kind, event.body
        if kind == "reading":
            meter, t = body["reading"][0], body["reading"][1]
            collector.before(journal.engine, t)
            previous = meters[meter].last_t if meter in meters else None
            journal.replay_event(kind, body)
            if meter in meters:
                collector.reading(journal.engine, meter, t, previous)
        else:
            journal.replay_event(kind, body)
        collector.alerts(body.get("alerts", []))
        if kind == "reading":
            for data in body["orders"]:
                collector.order(order_from_json(data))
        elif body.get("order"):
            collector.order(order_from_json(body["order"]))
        if kind == "inspection":
            collector.visit(_visit(engine, body))
        elif kind == "inspections":
            collector.inspection_list(body)
    return journal.engine, collector.finish(journal.engine)


def _visit(engine: Engine, body: dict[str, object]) -> dict[str, object]:
    firm = str(body["firm"])
    order = body.get("order")
    return {
        "firm": firm,
        "firm_name": engine.firms[firm].name if firm in engine.firms else firm,
        "by": body["by"],
        "at": body["at"],
        "result": body["result"],
        "finding": body["finding"],
        "order_alert_id": order.get("alert_id") if isinstance(order, dict) and body.get("issue_order") else None,
    }

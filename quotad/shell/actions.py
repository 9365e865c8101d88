"""People's commands on the journal (SPEC "The enforcement loop"): an order's change of state, an order made by hand,
a talk (约谈) held. Each is carried out on the engine and journaled with its outbox rows in one transaction, once
per command id: the CLI may file it again, the daemon may be killed between the two, and it still happens once.

A command is a plain dict, the same whether the daemon carries it out from a request (running) or the CLI does
under the daemon lock (stopped):

- `{"kind": "order", "action": "confirm"|"dismiss"|"notified"|"executed"|"lift", "firm", "by", "reason", "at", "id"}`
- `{"kind": "issue", "firm", "by", "reason", "at", "id"}`
- `{"kind": "talk", "firm", "by", "note", "at", "id"}`
- `{"kind": "inspection", "firm", "by", "result": "ok"|"violation"|"rectify", "finding", "photo": {...} or null,
  "issue_order": bool, "at", "id"}`: a visit recorded (its photo already kept under state_dir, see
  `quotad.shell.photos`); `issue_order` (a violation only) also issues an order by hand, in the same event

Journaled as an event of its kind whose body is the command plus what it made (`order`: the order after it,
`raised`: the alerts it raised), so that the register is read without rebuilding the engine, and a replay sets
what was recorded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from quotad.core import enforcement
from quotad.core.alerts import Alert
from quotad.core.errors import QuotadError
from quotad.core.i18n import _
from quotad.core.notices import order_notices, reading_notices
from quotad.core.orders import Change, Order, OrderError
from quotad.core.outputs import (
    alert_line,
    alert_message,
    escalation_message,
    inspection_line,
    inspection_message,
    order_line,
    order_message,
)
from quotad.core.state import order_from_json, order_to_json
from quotad.shell.outbox import notice_rows

if TYPE_CHECKING:
    from quotad.shell.journal import Journal

__all__ = ["KINDS", "escalation_rows", "perform", "replay"]

log = logging.getLogger(__name__)
KINDS = ("order", "issue", "talk", "inspection")
RESULTS = ("ok", "violation", "rectify")
Rows = list[tuple[str, str, str]]


def perform(journal: Journal, command: dict[str, Any]) -> dict[str, Any]:
    """Carry out `command` and journal it; the outcome (`{"ok": True, "firm", ...}`), the same as the first time
    when it was carried out before. Raises OrderError (exit 2: an impossible change, an unknown firm) with nothing
    changed, StoreError when the journal refused the write (nothing changed either)."""
    key = f"command:{command['id']}"
    done = journal.store.get(key)
    if done is not None:
        return dict(json.loads(done))
    if command.get("kind") not in KINDS:
        raise OrderError(_("unknown command {kind!r}").format(kind=command.get("kind")))
    before = journal.engine.orders.get(command["firm"])
    with _undone_on_error(journal, command["firm"]):
        made, alerts, outcome, rows = _apply(journal, command)
        if journal.channels:  # the cutoff notice of an order issued, the 恢复供电 of one lifted, escalations
            told = [
                *(order_notices(journal.engine, before, made) if made else ()),
                *reading_notices(journal.engine, alerts, ()),
            ]
            rows += notice_rows(journal.channels, told)
        body = {**command, "order": order_to_json(made) if made else None, "raised": [a.id for a in alerts]}
        if alerts:
            body["alerts"] = [a.payload() for a in alerts]
        with journal.store.batch():
            journal.last_event = journal.store.append(command["kind"], body, rows)
            journal.store.put(key, json.dumps(outcome, ensure_ascii=False))
    return outcome


def replay(journal: Journal, kind: str, body: dict[str, Any]) -> None:
    """Apply a journaled command again (after a restart); what it recorded wins."""
    engine = journal.engine
    if kind == "lift":  # journaled by a quotad before orders had states
        body = {**body, "kind": "order", "action": "lift"}
    try:
        _apply(journal, body)
    except QuotadError as exc:  # an order changed since by a record that won: the record stands
        log.warning("journaled command %s on %s not applied again: %s", body.get("kind"), body.get("firm"), exc)
    recorded = body.get("order")
    if recorded is not None:
        order = order_from_json(recorded)
        if engine.orders.get(order.firm) != order:
            engine.orders[order.firm] = order
            engine.forget_firm(order.firm)
    engine.raised.update(body.get("raised", ()))


@contextmanager
def _undone_on_error(journal: Journal, firm: str) -> Iterator[None]:
    """The engine's order, escalation and raised ids of `firm` as they were, should the command fail."""
    engine = journal.engine
    order, escalated, raised = engine.orders.get(firm), engine.escalations.get(firm), set(engine.raised)
    try:
        yield
    except BaseException:
        engine.orders.pop(firm, None)
        if order is not None:
            engine.orders[firm] = order
        engine.escalations.pop(firm, None)
        if escalated is not None:
            engine.escalations[firm] = escalated
        engine.raised.intersection_update(raised)
        engine.forget_firm(firm)
        raise


def _apply(journal: Journal, command: dict[str, Any]) -> tuple[Order | None, list[Alert], dict[str, Any], Rows]:
    engine, kind, firm = journal.engine, command["kind"], command["firm"]
    if firm not in engine.firms:
        raise OrderError(_("unknown firm {firm!r}").format(firm=firm))
    if kind == "inspection":
        return _visit(journal, command)
    made, alerts = enforcement.apply(engine, command)
    if made is None:  # a talk
        outcome = {"ok": True, "firm": firm, "talks": len(engine.escalations[firm].talks)}
        return None, [], outcome, escalation_rows(journal, firm)
    order = made
    rows = _order_rows(journal, order)
    if alerts:
        rows += _alert_rows(journal, alerts)
    if kind == "issue":
        rows += escalation_rows(journal, firm)
    outcome = {"ok": True, "firm": firm, "alert_id": order.alert_id, "state": order.state}
    return order, alerts, outcome, rows


def _visit(journal: Journal, command: dict[str, Any]) -> tuple[Order | None, list[Alert], dict[str, Any], Rows]:
    """An inspection visit recorded; with `order`, the order by hand it found cause for."""
    engine, firm, result = journal.engine, command["firm"], command["result"]
    if result not in RESULTS:
        raise OrderError(_("unknown result {result!r} (ok, violation or rectify)").format(result=result))
    order: Order | None = None
    alerts: list[Alert] = []
    rows: Rows = []
    if command.get("issue_order"):
        if result != "violation":
            raise OrderError(_("--order goes with --result violation: an order needs a violation found"))
        order, alerts = enforcement.issue(engine, firm, Change("", command["at"], command["by"], command["finding"]))
        rows += _order_rows(journal, order) + _alert_rows(journal, alerts) + escalation_rows(journal, firm)
    photo = command.get("photo")
    visit = {
        "firm": firm,
        "firm_name": engine.firms[firm].name,
        "by": command["by"],
        "at": command["at"],
        "result": result,
        "finding": command["finding"],
        "photo": photo["file"] if photo else None,
        "order_alert_id": order.alert_id if order else None,
    }
    township = journal.policy.township.id
    if journal.prefix is not None:
        rows.append(("mqtt", "inspection", inspection_message(journal.prefix, township, visit).to_json()))
    if journal.influx:
        rows.append(("influx", "inspection", inspection_line(township, visit, engine.now or 0)))
    outcome: dict[str, Any] = {"ok": True, "firm": firm, "result": result}
    if order is not None:
        outcome.update(alert_id=order.alert_id, state=order.state)
    return order, alerts, outcome, rows


def _order_rows(journal: Journal, order: Order) -> Rows:
    township, rows = journal.policy.township.id, []
    if journal.prefix is not None:
        rows.append(("mqtt", "order", order_message(journal.prefix, township, order).to_json()))
    if journal.influx:
        rows.append(("influx", "cutoff_order", order_line(township, order, journal.engine.now or 0)))
    return rows


def _alert_rows(journal: Journal, alerts: list[Alert]) -> Rows:
    rows: Rows = []
    if journal.prefix is not None:
        rows += [("mqtt", "alert", alert_message(journal.prefix, a).to_json()) for a in alerts]
    if journal.influx:
        rows.append(("influx", "points", "\n".join(alert_line(a) for a in alerts)))
    return rows


def escalation_rows(journal: Journal, firm: str) -> Rows:
    """The firm's retained escalation topic, as it stands now."""
    if journal.prefix is None:
        return []
    engine = journal.engine
    steps = {s.after: s.step for s in engine.policy.enforcement.escalation}
    payload = engine.escalations.get(firm, enforcement.Escalated()).payload(firm, steps)
    message = escalation_message(journal.prefix, journal.policy.township.id, firm, payload)
    return [("mqtt", "escalation", message.to_json())]

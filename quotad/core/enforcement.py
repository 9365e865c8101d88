"""What people do with the rules' decisions (SPEC "Orders", "Inspections and escalation"), applied to an engine:
order commands (confirm, dismiss, notified, executed, lift), orders made by hand, the firms' escalation count and
the talks (约谈) held.

Pure like the engine: a command is given its wall-clock time by the caller; the event-time day is the engine's.
Everything here changes the engine's state, so the journal records each command as an event and a restart or a
replay applies it again, identically.

Escalation: each violation alert and each `cutoff_breach` of a firm adds one to its count, and so does an order made
by hand (a violation found on site); a pending order issued because its use went beyond the meters' accuracy is
the same violation, not counted again. Reaching a step's `after` raises an `escalation` alert (severity `warning`,
id `<township>/<firm>/escalation/<after>`), naming the step and the firm's `liaison`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from quotad.core import messages
from quotad.core.alerts import Alert, alert_id, kwh
from quotad.core.i18n import _
from quotad.core.orders import ACTIONS, PROMOTED, Change, Order, OrderError, transition

if TYPE_CHECKING:
    from quotad.core.engine import Engine

__all__ = ["COUNTED", "Escalated", "Talk", "apply", "command", "counts", "escalate", "issue", "talk"]

COUNTED = frozenset({"violation", "breach"})  # the severities that add to a firm's count


@dataclass(frozen=True, slots=True)
class Talk:
    at: str  # ISO 8601, wall clock
    by: str
    note: str

    def payload(self) -> dict[str, str]:
        return {"at": self.at, "by": self.by, "note": self.note}


@dataclass(frozen=True, slots=True)
class Escalated:
    """A firm's count of violations and breaches, the step it reached (its `after`, 0 for none) and since when
    (event time), and the talks held with it."""

    count: int = 0
    after: int = 0
    since: str | None = None
    talks: tuple[Talk, ...] = ()

    def payload(self, firm: str, steps: dict[int, str]) -> dict[str, Any]:
        return {
            "firm": firm,
            "count": self.count,
            "step": steps.get(self.after),
            "since": self.since,
            "talks": [t.payload() for t in self.talks],
        }


def counts(alert: Alert) -> bool:
    """Whether `alert` adds one to its firm's escalation count (a violation or a breach of a firm, not the alert that
    issues a pending order: that violation was counted when it was made)."""
    return alert.firm is not None and alert.severity in COUNTED and not alert.id.endswith(PROMOTED)


def escalate(engine: Engine, alerts: Sequence[Alert]) -> list[Alert]:
    """Count `alerts` (just raised) into their firms' escalation; the escalation alerts that raises."""
    out: list[Alert] = []
    for alert in alerts:
        if counts(alert):
            assert alert.firm is not None
            out += _count(engine, alert.firm, alert.t)
    return out


def _count(engine: Engine, firm_id: str, t: int) -> list[Alert]:
    before = engine.escalations.get(firm_id, Escalated())
    count = before.count + 1
    steps = engine.policy.enforcement.escalation
    number, step = next(((n, s) for n, s in enumerate(steps, 1) if s.after == count), (0, None))
    if step is None:
        engine.escalations[firm_id] = replace(before, count=count)
        return []
    ts = engine.calendar.isoformat(t)
    engine.escalations[firm_id] = replace(before, count=count, after=step.after, since=ts)
    firm = engine.firms.get(firm_id)
    name = firm.name if firm is not None else firm_id
    aid = f"{engine.policy.township.id}/{firm_id}/escalation/{step.after}"
    alert = engine.ctx.emit(
        aid, t, "escalation", "warning", engine.calendar.day_of(t).isoformat(),
        firm=firm, consumed_kwh=None, limit_kwh=None, projected_kwh=None, action="none", cutoff_until=None,
        level=float(step.after),
        message=messages.escalation_message(name, count, number, step.step, firm.liaison if firm else None),
    )  # fmt: skip
    return [alert] if alert is not None else []


def _day(engine: Engine, change: Change) -> dt.date:
    """The event-time day of a command: the engine's now, or the command's own date before any reading."""
    if engine.now is not None:
        return engine.calendar.day_of(engine.now)
    return dt.datetime.fromisoformat(change.at).astimezone(engine.calendar.tz).date()


def command(engine: Engine, action: str, firm_id: str, change: Change) -> Order:
    """Carry out `action` (confirm, dismiss, notified, executed, lift) on `firm_id`'s order; raises OrderError."""
    if action not in ACTIONS:
        raise OrderError(_("unknown order command {action!r}").format(action=action))
    order = transition(engine.orders.get(firm_id), action, firm_id, change, _day(engine, change))
    engine.orders[firm_id] = order
    engine.forget_firm(firm_id)  # its rules are silenced, or speak again
    return order


def issue(engine: Engine, firm_id: str, change: Change) -> tuple[Order, list[Alert]]:
    """An order made by hand (a violation found on site, a refusal: 拒不执行), issued at once, from today to the end
    of the control period; counted into the firm's escalation (the alerts that raises are returned)."""
    firm = engine.firms.get(firm_id)
    if firm is None:
        raise OrderError(_("unknown firm {firm!r}").format(firm=firm_id))
    day = _day(engine, change)
    standing = engine.orders.get(firm_id)
    if standing is not None and standing.stands(day):
        msg = _("{firm} is already under an order ({alert_id}, {state}): confirm or lift that one").format(
            firm=firm_id, alert_id=standing.alert_id, state=standing.state
        )
        raise OrderError(msg)
    until = engine.policy.control.end
    if day > until:
        msg = _("the control period ended on {until}: no order can be made after it").format(until=until)
        raise OrderError(msg)
    base = alert_id(engine.policy.township.id, firm_id, "manual_order", day.isoformat(), None, None)
    aid, n = base, 1
    while aid in engine.raised:  # each id once, in the same set as the alerts' (kept by the state)
        n += 1
        aid = f"{base}/{n}"
    engine.raised.add(aid)
    t = engine.now if engine.now is not None else 0
    evidence: dict[str, Any] = {
        "day": day.isoformat(),
        "consumed_kwh": kwh(engine.ledger.firm_day_wh(firm_id, day)),
        "found_by": change.by,
        "reason": change.reason,
    }
    order = Order(
        firm=firm_id,
        firm_name=firm.name,
        alert_id=aid,
        rule="manual_order",
        issued=engine.calendar.isoformat(t) if engine.now is not None else change.at,
        from_day=day.isoformat(),
        until=until.isoformat(),
        evidence=evidence,
        state="issued",
        history=(replace(change, state="issued"),),
        breach_from=(day + dt.timedelta(days=1)).isoformat(),
    )
    engine.orders[firm_id] = order
    engine.forget_firm(firm_id)
    return order, _count(engine, firm_id, t)


def apply(engine: Engine, body: Mapping[str, Any]) -> tuple[Order | None, list[Alert]]:
    """A person's command as journaled or given to `replay --commands` (`kind` issue, order or talk; `firm`, `by`,
    `at`, and `action`, `reason` or `note`): (the order it made or changed, the alerts it raised)."""
    kind, firm = body.get("kind"), body["firm"]
    at = str(body.get("at") or body.get("ts") or "")
    if kind == "talk":
        talk(engine, firm, Talk(at, body["by"], body["note"]))
        return None, []
    change = Change("", at, body["by"], body["reason"])
    if kind == "issue":
        return issue(engine, firm, change)
    if kind == "order":
        return command(engine, body["action"], firm, change), []
    raise OrderError(_("unknown command {kind!r}").format(kind=kind))


def talk(engine: Engine, firm_id: str, held: Talk) -> Escalated:
    """Record a 约谈 held with `firm_id`."""
    if firm_id not in engine.firms:
        raise OrderError(_("unknown firm {firm!r}").format(firm=firm_id))
    escalated = engine.escalations.get(firm_id, Escalated())
    escalated = replace(escalated, talks=(*escalated.talks, held))
    engine.escalations[firm_id] = escalated
    return escalated

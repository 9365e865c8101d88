"""What a rule may see and do: the policy, the plan, the calendar, read views of the ledger and the windows, and
narrow access to the alerts raised, the orders and whom to shed. One object, not the engine's parts one by one.

The state it reads (ledger, windows, raised ids, orders) is the engine's, reached through it at each use: the engine
may be given a new state without its rules noticing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any, Protocol

from quotad.core import messages
from quotad.core.alerts import Alert, ShedEntry, alert_id, kwh
from quotad.core.ledger import MeterLedger, Month
from quotad.core.orders import Change, Order
from quotad.core.policy import Firm, Policy
from quotad.core.windows import LoadIntervals, TrailingHour
from quotad.schedule.calendar import Calendar, Micros
from quotad.schedule.rota import Plan

__all__ = ["Context", "Holder", "LedgerView"]


class LedgerView(Protocol):
    """The ledger as the rules read it."""

    @property
    def meters(self) -> dict[str, MeterLedger]: ...
    @property
    def opening(self) -> dict[tuple[str, Month], int]: ...
    def firm_day_wh(self, firm: str, day: dt.date) -> int: ...
    def firm_month_wh(self, firm: str, month: Month) -> int: ...
    def township_day_wh(self, day: dt.date) -> int: ...


class Holder(Protocol):
    """Whoever holds the state the rules read (the engine)."""

    @property
    def ledger(self) -> LedgerView: ...
    @property
    def trailing(self) -> TrailingHour: ...
    @property
    def load(self) -> LoadIntervals: ...
    @property
    def raised(self) -> set[str]: ...
    @property
    def orders(self) -> dict[str, Order]: ...
    def shed_for(self, day: dt.date) -> tuple[ShedEntry, ...]: ...


class Context:
    def __init__(self, policy: Policy, plan: Plan, calendar: Calendar, holder: Holder) -> None:
        self.policy, self.plan, self.cal, self._holder = policy, plan, calendar, holder
        self.town = policy.township
        self.until = policy.control.end.isoformat()  # a cutoff's last day
        self.firms = {f.id: f for f in policy.firms}
        self.whole = bool(self.town.feeder_meters)  # the township's total is its feeders' (else the firms' meters)
        self.inspector = policy.enforcement.confirm == "inspector"  # every rule's order starts pending
        self.accuracy: dict[str, float] = {}  # a firm's meters' widest accuracy class (%)
        for meter in policy.meters:
            if meter.firm is not None:
                self.accuracy[meter.firm] = max(self.accuracy.get(meter.firm, 0.0), meter.accuracy_pct)

    # -- read views --------------------------------------------------------------------------

    @property
    def ledger(self) -> LedgerView:
        return self._holder.ledger

    @property
    def trailing(self) -> TrailingHour:
        return self._holder.trailing

    @property
    def load(self) -> LoadIntervals:
        return self._holder.load

    def shed(self, day: dt.date) -> tuple[ShedEntry, ...]:
        """`shed` of a township alert about `day`: whom to call now (() for a day already over)."""
        return self._holder.shed_for(day)

    # -- raised alerts -------------------------------------------------------------------------

    def id(self, subject: str, rule: str, period: str, level: float | None = None, meter: str | None = None) -> str:
        return alert_id(self.town.id, subject, rule, period, level, meter)

    def raised(self, alert_id: str) -> bool:
        return alert_id in self._holder.raised

    def record(self, alert: Alert) -> None:
        self._holder.raised.add(alert.id)

    def alert(self, aid: str, t: Micros, rule: str, severity: str, period: str, **kw: Any) -> Alert:
        """The alert `aid` (not recorded: `fire` or `emit` records it)."""
        firm: Firm | None = kw.pop("firm", None)
        return Alert(
            id=aid,
            ts=self.cal.isoformat(t),
            t=t,
            township=self.town.id,
            firm=firm.id if firm else None,
            firm_name=firm.name if firm else None,
            rule=rule,
            severity=severity,
            period=period,
            level=kw.pop("level", None),
            meter=kw.pop("meter", None),
            **kw,
        )

    def emit(self, aid: str, t: Micros, rule: str, severity: str, period: str, **kw: Any) -> Alert | None:
        """The alert `aid`, recorded; None when it was raised before (for rules without steps: the meters')."""
        if self.raised(aid):
            return None
        alert = self.alert(aid, t, rule, severity, period, **kw)
        self.record(alert)
        return alert

    # -- orders --------------------------------------------------------------------------------

    def standing(self, firm: Firm, day: dt.date) -> Order | None:
        """The order that stands over `firm` on `day`, if any."""
        order = self._holder.orders.get(firm.id)
        return order if order is not None and order.stands(day) else None

    def cut_off(self, alert: Alert, firm: Firm, from_day: dt.date, evidence: dict[str, Any]) -> Alert:
        """Make `firm`'s order from `alert` (a violation; `evidence` from `evidence`): pending when its excess is
        within the accuracy of the firm's meters, or when every order waits for an inspector
        (`[enforcement] confirm`), else issued. Returns the alert as it goes out: with its order's state, and
        a pending order's words in its message."""
        consumed, limit = evidence["consumed_kwh"], evidence["limit_kwh"]
        accuracy = self.accuracy.get(firm.id, 1.0)
        margin = limit * accuracy / 100
        within = consumed <= limit + margin
        state = "pending" if within or self.inspector else "issued"
        evidence.update(excess_kwh=round(consumed - limit, 3), accuracy_pct=accuracy, margin_kwh=round(margin, 3))
        from_iso = from_day.isoformat()
        self._holder.orders[firm.id] = Order(
            firm=firm.id,
            firm_name=firm.name,
            alert_id=alert.id,
            rule=alert.rule,
            issued=alert.ts,
            from_day=from_iso,
            until=self.until,
            evidence=evidence,
            state=state,
            history=(Change(state, alert.ts, "quotad", alert.id),),
            breach_from=None if state == "pending" else (from_day + dt.timedelta(days=1)).isoformat(),
        )
        message = alert.message
        if state == "pending":
            clause = messages.cutoff_clause(from_iso, self.until)
            assert clause in message, message
            pending = messages.pending_clause(from_iso, self.until, accuracy, margin if within else None)
            message = message.replace(clause, pending)
        return replace(alert, order_state=state, message=message)

    def replace_order(self, order: Order) -> None:
        """Put `order` (a change of the firm's standing one) in its place."""
        self._holder.orders[order.firm] = order

    def evidence(self, firm: Firm, day: dt.date, consumed_wh: float, limit_kwh: float) -> dict[str, Any]:
        meters = []
        for m in self.ledger.meters.values():
            record = m.days.get(day)
            if m.firm != firm.id or record is None:
                continue
            meters.append(
                {
                    "meter": m.id,
                    "day_kwh": kwh(record.wh),
                    "first_ts": self.cal.isoformat(record.first_t) if record.first_t is not None else None,
                    "first_counter_kwh": kwh(record.first_wh),
                    "last_ts": self.cal.isoformat(record.last_t) if record.last_t is not None else None,
                    "last_counter_kwh": kwh(record.last_wh),
                }
            )
        return {
            "day": day.isoformat(),
            "consumed_kwh": kwh(consumed_wh),
            "limit_kwh": round(limit_kwh, 3),
            "meters": meters,
        }

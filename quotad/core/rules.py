"""The quota rules of SPEC, as pure functions of the ledger, the plan and the alerts already raised.

Thresholds are exact: a level is reached when consumption (integer Wh) is >= fraction x limit, computed
with `fractions.Fraction` from the decimal values of the policy; a violation when it is > the limit.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from quotad.core import messages
from quotad.core.alerts import Alert, Order, ShedEntry, alert_id, kwh
from quotad.core.ledger import Ledger
from quotad.core.policy import Firm, Policy
from quotad.core.windows import HOUR_US, QUARTER_US, LoadIntervals, TrailingHour
from quotad.schedule.calendar import Calendar, Micros, to_micros
from quotad.schedule.rota import Plan

__all__ = ["Level", "Rules", "levels"]

_NEVER = (math.inf, math.inf)


@dataclass(frozen=True, slots=True)
class Level:
    level: float
    severity: str
    wh: int  # reached when consumption >= wh


def _exact(value: float) -> Fraction:
    return Fraction(repr(float(value)))


def levels(fractions: tuple[float, ...], limit_kwh: Fraction | float, top: str = "violation") -> tuple[Level, ...]:
    """The levels below the limit (reached at >= fraction x limit), then 1.0 (exceeded at > limit)."""
    limit_wh = (limit_kwh if isinstance(limit_kwh, Fraction) else _exact(limit_kwh)) * 1000
    names = ("notice", "warning") if len(fractions) == 2 else ("warning",)
    below = [Level(f, name, math.ceil(_exact(f) * limit_wh)) for f, name in zip(fractions, names, strict=True)]
    return (*below, Level(1.0, top, math.floor(limit_wh) + 1))


def _over_wh(kwh_limit: float) -> int:
    """The least integer Wh that exceeds `kwh_limit`."""
    return math.floor(_exact(kwh_limit) * 1000) + 1


class Rules:
    """Evaluates the rules for one township; `emit` records each alert id so it is raised once."""

    def __init__(
        self,
        policy: Policy,
        plan: Plan,
        ledger: Ledger,
        calendar: Calendar,
        trailing: TrailingHour,
        load: LoadIntervals,
        raised: set[str],
        orders: dict[str, Order],
    ) -> None:
        self.policy, self.plan, self.ledger, self.cal = policy, plan, ledger, calendar
        self.trailing, self.load, self.raised, self.orders = trailing, load, raised, orders
        self.town = policy.township
        self.until = policy.control.end.isoformat()
        self.firms = {f.id: f for f in policy.firms}
        self._day_levels: dict[dt.date, tuple[Level, ...]] = {}
        self._firm_levels = {
            f.id: levels((self.town.notice_at, self.town.warning_at), f.daily_limit_kwh)
            for f in policy.firms
            if f.daily_limit_kwh is not None
        }
        self._month_levels: dict[tuple[str, int, int], tuple[Fraction, tuple[Level, ...]]] = {}
        self._standby_kwh = {
            f.id: f.standby_kwh if f.standby_kwh is not None else self.town.standby_kwh for f in policy.firms
        }
        self._standby_over = {fid: _over_wh(kwh_) for fid, kwh_ in self._standby_kwh.items()}
        load_cap = self.town.load_cap_kw
        self._load_levels = levels((self.town.warning_at,), _exact(load_cap) / 4) if load_cap is not None else ()
        self._two_am: dict[dt.date, Micros] = {}
        self._projected: set[dt.date] = set()  # days whose projection alert was raised (ids are in `raised`)
        self.whole = bool(self.town.feeder_meters)  # the township's total is its feeders' (else the firms' meters)
        # `shed` of a township alert about `day`: whom to call now (the engine's; () for a day already over)
        self.shed_for: Callable[[dt.date], tuple[ShedEntry, ...]] = lambda day: ()

    # -- building alerts ---------------------------------------------------------------------

    def emit(self, t: Micros, rule: str, severity: str, period: str, **kw: Any) -> Alert | None:
        firm: Firm | None = kw.pop("firm", None)
        level: float | None = kw.pop("level", None)
        meter: str | None = kw.pop("meter", None)
        subject = firm.id if firm else "township"
        aid = alert_id(self.town.id, subject, rule, period, level, meter) + kw.pop("suffix", "")
        if aid in self.raised:
            return None
        self.raised.add(aid)
        return Alert(
            id=aid,
            ts=self.cal.isoformat(t),
            t=t,
            township=self.town.id,
            firm=firm.id if firm else None,
            firm_name=firm.name if firm else None,
            rule=rule,
            severity=severity,
            level=level,
            period=period,
            meter=meter,
            **kw,
        )

    def _cutoff(self, alert: Alert, firm: Firm, from_day: dt.date, evidence: dict[str, Any]) -> None:
        self.orders[firm.id] = Order(
            firm=firm.id,
            firm_name=firm.name,
            alert_id=alert.id,
            rule=alert.rule,
            issued=alert.ts,
            from_day=from_day.isoformat(),
            until=self.until,
            evidence=evidence,
        )

    def evidence(self, firm: Firm, day: dt.date, consumed_wh: int, limit_kwh: float) -> dict[str, Any]:
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

    # -- firm rules ----------------------------------------------------------------------------

    def firm(self, firm: Firm, day: dt.date, t: Micros) -> list[Alert]:
        """The quota rules of `firm` for `day`, after energy was added to that day."""
        if day not in self.plan.control:
            return []
        consumed = self.ledger.firm_day_wh(firm.id, day)
        standby = self._standby_kwh[firm.id]
        over_standby = consumed >= self._standby_over[firm.id]
        order = self.orders.get(firm.id)
        if order is not None and order.stands(day):
            return self._breach(firm, order, day, t, consumed, standby) if over_standby else []
        if over_standby:
            for rule, why, applies in (
                ("rota_off_day", "错时供电停电日", self.plan.group_off),
                ("rest_day", "申报休息日", self.plan.rest_day),
            ):
                if applies(firm, day) and (raised := self._standby(firm, day, t, consumed, standby, rule, why)):
                    return raised
        out = []
        if firm.id in self._firm_levels:
            out += self._daily_limit(firm, day, t, consumed)
        if firm.kind == "general" and not self._cut(firm, day):  # a daily limit's cutoff just now silences it
            out += self._monthly(firm, day, t)
        return out

    def firm_quiet(self, firm: Firm, day: dt.date) -> tuple[float, float]:
        """(day Wh, month Wh) below which `firm` can raise nothing for `day`, given what is raised and ordered."""
        if day not in self.plan.control:
            return _NEVER
        period, over = day.isoformat(), self._standby_over[firm.id]
        town = self.town.id
        order = self.orders.get(firm.id)
        if order is not None and order.stands(day):
            breach = alert_id(town, firm.id, "cutoff_breach", period, None, None)
            return (over, math.inf) if order.from_day < period <= order.until and breach not in self.raised else _NEVER
        day_wh, month_wh = math.inf, math.inf
        for rule, applies in (("rota_off_day", self.plan.group_off), ("rest_day", self.plan.rest_day)):
            if applies(firm, day) and alert_id(town, firm.id, rule, period, None, None) not in self.raised:
                day_wh = over
        for step in self._firm_levels.get(firm.id, ()):
            if alert_id(town, firm.id, "firm_daily_limit", period, step.level, None) not in self.raised:
                day_wh = min(day_wh, step.wh)
                break
        if firm.kind == "general":
            month = f"{day.year:04d}-{day.month:02d}"
            for step in self.month_quota(firm, day.year, day.month)[1]:
                if alert_id(town, firm.id, "monthly_quota", month, step.level, None) not in self.raised:
                    month_wh = step.wh
                    break
        return day_wh, month_wh

    def township_quiet(self, rule: str, day: dt.date) -> float:
        """Township Wh (day total, or a 15-minute interval's) below which `rule` can raise nothing on `day`."""
        if not self.plan.control.capped(day):
            return math.inf
        steps = self._load_levels if rule == "township_load" else self._cap_levels(day)
        for step in steps:
            if alert_id(self.town.id, "township", rule, day.isoformat(), step.level, None) not in self.raised:
                return step.wh
        return math.inf

    def _cap_levels(self, day: dt.date) -> tuple[Level, ...]:
        steps = self._day_levels.get(day)
        if steps is None:
            cap = self.plan.control.cap_kwh(day)
            steps = self._day_levels[day] = levels((self.town.notice_at, self.town.warning_at), cap)
        return steps

    def _cut(self, firm: Firm, day: dt.date) -> bool:
        order = self.orders.get(firm.id)
        return order is not None and order.stands(day)

    def _breach(self, firm: Firm, order: Order, day: dt.date, t: Micros, consumed: int, standby: float) -> list[Alert]:
        if not order.from_day < day.isoformat() <= order.until:
            return []
        alert = self.emit(
            t, "cutoff_breach", "breach", day.isoformat(), firm=firm,
            consumed_kwh=kwh(consumed), limit_kwh=round(standby, 3), projected_kwh=None, action="none",
            cutoff_until=None,
            message=messages.breach_message(
                firm.name, order.from_day, order.until, day.isoformat(), consumed / 1000, standby
            ),
        )  # fmt: skip
        return [alert] if alert else []

    def _standby(
        self, firm: Firm, day: dt.date, t: Micros, consumed: int, standby: float, rule: str, why: str
    ) -> list[Alert]:
        alert = self.emit(
            t, rule, "violation", day.isoformat(), firm=firm,
            consumed_kwh=kwh(consumed), limit_kwh=round(standby, 3), projected_kwh=None, action="cutoff",
            cutoff_until=self.until,
            message=messages.standby_message(firm.name, day.isoformat(), consumed / 1000, standby, why, self.until),
        )  # fmt: skip
        if alert is None:
            return []
        self._cutoff(alert, firm, day, self.evidence(firm, day, consumed, standby))
        return [alert]

    def _daily_limit(self, firm: Firm, day: dt.date, t: Micros, consumed: int) -> list[Alert]:
        steps = self._firm_levels[firm.id]
        if consumed < steps[0].wh:
            return []
        limit = firm.daily_limit_kwh or 0.0
        out = []
        for step in steps:
            if consumed < step.wh:
                break
            cutoff = step.severity == "violation"
            alert = self.emit(
                t, "firm_daily_limit", step.severity, day.isoformat(), firm=firm, level=step.level,
                consumed_kwh=kwh(consumed), limit_kwh=round(limit, 3), projected_kwh=None,
                action="cutoff" if cutoff else "none", cutoff_until=self.until if cutoff else None,
                message=messages.daily_limit_message(
                    firm.name, day.isoformat(), consumed / 1000, limit, step.level, step.severity,
                    self.until if cutoff else None,
                ),
            )  # fmt: skip
            if alert is not None:
                out.append(alert)
                if cutoff:
                    self._cutoff(alert, firm, day, self.evidence(firm, day, consumed, limit))
        return out

    def month_quota(self, firm: Firm, year: int, month: int) -> tuple[Fraction, tuple[Level, ...]]:
        key = (firm.id, year, month)
        cached = self._month_levels.get(key)
        if cached is None:
            if firm.monthly_quota_kwh is not None:
                full = _exact(firm.monthly_quota_kwh)
            else:
                full = _exact(firm.baseline_kwh or 0.0) * (1 - _exact(firm.effective_reduction))
            covered, length = self.plan.control.days_in_month(year, month)
            quota = full * covered / length
            cached = self._month_levels[key] = (quota, levels((self.town.notice_at, self.town.warning_at), quota))
        return cached

    def _monthly(self, firm: Firm, day: dt.date, t: Micros) -> list[Alert]:
        quota, steps = self.month_quota(firm, day.year, day.month)
        consumed = self.ledger.firm_month_wh(firm.id, (day.year, day.month))
        if consumed < steps[0].wh:
            return []
        period = f"{day.year:04d}-{day.month:02d}"
        quota_kwh = float(quota)
        out = []
        for step in steps:
            if consumed < step.wh:
                break
            cutoff = step.severity == "violation"
            month_end = (dt.date(day.year, day.month, 28) + dt.timedelta(days=4)).replace(day=1)
            from_day = min(self.cal.day_of(t), month_end - dt.timedelta(days=1))
            alert = self.emit(
                t, "monthly_quota", step.severity, period, firm=firm, level=step.level,
                consumed_kwh=kwh(consumed), limit_kwh=round(quota_kwh, 3), projected_kwh=None,
                action="cutoff" if cutoff else "none", cutoff_until=self.until if cutoff else None,
                message=messages.monthly_message(
                    firm.name, period, consumed / 1000, quota_kwh, step.level, step.severity,
                    (from_day.isoformat(), self.until) if cutoff else None,
                ),
            )  # fmt: skip
            if alert is not None:
                out.append(alert)
                if cutoff:
                    evidence = self.evidence(firm, day, consumed, quota_kwh)
                    evidence["month"] = period
                    opening = self.ledger.opening.get((firm.id, (day.year, day.month)))
                    if opening:  # part of the month-to-date came from the utility's meter book, not the meters
                        evidence["opening_kwh"] = kwh(opening)
                    self._cutoff(alert, firm, from_day, evidence)
        return out

    # -- township rules ------------------------------------------------------------------------

    def township_cap(self, day: dt.date, t: Micros) -> list[Alert]:
        control = self.plan.control
        if not control.capped(day):
            return []
        steps = self._cap_levels(day)
        consumed = self.ledger.township_day_wh(day)
        if consumed < steps[0].wh:
            return []
        cap = control.cap_kwh(day)
        out = []
        for step in steps:
            if consumed < step.wh:
                break
            if alert_id(self.town.id, "township", "township_cap", day.isoformat(), step.level, None) in self.raised:
                continue
            shed = self.shed_for(day)
            alert = self.emit(
                t, "township_cap", step.severity, day.isoformat(), level=step.level,
                consumed_kwh=kwh(consumed), limit_kwh=round(cap, 3), projected_kwh=None, action="none",
                cutoff_until=None, shed=shed,
                message=messages.cap_message(
                    self.town.name, day.isoformat(), consumed / 1000, cap, step.level, step.severity, shed, self.whole
                ),
            )  # fmt: skip
            if alert is not None:
                out.append(alert)
        return out

    def township_load(self, quarters: list[Micros], t: Micros) -> list[Alert]:
        load_cap, steps = self.town.load_cap_kw, self._load_levels
        if load_cap is None or not steps:
            return []
        out = []
        for start in quarters:
            consumed = self.load.wh.get(start, 0)
            day = self.cal.day_of(start)
            if consumed < steps[0].wh or not self.plan.control.capped(day):
                continue
            for step in steps:
                if consumed < step.wh:
                    break
                if (
                    alert_id(self.town.id, "township", "township_load", day.isoformat(), step.level, None)
                    in self.raised
                ):
                    continue
                span = f"{self.cal.local(start):%H:%M}–{self.cal.local(start + QUARTER_US):%H:%M}"
                shed = self.shed_for(day)
                alert = self.emit(
                    t, "township_load", step.severity, day.isoformat(), level=step.level,
                    consumed_kwh=kwh(consumed), limit_kwh=round(load_cap / 4, 3), projected_kwh=None,
                    action="none", cutoff_until=None, shed=shed,
                    message=messages.load_message(
                        self.town.name, day.isoformat(), span, consumed / 1000, load_cap, step.level, step.severity,
                        shed, self.whole,
                    ),
                )  # fmt: skip
                if alert is not None:
                    out.append(alert)
        return out

    def projection_window(self, day: dt.date) -> tuple[Micros, Micros, float] | None:
        """(02:00, end of day, cap in Wh) of a day the projection applies to, or None."""
        if not self.plan.control.capped(day) or day in self._projected:
            return None
        two_am = to_micros(dt.datetime.combine(day, dt.time(2), tzinfo=self.cal.tz))
        return two_am, self.cal.bounds(day)[1], self.plan.control.cap_kwh(day) * 1000

    def projection(self, now: Micros) -> list[Alert]:
        day, _lo, hi = self.cal.day_bounds_of(now)
        control = self.plan.control
        two_am = self._two_am.get(day)
        if two_am is None:
            two_am = self._two_am[day] = to_micros(dt.datetime.combine(day, dt.time(2), tzinfo=self.cal.tz))
        if now < two_am or not control.capped(day):
            return []
        if day in self._projected:
            return []
        cap_wh = control.cap_kwh(day) * 1000
        consumed = self.ledger.township_day_wh(day)
        hours_left = (hi - now) / HOUR_US
        if consumed + self.trailing.township_wh_bound * hours_left <= cap_wh:
            return []
        projected = consumed + self.trailing.township_wh(now) * hours_left
        if projected <= cap_wh:
            return []
        self._projected.add(day)
        cap = control.cap_kwh(day)
        shed = self.shed_for(day)
        alert = self.emit(
            now, "township_cap_projection", "warning", day.isoformat(),
            consumed_kwh=kwh(consumed), limit_kwh=round(cap, 3), projected_kwh=kwh(projected), action="none",
            cutoff_until=None, shed=shed,
            message=messages.projection_message(
                self.town.name, day.isoformat(), consumed / 1000, projected / 1000, cap, shed, self.whole
            ),
        )  # fmt: skip
        return [alert] if alert else []

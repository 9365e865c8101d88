"""`monthly_quota`: a general firm's month to date (control days only, from the month's opening) reaching
`notice_at`, `warning_at` of its quota, exceeding it (a cutoff from the reading's day, at the latest the month's
last). The quota is `monthly_quota_kwh`, else `baseline_kwh x (1 - reduction)`, pro-rated by the control days of
the month. Silent while an order stands over the firm on the day the energy landed on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from fractions import Fraction
from functools import partial

from quotad.core import messages
from quotad.core.alerts import Alert, kwh
from quotad.core.policy import Firm
from quotad.core.rules.context import Context
from quotad.core.rules.steps import MONTH, Level, Step, exact, level_steps, levels
from quotad.schedule.calendar import Micros

__all__ = ["MonthlyQuota"]


class MonthlyQuota:
    rule = "monthly_quota"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._quotas: dict[tuple[str, int, int], tuple[Fraction, tuple[Level, ...]]] = {}  # derived from the policy

    def quota(self, firm: Firm, year: int, month: int) -> tuple[Fraction, tuple[Level, ...]]:
        """The quota of `firm` for the month (kWh, exact) and its levels."""
        key = (firm.id, year, month)
        cached = self._quotas.get(key)
        if cached is None:
            if firm.monthly_quota_kwh is not None:
                full = exact(firm.monthly_quota_kwh)
            else:
                full = exact(firm.baseline_kwh or 0.0) * (1 - exact(firm.effective_reduction))
            covered, length = self.ctx.plan.control.days_in_month(year, month)
            quota = full * covered / length
            town = self.ctx.town
            cached = self._quotas[key] = (quota, levels((town.notice_at, town.warning_at), quota))
        return cached

    def steps(self, firm: Firm, day: dt.date) -> Iterator[Step]:
        if firm.kind != "general" or self.ctx.standing(firm, day) is not None:
            return iter(())
        quota, walk = self.quota(firm, day.year, day.month)
        period = f"{day.year:04d}-{day.month:02d}"
        build = partial(self._alert, firm, day, period, float(quota))
        return level_steps(self.ctx, firm.id, self.rule, period, MONTH, walk, build)

    def _alert(
        self, firm: Firm, day: dt.date, period: str, quota: float, aid: str, step: Level, consumed: float, t: Micros
    ) -> Alert:
        ctx = self.ctx
        cutoff = step.severity == "violation"
        month_end = (dt.date(day.year, day.month, 28) + dt.timedelta(days=4)).replace(day=1)
        from_day = min(ctx.cal.day_of(t), month_end - dt.timedelta(days=1))
        alert = ctx.alert(
            aid, t, self.rule, step.severity, period, firm=firm, level=step.level,
            consumed_kwh=kwh(consumed), limit_kwh=round(quota, 3), projected_kwh=None,
            action="cutoff" if cutoff else "none", cutoff_until=ctx.until if cutoff else None,
            message=messages.monthly_message(
                firm.name, period, consumed / 1000, quota, step.level, step.severity,
                (from_day.isoformat(), ctx.until) if cutoff else None,
            ),
        )  # fmt: skip
        if cutoff:
            evidence = ctx.evidence(firm, day, consumed, quota)
            evidence["month"] = period
            opening = ctx.ledger.opening.get((firm.id, (day.year, day.month)))
            if opening:  # part of the month-to-date came from the utility's meter book, not the meters
                evidence["opening_kwh"] = kwh(opening)
            return ctx.cut_off(alert, firm, from_day, evidence)
        return alert

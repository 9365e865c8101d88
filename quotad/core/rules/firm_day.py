"""`firm_daily_limit`: a firm's day reaching `notice_at`, `warning_at` of its daily limit, exceeding it (a cutoff
from that day). Silent while an order stands over the firm."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from functools import partial

from quotad.core import messages
from quotad.core.alerts import Alert, kwh
from quotad.core.policy import Firm
from quotad.core.rules.context import Context
from quotad.core.rules.steps import DAY, Level, Step, level_steps, levels
from quotad.schedule.calendar import Micros

__all__ = ["DailyLimit"]


class DailyLimit:
    rule = "firm_daily_limit"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        fractions = (ctx.town.notice_at, ctx.town.warning_at)
        self.levels = {
            f.id: levels(fractions, f.daily_limit_kwh) for f in ctx.firms.values() if f.daily_limit_kwh is not None
        }

    def steps(self, firm: Firm, day: dt.date) -> Iterator[Step]:
        walk = self.levels.get(firm.id)
        if walk is None or self.ctx.standing(firm, day) is not None:
            return iter(())
        return level_steps(self.ctx, firm.id, self.rule, day.isoformat(), DAY, walk, partial(self._alert, firm, day))

    def _alert(self, firm: Firm, day: dt.date, aid: str, step: Level, consumed: float, t: Micros) -> Alert:
        ctx, limit, period = self.ctx, firm.daily_limit_kwh or 0.0, day.isoformat()
        cutoff = step.severity == "violation"
        alert = ctx.alert(
            aid, t, self.rule, step.severity, period, firm=firm, level=step.level,
            consumed_kwh=kwh(consumed), limit_kwh=round(limit, 3), projected_kwh=None,
            action="cutoff" if cutoff else "none", cutoff_until=ctx.until if cutoff else None,
            message=messages.daily_limit_message(
                firm.name, period, consumed / 1000, limit, step.level, step.severity, ctx.until if cutoff else None
            ),
        )  # fmt: skip
        if cutoff:
            return ctx.cut_off(alert, firm, day, ctx.evidence(firm, day, consumed, limit))
        return alert

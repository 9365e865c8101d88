"""The township's rules, from `cap_from` on (SPEC "Rules and alerts"): its day reaching `notice_at`, `warning_at`
of the day's cap and exceeding it (`township_cap`); a 15-minute interval reaching `warning_at` x `load_cap_kw`/4
and exceeding it, once a day per level (`township_load`); from 02:00, the day projected at the trailing hour's rate
exceeding the cap, once a day (`township_cap_projection`). Each names whom to shed."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from functools import partial

from quotad.core import messages
from quotad.core.alerts import Alert, kwh
from quotad.core.rules.context import Context
from quotad.core.rules.steps import DAY, PROJECTED, QUARTER, Level, Step, exact, level_steps, levels
from quotad.core.windows import QUARTER_US
from quotad.schedule.calendar import Micros, to_micros

__all__ = ["Projection", "TownshipCap", "TownshipLoad"]

_TOWNSHIP = "township"


class TownshipCap:
    rule = "township_cap"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._levels: dict[dt.date, tuple[Level, ...]] = {}  # derived from the policy

    def steps(self, day: dt.date) -> Iterator[Step]:
        control = self.ctx.plan.control
        if not control.capped(day):
            return iter(())
        walk = self._levels.get(day)
        if walk is None:
            town = self.ctx.town
            walk = self._levels[day] = levels((town.notice_at, town.warning_at), control.cap_kwh(day))
        period = day.isoformat()
        return level_steps(self.ctx, _TOWNSHIP, self.rule, period, DAY, walk, partial(self._alert, day))

    def _alert(self, day: dt.date, aid: str, step: Level, consumed: float, t: Micros) -> Alert:
        ctx, period = self.ctx, day.isoformat()
        cap, shed = ctx.plan.control.cap_kwh(day), ctx.shed(day)
        return ctx.alert(
            aid, t, self.rule, step.severity, period, level=step.level,
            consumed_kwh=kwh(consumed), limit_kwh=round(cap, 3), projected_kwh=None, action="none",
            cutoff_until=None, shed=shed,
            message=messages.cap_message(
                ctx.town.name, period, consumed / 1000, cap, step.level, step.severity, shed, ctx.whole
            ),
        )  # fmt: skip


class TownshipLoad:
    """Steps of one interval (`start`) of `day`; their ids are the day's, so each level is raised once a day."""

    rule = "township_load"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        load_cap = ctx.town.load_cap_kw
        self.levels = levels((ctx.town.warning_at,), exact(load_cap) / 4) if load_cap is not None else ()

    def steps(self, day: dt.date, start: Micros) -> Iterator[Step]:
        if not self.levels or not self.ctx.plan.control.capped(day):
            return iter(())
        period = day.isoformat()
        return level_steps(
            self.ctx, _TOWNSHIP, self.rule, period, QUARTER, self.levels, partial(self._alert, day, start)
        )

    def _alert(self, day: dt.date, start: Micros, aid: str, step: Level, consumed: float, t: Micros) -> Alert:
        ctx, period, load_cap = self.ctx, day.isoformat(), self.ctx.town.load_cap_kw or 0.0
        span = f"{ctx.cal.local(start):%H:%M}–{ctx.cal.local(start + QUARTER_US):%H:%M}"
        shed = ctx.shed(day)
        return ctx.alert(
            aid, t, self.rule, step.severity, period, level=step.level,
            consumed_kwh=kwh(consumed), limit_kwh=round(load_cap / 4, 3), projected_kwh=None,
            action="none", cutoff_until=None, shed=shed,
            message=messages.load_message(
                ctx.town.name, period, span, consumed / 1000, load_cap, step.level, step.severity, shed, ctx.whole,
            ),
        )  # fmt: skip


class Projection:
    """Watches the day projected to its end (today's Wh + the trailing hour's rate x the hours left); reached when
    that exceeds the cap, from 02:00 on."""

    rule = "township_cap_projection"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._two_am: dict[dt.date, Micros] = {}  # derived from the calendar

    def starts(self, day: dt.date) -> Micros:
        """The first moment of `day` the projection may fire."""
        two_am = self._two_am.get(day)
        if two_am is None:
            two_am = self._two_am[day] = to_micros(dt.datetime.combine(day, dt.time(2), tzinfo=self.ctx.cal.tz))
        return two_am

    def steps(self, day: dt.date, now: Micros) -> Iterator[Step]:
        control = self.ctx.plan.control
        if now < self.starts(day) or not control.capped(day):
            return
        aid = self.ctx.id(_TOWNSHIP, self.rule, day.isoformat())
        # exceeds the cap: the least float above it (a projection is a float)
        yield Step(
            aid, PROJECTED, math.nextafter(control.cap_kwh(day) * 1000, math.inf), partial(self._alert, aid, day)
        )

    def _alert(self, aid: str, day: dt.date, projected: float, t: Micros) -> Alert:
        ctx, period = self.ctx, day.isoformat()
        cap, shed = ctx.plan.control.cap_kwh(day), ctx.shed(day)
        consumed = ctx.ledger.township_day_wh(day)
        return ctx.alert(
            aid, t, self.rule, "warning", period,
            consumed_kwh=kwh(consumed), limit_kwh=round(cap, 3), projected_kwh=kwh(projected), action="none",
            cutoff_until=None, shed=shed,
            message=messages.projection_message(
                ctx.town.name, period, consumed / 1000, projected / 1000, cap, shed, ctx.whole
            ),
        )  # fmt: skip

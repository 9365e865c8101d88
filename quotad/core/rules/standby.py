"""The standby rules of a firm's day (SPEC "Rules and alerts"): over its standby energy on a day its group is off
(`rota_off_day`) or on a declared rest day (`rest_day`), each cutting it off; and, while a cutoff order stands, from
the order's next day on, `cutoff_breach` (once a day)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from functools import partial

from quotad.core import messages
from quotad.core.alerts import Alert, Order, kwh
from quotad.core.policy import Firm
from quotad.core.rules.context import Context
from quotad.core.rules.steps import DAY, Step, over_wh
from quotad.schedule.calendar import Micros

__all__ = ["CutoffBreach", "RestDay", "RotaOffDay"]


class _Standby:
    """A firm's standby energy (its own, else the township's) and the least Wh that exceeds it."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        default = ctx.town.standby_kwh
        self.standby = {f.id: default if f.standby_kwh is None else f.standby_kwh for f in ctx.firms.values()}
        self.over = {fid: over_wh(kwh_) for fid, kwh_ in self.standby.items()}


class CutoffBreach(_Standby):
    rule = "cutoff_breach"

    def steps(self, firm: Firm, day: dt.date) -> Iterator[Step]:
        order, period = self.ctx.standing(firm, day), day.isoformat()
        if order is not None and order.breach_counts(period):
            aid = self.ctx.id(firm.id, self.rule, period)
            yield Step(aid, DAY, self.over[firm.id], partial(self._alert, aid, firm, period, order))

    def _alert(self, aid: str, firm: Firm, period: str, order: Order, consumed: float, t: Micros) -> Alert:
        standby = self.standby[firm.id]
        return self.ctx.alert(
            aid, t, self.rule, "breach", period, firm=firm,
            consumed_kwh=kwh(consumed), limit_kwh=round(standby, 3), projected_kwh=None, action="none",
            cutoff_until=None,
            message=messages.breach_message(firm.name, order.from_day, order.until, period, consumed / 1000, standby),
        )  # fmt: skip


class _OverStandby(_Standby):
    """Over standby on a day the firm must not run (`applies`): a violation, and a cutoff from that day."""

    rule: str
    why: str

    def applies(self, firm: Firm, day: dt.date) -> bool:
        raise NotImplementedError

    def steps(self, firm: Firm, day: dt.date) -> Iterator[Step]:
        if self.ctx.standing(firm, day) is None and self.applies(firm, day):
            aid = self.ctx.id(firm.id, self.rule, day.isoformat())
            yield Step(aid, DAY, self.over[firm.id], partial(self._alert, aid, firm, day))

    def _alert(self, aid: str, firm: Firm, day: dt.date, consumed: float, t: Micros) -> Alert:
        ctx, period, standby = self.ctx, day.isoformat(), self.standby[firm.id]
        alert = ctx.alert(
            aid, t, self.rule, "violation", period, firm=firm,
            consumed_kwh=kwh(consumed), limit_kwh=round(standby, 3), projected_kwh=None, action="cutoff",
            cutoff_until=ctx.until,
            message=messages.standby_message(firm.name, period, consumed / 1000, standby, self.why, ctx.until),
        )  # fmt: skip
        return ctx.cut_off(alert, firm, day, ctx.evidence(firm, day, consumed, standby))


class RotaOffDay(_OverStandby):
    rule, why = "rota_off_day", "错时供电停电日"

    def applies(self, firm: Firm, day: dt.date) -> bool:
        return self.ctx.plan.group_off(firm, day)


class RestDay(_OverStandby):
    rule, why = "rest_day", "申报休息日"

    def applies(self, firm: Firm, day: dt.date) -> bool:
        return self.ctx.plan.rest_day(firm, day)

"""`pending` made firm: a pending order made within the accuracy of the firm's meters is issued once the use it was
made on goes beyond that accuracy (SPEC "Orders": pending while consumption <= limit x (1 + accuracy)).

Live readings come every minute or so, so a rule is first reached a minute's use past its limit: mostly within
the meters' accuracy, and the order starts pending. The firm that goes on drawing leaves no doubt: when the same
day's (or month's) use exceeds the limit by more than the accuracy, the order is issued, with an alert that says so
(severity `violation`, action `cutoff`, `order_state` issued, id `<the pending order's alert id>/issued`; it is
not counted again for escalation). Under `confirm = "inspector"` only an inspector issues an order: no step.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import replace
from functools import partial

from quotad.core import messages
from quotad.core.alerts import Alert, kwh
from quotad.core.orders import PROMOTED, Change, Order
from quotad.core.policy import Firm
from quotad.core.rules.context import Context
from quotad.core.rules.steps import DAY, MONTH, Step, over_wh
from quotad.schedule.calendar import Micros

__all__ = ["PendingBeyondAccuracy"]

_WHAT = {"rota_off_day": "保安用电", "rest_day": "保安用电", "firm_daily_limit": "日限额", "monthly_quota": "月度配额"}


class PendingBeyondAccuracy:
    rule = "pending_beyond_accuracy"  # not an alert's rule: its alerts carry the order's

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def steps(self, firm: Firm, day: dt.date) -> Iterator[Step]:
        ctx = self.ctx
        order = ctx.standing(firm, day)
        if ctx.inspector or order is None or order.state != "pending" or "margin_kwh" not in order.evidence:
            return
        evidence = order.evidence
        if "month" in evidence:
            if evidence["month"] != f"{day.year:04d}-{day.month:02d}":
                return
            watch, period = MONTH, evidence["month"]
        elif evidence.get("day") == day.isoformat():
            watch, period = DAY, evidence["day"]
        else:
            return
        aid = order.alert_id + PROMOTED
        beyond = evidence["limit_kwh"] + evidence["margin_kwh"]
        yield Step(aid, watch, over_wh(beyond), partial(self._alert, aid, firm, order, period))

    def _alert(self, aid: str, firm: Firm, order: Order, period: str, consumed: float, t: Micros) -> Alert:
        ctx, evidence = self.ctx, order.evidence
        limit, margin = evidence["limit_kwh"], evidence["margin_kwh"]
        level = 1.0 if order.rule in ("firm_daily_limit", "monthly_quota") else None
        what = period if len(period) == 10 else messages.month_text(period)
        alert = ctx.alert(
            aid, t, order.rule, "violation", period, firm=firm, level=level,
            consumed_kwh=kwh(consumed), limit_kwh=limit, projected_kwh=None, action="cutoff", cutoff_until=order.until,
            message=messages.beyond_accuracy_message(
                firm.name, what, consumed / 1000, limit, _WHAT.get(order.rule, "限额"), evidence["accuracy_pct"],
                margin, order.from_day, order.until,
            ),
        )  # fmt: skip
        ts = alert.ts
        issued = replace(
            order,
            state="issued",
            history=(*order.history, Change("issued", ts, "quotad", f"{aid}：超出电表精度，{kwh(consumed)} kWh")),
            breach_from=(dt.date.fromisoformat(order.from_day) + dt.timedelta(days=1)).isoformat(),
            evidence={**evidence, "beyond_accuracy_kwh": kwh(consumed), "beyond_accuracy_ts": ts},
        )
        ctx.replace_order(issued)
        return replace(alert, order_state="issued")

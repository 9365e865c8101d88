"""A firm's monthly statement (对账单, SPEC "Reports"): its days (use, the day's limit or its share of the monthly
quota, whether the rota let it run, rest days), the month against its quota, its orders with their history, its
alerts, the inspectors' visits and the talks (约谈) held with it. Plain data, from the engine and a `Collector`.

A day's use is the one the daily report gives (the engine's Wh / 1000, unrounded). A general firm's month to date
counts as its monthly quota does: the opening (used before quotad's first reading) plus the control days' use.
Its daily share of the quota is the quota over the month's control days: a guide, not a rule (the rule is the month).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from quotad.core.alerts import RULE_NAMES
from quotad.core.engine import Engine
from quotad.core.orders import STATE_NAMES
from quotad.core.policy import Firm
from quotad.core.reports.collect import Collected
from quotad.core.reports.daily import KIND_NAMES, WEEKDAYS, AlertRow
from quotad.core.reports.phase import alert_day, as_of, covered, dated, latest_orders, standby_kwh

__all__ = ["FirmStatement", "OrderHistory", "StatementDay", "firm_statement"]


@dataclass(frozen=True, slots=True)
class StatementDay:
    day: dt.date
    weekday: str  # 一 .. 日
    read: bool  # inside the days with readings (else its use is unknown: None)
    arrangement: str  # 运行, 停电日 (its group's off day), 休息日, 一停到底, 不在管控期
    runs: bool  # the rota (and any order) let it run
    kwh: float | None
    limit_name: str  # 日限额, 保安用电, 日均配额, or ""
    limit_kwh: float | None
    pct: float | None  # of the day's limit
    month_kwh: float | None  # a general firm's month to date (the opening included)
    over: bool  # above the day's limit, or its standby on a day it must be off
    alerts: int


@dataclass(frozen=True, slots=True)
class OrderHistory:
    alert_id: str
    rule: str  # Chinese
    from_day: str
    until: str
    state: str  # Chinese, now
    history: tuple[tuple[str, str, str, str], ...]  # (state in Chinese, "YYYY-MM-DD HH:MM", by, reason)


@dataclass(frozen=True, slots=True)
class FirmStatement:
    township: str
    firm: str
    name: str
    kind: str  # Chinese
    group: str | None  # the rota group's name
    liaison: str | None
    month: str  # YYYY-MM
    first: dt.date | None  # the month's days with readings
    last: dt.date | None
    as_of: str
    limit_text: str  # the firm's limit in words
    standby_kwh: float
    daily_limit_kwh: float | None
    quota_kwh: float | None  # a general firm's monthly quota
    control_days: int  # the month's days inside the control period
    days: tuple[StatementDay, ...]
    total_kwh: float  # the days with readings
    opening_kwh: float | None  # general: used before quotad's first reading
    month_kwh: float | None  # general: as the quota counts it
    quota_pct: float | None
    margin_kwh: float | None  # quota - month (negative: over)
    run_days: int
    off_days: int
    rest_days: int
    off_over: int  # off or rest days above standby
    days_over_limit: int | None
    orders: tuple[OrderHistory, ...]
    alerts: tuple[AlertRow, ...]
    visits: tuple[dict[str, Any], ...]
    talks: tuple[dict[str, str], ...]
    escalation: str | None  # the step reached now, with the count


def firm_statement(engine: Engine, data: Collected, firm_id: str, year: int, month: int) -> FirmStatement:
    """`firm_id`'s statement of the month as the engine and the collected data stand."""
    firm, plan, ledger = engine.firms[firm_id], engine.plan, engine.ledger
    label = f"{year:04d}-{month:02d}"
    first_day = dt.date(year, month, 1)
    length = (dt.date(year + month // 12, month % 12 + 1, 1) - first_day).days
    month_days = [first_day + dt.timedelta(days=n) for n in range(length)]
    read = set(covered(engine, month_days[0], month_days[-1]))
    control_days = plan.control.days_in_month(year, month)[0]
    quota = float(engine.rules.month_quota(firm, year, month)[0]) if firm.kind == "general" and control_days else None
    standby = standby_kwh(engine, firm)
    own = [a for a in data.alerts if a.get("firm") == firm_id and (alert_day(a)[:7] == label)]
    opening = ledger.opening.get((firm_id, (year, month)), 0) / 1000 if quota is not None else None
    days, running = [], opening or 0.0
    for d in month_days:
        kwh = ledger.firm_day_wh(firm_id, d) / 1000 if d in read else None
        if kwh is not None and d in plan.control:
            running += kwh
        days.append(_day(engine, firm, d, kwh, quota, control_days, running if quota is not None and kwh is not None
                         else None, sum(1 for a in own if alert_day(a) == d.isoformat())))  # fmt: skip
    seen = [d for d in days if d.read]
    month_kwh = ledger.firm_month_wh(firm_id, (year, month)) / 1000 if quota is not None else None
    escalated = engine.escalations.get(firm_id)
    steps = {s.after: s.step for s in engine.policy.enforcement.escalation}
    return FirmStatement(
        township=engine.policy.township.name,
        firm=firm_id,
        name=firm.name,
        kind=KIND_NAMES[firm.kind],
        group=next((g.name for g in engine.policy.groups if g.id == firm.group), None),
        liaison=firm.liaison,
        month=label,
        first=seen[0].day if seen else None,
        last=seen[-1].day if seen else None,
        as_of=as_of(engine),
        limit_text=_limit_text(engine, firm, quota, standby, control_days < length),
        standby_kwh=standby,
        daily_limit_kwh=firm.daily_limit_kwh,
        quota_kwh=quota,
        control_days=control_days,
        days=tuple(days),
        total_kwh=sum(d.kwh for d in seen if d.kwh is not None),
        opening_kwh=opening,
        month_kwh=month_kwh,
        quota_pct=100 * month_kwh / quota if quota and month_kwh is not None else None,
        margin_kwh=quota - month_kwh if quota is not None and month_kwh is not None else None,
        run_days=sum(1 for d in seen if d.runs),
        off_days=sum(1 for d in seen if d.arrangement == "停电日"),
        rest_days=sum(1 for d in seen if d.arrangement == "休息日"),
        off_over=sum(1 for d in seen if d.over and d.limit_name == "保安用电"),
        days_over_limit=sum(1 for d in seen if d.over and d.limit_name == "日限额") if firm.daily_limit_kwh else None,
        orders=_orders(data, firm_id, first_day, month_days[-1]),
        alerts=tuple(dated(a) for a in own),
        visits=tuple(v for v in data.visits if v.get("firm") == firm_id and str(v.get("at", ""))[:7] == label),
        talks=tuple(t.payload() for t in (escalated.talks if escalated else ()) if t.at[:7] == label),
        escalation=f"累计违规、违令 {escalated.count} 次，已到：{steps[escalated.after]}"
        if escalated and escalated.after in steps
        else None,
    )


def _day(engine: Engine, firm: Firm, d: dt.date, kwh: float | None, quota: float | None, control_days: int,
         month_kwh: float | None, alerts: int) -> StatementDay:  # fmt: skip
    plan = engine.plan
    order = engine.orders.get(firm.id)
    # cut off from the day after the order's first day: on that day the limit it broke is the one that counts
    cut = order is not None and order.stands(d) and order.from_day < d.isoformat()
    off, rest = plan.group_off(firm, d), plan.rest_day(firm, d)
    if d not in plan.control:
        arrangement = "不在管控期"
    else:
        arrangement = "一停到底" if cut else "停电日" if off else "休息日" if rest else "运行"
        if order is not None and order.state != "dismissed" and order.from_day == d.isoformat():
            arrangement += "（当日停电令）"
    name, limit = "", None
    if d in plan.control and (cut or off or rest):
        name, limit = "保安用电", standby_kwh(engine, firm)
    elif firm.daily_limit_kwh is not None:
        name, limit = "日限额", firm.daily_limit_kwh
    elif quota is not None and d in plan.control:
        name, limit = "日均配额", quota / control_days
    over = kwh is not None and limit is not None and kwh > limit and name != "日均配额"
    return StatementDay(d, WEEKDAYS[d.weekday()], kwh is not None, arrangement, not (cut or off or rest), kwh, name,
                        limit, 100 * kwh / limit if kwh is not None and limit else None, month_kwh, over,
                        alerts)  # fmt: skip


def _limit_text(engine: Engine, firm: Firm, quota: float | None, standby: float, prorated: bool) -> str:
    parts = []
    if firm.daily_limit_kwh is not None:
        parts.append(f"日限额 {firm.daily_limit_kwh:,.0f} kWh")
    if quota is not None:
        how = (f"基数 {firm.baseline_kwh:,.0f} kWh × (1 − {firm.effective_reduction:.0%})"
               if firm.monthly_quota_kwh is None and firm.baseline_kwh is not None else "上级下达")  # fmt: skip
        parts.append(f"月度配额 {quota:,.1f} kWh（{how}{'，按本月管控天数折算' if prorated else ''}）")
    if firm.group is not None and not firm.rota_exempt:
        parts.append("错时供电：本组停电日停产")
    if firm.rota_exempt:
        parts.append("不参加错时轮休，每日照常运行")
    if firm.kind == "workshop":
        parts.append("每周至少休息两天（申报休息日停产）")
    parts.append(f"停产日保安用电 {standby:,.0f} kWh")
    return "；".join(parts)


def _orders(data: Collected, firm_id: str, first: dt.date, last: dt.date) -> tuple[OrderHistory, ...]:
    """The firm's orders in force at some time in the month or made in it, each with its whole history."""
    said = {a["id"]: a["message"] for a in data.alerts if a.get("firm") == firm_id}
    rows = []
    for order in latest_orders(data.orders):
        if order.firm != firm_id or order.from_day > last.isoformat() or order.until < first.isoformat():
            continue
        history = tuple((STATE_NAMES.get(c.state, c.state), c.at[:16].replace("T", " "), *_why(c.by, c.reason, said))
                        for c in order.history)  # fmt: skip
        rows.append(OrderHistory(order.alert_id, RULE_NAMES.get(order.rule, order.rule), order.from_day, order.until,
                                 STATE_NAMES.get(order.state, order.state), history))  # fmt: skip
    return tuple(rows)


def _why(by: str, reason: str, said: dict[str, str]) -> tuple[str, str]:
    """Who made a change, and why, for the reader: a rule's own change (its reason is the alert's id, then what it
    adds) is said by that alert's message."""
    if by != "quotad":
        return by, reason
    alert, _sep, more = reason.partition("：")
    return "系统自动", said.get(alert, "依据告警 " + alert + (f"，{more}" if more else ""))

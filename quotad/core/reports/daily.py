"""The daily report's figures (日报, SPEC "Reports"): the township's day against its cap, each kind of firm, each firm,
orders, breaches, inspections, escalations, alerts by rule, data quality. Plain data, from the engine (totals, as
they stand after every reading given) and what a `Collector` gathered (curve, readings received, the register).

Energy is in kWh, unrounded (the engine's exact Wh / 1000): the renderers round for the reader (one decimal).
An alert belongs to the day of its `period` (a late reading's alert about yesterday is yesterday's), or, for a
period that is not a day (`monthly_quota`'s month), to the day of its event time.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from quotad.core.alerts import RULE_NAMES, SEVERITY_NAMES, alert_id
from quotad.core.engine import Engine
from quotad.core.orders import STATE_NAMES, Order
from quotad.core.policy import Firm
from quotad.core.reports.collect import Collected

__all__ = [
    "KIND_NAMES",
    "SEVERITIES",
    "STATES",
    "AlertRow",
    "DailyReport",
    "FirmRow",
    "KindRow",
    "MeterRow",
    "OrderChange",
    "RuleRow",
    "alerts_of",
    "daily_report",
    "day_alerts",
    "firm_row",
    "kind_rows",
    "median",
    "rule_rows",
]

KIND_NAMES: Final = {"large": "错时供电大户", "general": "一般企业", "workshop": "加工点、私人作坊"}
SEVERITIES: Final = ("notice", "warning", "violation", "breach")
STATES: Final = {"ok": "正常", "notice": "提示", "warning": "警告", "cutoff": "一停到底", "pending": "停电令待核实"}
WEEKDAYS: Final = "一二三四五六日"


@dataclass(frozen=True, slots=True)
class KindRow:
    kind: str
    name: str
    firms: int
    kwh: float
    share: float | None  # of the township's day, %


@dataclass(frozen=True, slots=True)
class FirmRow:
    firm: str
    name: str
    kind: str  # its Chinese name
    today: str  # 运行 / 停电日 / 休息日 / 一停到底
    kwh: float
    limit_kwh: float | None
    limit_name: str  # what the limit is: 日限额, 保安用电, 月度配额 (then `kwh_against` is the month to date)
    kwh_against: float  # what is held against the limit: the day's use, or the month's to date
    used_pct: float | None
    state: str  # ok, notice, warning, pending, cutoff
    state_name: str


@dataclass(frozen=True, slots=True)
class OrderChange:
    firm_name: str
    alert_id: str
    rule: str
    state: str
    at: str
    by: str
    reason: str


@dataclass(frozen=True, slots=True)
class AlertRow:
    ts: str  # HH:MM (local), or the date and time for an alert raised on another day
    rule: str
    severity: str
    message: str


@dataclass(frozen=True, slots=True)
class RuleRow:
    rule: str
    name: str
    counts: tuple[int, ...]  # by SEVERITIES
    total: int


@dataclass(frozen=True, slots=True)
class MeterRow:
    meter: str
    owner: str
    received: int
    expected: int | None
    share: float | None  # %


@dataclass(frozen=True, slots=True)
class DailyReport:
    township: str
    township_id: str
    day: dt.date
    weekday: str
    phase: str | None
    in_control: bool
    complete: bool  # the readings go to the day's end (else: `as_of`)
    as_of: str  # local time of the township's now, "YYYY-MM-DD HH:MM"
    cap_kwh: float | None
    consumed_kwh: float
    cap_pct: float | None
    margin_kwh: float | None  # cap - consumed (negative: over)
    peak_quarter_kwh: float | None  # the largest 15 minutes' use
    peak_quarter_at: str | None  # its start, HH:MM
    curve: tuple[tuple[float, float], ...]
    projection: tuple[tuple[float, float], ...]
    schedule: dict[str, str]  # 运行, 停电, 休息的作坊, 一停到底, 能源紧缺体验日
    kinds: tuple[KindRow, ...]
    firms: tuple[FirmRow, ...]
    orders_by_state: tuple[tuple[str, int], ...]  # (Chinese state, count) of the orders standing or made by the day
    order_changes: tuple[OrderChange, ...]  # changes made on the day
    breaches: tuple[AlertRow, ...]
    inspection_list: tuple[dict[str, Any], ...]  # the 07:00 list's entries
    visits: tuple[dict[str, Any], ...]
    escalations: tuple[AlertRow, ...]
    talks: tuple[dict[str, str], ...]  # {"firm_name", "at", "by", "note"}
    by_rule: tuple[RuleRow, ...]
    alerts_total: int
    alerts: tuple[AlertRow, ...]
    meters: tuple[MeterRow, ...]
    interval_s: int | None  # the usual interval between a meter's readings that day (the median)
    received_share: float | None  # %, of every meter's expected readings
    offline: tuple[AlertRow, ...]
    anomalies: tuple[AlertRow, ...]


def daily_report(engine: Engine, data: Collected, day: dt.date) -> DailyReport:
    """The report of `day` as the engine and the collected data stand."""
    policy, plan, cal = engine.policy, engine.plan, engine.calendar
    lo, hi = cal.bounds(day)
    now = engine.now or lo
    consumed = engine.ledger.township_day_wh(day) / 1000
    cap = plan.control.cap_kwh(day) if plan.control.capped(day) else None
    curve = tuple(data.curve.get(day, ()))
    if curve and engine.first_seen is not None and engine.first_seen <= lo:
        curve = ((0.0, 0.0), *curve)  # the day began with the readings running: nothing used at 00:00
    peak = _peak(curve)
    alerts = day_alerts(data.alerts, day)
    meters, interval, share = _meters(engine, data, day)
    return DailyReport(
        township=policy.township.name,
        township_id=policy.township.id,
        day=day,
        weekday=f"星期{WEEKDAYS[day.weekday()]}",
        phase=phase.name if (phase := plan.control.phase(day)) else None,
        in_control=day in plan.control,
        complete=now >= hi,
        as_of=cal.local(min(now, hi)).strftime("%Y-%m-%d %H:%M") if now < hi else f"{day} 24:00",
        cap_kwh=cap,
        consumed_kwh=consumed,
        cap_pct=100 * consumed / cap if cap else None,
        margin_kwh=cap - consumed if cap is not None else None,
        peak_quarter_kwh=peak[1] if peak else None,
        peak_quarter_at=_hhmm(peak[0]) if peak else None,
        curve=curve,
        projection=tuple(data.projection.get(day, ())),
        schedule=_schedule(engine, day),
        kinds=kind_rows(engine, [day], consumed),
        firms=tuple(firm_row(engine, f, day, alerts) for f in policy.firms),
        orders_by_state=_orders_by_state(data.orders, hi, engine),
        order_changes=_changes(data.orders, day),
        breaches=tuple(_row(a, day, engine) for a in alerts if a["rule"] == "cutoff_breach"),
        inspection_list=tuple(data.lists.get(day, {}).get("entries", ())),
        visits=tuple(v for v in data.visits if str(v.get("at", ""))[:10] == day.isoformat()),
        escalations=tuple(_row(a, day, engine) for a in alerts if a["rule"] == "escalation"),
        talks=_talks(engine, day),
        by_rule=rule_rows(alerts),
        alerts_total=len(alerts),
        alerts=tuple(_row(a, day, engine) for a in alerts),
        meters=meters,
        interval_s=interval,
        received_share=share,
        offline=tuple(_row(a, day, engine) for a in alerts if a["rule"] == "meter_offline"),
        anomalies=tuple(_row(a, day, engine) for a in alerts if a["rule"] == "meter_anomaly"),
    )


def alerts_of(payload: dict[str, Any], day: dt.date) -> bool:
    period = str(payload.get("period") or "")
    if len(period) == 10:
        return period == day.isoformat()
    return str(payload.get("ts", ""))[:10] == day.isoformat()


def day_alerts(payloads: Iterable[dict[str, Any]], day: dt.date) -> list[dict[str, Any]]:
    return [a for a in payloads if alerts_of(a, day)]


def rule_rows(alerts: Iterable[dict[str, Any]]) -> tuple[RuleRow, ...]:
    """Alerts counted by rule (in RULE_NAMES' order, then any other) and severity."""
    counted = Counter((a["rule"], a["severity"]) for a in alerts)
    rules = list(dict.fromkeys([*RULE_NAMES, *(rule for rule, _s in counted)]))
    rows = []
    for rule in rules:
        counts = tuple(counted[(rule, s)] for s in SEVERITIES)
        total = sum(n for (r, _s), n in counted.items() if r == rule)
        if total:
            rows.append(RuleRow(rule, RULE_NAMES.get(rule, rule), counts, total))
    return tuple(rows)


def kind_rows(engine: Engine, days: Iterable[dt.date], township_kwh: float) -> tuple[KindRow, ...]:
    """Use by kind of firm over `days`, and its share of the township's `township_kwh`."""
    days = list(days)
    rows = []
    for kind, name in KIND_NAMES.items():
        firms = [f for f in engine.policy.firms if f.kind == kind]
        used = sum(engine.ledger.firm_day_wh(f.id, d) for f in firms for d in days) / 1000
        rows.append(KindRow(kind, name, len(firms), used, 100 * used / township_kwh if township_kwh > 0 else None))
    return tuple(rows)


def firm_row(engine: Engine, firm: Firm, day: dt.date, alerts: list[dict[str, Any]]) -> FirmRow:
    """`firm` on `day`: its use against its limit, and its state (the highest level its alerts of the day reached;
    under an order: the order's)."""
    plan, town = engine.plan, engine.policy.township
    used = engine.ledger.firm_day_wh(firm.id, day) / 1000
    order = _order_on(engine, firm.id, day)
    off = plan.group_off(firm, day) and not firm.rota_exempt
    rest = plan.rest_day(firm, day)
    today = "一停到底" if order is not None else "停电日" if off else "休息日" if rest else "运行"
    against, limit, what = used, firm.daily_limit_kwh, "日限额"
    if off or rest:
        limit = firm.standby_kwh if firm.standby_kwh is not None else town.standby_kwh
        what = "保安用电"
    elif limit is None and firm.kind == "general" and day in plan.control:
        limit = float(engine.rules.month_quota(firm, day.year, day.month)[0])
        against, what = engine.ledger.firm_month_wh(firm.id, (day.year, day.month)) / 1000, "月度配额（本月累计）"
    state = "ok"
    if order is not None:
        state = "pending" if order.state == "pending" else "cutoff"
    else:
        for name, level in (("warning", town.warning_at), ("notice", town.notice_at)):
            month = f"{day.year:04d}-{day.month:02d}"
            ids = {alert_id(town.id, firm.id, rule, period, level, None)
                   for rule, period in (("firm_daily_limit", day.isoformat()), ("monthly_quota", month))}  # fmt: skip
            if ids & engine.raised:
                state = name
                break
    pct = 100 * against / limit if limit else None
    return FirmRow(firm.id, firm.name, KIND_NAMES[firm.kind], today, used, limit, what, against, pct, state,
                   STATES[state])  # fmt: skip


def _order_on(engine: Engine, firm: str, day: dt.date) -> Order | None:
    order = engine.orders.get(firm)
    if order is None or not order.stands(day) or order.from_day > day.isoformat():
        return None
    return order


def _schedule(engine: Engine, day: dt.date) -> dict[str, str]:
    policy = engine.policy
    groups = {g.id: g.name for g in policy.groups}
    firms = {f.id: f.name for f in policy.firms}
    d = engine.plan.day(day, engine.cut_off(day))

    def names(ids: Iterable[str], known: dict[str, str]) -> str:
        return "、".join(known.get(i, i) for i in ids) or "无"

    exempt = "".join(f"（{firms[f]}照常运行，受日限额约束）" for f in d.exempt_running)
    return {
        "运行": names(d.running_groups, groups),
        "停电": names(d.off_groups, groups) + exempt,
        "休息的作坊": names(d.resting_workshops, firms),
        "一停到底": names(d.cut_off_firms, firms),
        "能源紧缺体验日": d.residents_hours or "无",
    }


def _orders_by_state(orders: list[Order], end: int, engine: Engine) -> tuple[tuple[str, int], ...]:
    """The orders made by the day's end, each as it stands now, counted by state."""
    latest: dict[str, Order] = {}
    for order in orders:
        latest[order.alert_id] = order
    last_day = engine.calendar.local(end - 1).date().isoformat()
    counted = Counter(o.state for o in latest.values() if o.from_day <= last_day)
    return tuple((STATE_NAMES[s], counted[s]) for s in STATE_NAMES if counted[s])


def _changes(orders: list[Order], day: dt.date) -> tuple[OrderChange, ...]:
    rows = []
    for order in orders:
        change = order.last
        if change is not None and change.at[:10] == day.isoformat():
            state = STATE_NAMES.get(change.state, change.state)
            at, by, reason = change.at[11:16], change.by, change.reason
            if by == "quotad" and reason.startswith(order.alert_id):  # a rule's own change: its alert said why
                by, reason = "系统自动", "依据告警 " + reason.replace("：", "，", 1)
            rows.append(OrderChange(order.firm_name, order.alert_id, RULE_NAMES.get(order.rule, order.rule), state,
                                    at, by, reason))  # fmt: skip
    return tuple(rows)


def _talks(engine: Engine, day: dt.date) -> tuple[dict[str, str], ...]:
    rows = []
    for firm, escalated in engine.escalations.items():
        name = engine.firms[firm].name if firm in engine.firms else firm
        rows += [{"firm_name": name, **t.payload()} for t in escalated.talks if t.at[:10] == day.isoformat()]
    return tuple(sorted(rows, key=lambda r: r["at"]))


def _row(alert: dict[str, Any], day: dt.date, engine: Engine) -> AlertRow:
    ts = str(alert.get("ts", ""))
    when = ts[11:16] if ts[:10] == day.isoformat() else ts[:16].replace("T", " ")
    rule, severity = alert["rule"], alert["severity"]
    return AlertRow(when, RULE_NAMES.get(rule, rule), SEVERITY_NAMES.get(severity, severity), alert["message"])


def _peak(curve: tuple[tuple[float, float], ...]) -> tuple[float, float] | None:
    """(start minute, kWh) of the largest rise between consecutive quarter hours."""
    steps = [(b[0] - a[0], a[0], b[1] - a[1]) for a, b in itertools.pairwise(curve)]
    quarters = [(kwh, start) for width, start, kwh in steps if width == 15]
    if not quarters:
        return None
    kwh, start = max(quarters)
    return start, kwh


def _hhmm(minute: float) -> str:
    m = round(minute)
    return f"{m // 60:02d}:{m % 60:02d}"


def _meters(engine: Engine, data: Collected, day: dt.date) -> tuple[tuple[MeterRow, ...], int | None, float | None]:
    """Each meter's readings received on the day against those expected at the day's usual interval (the median
    of every meter's intervals that day); and the share of all expected readings received."""
    intervals = data.intervals.get(day)
    interval = median(intervals) if intervals else None
    lo, hi = engine.calendar.bounds(day)
    expected = round((hi - lo) / 1_000_000 / interval) if interval else None
    owners = {f.id: f.name for f in engine.policy.firms}
    rows = []
    for meter in engine.policy.meters:
        got = data.received[(meter.id, day)]
        owner = owners.get(meter.firm, meter.firm) if meter.firm else f"{engine.policy.township.name}总表"
        share = min(100.0, 100 * got / expected) if expected else None
        rows.append(MeterRow(meter.id, owner, got, expected, share))
    total = None
    if expected:
        total = 100 * sum(min(r.received, expected) for r in rows) / (expected * len(rows)) if rows else None
    return tuple(rows), interval, total


def median(counted: Counter[int]) -> int:
    """The (lower) median of the values counted."""
    middle, seen = (sum(counted.values()) - 1) // 2, 0
    for value in sorted(counted):
        seen += counted[value]
        if seen > middle:
            return value
    msg = "median of nothing"
    raise ValueError(msg)

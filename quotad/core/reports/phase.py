"""A phase's report (SPEC "Reports"): the daily report's figures for each day of a `[[control.phases]]` entry that
has readings, and the phase's totals against the plan — the cap each day and over the phase, the days over it, each
firm's use against its limits and quotas, the orders made and their states, breaches, alerts by rule, data quality.
Plain data, like `daily`: each day's figures *are* that day's `daily_report`, so the two never disagree.

The days covered run from the first day with readings (the engine's first reading, or the phase's start if later) to
the day of the township's now (a now of exactly 24:00 closes the day before), within the phase. The cap over the
phase is the sum of the covered days' caps: a phase half lived is held against the half it lived.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Any

from quotad.core.alerts import RULE_NAMES, SEVERITY_NAMES
from quotad.core.engine import Engine
from quotad.core.orders import STATE_NAMES, Order
from quotad.core.policy import Firm, Phase
from quotad.core.reports.collect import Collected
from quotad.core.reports.daily import (
    KIND_NAMES,
    WEEKDAYS,
    AlertRow,
    DailyReport,
    KindRow,
    MeterRow,
    RuleRow,
    daily_report,
    kind_rows,
    rule_rows,
)

__all__ = [
    "DayRow",
    "FirmTotal",
    "MonthUse",
    "OrderRow",
    "PhaseReport",
    "alert_day",
    "as_of",
    "covered",
    "dated",
    "latest_orders",
    "order_row",
    "phase_report",
    "standby_kwh",
]


@dataclass(frozen=True, slots=True)
class DayRow:
    day: dt.date
    weekday: str  # 一 .. 日
    readings: bool  # any reading received that day
    complete: bool
    as_of: str
    running: str  # the groups the rota let run
    consumed_kwh: float
    cap_kwh: float | None
    cap_pct: float | None
    margin_kwh: float | None
    peak_quarter_kwh: float | None
    peak_quarter_at: str | None
    alerts: int
    violations: int
    orders_made: int  # orders whose cutoff starts that day
    breaches: int
    visits: int
    received_share: float | None


@dataclass(frozen=True, slots=True)
class MonthUse:
    month: str  # YYYY-MM
    used_kwh: float  # the month to date, as the monthly quota counts it (the opening included)
    quota_kwh: float
    pct: float


@dataclass(frozen=True, slots=True)
class FirmTotal:
    firm: str
    name: str
    kind: str  # its Chinese name
    kwh: float  # over the covered days
    peak_kwh: float
    peak_day: dt.date | None
    run_days: int  # days the rota let it run (not cut off, not off, not resting)
    off_days: int  # its group's off days and its rest days
    off_over: int  # of those, the days it drew above its standby
    standby_kwh: float
    daily_limit_kwh: float | None
    days_over_limit: int | None  # days above the daily limit
    months: tuple[MonthUse, ...]  # a general firm's months against their quotas
    alerts: int
    violations: int  # violations and breaches
    order_state: str  # its order now (Chinese), or 无


@dataclass(frozen=True, slots=True)
class OrderRow:
    firm_name: str
    alert_id: str
    rule: str  # Chinese
    from_day: str
    until: str
    state: str  # Chinese, as it stands now
    last_at: str  # the last change's time, "YYYY-MM-DD HH:MM"
    last_by: str


@dataclass(frozen=True, slots=True)
class PhaseReport:
    township: str
    township_id: str
    name: str
    start: dt.date
    end: dt.date
    first: dt.date | None  # the covered days (None: the phase has no readings yet)
    last: dt.date | None
    phase_days: int
    complete: bool  # the readings run to the phase's end
    as_of: str
    days: tuple[DayRow, ...]
    consumed_kwh: float
    cap_kwh: float | None  # the sum of the covered capped days' caps
    capped_days: int
    cap_pct: float | None  # of the capped days' use against their caps
    margin_kwh: float | None
    over_days: tuple[dt.date, ...]
    peak_day: DayRow | None
    mean_kwh: float | None  # per covered day
    kinds: tuple[KindRow, ...]
    firms: tuple[FirmTotal, ...]
    orders: tuple[OrderRow, ...]
    orders_by_state: tuple[tuple[str, int], ...]
    breaches: tuple[AlertRow, ...]
    escalations: tuple[AlertRow, ...]
    visits: int
    talks: int
    by_rule: tuple[RuleRow, ...]
    alerts_total: int
    meters: tuple[MeterRow, ...]  # readings received and expected, summed over the covered days
    received_share: float | None
    offline: int
    anomalies: int


def covered(engine: Engine, start: dt.date, end: dt.date) -> list[dt.date]:
    """The days of start..end from the first reading's day to the township's now."""
    if engine.first_seen is None or engine.now is None:
        return []
    cal = engine.calendar
    first, last = max(start, cal.day_of(engine.first_seen)), min(end, cal.day_of(engine.now - 1))
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def as_of(engine: Engine) -> str:
    """The township's now, local, "YYYY-MM-DD HH:MM" (a midnight as the day before's 24:00)."""
    if engine.now is None:
        return "—"
    cal = engine.calendar
    day = cal.day_of(engine.now - 1)
    return f"{day} 24:00" if cal.bounds(day)[1] == engine.now else cal.local(engine.now).strftime("%Y-%m-%d %H:%M")


def alert_day(payload: dict[str, Any]) -> str:
    """The day (ISO) an alert belongs to, as the daily report counts it: its period's, or its event time's."""
    period = str(payload.get("period") or "")
    return period if len(period) == 10 else str(payload.get("ts", ""))[:10]


def dated(payload: dict[str, Any]) -> AlertRow:
    """An alert as a row with its date and time, "YYYY-MM-DD HH:MM" (local, as its `ts` says)."""
    rule, severity = payload["rule"], payload["severity"]
    return AlertRow(str(payload.get("ts", ""))[:16].replace("T", " "), RULE_NAMES.get(rule, rule),
                    SEVERITY_NAMES.get(severity, severity), payload["message"])  # fmt: skip


def latest_orders(orders: list[Order]) -> list[Order]:
    """Each order once, as its last change left it, in the order they were made."""
    latest: dict[str, Order] = {}
    for order in orders:
        latest[order.alert_id] = order
    return list(latest.values())


def order_row(order: Order) -> OrderRow:
    last = order.last
    return OrderRow(order.firm_name, order.alert_id, RULE_NAMES.get(order.rule, order.rule), order.from_day,
                    order.until, STATE_NAMES.get(order.state, order.state),
                    last.at[:16].replace("T", " ") if last else "", last.by if last else "")  # fmt: skip


def standby_kwh(engine: Engine, firm: Firm) -> float:
    return firm.standby_kwh if firm.standby_kwh is not None else engine.policy.township.standby_kwh


def phase_report(engine: Engine, data: Collected, phase: Phase) -> PhaseReport:
    """The report of `phase` as the engine and the collected data stand."""
    days = covered(engine, phase.start, phase.end)
    dailies = [daily_report(engine, data, d) for d in days]
    iso = {d.isoformat() for d in days}
    alerts = [a for a in data.alerts if alert_day(a) in iso]
    orders = [o for o in latest_orders(data.orders) if phase.start.isoformat() <= o.from_day <= phase.end.isoformat()]
    rows = tuple(_day_row(r, data, orders) for r in dailies)
    capped = [r for r in rows if r.cap_kwh is not None]
    cap = sum(r.cap_kwh for r in capped if r.cap_kwh is not None) if capped else None
    capped_use = sum(r.consumed_kwh for r in capped)
    consumed = sum(r.consumed_kwh for r in rows)
    meters, share = _meters(dailies)
    states = Counter(o.state for o in orders)
    return PhaseReport(
        township=engine.policy.township.name,
        township_id=engine.policy.township.id,
        name=phase.name,
        start=phase.start,
        end=phase.end,
        first=days[0] if days else None,
        last=days[-1] if days else None,
        phase_days=(phase.end - phase.start).days + 1,
        complete=bool(rows) and rows[-1].day == phase.end and rows[-1].complete,
        as_of=as_of(engine),
        days=rows,
        consumed_kwh=consumed,
        cap_kwh=cap,
        capped_days=len(capped),
        cap_pct=100 * capped_use / cap if cap else None,
        margin_kwh=cap - capped_use if cap is not None else None,
        over_days=tuple(r.day for r in capped if r.margin_kwh is not None and r.margin_kwh < 0),
        peak_day=max(rows, key=lambda r: r.consumed_kwh) if rows else None,
        mean_kwh=consumed / len(rows) if rows else None,
        kinds=kind_rows(engine, days, consumed),
        firms=tuple(_firm_total(engine, f, days, alerts) for f in engine.policy.firms),
        orders=tuple(order_row(o) for o in orders),
        orders_by_state=tuple((STATE_NAMES[s], states[s]) for s in STATE_NAMES if states[s]),
        breaches=tuple(dated(a) for a in alerts if a["rule"] == "cutoff_breach"),
        escalations=tuple(dated(a) for a in alerts if a["rule"] == "escalation"),
        visits=sum(len(r.visits) for r in dailies),
        talks=sum(len(r.talks) for r in dailies),
        by_rule=rule_rows(alerts),
        alerts_total=len(alerts),
        meters=meters,
        received_share=share,
        offline=sum(len(r.offline) for r in dailies),
        anomalies=sum(len(r.anomalies) for r in dailies),
    )


def _day_row(r: DailyReport, data: Collected, orders: list[Order]) -> DayRow:
    day = r.day.isoformat()
    return DayRow(
        day=r.day,
        weekday=WEEKDAYS[r.day.weekday()],
        readings=any(d == r.day for (_m, d) in data.received),
        complete=r.complete,
        as_of=r.as_of,
        running=r.schedule["运行"],
        consumed_kwh=r.consumed_kwh,
        cap_kwh=r.cap_kwh,
        cap_pct=r.cap_pct,
        margin_kwh=r.margin_kwh,
        peak_quarter_kwh=r.peak_quarter_kwh,
        peak_quarter_at=r.peak_quarter_at,
        alerts=r.alerts_total,
        violations=sum(row.counts[2] + row.counts[3] for row in r.by_rule if row.rule != "escalation"),
        orders_made=sum(1 for o in orders if o.from_day == day),
        breaches=len(r.breaches),
        visits=len(r.visits),
        received_share=r.received_share,
    )


def _firm_total(engine: Engine, firm: Firm, days: list[dt.date], alerts: list[dict[str, Any]]) -> FirmTotal:
    plan, ledger = engine.plan, engine.ledger
    standby = standby_kwh(engine, firm)
    used = {d: ledger.firm_day_wh(firm.id, d) / 1000 for d in days}
    cut = engine.orders.get(firm.id)
    off = [d for d in days if plan.group_off(firm, d) or plan.rest_day(firm, d)]
    runs = [d for d in days if d not in off and not (cut is not None and cut.stands(d) and cut.from_day < str(d))]
    limit = firm.daily_limit_kwh
    months = []
    if firm.kind == "general":
        for year, month in dict.fromkeys((d.year, d.month) for d in days if d in plan.control):
            quota = float(engine.rules.month_quota(firm, year, month)[0])
            month_used = ledger.firm_month_wh(firm.id, (year, month)) / 1000
            months.append(MonthUse(f"{year:04d}-{month:02d}", month_used, quota, 100 * month_used / quota if quota
                                   else 0.0))  # fmt: skip
    own = [a for a in alerts if a.get("firm") == firm.id]
    peak = max(days, key=lambda d: used[d]) if days else None
    return FirmTotal(
        firm=firm.id,
        name=firm.name,
        kind=KIND_NAMES[firm.kind],
        kwh=sum(used.values()),
        peak_kwh=used[peak] if peak else 0.0,
        peak_day=peak,
        run_days=len(runs),
        off_days=len(off),
        off_over=sum(1 for d in off if used[d] > standby),
        standby_kwh=standby,
        daily_limit_kwh=limit,
        days_over_limit=sum(1 for d in days if used[d] > limit) if limit is not None else None,
        months=tuple(months),
        alerts=len(own),
        violations=sum(1 for a in own if a["severity"] in ("violation", "breach") and a["rule"] != "escalation"),
        order_state=STATE_NAMES.get(cut.state, cut.state) if cut is not None else "无",
    )


def _meters(dailies: list[DailyReport]) -> tuple[tuple[MeterRow, ...], float | None]:
    """Each meter's readings received and expected, summed over the days; the share of all expected received."""
    got: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    owners: dict[str, str] = {}
    for r in dailies:
        for m in r.meters:
            owners[m.meter] = m.owner
            if m.expected:
                got[m.meter] += min(m.received, m.expected)
                expected[m.meter] += m.expected
    rows = tuple(MeterRow(m, owner, got[m], expected[m] or None, 100 * got[m] / expected[m] if expected[m] else None)
                 for m, owner in owners.items())  # fmt: skip
    total = sum(expected.values())
    return rows, 100 * sum(got.values()) / total if total else None

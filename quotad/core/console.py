"""What the console's pages show (SPEC "The console"), as plain data computed from the engine at a moment: pure,
so that the pages, the tests and the benchmark agree on every figure. The web shell (`quotad.web`) renders it.

- `today`: the township's day against its cap: the cumulative curve by 15-minute interval, the cap, the
  projection (the trailing hour's rate to the day's end, as the projection rule counts it), the 15-minute load,
  today's and tomorrow's rota.
- `firm_rows`: each firm's state and its use against its limit (the day's for a firm with a daily limit, the
  month's for a general firm under a quota), sorted by risk: a firm under an order first, then by how near it is
  to its limit.
- `firm_days`: a firm's days of a month against its limit (its curve).
- `ROLES`, `allowed`, `order_actions`: who may do what (viewer < inspector < operator).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from quotad.core.alerts import alert_id, kwh
from quotad.core.engine import Engine
from quotad.core.orders import ACTIONS, OPEN
from quotad.core.policy import Firm
from quotad.core.windows import HOUR_US
from quotad.schedule.calendar import Micros

__all__ = [
    "ACTION_ROLE",
    "FIRM_STATES",
    "KIND_NAMES",
    "ROLES",
    "ROLE_NAMES",
    "DayRota",
    "FirmDay",
    "FirmRow",
    "Today",
    "allowed",
    "firm_days",
    "firm_rows",
    "order_actions",
    "rota",
    "today",
]

QUARTER_US: Final = 15 * 60 * 1_000_000
KIND_NAMES: Final = {"large": "大型企业", "general": "一般企业", "workshop": "作坊"}
# a firm's state on the console, most urgent first
FIRM_STATES: Final = {
    "pending": "停电令待核实",
    "cutoff": "停电令",
    "warning": "预警",
    "notice": "提醒",
    "ok": "正常",
}
ROLES: Final = ("viewer", "inspector", "operator")
ROLE_NAMES: Final = {"viewer": "领导（只读）", "inspector": "督查", "operator": "操作员"}
# the least role each action needs (SPEC: inspectors record visits and confirm or dismiss pending orders; operators
# also issue, mark notified/executed, lift; where SPEC is silent, a talk is recorded by an operator)
ACTION_ROLE: Final = {
    "confirm": "inspector",
    "dismiss": "inspector",
    "visit": "inspector",
    "issue": "operator",
    "notified": "operator",
    "executed": "operator",
    "lift": "operator",
    "talk": "operator",
}


def allowed(role: str, action: str) -> bool:
    """Whether `role` may take `action` (a key of ACTION_ROLE); an unknown role or action may do nothing."""
    need = ACTION_ROLE.get(action)
    return need is not None and role in ROLES and ROLES.index(role) >= ROLES.index(need)


def order_actions(state: str, role: str) -> list[str]:
    """The changes an order in `state` may take that `role` may give, in ACTIONS' order."""
    return [a for a, (states, _to) in ACTIONS.items() if state in states and allowed(role, a)]


@dataclass(frozen=True, slots=True)
class DayRota:
    day: dt.date
    in_control: bool
    phase: str | None
    cap_kwh: float | None
    running: tuple[str, ...]  # group names
    off: tuple[str, ...]  # group names
    exempt_running: tuple[str, ...]  # firm names: of an off group, running under their limit
    resting: tuple[str, ...]  # workshop names
    cut_off: tuple[str, ...]  # firm names
    residents_hours: str | None


@dataclass(frozen=True, slots=True)
class Today:
    day: dt.date
    updated: str  # local ISO time of the engine's now
    consumed_kwh: float
    cap_kwh: float | None  # None outside the capped days
    projected_kwh: float | None
    share: float | None  # consumed / cap
    curve: tuple[tuple[int, float], ...]  # (Unix seconds at a quarter's end, or now; cumulative kWh)
    projection: tuple[tuple[int, float], ...]  # (now, consumed), (the day's end, projected)
    load: tuple[tuple[int, float], ...]  # (Unix seconds at a quarter's start, mean kW over it)
    load_cap_kw: float | None
    day_start: int  # Unix seconds
    day_end: int
    states: dict[str, int]  # firms by state (keys of FIRM_STATES)
    orders: dict[str, int]  # open orders by state
    rota: DayRota
    tomorrow: DayRota


@dataclass(frozen=True, slots=True)
class FirmRow:
    id: str
    name: str
    kind: str
    group: str | None
    state: str  # a key of FIRM_STATES
    order_state: str | None  # the state of its standing order
    allowed_today: bool
    reason: str | None  # why it may not run today
    used_kwh: float  # the day's use, or the month's for a general firm under a quota
    limit_kwh: float | None
    period: str  # "day" or "month": what used_kwh and limit_kwh count
    share: float | None  # used / limit

    @property
    def risk(self) -> tuple[int, float, str]:
        """Sorts the riskiest first: the state's rank, then the share of the limit used (higher first)."""
        return (list(FIRM_STATES).index(self.state), -(self.share or 0.0), self.id)


@dataclass(frozen=True, slots=True)
class FirmDay:
    day: dt.date
    used_kwh: float
    limit_kwh: float | None
    allowed: bool  # whether the rota let it run


def _s(t: Micros) -> int:
    return t // 1_000_000


def rota(engine: Engine, day: dt.date) -> DayRota:
    policy = engine.policy
    groups = {g.id: g.name for g in policy.groups}
    firms = {f.id: f.name for f in policy.firms}
    s = engine.plan.day(day, engine.cut_off(day))
    return DayRota(
        day=day,
        in_control=s.in_control,
        phase=s.phase,
        cap_kwh=s.cap_kwh,
        running=tuple(groups.get(g, g) for g in s.running_groups),
        off=tuple(groups.get(g, g) for g in s.off_groups),
        exempt_running=tuple(firms.get(f, f) for f in s.exempt_running),
        resting=tuple(firms.get(f, f) for f in s.resting_workshops),
        cut_off=tuple(firms.get(f, f) for f in s.cut_off_firms),
        residents_hours=s.residents_hours,
    )


def today(engine: Engine, now: Micros, rows: list[FirmRow] | None = None) -> Today:
    """The township's day at `now` (the engine's event time: `quotad.core.views.event_now`)."""
    cal = engine.calendar
    day = cal.day_of(now)
    lo, hi = cal.bounds(day)
    consumed = engine.ledger.township_day_wh(day)
    capped = engine.plan.control.capped(day)
    cap = engine.plan.control.cap_kwh(day) if capped else None
    seen = min(now, engine.now) if engine.now is not None else now
    rate = engine.trailing.township_wh(seen)  # Wh in the trailing hour: the projection's rate
    projected = consumed + rate * max(0, hi - now) / HOUR_US
    curve: list[tuple[int, float]] = []
    load: list[tuple[int, float]] = []
    total = 0
    for start in sorted(k for k in engine.load.wh if lo <= k < hi and k < now):
        wh = engine.load.wh[start]
        total += wh
        load.append((_s(start), round(wh * 4 / 1000, 1)))
        curve.append((_s(min(start + QUARTER_US, now)), kwh(total)))
    if curve and curve[-1][0] < _s(now):
        curve.append((_s(now), kwh(consumed)))  # the ledger's figure is the day's: the curve ends on it
    elif curve:
        curve[-1] = (curve[-1][0], kwh(consumed))
    rows = firm_rows(engine, now) if rows is None else rows
    states = dict.fromkeys(FIRM_STATES, 0)
    for row in rows:
        states[row.state] += 1
    orders: dict[str, int] = {}
    for order in engine.orders.values():
        if order.stands(day):
            orders[order.state] = orders.get(order.state, 0) + 1
    lcap = engine.policy.township.load_cap_kw
    return Today(
        day=day,
        updated=cal.local(now).isoformat(timespec="seconds"),
        consumed_kwh=kwh(consumed),
        cap_kwh=cap,
        projected_kwh=kwh(projected) if capped else None,
        share=consumed / 1000 / cap if cap else None,
        curve=tuple(curve),
        projection=((_s(now), kwh(consumed)), (_s(hi), kwh(projected))) if capped and now < hi else (),
        load=tuple(load),
        load_cap_kw=float(lcap) if lcap is not None else None,
        day_start=_s(lo),
        day_end=_s(hi),
        states=states,
        orders=orders,
        rota=rota(engine, day),
        tomorrow=rota(engine, day + dt.timedelta(days=1)),
    )


def firm_rows(engine: Engine, now: Micros) -> list[FirmRow]:
    """Every firm at `now`, the riskiest first."""
    day = engine.calendar.day_of(now)
    cut = engine.cut_off(day)
    rows = [_row(engine, firm, day, cut) for firm in engine.policy.firms]
    rows.sort(key=lambda r: r.risk)
    return rows


def _row(engine: Engine, firm: Firm, day: dt.date, cut: set[str]) -> FirmRow:
    plan, town = engine.plan, engine.policy.township
    order = engine.orders.get(firm.id)
    order_state = order.state if order is not None and order.stands(day) else None
    reason = None
    if firm.id in cut:
        reason = f"一停到底：停止供电至 {order.until}" if order is not None else "一停到底"
    elif plan.group_off(firm, day):
        reason = "错时供电：本组今日停电"
    elif plan.rest_day(firm, day):
        reason = "申报休息日"
    used, limit, period = engine.ledger.firm_day_wh(firm.id, day), firm.daily_limit_kwh, "day"
    if limit is None and firm.kind == "general" and day in plan.control:
        limit = float(engine.rules.month_quota(firm, day.year, day.month)[0])
        used, period = engine.ledger.firm_month_wh(firm.id, (day.year, day.month)), "month"
    if order_state == "pending":
        state = "pending"
    elif order_state is not None:
        state = "cutoff"
    else:
        state = "ok"
        for name, level in (("warning", town.warning_at), ("notice", town.notice_at)):
            daily = alert_id(town.id, firm.id, "firm_daily_limit", day.isoformat(), level, None)
            monthly = alert_id(town.id, firm.id, "monthly_quota", f"{day.year:04d}-{day.month:02d}", level, None)
            if daily in engine.raised or monthly in engine.raised:
                state = name
                break
    return FirmRow(
        id=firm.id,
        name=firm.name,
        kind=firm.kind,
        group=firm.group,
        state=state,
        order_state=order_state,
        allowed_today=reason is None,
        reason=reason,
        used_kwh=kwh(used),
        limit_kwh=round(limit, 3) if limit is not None else None,
        period=period,
        share=used / 1000 / limit if limit else None,
    )


def firm_days(engine: Engine, firm_id: str, now: Micros) -> list[FirmDay]:
    """The firm's days of `now`'s month up to `now`'s day: its use, its daily limit, whether it could run."""
    firm = engine.firms[firm_id]
    day = engine.calendar.day_of(now)
    cut = engine.cut_off(day)
    out = []
    for n in range(1, day.day + 1):
        d = day.replace(day=n)
        out.append(
            FirmDay(
                day=d,
                used_kwh=kwh(engine.ledger.firm_day_wh(firm_id, d)),
                limit_kwh=firm.daily_limit_kwh,
                allowed=engine.plan.allowed_to_run(firm, d, cut if d == day else ()),
            )
        )
    return out


def open_orders(engine: Engine, day: dt.date) -> list[str]:
    """The firms whose order stands on `day`, pending first, then by when it was issued."""
    standing = [o for o in engine.orders.values() if o.state in OPEN and o.stands(day)]
    standing.sort(key=lambda o: (o.state != "pending", o.issued, o.firm))
    return [o.firm for o in standing]

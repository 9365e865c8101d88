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
from quotad.core.orders import ACTIONS, OPEN, Order
from quotad.core.policy import Firm, Policy
from quotad.core.windows import HOUR_US
from quotad.schedule.calendar import Micros

__all__ = [
    "ACTION_ROLE",
    "FIRM_STATES",
    "KIND_NAMES",
    "ROLES",
    "ROLE_NAMES",
    "Board",
    "DayRota",
    "FirmDay",
    "FirmRow",
    "Scan",
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


def today(engine: Engine, now: Micros, states: dict[str, int] | None = None) -> Today:
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
    states = Board().scan(engine, now).states if states is None else states
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


@dataclass(frozen=True, slots=True)
class _Fixed:
    """What of a firm's row holds all day: its limit and what it counts, the rota's word, the ids of its levels."""

    firm: Firm
    limit: float | None
    month: tuple[int, int] | None  # the month its limit counts (a general firm under a quota), else None: the day
    rota_reason: str | None
    levels: tuple[tuple[str, str, str], ...]  # (state, daily limit's alert id, monthly quota's alert id)


class Board:
    """Every firm's row at a moment, cheaply enough for a page of 10,000 firms: what holds all day (limits, the
    rota, the ids of the alerts that set a firm's state) is derived once per day and policy; a page then costs a
    ledger lookup and two set lookups per firm."""

    def __init__(self) -> None:
        self._for: tuple[Policy, dt.date] | None = None
        self._fixed: list[_Fixed] = []

    def _day(self, engine: Engine, day: dt.date) -> list[_Fixed]:
        if self._for is None or self._for[0] is not engine.policy or self._for[1] != day:
            plan, town = engine.plan, engine.policy.township
            month = f"{day.year:04d}-{day.month:02d}"
            fixed = []
            for firm in engine.policy.firms:
                reason = None
                if plan.group_off(firm, day):
                    reason = "错时供电：本组今日停电"
                elif plan.rest_day(firm, day):
                    reason = "申报休息日"
                limit, counted = firm.daily_limit_kwh, None
                if limit is None and firm.kind == "general" and day in plan.control:
                    limit, counted = (
                        float(engine.rules.month_quota(firm, day.year, day.month)[0]),
                        (day.year, day.month),
                    )
                levels = tuple(
                    (name, alert_id(town.id, firm.id, "firm_daily_limit", day.isoformat(), level, None),
                     alert_id(town.id, firm.id, "monthly_quota", month, level, None))
                    for name, level in (("warning", town.warning_at), ("notice", town.notice_at))
                )  # fmt: skip
                fixed.append(_Fixed(firm, limit, counted, reason, levels))
            self._for, self._fixed = (engine.policy, day), fixed
        return self._fixed

    def scan(self, engine: Engine, now: Micros, only: str | None = None) -> Scan:
        """Every firm's state and use at `now` (or `only` this one's), the riskiest first; rows are made only for
        what a page shows."""
        day = engine.calendar.day_of(now)
        standing = {o.firm: o for o in engine.orders.values() if o.stands(day)}
        raised, ledger, ranks = engine.raised, engine.ledger, _RANKS
        day_totals, month_totals, opening = ledger.firm_day, ledger.firm_month, ledger.opening
        entries: list[_Entry] = []
        for fixed in self._day(engine, day):
            f = fixed.firm
            if only is not None and f.id != only:
                continue
            order = standing.get(f.id)
            if order is not None:
                state = "pending" if order.state == "pending" else "cutoff"
            else:
                state = "ok"
                for name, daily, monthly in fixed.levels:
                    if daily in raised or monthly in raised:
                        state = name
                        break
            if fixed.month is not None:
                total = month_totals.get((f.id, fixed.month))
                used = total.wh if total is not None else opening.get((f.id, fixed.month), 0)
            else:
                total = day_totals.get((f.id, day))
                used = total.wh if total is not None else 0
            share = used / 1000 / fixed.limit if fixed.limit else 0.0
            entries.append((ranks[state], -share, f.id, fixed, state, order, used))
        entries.sort(key=lambda e: e[:3])
        return Scan(entries)


_RANKS: Final = {name: n for n, name in enumerate(FIRM_STATES)}
_Entry = tuple[int, float, str, _Fixed, str, Order | None, int]  # (rank, -share, id, fixed, state, order, Wh)


class Scan:
    """The firms at a moment, the riskiest first (`Board.scan`): counts by state, and rows on demand."""

    def __init__(self, entries: list[_Entry]) -> None:
        self.entries = entries
        self.states = dict.fromkeys(FIRM_STATES, 0)
        for entry in entries:
            self.states[entry[4]] += 1

    def select(self, state: str = "", kind: str = "", text: str = "") -> list[_Entry]:
        """The entries of `state` and `kind` (all when empty) whose name or id holds `text`."""
        return [
            e for e in self.entries
            if (not state or e[4] == state) and (not kind or e[3].firm.kind == kind)
            and (not text or text in e[3].firm.name or text in e[2])
        ]  # fmt: skip

    def rows(self, entries: list[_Entry] | None = None) -> list[FirmRow]:
        return [_row(e) for e in (self.entries if entries is None else entries)]

    def row(self, firm: str) -> FirmRow | None:
        return next((_row(e) for e in self.entries if e[2] == firm), None)


def _row(entry: _Entry) -> FirmRow:
    _rank, _share, _id, fixed, state, order, used = entry
    f, limit = fixed.firm, fixed.limit
    reason = f"一停到底：停止供电至 {order.until}" if order is not None else fixed.rota_reason
    return FirmRow(
        id=f.id,
        name=f.name,
        kind=f.kind,
        group=f.group,
        state=state,
        order_state=order.state if order is not None else None,
        allowed_today=reason is None,
        reason=reason,
        used_kwh=kwh(used),
        limit_kwh=round(limit, 3) if limit is not None else None,
        period="month" if fixed.month else "day",
        share=used / 1000 / limit if limit else None,
    )


def firm_rows(engine: Engine, now: Micros) -> list[FirmRow]:
    """Every firm at `now`, the riskiest first (a `Board` of its own: hold one to page through many moments)."""
    return Board().scan(engine, now).rows()


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

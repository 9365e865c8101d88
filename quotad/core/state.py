"""The engine's state as a value: what carries over a restart and a reload, in plain data.

`EngineState` holds what readings made and nothing the policy gives: the meters' cursors and day records, the
totals (Wh; their thresholds are derived), the alert ids raised, the orders, the township's now, the offline
deadlines, the trailing hour and the 15-minute load intervals. `export` takes it from an engine (a copy: the
engine goes on changing, the value does not); `restore` puts it into a fresh engine built from any policy,
which derives its caches again. So a reload costs the size of the state, not a replay of the journal.

`as_dict`/`from_dict` give it a versioned JSON schema (`STATE_VERSION`); `from_dict` refuses a version it does
not know with `StateVersionError`, and the shell then rebuilds the engine from the journal. The trailing hour
(600,000 pieces for 10,000 meters reporting every minute) is kept as columns of little-endian 64-bit integers,
zlib-compressed, written in hex: written and read at the speed of memory, where a JSON list of 3 million numbers
took a second.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import zlib
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from dataclasses import field as dataclass_field
from typing import TYPE_CHECKING, Any, Final

from quotad.core.enforcement import Escalated, Talk
from quotad.core.errors import QuotadError
from quotad.core.ledger import DayRecord, Month, Total
from quotad.core.orders import Change, Order
from quotad.core.windows import Piece
from quotad.schedule.calendar import Micros

if TYPE_CHECKING:
    from quotad.core.engine import Engine

__all__ = [
    "STATE_VERSION",
    "EngineState",
    "MeterState",
    "StateVersionError",
    "export",
    "order_from_json",
    "order_to_json",
    "restore",
]

STATE_VERSION: Final = 1
_NEVER: Micros = -1  # a deadline entry of a meter that never reported (the engine's)

# A meter's day: (day, Wh counted into it, first counter's time and Wh, last counter's time and Wh).
DayState = tuple[dt.date, int, Micros | None, int, Micros | None, int]
_METER_FIELDS: Final = (
    "last_t", "last_wh", "last_counter", "first_wh", "counted_wh", "excluded_wh", "multiplier", "offline_alerted",
    "days",
)  # fmt: skip


class StateVersionError(QuotadError):
    """A saved state of a schema this quotad does not read (written by a newer or an unknown one)."""


@dataclass(frozen=True, slots=True)
class MeterState:
    last_t: Micros | None
    last_wh: int
    last_counter: float
    first_wh: int | None
    counted_wh: int
    excluded_wh: int
    multiplier: float  # the CT x PT ratio in force (journaled changes included), not the policy's
    offline_alerted: bool
    days: tuple[DayState, ...]


@dataclass(frozen=True, slots=True)
class EngineState:
    now: Micros | None
    first_seen: Micros | None
    meters: Mapping[str, MeterState]
    firm_day: Mapping[tuple[str, dt.date], int]
    firm_month: Mapping[tuple[str, Month], int]
    township_day: Mapping[dt.date, int]
    raised: frozenset[str]
    orders: Mapping[str, Order]
    deadlines: tuple[tuple[Micros, str, Micros], ...]  # ascending (a heap)
    trailing: tuple[Piece, ...]  # in arrival order
    trailing_township_wh: int  # the township pieces' energy (derived: the sum, kept to spare a loop over them)
    load: Mapping[Micros, int]  # Wh per 15-minute interval, by its start
    load_newest: Micros
    escalations: Mapping[str, Escalated] = dataclass_field(default_factory=dict)  # by firm

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (every value a string, number, bool, null, list or object)."""
        trailing = self.trailing
        firms = [p[3] for p in trailing]
        table = list(dict.fromkeys(firms))  # each firm once; pieces refer to it by number
        return {
            "version": STATE_VERSION,
            "now": self.now,
            "first_seen": self.first_seen,
            "meter_fields": list(_METER_FIELDS),
            "meters": {meter: _meter_row(m) for meter, m in self.meters.items()},
            "firm_day": [[firm, day.isoformat(), wh] for (firm, day), wh in self.firm_day.items()],
            "firm_month": [[firm, year, month, wh] for (firm, (year, month)), wh in self.firm_month.items()],
            "township_day": [[day.isoformat(), wh] for day, wh in self.township_day.items()],
            "raised": list(self.raised),
            "orders": [order_to_json(order) for order in self.orders.values()],
            "deadlines": [list(entry) for entry in self.deadlines],
            "trailing": {  # the pieces' columns, in arrival order
                "t0": _column([p[0] for p in trailing]),
                "t1": _column([p[1] for p in trailing]),
                "wh": _column([p[2] for p in trailing]),
                "firms": table,
                "firm": _column(map({firm: n for n, firm in enumerate(table)}.__getitem__, firms)),
                "township": zlib.compress(bytes([p[4] for p in trailing]), 1).hex(),
            },
            "load": {"start": list(self.load), "wh": list(self.load.values()), "newest": self.load_newest},
            "escalations": {firm: asdict(e) for firm, e in self.escalations.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineState:
        """The state of `as_dict`'s form; StateVersionError for another version, KeyError/TypeError/ValueError for
        a damaged one."""
        version = data.get("version")
        if version != STATE_VERSION:
            msg = f"saved engine state has schema version {version!r}; this quotad reads version {STATE_VERSION}"
            raise StateVersionError(msg)
        if data["meter_fields"] != list(_METER_FIELDS):
            msg = f"saved engine state has meter fields {data['meter_fields']!r}"
            raise ValueError(msg)
        day = dt.date.fromisoformat
        trailing = data["trailing"]
        wh, township = _values(trailing["wh"]), zlib.decompress(bytes.fromhex(trailing["township"]))
        firms = map(trailing["firms"].__getitem__, _values(trailing["firm"]))
        load = data["load"]
        return cls(
            now=data["now"],
            first_seen=data["first_seen"],
            meters={meter: _meter_from_row(row) for meter, row in data["meters"].items()},
            firm_day={(firm, day(d)): wh for firm, d, wh in data["firm_day"]},
            firm_month={(firm, (year, month)): wh for firm, year, month, wh in data["firm_month"]},
            township_day={day(d): wh for d, wh in data["township_day"]},
            raised=frozenset(data["raised"]),
            orders={order.firm: order for order in map(order_from_json, data["orders"])},
            deadlines=tuple((deadline, meter, last) for deadline, meter, last in data["deadlines"]),
            trailing=tuple(
                zip(_values(trailing["t0"]), _values(trailing["t1"]), wh, firms, map(bool, township), strict=True)
            ),
            trailing_township_wh=sum(itertools.compress(wh, township)),
            load=dict(zip(load["start"], load["wh"], strict=True)),
            load_newest=load["newest"],
            escalations={  # (absent from a state saved before escalation was counted)
                firm: Escalated(e["count"], e["after"], e["since"], tuple(Talk(**t) for t in e["talks"]))
                for firm, e in data.get("escalations", {}).items()
            },
        )


_LITTLE: Final = array("H", [1]).tobytes() == b"\x01\x00"


def _column(values: Iterable[int]) -> str:
    """Integers as the hex of their little-endian 64-bit form, compressed."""
    column = array("q", values)
    if not _LITTLE:
        column.byteswap()
    return zlib.compress(column.tobytes(), 1).hex()


def _values(text: str) -> array[int]:
    column = array("q", zlib.decompress(bytes.fromhex(text)))
    if not _LITTLE:
        column.byteswap()
    return column


def _meter_row(m: MeterState) -> list[Any]:
    days = [
        [d.isoformat(), wh, first_t, first_wh, last_t, last_wh] for d, wh, first_t, first_wh, last_t, last_wh in m.days
    ]
    return [m.last_t, m.last_wh, m.last_counter, m.first_wh, m.counted_wh, m.excluded_wh, m.multiplier,
            m.offline_alerted, days]  # fmt: skip


def _meter_from_row(row: list[Any]) -> MeterState:
    last_t, last_wh, counter, first_wh, counted, excluded, multiplier, alerted, days = row
    day = dt.date.fromisoformat
    return MeterState(
        last_t, last_wh, float(counter), first_wh, counted, excluded, float(multiplier), bool(alerted),
        tuple((day(d), wh, ft, fw, lt, lw) for d, wh, ft, fw, lt, lw in days),
    )  # fmt: skip


def order_to_json(order: Order) -> dict[str, Any]:
    return asdict(order)


def order_from_json(data: Mapping[str, Any]) -> Order:
    """An order from `order_to_json`'s form, or from that of a quotad before orders had states (issued, or lifted
    with who, when and why)."""
    fields = dict(data)
    lifted = fields.pop("lifted", None)
    if "state" not in fields:  # the older form: issued, maybe lifted
        first = Change("issued", fields["issued"], "quotad", fields["alert_id"])
        then = (Change("lifted", lifted["at"], lifted["by"], lifted["reason"]),) if lifted else ()
        fields["history"] = (first, *then)
        fields["state"] = "lifted" if lifted else "issued"
        fields["breach_from"] = (dt.date.fromisoformat(fields["from_day"]) + dt.timedelta(days=1)).isoformat()
    else:
        fields["history"] = tuple(Change(**change) for change in fields["history"])
    return Order(**fields)


def export(engine: Engine) -> EngineState:
    """`engine`'s state now, as a value that shares nothing mutable with it."""
    ledger = engine.ledger
    return EngineState(
        now=engine.now,
        first_seen=engine.first_seen,
        meters={
            m.id: MeterState(
                m.last_t,
                m.last_wh,
                m.last_counter,
                m.first_wh,
                m.counted_wh,
                m.excluded_wh,
                m.multiplier,
                m.offline_alerted,
                tuple((d, r.wh, r.first_t, r.first_wh, r.last_t, r.last_wh) for d, r in m.days.items()),
            )
            for m in ledger.meters.values()
        },
        firm_day={key: total.wh for key, total in ledger.firm_day.items()},
        firm_month={key: total.wh for key, total in ledger.firm_month.items()},
        township_day={key: total.wh for key, total in ledger.township_day.items()},
        raised=frozenset(engine.raised),
        orders=dict(engine.orders),
        deadlines=tuple(sorted(engine.deadlines)),
        trailing=engine.trailing.pieces(),
        trailing_township_wh=engine.trailing.township_wh_bound,
        load=dict(engine.load.wh),
        load_newest=engine.load.newest,
        escalations=dict(engine.escalations),
    )


def restore(engine: Engine, state: EngineState) -> None:
    """Put `state` into `engine`, freshly built from its policy (which may not be the one the state was taken
    under). A meter the policy no longer has is left out (its energy stays counted in the totals); a meter new to
    it starts unread, watched for silence from the state's now. Totals, raised ids and orders carry over whole,
    a removed firm's included: what was counted, sent or ordered is not undone by an edit. The derived caches
    (thresholds, projection windows, the meters' day at hand) are computed again as readings come."""
    ledger, calendar = engine.ledger, engine.calendar
    engine.now, engine.first_seen = state.now, state.first_seen
    engine.raised.update(state.raised)
    engine.orders.update(state.orders)
    engine.escalations.update(state.escalations)
    ledger.firm_day.update((key, Total(wh)) for key, wh in state.firm_day.items())
    ledger.firm_month.update((key, Total(wh)) for key, wh in state.firm_month.items())
    ledger.township_day.update((key, Total(wh)) for key, wh in state.township_day.items())
    for meter_id, saved in state.meters.items():
        m = ledger.meters.get(meter_id)
        if m is None:
            continue
        m.last_t, m.last_wh, m.last_counter, m.first_wh = (
            saved.last_t,
            saved.last_wh,
            saved.last_counter,
            saved.first_wh,
        )
        m.counted_wh, m.excluded_wh, m.offline_alerted = saved.counted_wh, saved.excluded_wh, saved.offline_alerted
        m.multiplier, m.factor = saved.multiplier, saved.multiplier * 1000.0
        m.days = {d: DayRecord(wh, ft, fw, lt, lw) for d, wh, ft, fw, lt, lw in saved.days}
        if m.last_t is not None:  # the day at hand: that of its newest counter, whose record and totals it holds
            day = calendar.day_of(m.last_t)
            m.day, m.record = day, m.days.get(day)
            if m.record is None:
                m.record = m.days[day] = DayRecord()
            firm = m.firm
            m.firm_day = ledger.firm_day_total(firm, day) if firm is not None else None
            m.firm_month = ledger.firm_month_total(firm, day) if firm is not None else None
            m.township_day = ledger.township_day_total(day) if m.township else None
    deadlines = [entry for entry in state.deadlines if entry[1] in ledger.meters]
    if state.first_seen is not None:
        start = state.now if state.now is not None else state.first_seen
        deadlines += [(start + m.offline_us, m.id, _NEVER) for m in ledger.meters.values() if m.id not in state.meters]
    heapq.heapify(deadlines)
    engine.deadlines[:] = deadlines
    firms = engine.firms
    trailing = state.trailing
    if any(firm not in firms for firm, _day in state.firm_day):  # (a piece's firm has a day's total)
        trailing = tuple((t0, t1, wh, firm if firm in firms else None, tw) for t0, t1, wh, firm, tw in trailing)
    engine.trailing.restore(trailing, state.trailing_township_wh)  # a removed firm's energy stays the township's;
    # it is no longer a firm to shed
    engine.load.restore(state.load, state.load_newest)

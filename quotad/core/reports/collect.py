"""What a report needs that the engine does not keep, gathered as readings and commands go by.

The engine keeps totals, not their course through the day; the register (alerts, orders, visits, lists) is in the
journal's events. A `Collector` is fed the same stream in both places a report is made from — `quotad report
--replay` (the readings file and `--commands`, through a fresh engine, as `quotad replay` does) and the daemon's
journal (its events replayed in order, as a restart does) — so the two give the same report of the same readings:

- `before(engine, t)`, before each reading is ingested: the township's cumulative use at each quarter hour (:00,
  :15, :30, :45) that the reading's time has passed (its value then: every reading up to the boundary counted) and
  the projection made at that moment (today's use + the trailing hour's rate x the hours left, from 02:00, as the
  `township_cap_projection` rule makes it). With `lists`, also today's 07:00 inspection list, as the journal
  computes it (the journal's own lists are given by `inspection_list` instead).
- `reading(engine, meter, t, previous)`, after: one reading received for the meter's day, when the engine accepted
  it (its counter moved on: `previous` is the meter's last reading time before), and the interval since its last.
- `alerts`, `order`, `visit`, `inspection_list`: the register, as raised and journaled.
- `finish(engine)`: the quarter hours passed up to the township's now (the last readings' own time included).

Curves are in kWh by minute of the local day (0-1440); the numbers are the engine's Wh / 1000, unrounded.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from quotad.core.engine import Engine
from quotad.core.inspections import inspection_list, list_payload
from quotad.core.orders import Order
from quotad.core.windows import HOUR_US
from quotad.schedule.calendar import MICROS_PER_S, Calendar, Micros, to_micros

__all__ = ["QUARTER_US", "Collected", "Collector"]

QUARTER_US: Micros = 15 * 60 * MICROS_PER_S
_PROJECTION_FROM_MIN = 120  # the projection starts at 02:00 (SPEC "Precise points")


@dataclass
class Collected:
    """What was gathered; plain data (dates, ints, floats, dicts as journaled)."""

    curve: dict[dt.date, list[tuple[float, float]]] = field(default_factory=dict)  # (minute, cumulative kWh)
    projection: dict[dt.date, list[tuple[float, float]]] = field(default_factory=dict)  # (minute, projected kWh)
    received: Counter[tuple[str, dt.date]] = field(default_factory=Counter)  # readings accepted, by meter and day
    intervals: dict[dt.date, Counter[int]] = field(default_factory=dict)  # seconds between a meter's readings
    alerts: list[dict[str, Any]] = field(default_factory=list)  # payloads, in the order raised
    orders: list[Order] = field(default_factory=list)  # each order as each change left it, in order
    visits: list[dict[str, Any]] = field(default_factory=list)  # inspection visits as journaled
    lists: dict[dt.date, dict[str, Any]] = field(default_factory=dict)  # the 07:00 inspection lists, by day


class Collector:
    def __init__(self, engine: Engine, *, lists: bool) -> None:
        self.data = Collected()
        self.calendar = Calendar(engine.calendar.tz)  # its own: the engine's caches its last day for its hot path
        self._lists = lists
        self._next_list: Micros | None = None
        self._next: Micros | None = None  # the next quarter hour to sample

    def before(self, engine: Engine, t: Micros) -> None:
        if self._lists and (self._next_list is None or t >= self._next_list):
            self._list_due(engine, t)
        if self._next is None:
            self._next = -(-t // QUARTER_US) * QUARTER_US  # the first quarter hour at or after the first reading
        if t > self._next:
            self._sample(engine, t - 1)

    def reading(self, engine: Engine, meter: str, t: Micros, previous: Micros | None) -> None:
        if engine.ledger.meters[meter].last_t != t or previous == t:
            return  # not accepted (a duplicate, an older reading, a bound refused it)
        day = self.calendar.day_of(t)
        self.data.received[(meter, day)] += 1
        if previous is not None and previous < t:
            self.data.intervals.setdefault(day, Counter())[round((t - previous) / MICROS_PER_S)] += 1

    def alerts(self, payloads: list[dict[str, Any]]) -> None:
        self.data.alerts += payloads

    def order(self, order: Order) -> None:
        self.data.orders.append(order)

    def visit(self, visit: dict[str, Any]) -> None:
        self.data.visits.append(visit)

    def inspection_list(self, payload: dict[str, Any]) -> None:
        self.data.lists[dt.date.fromisoformat(payload["day"])] = payload

    def finish(self, engine: Engine) -> Collected:
        if engine.now is not None and self._next is not None:
            self._sample(engine, engine.now)
        return self.data

    def _sample(self, engine: Engine, upto: Micros) -> None:
        """The quarter hours at or before `upto`, each with the township's cumulative use of its day as it stands."""
        assert self._next is not None
        cal, ledger = self.calendar, engine.ledger
        while self._next <= upto:
            b = self._next
            day = cal.day_of(b - 1)  # 24:00 closes the day before
            lo, hi = cal.bounds(day)
            minute = (b - lo) / (60 * MICROS_PER_S)
            consumed = ledger.township_day_wh(day)
            self.data.curve.setdefault(day, []).append((minute, consumed / 1000))
            if minute >= _PROJECTION_FROM_MIN and b < hi and engine.now is not None:
                rate = engine.trailing.township_wh(engine.now)
                projected = consumed + rate * (hi - b) / HOUR_US
                self.data.projection.setdefault(day, []).append((minute, projected / 1000))
            self._next = b + QUARTER_US

    def _list_due(self, engine: Engine, t: Micros) -> None:
        """The 07:00 inspection list, computed before the first reading at or after 07:00 is counted (as the
        journal does: `quotad.shell.journal.Journal._inspection_list_due`)."""
        cal = self.calendar
        day = cal.day_of(t)
        seven = to_micros(dt.datetime.combine(day, dt.time(7), cal.tz))
        if t < seven:
            self._next_list = seven
            return
        if day not in self.data.lists:
            entries = inspection_list(engine, day, engine.policy.enforcement.inspection_sample)
            self.data.lists[day] = list_payload(engine.policy.township.id, day, entries, computed=cal.isoformat(t))
        self._next_list = to_micros(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(7), cal.tz))

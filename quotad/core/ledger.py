"""The energy ledger: meters' cumulative counters to consumption per meter, firm and township, per day and month.

Energy is kept in integer watt-hours (Wh), so sums are exact and a split conserves energy to the Wh:
a counter is multiplied by its meter's `multiplier` and rounded to the Wh once, on entry. An interval
crossing local midnight is split in proportion to time with floor division on the cumulative share, so
the parts are never negative and add up to the whole. Counter decreases and jumps past `max_kw` are
anomalies: never counted, never negative; the new value becomes the baseline.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, NamedTuple, TypeVar

from quotad.core.errors import ReadingError
from quotad.core.policy import Policy
from quotad.core.readings import MAX_COUNTER_KWH, MAX_POWER_KW, Reading, out_of_bounds
from quotad.schedule.calendar import Calendar, Micros
from quotad.schedule.control import ControlPeriod

__all__ = ["Anomaly", "Applied", "DayRecord", "Ledger", "MeterLedger", "Total", "split"]

Month = tuple[int, int]
K = TypeVar("K")
_KEEP_METER_DAYS = 8  # per-meter day records (evidence) are kept this many days behind the newest


@dataclass(slots=True)
class Total:
    """A running total of a firm's day or month, or of the township's day (Wh).

    `mark` is derived, not state: the threshold below which no rule can fire on this total, which the engine's
    threshold cache (`quotad.core.rules.thresholds`) derives from the rules' steps after each evaluation (0:
    evaluate at the next reading). The ledger only keeps it beside the total, so that the common reading compares a
    number it already holds instead of looking a threshold up."""

    wh: int = 0
    mark: float = field(default=0.0, compare=False)


@dataclass(slots=True)
class DayRecord:
    """A meter's day: energy counted into it, and the first and last counters read in it (Wh)."""

    wh: int = 0
    first_t: Micros | None = None
    first_wh: int = 0
    last_t: Micros | None = None
    last_wh: int = 0


@dataclass(slots=True)
class MeterLedger:
    id: str
    firm: str | None
    township: bool  # counts toward the township's total
    multiplier: float  # the CT x PT ratio in force
    factor: float  # multiplier x 1000: counter kWh -> Wh
    max_kw: float | None
    offline_us: Micros
    last_t: Micros | None = None
    last_wh: int = 0
    last_counter: float = 0.0  # the meter's own last reading (kWh, before the multiplier), for anomaly messages
    first_wh: int | None = None
    counted_wh: int = 0
    excluded_wh: int = 0
    offline_alerted: bool = False
    days: dict[dt.date, DayRecord] = field(default_factory=dict)
    # Derived, set with each day's first counter (`Ledger._note_counter`): the day of the newest counter, its
    # record, and the totals a reading of that day feeds (None: no firm; a day outside the control period for
    # the month; not a township meter). A reading of the same day, the common case, finds them here.
    day: dt.date | None = None
    record: DayRecord | None = None
    firm_day: Total | None = None
    firm_month: Total | None = None
    township_day: Total | None = None


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: Literal["decrease", "jump"]
    previous_wh: int
    new_wh: int
    kw: float  # implied mean power of the interval (negative for a decrease)
    previous_counter: float  # the meter's own readings (kWh before its multiplier), as its display shows them
    new_counter: float
    multiplier: float


class Applied(NamedTuple):
    """What one accepted reading did to the ledger."""

    meter: MeterLedger
    t0: Micros | None  # start of the counted interval (None: first reading, or an anomaly)
    t1: Micros
    wh: int  # energy counted (0 for a first reading or an anomaly)
    days: tuple[tuple[dt.date, int], ...]  # that energy per local day, oldest first
    anomaly: Anomaly | None


# The same Applied objects as Applied(...), built without NamedTuple's Python-level __new__ (hot path).
_applied: Callable[[tuple[MeterLedger, Micros, Micros, int, tuple[tuple[dt.date, int], ...], None]], Applied] = partial(
    tuple.__new__,
    Applied,
)


def split(total: int, t0: Micros, t1: Micros, bounds: list[Micros]) -> list[int]:
    """`total` over (t0, t1] cut at `bounds` (strictly inside, ascending), proportional to time, exactly."""
    parts, done, span = [], 0, t1 - t0
    for b in bounds:
        cum = total * (b - t0) // span
        parts.append(cum - done)
        done = cum
    parts.append(total - done)
    return parts


class Ledger:
    def __init__(self, policy: Policy, calendar: Calendar) -> None:
        self.calendar = calendar
        self.control = ControlPeriod(policy)
        feeders = set(policy.township.feeder_meters)
        self.meters = {
            m.id: MeterLedger(
                id=m.id,
                firm=m.firm,
                township=(m.id in feeders) if feeders else m.firm is not None,
                multiplier=m.multiplier,
                factor=m.multiplier * 1000.0,
                max_kw=m.max_kw,
                offline_us=round(m.offline_after_s * 1_000_000),
            )
            for m in policy.meters
        }
        self.firm_day: dict[tuple[str, dt.date], Total] = {}
        self.firm_month: dict[tuple[str, Month], Total] = {}  # control days only, from the month's opening
        # a general firm's month-to-date before quotad's first reading of the month (the policy's `opening`), Wh
        self.opening: dict[tuple[str, Month], int] = {
            (f.id, o.year_month): round(o.kwh * 1000) for f in policy.firms for o in f.opening
        }
        self.township_day: dict[dt.date, Total] = {}

    def meter(self, meter_id: str) -> MeterLedger:
        try:
            return self.meters[meter_id]
        except KeyError:
            msg = f"unknown meter {meter_id!r}"
            raise ReadingError(msg) from None

    def set_multiplier(self, meter_id: str, multiplier: float) -> None:
        """A new CT x PT ratio for a meter, from now on. Energy already counted stays as counted; the counter's
        next rise is multiplied by the new ratio (the baseline is rescaled, so the change itself counts nothing)."""
        m = self.meter(meter_id)
        factor = multiplier * 1000.0
        if m.last_t is not None:
            m.last_wh = round(m.last_wh * factor / m.factor)
        m.multiplier, m.factor = multiplier, factor

    def apply(self, reading: Reading) -> Applied | None:
        """Account one reading; None when it is not newer than the meter's last accepted one."""
        m = self.meters.get(reading.meter) or self.meter(reading.meter)
        t0, t1 = m.last_t, reading.t
        if t0 is not None and t1 <= t0:
            return None
        counter, power = reading.energy_kwh, reading.power_kw
        if not 0.0 <= counter <= MAX_COUNTER_KWH or (power is not None and not -MAX_POWER_KW <= power <= MAX_POWER_KW):
            raise ReadingError(out_of_bounds(counter, power) or "impossible values")
        wh = round(counter * m.factor)
        previous, previous_counter = m.last_wh, m.last_counter
        m.last_t, m.last_wh, m.last_counter = t1, wh, counter
        cal = self.calendar
        record = m.record
        if record is not None and m.day is cal.day and cal.lo <= t1 < cal.hi:
            record.last_t, record.last_wh = t1, wh  # the common case: a later counter of the meter's day at hand
        else:
            record = self._note_counter(m, t1, wh)
        if t0 is None:
            m.first_wh = wh
            return Applied(m, None, t1, 0, (), None)
        delta = wh - previous
        if delta < 0 or (m.max_kw is not None and delta * 3_600_000 > m.max_kw * (t1 - t0)):
            m.excluded_wh += delta
            kw = delta * 3_600_000 / (t1 - t0)  # Wh over microseconds -> kW
            kind: Literal["decrease", "jump"] = "decrease" if delta < 0 else "jump"
            anomaly = Anomaly(kind, previous, wh, kw, previous_counter, counter, m.multiplier)
            return Applied(m, None, t1, 0, (), anomaly)
        if cal.lo <= t0:  # the common case: inside t1's day, whose record and totals the meter holds
            m.counted_wh += delta
            record.wh += delta
            total = m.firm_day
            if total is not None:
                total.wh += delta
                total = m.firm_month
                if total is not None:
                    total.wh += delta
            total = m.township_day
            if total is not None:
                total.wh += delta
            return _applied((m, t0, t1, delta, ((cal.day, delta),), None))
        days = self._split_days(delta, t0, t1)
        self._add(m, days, delta)
        return _applied((m, t0, t1, delta, days, None))

    def _split_days(self, delta: int, t0: Micros, t1: Micros) -> tuple[tuple[dt.date, int], ...]:
        cal = self.calendar
        day, _lo, hi = cal.day_bounds_of(t0)
        if t1 <= hi:
            return ((day, delta),)
        days, bounds = [day], []
        while hi < t1:
            bounds.append(hi)
            day = day + dt.timedelta(days=1)
            hi = cal.day_start(day + dt.timedelta(days=1))
            days.append(day)
        return tuple(zip(days, split(delta, t0, t1, bounds), strict=True))

    def _add(self, m: MeterLedger, days: tuple[tuple[dt.date, int], ...], total: int) -> None:
        firm = m.firm
        m.counted_wh += total
        for day, wh in days:
            record = m.days.get(day)
            if record is None:
                record = m.days[day] = DayRecord()
            record.wh += wh
            if firm is not None:
                self.firm_day_total(firm, day).wh += wh
                month = self.firm_month_total(firm, day)
                if month is not None:
                    month.wh += wh
            if m.township:
                self.township_day_total(day).wh += wh

    def firm_day_total(self, firm: str, day: dt.date) -> Total:
        return _total(self.firm_day, (firm, day))

    def firm_month_total(self, firm: str, day: dt.date) -> Total | None:
        """The month's total of `firm` that `day` counts into; None for a day outside the control period."""
        control = self.control
        if not control.start <= day <= control.end:
            return None
        key = (firm, (day.year, day.month))
        return _total(self.firm_month, key, self.opening.get(key, 0))

    def township_day_total(self, day: dt.date) -> Total:
        return _total(self.township_day, day)

    def _note_counter(self, m: MeterLedger, t: Micros, wh: int) -> DayRecord:
        """Note the meter's newest counter, read at `t`, in its day's record (which it returns); the calendar and
        the meter then hold t's day."""
        cal = self.calendar
        day = cal.day if cal.lo <= t < cal.hi else cal.day_of(t)
        record = m.days.get(day)
        if record is None:
            record = m.days[day] = DayRecord()
            if len(m.days) > _KEEP_METER_DAYS:
                newest = max(m.days)
                for old in [d for d in m.days if (newest - d).days >= _KEEP_METER_DAYS]:
                    del m.days[old]
        if record.first_t is None or t < record.first_t:
            record.first_t, record.first_wh = t, wh
        if record.last_t is None or t > record.last_t:
            record.last_t, record.last_wh = t, wh
        # the meter's newest counter (the only kind noted): its day becomes the one at hand
        firm = m.firm
        m.day, m.record = day, record
        m.firm_day = self.firm_day_total(firm, day) if firm is not None else None
        m.firm_month = self.firm_month_total(firm, day) if firm is not None else None
        m.township_day = self.township_day_total(day) if m.township else None
        return record

    def firm_day_wh(self, firm: str, day: dt.date) -> int:
        return _wh(self.firm_day.get((firm, day)))

    def firm_month_wh(self, firm: str, month: Month) -> int:
        total = self.firm_month.get((firm, month))
        return total.wh if total is not None else self.opening.get((firm, month), 0)

    def township_day_wh(self, day: dt.date) -> int:
        return _wh(self.township_day.get(day))


def _total(totals: dict[K, Total], key: K, start: int = 0) -> Total:
    """The total under `key`, made (at `start` Wh: a month's opening, else 0) if there is none yet."""
    total = totals.get(key)
    if total is None:
        total = totals[key] = Total(start)
    return total


def _wh(total: Total | None) -> int:
    return total.wh if total is not None else 0

"""Township-local days and months on an integer time line.

Event time inside the core is integer microseconds since the Unix epoch (`Micros`), so interval
arithmetic is exact. A day is 00:00-24:00 local time: 23 or 25 hours long where daylight saving changes.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

__all__ = ["MICROS_PER_S", "Calendar", "Micros", "from_micros", "to_micros"]

Micros = int
MICROS_PER_S = 1_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US = dt.timedelta(microseconds=1)


def to_micros(moment: dt.datetime) -> Micros:
    """Exact microseconds since the epoch of an aware datetime."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        msg = f"naive datetime {moment.isoformat()}: a UTC offset is required"
        raise ValueError(msg)
    return (moment - _EPOCH) // _ONE_US


def from_micros(t: Micros, tz: dt.tzinfo) -> dt.datetime:
    return (_EPOCH + dt.timedelta(microseconds=t)).astimezone(tz)


class Calendar:
    """Local days of one timezone. `day`, `lo`, `hi` are the day last looked up and its bounds [lo, hi):
    most lookups hit it, and hot paths test `lo <= t < hi` themselves before calling `day_of`."""

    def __init__(self, tz: ZoneInfo | str) -> None:
        self.tz = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        self.lo: Micros = 0
        self.hi: Micros = 0
        self.day = dt.date(1970, 1, 1)

    def day_start(self, day: dt.date) -> Micros:
        """The instant local `day` begins (a midnight skipped by DST begins at the transition)."""
        return to_micros(dt.datetime.combine(day, dt.time(0), tzinfo=self.tz))

    def bounds(self, day: dt.date) -> tuple[Micros, Micros]:
        return self.day_start(day), self.day_start(day + dt.timedelta(days=1))

    def day_of(self, t: Micros) -> dt.date:
        if self.lo <= t < self.hi:
            return self.day
        day = from_micros(t, self.tz).date()
        lo, hi = self.bounds(day)
        if not lo <= t < hi:  # only where a zone's midnight is skipped or repeated oddly
            day = day - dt.timedelta(days=1) if t < lo else day + dt.timedelta(days=1)
            lo, hi = self.bounds(day)
        self.lo, self.hi, self.day = lo, hi, day
        return day

    def day_bounds_of(self, t: Micros) -> tuple[dt.date, Micros, Micros]:
        day = self.day_of(t)
        return day, self.lo, self.hi

    def local(self, t: Micros) -> dt.datetime:
        return from_micros(t, self.tz)

    def isoformat(self, t: Micros) -> str:
        """`2010-10-20T15:42:00+08:00` (microseconds only when there are some)."""
        return from_micros(t, self.tz).isoformat()

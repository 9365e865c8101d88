import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quotad.schedule.calendar import Calendar, from_micros, to_micros
from tests.conftest import at

HOUR = 3_600_000_000


@pytest.mark.parametrize(
    ("tz", "day", "hours"),
    [
        ("Asia/Shanghai", dt.date(2010, 10, 20), 24),
        ("Europe/Berlin", dt.date(2010, 3, 28), 23),  # spring forward
        ("Europe/Berlin", dt.date(2010, 10, 31), 25),  # fall back
        ("Europe/Berlin", dt.date(2010, 10, 30), 24),
        ("America/Santiago", dt.date(2010, 10, 10), 23),  # this zone skips 00:00 itself
    ],
)
def test_day_length(tz: str, day: dt.date, hours: int) -> None:
    lo, hi = Calendar(tz).bounds(day)
    assert hi - lo == hours * HOUR


@pytest.mark.parametrize(
    ("local", "day"),
    [
        ("2010-10-20 00:00:00", "2010-10-20"),
        ("2010-10-20 23:59:59", "2010-10-20"),
        ("2010-10-21 00:00:00", "2010-10-21"),
        ("2010-10-31 23:59:59", "2010-10-31"),
        ("2010-11-01 00:00:00", "2010-11-01"),
    ],
)
def test_day_of_at_midnight(local: str, day: str) -> None:
    assert Calendar("Asia/Shanghai").day_of(at(local)) == dt.date.fromisoformat(day)


def test_day_of_after_dst_change() -> None:
    cal = Calendar("Europe/Berlin")
    lo, hi = cal.bounds(dt.date(2010, 10, 31))
    assert cal.day_of(lo) == dt.date(2010, 10, 31)
    assert cal.day_of(hi - 1) == dt.date(2010, 10, 31)
    assert cal.day_of(hi) == dt.date(2010, 11, 1)
    assert cal.isoformat(lo + 3 * HOUR).endswith("+01:00")  # 02:00 CEST -> 02:00 CET: 3 h in
    assert cal.isoformat(lo + 2 * HOUR).endswith("+02:00")


def test_naive_datetime_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_micros(dt.datetime(2010, 10, 20))


@given(st.integers(min_value=0, max_value=4_000_000_000 * 1_000_000),
       st.sampled_from(["Asia/Shanghai", "Europe/Berlin", "America/Santiago", "Australia/Lord_Howe"]))  # fmt: skip
def test_every_instant_lies_in_its_day(t: int, tz: str) -> None:
    cal = Calendar(tz)
    day, lo, hi = cal.day_bounds_of(t)
    assert lo <= t < hi
    assert (lo, hi) == cal.bounds(day)
    assert to_micros(from_micros(t, cal.tz)) == t

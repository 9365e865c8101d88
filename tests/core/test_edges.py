"""Rules on the edges of time: DST days of 23 and 25 hours, the control period's first and last day."""

import datetime as dt

import pytest

from quotad.core.readings import Reading
from tests.conftest import at, make_policy, r, run

BERLIN = "Europe/Berlin"


def berlin(**kw: object):  # type: ignore[no-untyped-def]
    return make_policy(tz=BERLIN, start="2010-03-01", end="2010-12-31", cap_from="2010-03-01", **kw)


@pytest.mark.parametrize(("day", "hours"), [("2010-03-28", 23), ("2010-10-31", 25), ("2010-10-30", 24)])
def test_a_day_holds_its_real_hours(day: str, hours: int) -> None:
    """1 kWh per real hour through a DST day: the day total is its length in hours."""
    start = at(f"{day} 00:00", BERLIN)
    end = at((dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat() + " 00:00", BERLIN)
    assert end - start == hours * 3_600_000_000
    engine, _ = run(berlin(meters=("p",)), [Reading("p-m", start, 0.0), Reading("p-m", end, float(hours))])
    assert engine.ledger.firm_day_wh("p", dt.date.fromisoformat(day)) == hours * 1000


def test_daily_limit_on_a_25_hour_day() -> None:
    # x: 100 kWh/day. 4 kWh per real hour over 25 hours = 100: at the limit, not over.
    policy = berlin(meters=("x",))
    start, end = at("2010-10-31 00:00", BERLIN), at("2010-11-01 00:00", BERLIN)
    _, alerts = run(policy, [Reading("x-m", start, 0.0), Reading("x-m", end, 100.0)])
    assert [(a.severity, a.period) for a in alerts] == [("notice", "2010-10-31"), ("warning", "2010-10-31")]
    assert alerts[0].ts == "2010-11-01T00:00:00+01:00"


def test_projection_counts_the_real_hours_left_on_a_23_hour_day() -> None:
    # 2010-03-28 03:00 CEST is 2 real hours after midnight: 21 real hours are left, not 22.
    policy = berlin(cap=1000, meters=("p",))
    readings = [
        Reading("p-m", at("2010-03-28 00:00", BERLIN), 0.0),
        Reading("p-m", at("2010-03-28 01:00", BERLIN), 50.0),
        Reading("p-m", at("2010-03-28 03:00", BERLIN), 100.0),  # 02:00 does not exist that night
    ]
    _, alerts = run(policy, readings)
    projection = [a for a in alerts if a.rule == "township_cap_projection"]
    assert [a.projected_kwh for a in projection] == [100.0 + 50.0 * 21]
    assert projection[0].ts == "2010-03-28T03:00:00+02:00"


@pytest.mark.parametrize(
    ("day", "applies"),
    [("2010-09-30", False), ("2010-10-01", True), ("2010-12-31", True), ("2011-01-01", False)],
)
def test_quota_rules_on_the_control_period_edges(day: str, applies: bool) -> None:
    _, alerts = run(make_policy(meters=("x",)), [r("x-m", f"{day} 00:00", 0.0), r("x-m", f"{day} 12:00", 500.0)])
    assert bool([a for a in alerts if a.rule == "firm_daily_limit"]) is applies
    if applies:
        assert alerts[-1].cutoff_until == "2010-12-31"


def test_month_end_closes_the_month() -> None:
    # g: 310 kWh a month. 300 in October, then 300 in November: neither month exceeds its quota.
    readings = [
        r("g-m", "2010-10-01 00:00", 0.0),
        r("g-m", "2010-11-01 00:00", 300.0),
        r("g-m", "2010-12-01 00:00", 600.0),
    ]
    _, alerts = run(make_policy(meters=("g",)), readings)
    assert [(a.severity, a.period) for a in alerts] == [
        ("notice", "2010-10"),
        ("warning", "2010-10"),
        ("notice", "2010-11"),
        ("warning", "2010-11"),
    ]

import datetime as dt

import pytest

from quotad.core.errors import ReadingError
from quotad.core.ledger import Ledger, split
from quotad.core.readings import Reading
from quotad.schedule.calendar import Calendar
from tests.conftest import at, make_policy, r

D = dt.date


def ledger(**kw: object) -> Ledger:
    policy = make_policy(**kw)
    return Ledger(policy, Calendar(policy.township.timezone))


@pytest.mark.parametrize(
    ("total", "t0", "t1", "bounds", "parts"),
    [
        (20_000, 0, 20, [10], [10_000, 10_000]),
        (7, 0, 3, [1, 2], [2, 2, 3]),
        (1, 0, 2, [1], [0, 1]),
        (0, 0, 5, [1], [0, 0]),
        (100, 0, 10, [], [100]),
    ],
)
def test_split_table(total: int, t0: int, t1: int, bounds: list[int], parts: list[int]) -> None:
    assert split(total, t0, t1, bounds) == parts


def test_first_reading_only_sets_baseline() -> None:
    lg = ledger()
    applied = lg.apply(r("p-m", "2010-10-20 08:00", 1000.0))
    assert applied is not None
    assert applied.wh == 0
    assert lg.firm_day_wh("p", D(2010, 10, 20)) == 0


def test_consumption_and_aggregates() -> None:
    lg = ledger()
    lg.apply(r("p-m", "2010-10-20 08:00", 1000.0))
    lg.apply(r("p-m", "2010-10-20 09:00", 1012.5))
    lg.apply(r("g-m", "2010-10-20 08:00", 5.0))
    lg.apply(r("g-m", "2010-10-20 09:00", 6.0))
    assert lg.firm_day_wh("p", D(2010, 10, 20)) == 12_500
    assert lg.township_day_wh(D(2010, 10, 20)) == 13_500
    assert lg.firm_month_wh("g", (2010, 10)) == 1_000


def test_midnight_split_in_proportion_to_time() -> None:
    lg = ledger()
    lg.apply(r("p-m", "2010-10-20 23:50", 100.0))
    applied = lg.apply(r("p-m", "2010-10-21 00:10", 120.0))
    assert applied is not None
    assert applied.days == ((D(2010, 10, 20), 10_000), (D(2010, 10, 21), 10_000))
    assert lg.firm_day_wh("p", D(2010, 10, 20)) == 10_000


def test_interval_over_several_days_and_month_end() -> None:
    lg = ledger()
    lg.apply(r("g-m", "2010-10-30 12:00", 0.0))
    applied = lg.apply(r("g-m", "2010-11-01 12:00", 48.0))  # 48 h, 1 kWh/h
    assert applied is not None
    assert applied.days == ((D(2010, 10, 30), 12_000), (D(2010, 10, 31), 24_000), (D(2010, 11, 1), 12_000))
    assert lg.firm_month_wh("g", (2010, 10)) == 36_000
    assert lg.firm_month_wh("g", (2010, 11)) == 12_000


def test_reading_at_exactly_midnight_belongs_to_the_day_before() -> None:
    lg = ledger()
    lg.apply(r("p-m", "2010-10-20 23:00", 0.0))
    applied = lg.apply(r("p-m", "2010-10-21 00:00", 5.0))
    assert applied is not None
    assert applied.days == ((D(2010, 10, 20), 5_000),)


def test_dst_days_split_by_real_time() -> None:
    tz = "Europe/Berlin"
    lg = ledger(tz=tz, start="2010-03-01", end="2010-12-31", cap_from="2010-03-01")
    # 2010-03-28 has 23 hours: from 00:00 on 28th to 00:00 on 29th, 1 kWh per real hour
    lg.apply(Reading("p-m", at("2010-03-27 23:00", tz), 0.0))
    lg.apply(Reading("p-m", at("2010-03-29 01:00", tz), 25.0))
    assert lg.firm_day_wh("p", D(2010, 3, 28)) == 23_000
    assert lg.firm_day_wh("p", D(2010, 3, 27)) == 1_000
    assert lg.firm_day_wh("p", D(2010, 3, 29)) == 1_000


@pytest.mark.parametrize(("second", "ignored"), [(1000.0, True), (999.0, True)])
def test_duplicates_and_older_readings_ignored(second: float, ignored: bool) -> None:
    lg = ledger()
    lg.apply(r("p-m", "2010-10-20 08:00", 1000.0))
    lg.apply(r("p-m", "2010-10-20 09:00", 1010.0))
    assert lg.apply(r("p-m", "2010-10-20 09:00", second)) is None  # same time
    assert lg.apply(r("p-m", "2010-10-20 08:30", second)) is None  # older
    assert lg.firm_day_wh("p", D(2010, 10, 20)) == 10_000


def test_decrease_is_an_anomaly_and_new_baseline() -> None:
    lg = ledger()
    lg.apply(r("p-m", "2010-10-20 08:00", 1000.0))
    applied = lg.apply(r("p-m", "2010-10-20 09:00", 3.0))
    assert applied is not None
    assert applied.anomaly is not None
    assert applied.anomaly.kind == "decrease"
    assert applied.wh == 0
    lg.apply(r("p-m", "2010-10-20 10:00", 5.0))
    assert lg.firm_day_wh("p", D(2010, 10, 20)) == 2_000
    assert lg.meters["p-m"].excluded_wh == -997_000


@pytest.mark.parametrize(
    ("kwh_in_hour", "anomaly"),
    [(499.0, False), (500.0, False), (500.001, True), (10_000.0, True)],
)
def test_max_kw_jump(kwh_in_hour: float, anomaly: bool) -> None:
    lg = ledger(meter_extra="max_kw = 500")
    lg.apply(r("p-m", "2010-10-20 08:00", 0.0))
    applied = lg.apply(r("p-m", "2010-10-20 09:00", kwh_in_hour))
    assert applied is not None
    assert (applied.anomaly is not None) is anomaly
    assert lg.firm_day_wh("p", D(2010, 10, 20)) == (0 if anomaly else round(kwh_in_hour * 1000))


def test_multiplier_applies_to_counters() -> None:
    lg = ledger(meter_extra="multiplier = 40.0")
    lg.apply(r("p-m", "2010-10-20 08:00", 100.0))
    lg.apply(r("p-m", "2010-10-20 09:00", 101.25))
    assert lg.firm_day_wh("p", D(2010, 10, 20)) == 50_000


def test_unknown_meter() -> None:
    with pytest.raises(ReadingError, match="unknown meter"):
        ledger().apply(r("nope", "2010-10-20 08:00", 1.0))


def test_feeder_meters_make_the_township_total() -> None:
    text_kw = {
        "township_extra": 'feeder_meters = ["feeder"]',
        "firms_extra": '\n[[meters]]\nid = "feeder"\n[meters.mqtt]\n',
    }
    lg = ledger(**text_kw)
    for meter, a, b in (("p-m", 0.0, 10.0), ("feeder", 0.0, 50.0)):
        lg.apply(r(meter, "2010-10-20 08:00", a))
        lg.apply(r(meter, "2010-10-20 09:00", b))
    assert lg.township_day_wh(D(2010, 10, 20)) == 50_000
    assert lg.firm_day_wh("p", D(2010, 10, 20)) == 10_000

"""Township rules (cap, projection, load) and meter rules (offline, anomaly), with explicit event times."""

import pytest

from tests.conftest import make_policy, r, rules_of, run


def test_cap_levels_one_by_one_with_shed() -> None:
    policy = make_policy(cap=1000)
    readings = [
        r("p-m", "2010-10-21 00:00", 0.0),  # 10-21: paper day
        r("x-m", "2010-10-21 00:00", 0.0),
        r("g-m", "2010-10-21 00:00", 0.0),
        r("p-m", "2010-10-21 12:00", 700.0),
        r("x-m", "2010-10-21 12:00", 99.999),  # 799.999: just below 80%
        r("g-m", "2010-10-21 12:00", 0.001),  # 800.000: notice exactly
        r("g-m", "2010-10-21 12:30", 100.0),  # 899.999
        r("g-m", "2010-10-21 12:31", 100.001),  # 900.000: warning
        r("p-m", "2010-10-21 13:00", 800.0),  # 1000.000: at the cap, no violation
        r("p-m", "2010-10-21 13:01", 800.001),  # 1000.001: violation
    ]
    _, alerts = run(policy, readings)
    cap = [a for a in alerts if a.rule == "township_cap"]
    assert [(a.severity, a.level, a.ts[11:19]) for a in cap] == [
        ("notice", 0.8, "12:00:00"),
        ("warning", 0.9, "12:31:00"),
        ("violation", 1.0, "13:01:00"),
    ]
    assert cap[0].id == "t/township/township_cap/2010-10-21/0.8"
    payload = cap[0].payload()
    assert (payload["firm"], payload["firm_name"], payload["consumed_kwh"], payload["limit_kwh"]) == (
        None,
        None,
        800.0,
        1000.0,
    )
    # shed: x is rota-exempt; g's trailing hour is only 0.001 kWh; p first (700/12 kWh in the last hour)
    assert payload["shed"] == [
        {"firm": "p", "firm_name": "纸厂", "trailing_hour_kwh": 58.333},
        {"firm": "g", "firm_name": "一般", "trailing_hour_kwh": 0.0},
    ]


def test_shed_leaves_out_firms_not_allowed_to_run() -> None:
    policy = make_policy(cap=100)
    readings = [
        r("s-m", "2010-10-21 00:00", 0.0),
        r("w-m", "2010-10-23 00:00", 0.0),
        r("p-m", "2010-10-23 00:00", 0.0),
        r("s-m", "2010-10-23 09:59", 10.0),  # 10 kWh over 58 h, well under standby each day; off on 10-23
        r("w-m", "2010-10-23 10:00", 4.0),  # w rests on Saturday 10-23 (under standby 5)
        r("p-m", "2010-10-23 10:00", 90.0),  # 10-23 township: 0 + 4 + 90 = 94 -> notice, warning
    ]
    _, alerts = run(policy, readings)
    cap = [a for a in alerts if a.rule == "township_cap"]
    assert [a.level for a in cap] == [0.8, 0.9]
    assert [s.firm for s in cap[0].shed or ()] == ["p"]  # w rests today, s is off today


def test_several_levels_at_once_lowest_first() -> None:
    _, alerts = run(make_policy(cap=1000), [r("p-m", "2010-10-21 00:00", 0.0), r("p-m", "2010-10-21 09:00", 1500.0)])
    cap = [a for a in alerts if a.rule == "township_cap"]
    assert [a.level for a in cap] == [0.8, 0.9, 1.0]
    assert {a.ts for a in cap} == {"2010-10-21T09:00:00+08:00"}


def test_no_township_rules_before_cap_from_or_outside_control() -> None:
    policy = make_policy(cap=10, cap_from="2010-10-19", meters=("p",))
    _, alerts = run(policy, [r("p-m", "2010-10-18 00:00", 0.0), r("p-m", "2010-10-18 12:00", 100.0)])
    assert not [a for a in alerts if a.rule.startswith("township")]
    _, alerts = run(policy, [r("p-m", "2011-01-01 00:00", 0.0), r("p-m", "2011-01-01 12:00", 100.0)])
    assert alerts == []


def test_phase_cap_applies() -> None:
    policy = make_policy(
        cap=1000,
        control_extra='[[control.phases]]\nname = "二期"\nstart = 2010-11-11\nend = 2010-12-31\ndaily_cap_kwh = 500\n',
    )
    _, alerts = run(policy, [r("p-m", "2010-11-11 00:00", 0.0), r("p-m", "2010-11-11 12:00", 400.0)])
    assert [(a.level, a.limit_kwh) for a in alerts if a.rule == "township_cap"] == [(0.8, 500.0)]


@pytest.mark.parametrize(
    ("when", "fires"),
    [("2010-10-21 01:59:59", False), ("2010-10-21 02:00:00", True)],
)
def test_projection_starts_at_two(when: str, fires: bool) -> None:
    # 50 kWh in the last hour with 22 h left: 60 + 50 x 22 = 1160 > 1000
    readings = [r("p-m", "2010-10-21 00:00", 0.0), r("p-m", "2010-10-21 01:00", 10.0), r("p-m", when, 60.0)]
    _, alerts = run(make_policy(cap=1000), readings)
    projection = [a for a in alerts if a.rule == "township_cap_projection"]
    assert len(projection) == int(fires)
    if fires:
        assert projection[0].projected_kwh == 1160.0
        assert projection[0].id == "t/township/township_cap_projection/2010-10-21"


def test_projection_once_a_day_and_not_from_late_readings() -> None:
    readings = [
        r("p-m", "2010-10-21 00:00", 0.0),
        r("g-m", "2010-10-21 00:00", 0.0),
        r("p-m", "2010-10-21 03:00", 3.0),  # now 03:00, slow
        r("g-m", "2010-10-21 02:30", 100.0),  # late (before now): its energy counts, it triggers nothing
        # at 03:00 the late reading alone would project 103 + 21 x 21 = 544 > 400; it must not fire
        r("p-m", "2010-10-21 03:01", 3.1),  # 103.1 + (0.983 + 0.1 + 19.33) x 20.98 = 531 > 400: fires here
        r("p-m", "2010-10-21 03:02", 60.0),
    ]
    _, alerts = run(make_policy(cap=400), readings)
    projection = [a for a in alerts if a.rule == "township_cap_projection"]
    assert [a.ts[11:19] for a in projection] == ["03:01:00"]


def test_load_intervals() -> None:
    policy = make_policy(township_extra="load_cap_kw = 400")  # 100 kWh per 15 minutes
    readings = [
        r("p-m", "2010-10-21 10:00", 0.0),
        r("p-m", "2010-10-21 10:15", 89.999),
        r("p-m", "2010-10-21 10:30", 179.999),  # 90 in 10:15-10:30: warning
        r("p-m", "2010-10-21 10:45", 280.0),  # 100.001: violation
        r("p-m", "2010-10-21 11:00", 500.0),  # once a day per level
    ]
    _, alerts = run(policy, readings)
    load = [a for a in alerts if a.rule == "township_load"]
    assert [(a.severity, a.level, a.consumed_kwh, a.limit_kwh) for a in load] == [
        ("warning", 0.9, 90.0, 100.0),
        ("violation", 1.0, 100.001, 100.0),
    ]
    assert "10:30–10:45" in load[1].message


def test_offline_once_per_silence_and_never_reported_meters() -> None:
    readings = [
        r("p-m", "2010-10-21 00:00", 0.0),
        r("s-m", "2010-10-21 00:00", 0.0),
        r("p-m", "2010-10-21 00:15", 1.0),  # s silent exactly 900 s: not yet
        r("p-m", "2010-10-21 00:15:01", 1.1),  # now more than 900 s
        r("s-m", "2010-10-21 00:20", 1.0),  # s is back
        r("p-m", "2010-10-21 00:30", 1.2),
    ]
    _, alerts = run(make_policy(), readings)
    offline = [a for a in alerts if a.rule == "meter_offline"]
    assert [(a.meter, a.ts[11:19]) for a in offline] == [
        ("g-m", "00:15:01"),
        ("s-m", "00:15:01"),
        ("w-m", "00:15:01"),
        ("x-m", "00:15:01"),
    ]
    s_alert = offline[1].payload()
    assert s_alert["id"] == "t/s/meter_offline/2010-10-21/s-m"
    assert (s_alert["meter"], s_alert["firm"], s_alert["consumed_kwh"], s_alert["limit_kwh"]) == (
        "s-m",
        "s",
        None,
        None,
    )
    assert offline[0].message == "一般 电表 g-m 自开始监测起未上报读数（已超过 15 分钟），请核查电表和通信"
    assert offline[1].message == "七厂 电表 s-m 已超过 15 分钟无读数（最后读数 00:00），请核查电表和通信"


def test_a_meter_whose_clock_is_an_hour_behind_is_offline_at_its_first_reading() -> None:
    """Its newest reading is already more than `offline_after_s` behind the township's event time: SPEC's offline
    holds at once (not only once the never-reported deadline of the first reading comes due), and only once
    while it stays behind; its energy still counts at its own stamps."""
    readings = [
        r("p-m", "2010-10-21 10:00", 0.0),
        r("x-m", "2010-10-21 09:00", 10.0),  # an hour behind
        r("x-m", "2010-10-21 09:01", 11.0),
        r("p-m", "2010-10-21 10:01", 1.0),
        r("x-m", "2010-10-21 09:02", 12.0),
        r("p-m", "2010-10-21 10:30", 2.0),
        r("x-m", "2010-10-21 10:29", 13.0),  # its clock set right: back, and watched again
        r("p-m", "2010-10-21 11:00", 3.0),
    ]
    engine, alerts = run(make_policy(), readings)
    assert [(a.meter, a.ts[11:19]) for a in alerts if a.meter == "x-m"] == [("x-m", "10:00:00")]
    assert "09:00" in next(a for a in alerts if a.meter == "x-m").message  # when its newest reading is stamped
    assert engine.ledger.firm_day_wh("x", engine.calendar.day_of(engine.now or 0)) == 3000


def test_own_reading_ending_silence_raises_nothing() -> None:
    policy = make_policy(meters=("p",))
    _, alerts = run(policy, [r("p-m", "2010-10-21 00:00", 0.0), r("p-m", "2010-10-21 05:00", 1.0)])
    assert alerts == []


def test_anomaly_decrease_and_jump_each_raised_the_nth_of_a_day_numbered() -> None:
    policy = make_policy(meter_extra="max_kw = 100", meters=("p",))
    readings = [
        r("p-m", "2010-10-21 00:00", 500.0),
        r("p-m", "2010-10-21 01:00", 400.0),  # down
        r("p-m", "2010-10-21 02:00", 300.0),  # down again, same day: its own alert, numbered /2
        r("p-m", "2010-10-22 00:00", 300.0),
        r("p-m", "2010-10-22 01:00", 401.0),  # 101 kW > 100
        r("p-m", "2010-10-22 02:00", 451.0),
    ]
    engine, alerts = run(policy, readings)
    assert rules_of(alerts) == [
        ("meter_anomaly", "warning", None, "2010-10-21"),
        ("meter_anomaly", "warning", None, "2010-10-21"),
        ("meter_anomaly", "warning", None, "2010-10-22"),
    ]
    assert [a.id for a in alerts] == [
        "t/p/meter_anomaly/2010-10-21/p-m", "t/p/meter_anomaly/2010-10-21/p-m/2", "t/p/meter_anomaly/2010-10-22/p-m",
    ]  # fmt: skip
    assert "读数下降：400.00 → 300.00 kWh，疑似换表或清零，请核实" in alerts[1].message
    assert "读数跳变：300.00 → 401.00 kWh，相当于平均功率 101.0 kW" in alerts[2].message
    assert alerts[0].payload()["meter"] == "p-m"
    assert engine.ledger.firm_day_wh("p", __import__("datetime").date(2010, 10, 22)) == 50_000


def test_late_energy_catches_the_earlier_day() -> None:
    readings = [
        r("x-m", "2010-10-20 00:00", 0.0),
        r("x-m", "2010-10-20 23:50", 95.0),
        r("x-m", "2010-10-21 00:10", 115.0),  # 10 kWh into 10-20: 105 > 100
    ]
    _, alerts = run(make_policy(), readings)
    violation = alerts[-1]
    assert (violation.rule, violation.severity, violation.period, violation.ts) == (
        "firm_daily_limit", "violation", "2010-10-20", "2010-10-21T00:10:00+08:00",
    )  # fmt: skip
    assert violation.consumed_kwh == 105.0


def test_meter_rules_apply_outside_control() -> None:
    _, alerts = run(make_policy(meters=("p",)), [r("p-m", "2011-01-05 00:00", 9.0), r("p-m", "2011-01-05 01:00", 1.0)])
    assert [a.rule for a in alerts] == ["meter_anomaly"]

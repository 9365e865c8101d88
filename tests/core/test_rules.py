"""Every rule at and around its thresholds, with an explicit event time."""

import datetime as dt
import json

import pytest

from quotad.core.orders import Change, OrderError
from tests.conftest import make_policy, r, rules_of, run
from tests.orders_help import end

REST_AND_LIMIT = """
[[firms]]
id = "v"
name = "作坊二"
kind = "workshop"
rest_days = ["sat", "sun"]
standby_kwh = 5
daily_limit_kwh = 100
"""


def test_a_lift_re_arms_the_rules_of_the_day_the_order_silenced() -> None:
    """While an order stands, the engine knows the firm's daily limit cannot fire and stops looking; a lift must
    make it look again at the same day, not only at the days after."""
    policy = make_policy(meters=("v",), firms_extra=REST_AND_LIMIT)
    saturday = [r("v-m", "2010-10-23 00:00", 0.0), r("v-m", "2010-10-23 10:00", 60.0)]  # over standby on a rest day
    engine, alerts = run(policy, saturday)
    assert rules_of(alerts) == [("rest_day", "violation", None, "2010-10-23")]
    assert engine.ingest(r("v-m", "2010-10-23 10:30", 70.0)) == []  # cut off: the day's limit is not its concern
    end(engine, "v", reason="误判", at="2010-10-23T11:00:00+08:00")
    alerts = engine.ingest(r("v-m", "2010-10-23 12:00", 85.0))  # 85 of 100 on the same day
    assert rules_of(alerts) == [("firm_daily_limit", "notice", 0.8, "2010-10-23")]


@pytest.mark.parametrize(
    ("used", "expected"),
    [
        (79.999, []),
        (80.0, [("notice", 0.8)]),
        (89.999, [("notice", 0.8)]),
        (90.0, [("notice", 0.8), ("warning", 0.9)]),
        (100.0, [("notice", 0.8), ("warning", 0.9)]),  # at the limit: not a violation
        (100.001, [("notice", 0.8), ("warning", 0.9), ("violation", 1.0)]),
    ],
)
def test_firm_daily_limit_levels(used: float, expected: list[tuple[str, float]]) -> None:
    # x: rota-exempt, 100 kWh/day; 2010-10-20 is a seven day anyway
    _, alerts = run(make_policy(), [r("x-m", "2010-10-20 00:00", 0.0), r("x-m", "2010-10-20 12:00", used)])
    got = [(a.severity, a.level) for a in alerts if a.rule == "firm_daily_limit"]
    assert got == expected
    assert all(a.ts == "2010-10-20T12:00:00+08:00" for a in alerts)  # several levels: one reading's ts


def test_daily_limit_violation_cuts_off_to_control_end() -> None:
    engine, alerts = run(
        make_policy(meters=("x",)), [r("x-m", "2010-10-20 00:00", 0.0), r("x-m", "2010-10-20 12:00", 150.0)]
    )
    violation = alerts[-1]
    assert violation.payload()["action"] == "cutoff"
    assert violation.cutoff_until == "2010-12-31"
    assert violation.id == "t/x/firm_daily_limit/2010-10-20/1.0"
    order = engine.orders["x"]
    assert (order.from_day, order.until, order.alert_id) == ("2010-10-20", "2010-12-31", violation.id)
    assert order.evidence["consumed_kwh"] == 150.0
    assert order.evidence["meters"][0]["last_counter_kwh"] == 150.0


def test_alert_payload_field_for_field() -> None:
    _, alerts = run(make_policy(meters=("x",)), [r("x-m", "2010-10-20 00:00", 0.0), r("x-m", "2010-10-20 15:42", 90.2)])
    payload = alerts[-1].payload()
    assert list(payload) == [
        "id", "ts", "township", "firm", "firm_name", "rule", "severity", "level", "period", "consumed_kwh",
        "limit_kwh", "projected_kwh", "action", "cutoff_until", "message",
    ]  # fmt: skip
    assert payload == {
        "id": "t/x/firm_daily_limit/2010-10-20/0.9",
        "ts": "2010-10-20T15:42:00+08:00",
        "township": "t",
        "firm": "x",
        "firm_name": "盛达",
        "rule": "firm_daily_limit",
        "severity": "warning",
        "level": 0.9,
        "period": "2010-10-20",
        "consumed_kwh": 90.2,
        "limit_kwh": 100.0,
        "projected_kwh": None,
        "action": "none",
        "cutoff_until": None,
        "message": "盛达 2010-10-20 用电 90.2 kWh，已达日限额 100 kWh 的 90.2%（90% 警戒线）",
    }
    assert json.loads(alerts[-1].to_json()) == payload


@pytest.mark.parametrize(
    ("firm", "day", "used", "rule"),
    [
        ("p", "2010-10-20", 50.0, None),  # paper off on a seven day, exactly standby
        ("p", "2010-10-20", 50.001, "rota_off_day"),
        ("s", "2010-10-21", 50.001, "rota_off_day"),  # seven off on a paper day
        ("s", "2010-10-20", 5000.0, None),  # its own day
        ("x", "2010-10-21", 60.0, None),  # exempt
        ("w", "2010-10-23", 5.0, None),  # Saturday rest, exactly standby 5
        ("w", "2010-10-23", 5.001, "rest_day"),
        ("w", "2010-10-22", 500.0, None),  # Friday
        ("p", "2010-09-30", 5000.0, None),  # outside control
    ],
)
def test_standby_rules(firm: str, day: str, used: float, rule: str | None) -> None:
    _, alerts = run(make_policy(), [r(f"{firm}-m", f"{day} 00:00", 0.0), r(f"{firm}-m", f"{day} 12:00", used)])
    standby_alerts = [a for a in alerts if a.rule in ("rota_off_day", "rest_day")]
    assert [a.rule for a in standby_alerts] == ([rule] if rule else [])
    if rule:
        assert standby_alerts[0].payload()["action"] == "cutoff"
        assert standby_alerts[0].level is None


def test_cutoff_silences_other_rules_and_breach_from_next_day() -> None:
    readings = [
        r("x-m", "2010-10-20 00:00", 0.0),
        r("x-m", "2010-10-20 12:00", 110.0),  # violation (beyond the meter's 1%) -> order issued from 10-20
        r("x-m", "2010-10-20 18:00", 400.0),  # same day: silent (no breach on the order's day)
        r("x-m", "2010-10-21 01:00", 440.0),  # 40 kWh over 7 h: 10-21 gets 5.714, under standby
        r("x-m", "2010-10-21 02:00", 500.0),  # 10-21 now 65.714 > 50: breach
        r("x-m", "2010-10-21 03:00", 900.0),  # once a day
        r("x-m", "2010-10-22 12:00", 2000.0),  # 1100 kWh over 33 h: 400 on 10-22 > 50: breach again
    ]
    _, alerts = run(make_policy(meters=("x",)), readings)
    assert rules_of(alerts) == [
        ("firm_daily_limit", "notice", 0.8, "2010-10-20"),
        ("firm_daily_limit", "warning", 0.9, "2010-10-20"),
        ("firm_daily_limit", "violation", 1.0, "2010-10-20"),
        ("cutoff_breach", "breach", None, "2010-10-21"),
        ("cutoff_breach", "breach", None, "2010-10-22"),
    ]
    assert alerts[3].ts == "2010-10-21T02:00:00+08:00"
    assert alerts[3].payload()["action"] == "none"


def test_lifted_order_lets_rules_speak_again() -> None:
    policy = make_policy(meters=("x",))
    engine, _ = run(policy, [r("x-m", "2010-10-20 00:00", 0.0), r("x-m", "2010-10-20 12:00", 110.0)])
    lifted = end(engine, "x", reason="误判", at="2010-10-20T13:00:00+08:00")
    assert lifted.state == "lifted"
    assert lifted.history[-1] == Change("lifted", "2010-10-20T13:00:00+08:00", "operator", "误判")
    assert engine.cut_off(dt.date(2010, 10, 20)) == set()
    alerts = engine.ingest(r("x-m", "2010-10-21 12:00", 280.0))  # 170 kWh over 24 h: 85 on each day
    assert [(a.rule, a.severity, a.period) for a in alerts] == [("firm_daily_limit", "notice", "2010-10-21")]
    with pytest.raises(OrderError, match="lifted"):
        end(engine, "x", reason="again", at="2010-10-21T13:00:00+08:00")


@pytest.mark.parametrize(
    ("used", "expected"),
    [
        (247.999, []),
        (248.0, [("notice", 0.8)]),
        (279.0, [("notice", 0.8), ("warning", 0.9)]),
        (310.0, [("notice", 0.8), ("warning", 0.9)]),
        (310.001, [("notice", 0.8), ("warning", 0.9), ("violation", 1.0)]),
    ],
)
def test_monthly_quota_levels(used: float, expected: list[tuple[str, float]]) -> None:
    _, alerts = run(make_policy(), [r("g-m", "2010-10-01 00:00", 0.0), r("g-m", "2010-10-31 12:00", used)])
    got = [(a.severity, a.level, a.period) for a in alerts if a.rule == "monthly_quota"]
    assert got == [(s, lv, "2010-10") for s, lv in expected]


def test_monthly_quota_pro_rated_and_from_baseline() -> None:
    # control starts 10-19: October has 13 control days of 31; quota 15000 x 0.8 x 13/31 = 5032.258 kWh
    policy = make_policy(
        start="2010-10-19",
        cap_from="2010-10-19",
        firms_extra='\n[[firms]]\nid = "g2"\nname = "二"\nkind = "general"\nbaseline_kwh = 15000\n',
        meters=("g2",),
    )
    _, alerts = run(policy, [r("g2-m", "2010-10-19 00:00", 0.0), r("g2-m", "2010-10-31 00:00", 4025.807)])
    assert [(a.level, a.limit_kwh) for a in alerts] == [(0.8, 5032.258)]
    assert alerts[0].message == "二 2010年10月累计用电 4025.8 kWh，已达月度配额 5032.3 kWh 的 80.0%（80% 提示线）"


def test_monthly_quota_counts_only_control_days() -> None:
    policy = make_policy(start="2010-10-19", cap_from="2010-10-19")
    # 11 days, the last (10-19) inside control: 2,000,000 - 2,000,000 x 10 // 11 Wh count; quota 310 x 13/31
    _, alerts = run(policy, [r("g-m", "2010-10-09 00:00", 0.0), r("g-m", "2010-10-20 00:00", 2000.0)])
    month = [(a.severity, a.consumed_kwh, a.limit_kwh) for a in alerts if a.rule == "monthly_quota"]
    assert month == [(s, 181.819, 130.0) for s in ("notice", "warning", "violation")]

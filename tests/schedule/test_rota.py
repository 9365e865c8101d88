import datetime as dt
from pathlib import Path

import pytest

from quotad.config.load import load
from quotad.schedule.rota import Plan
from tests.conftest import make_policy, policy_text

D = dt.date
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def plan() -> Plan:
    return Plan(
        make_policy(
            rota_extra='[[rota.overrides]]\ndate = 2010-10-25\nruns = ["seven"]\n'
            '[[rota.overrides]]\ndate = 2010-10-26\nruns = ["paper", "seven"]\n',
            firms_extra='\n[[firms]]\nid = "w2"\nname = "作坊二"\nkind = "workshop"\nrest_days = ["mon"]\n'
            "rest_dates = [2010-10-06, 2010-10-13, 2010-10-20, 2010-10-27, 2010-11-03, 2010-11-10, 2010-11-17,"
            " 2010-11-24, 2010-12-01, 2010-12-08, 2010-12-15, 2010-12-22, 2010-12-29]\n",
        )
    )


@pytest.mark.parametrize(
    ("day", "running", "off"),
    [
        (D(2010, 10, 1), ("paper",), ("seven",)),  # the rota's first day
        (D(2010, 10, 2), ("seven",), ("paper",)),
        (D(2010, 10, 3), ("paper",), ("seven",)),
        (D(2010, 10, 24), ("seven",), ("paper",)),
        (D(2010, 10, 25), ("seven",), ("paper",)),  # override: would be paper
        (D(2010, 10, 26), ("paper", "seven"), ()),  # override: both run
        (D(2010, 10, 27), ("paper",), ("seven",)),  # the cycle continues untouched
        (D(2010, 12, 31), ("seven",), ("paper",)),  # the control period's last day
        (D(2010, 9, 30), ("paper", "seven"), ()),  # outside control: no rota
        (D(2011, 1, 1), ("paper", "seven"), ()),
    ],
)
def test_rota_cycle_and_overrides(plan: Plan, day: dt.date, running: tuple[str, ...], off: tuple[str, ...]) -> None:
    assert plan.running_groups(day) == running
    assert plan.off_groups(day) == off


def test_rota_exempt_firm_never_off(plan: Plan) -> None:
    firms = {f.id: f for f in plan.policy.firms}
    assert plan.group_off(firms["s"], D(2010, 10, 1))
    assert not plan.group_off(firms["x"], D(2010, 10, 1))  # same group, exempt
    assert not plan.group_off(firms["p"], D(2010, 10, 1))


@pytest.mark.parametrize(
    ("firm", "day", "rests"),
    [
        ("w", D(2010, 10, 2), True),  # Saturday
        ("w", D(2010, 10, 3), True),  # Sunday
        ("w", D(2010, 10, 4), False),
        ("w2", D(2010, 10, 4), True),  # Monday
        ("w2", D(2010, 10, 6), True),  # a rest date
        ("w2", D(2010, 10, 7), False),
        ("w", D(2011, 1, 1), False),  # outside control
        ("p", D(2010, 10, 2), False),  # not a workshop
    ],
)
def test_rest_days(plan: Plan, firm: str, day: dt.date, rests: bool) -> None:
    firms = {f.id: f for f in plan.policy.firms}
    assert plan.rest_day(firms[firm], day) is rests


def test_day_schedule_row(plan: Plan) -> None:
    row = plan.day(D(2010, 10, 2), cut_off={"g"})
    assert row.running_groups == ("seven",)
    assert row.off_groups == ("paper",)
    assert row.resting_workshops == ("w",)
    assert row.cut_off_firms == ("g",)
    assert row.cap_kwh == 100000
    assert row.in_control


def test_residents_day() -> None:
    policy = make_policy(firms_extra='\n[residents]\nexperience_weekday = "wed"\nexperience_hours = "09:00-17:00"\n')
    plan = Plan(policy)
    assert plan.residents_hours(D(2010, 10, 6)) == "09:00-17:00"  # a Wednesday
    assert plan.residents_hours(D(2010, 10, 7)) is None
    assert plan.residents_hours(D(2011, 1, 5)) is None  # outside control


def test_phase_caps() -> None:
    plan = Plan(
        make_policy(
            cap=54611,
            cap_from="2010-10-19",
            control_extra='[[control.phases]]\nname = "首期"\nstart = 2010-10-01\nend = 2010-11-10\n'
            '[[control.phases]]\nname = "第二期"\nstart = 2010-11-11\nend = 2010-12-31\ndaily_cap_kwh = 50000\n',
        )
    )
    assert plan.day(D(2010, 10, 18)).cap_kwh is None  # before cap_from
    assert plan.day(D(2010, 10, 19)).cap_kwh == 54611
    assert plan.day(D(2010, 11, 10)).cap_kwh == 54611
    assert plan.day(D(2010, 11, 11)).cap_kwh == 50000
    assert plan.day(D(2010, 11, 11)).phase == "第二期"
    assert plan.control.days_in_month(2010, 10) == (31, 31)


# ---- rota.start anchors the cycle, wherever it lies ------------------------------------------------------


def load_with_rota_start(tmp_path: Path, rota_start: str) -> Plan:
    """The small policy with its rota anchored on `rota_start`, loaded as check-config and `run` load it."""
    text = policy_text().replace("[rota]\nstart = 2010-10-01", f"[rota]\nstart = {rota_start}")
    assert f"start = {rota_start}" in text
    path = tmp_path / "township.toml"
    path.write_text(text, encoding="utf-8")
    return Plan(load(path, environ={}).policy)


@pytest.mark.parametrize(
    ("rota_start", "on_control_start"),
    [
        ("2010-09-25", ("paper",)),  # six days before control.start: 6 is even, the cycle is on "paper" again
        ("2010-09-26", ("seven",)),  # five days before: odd
        ("2010-09-02", ("seven",)),  # a cycle running for 29 days
        ("2010-10-01", ("paper",)),
    ],
)
def test_a_rota_start_before_control_anchors_the_cycle(
    tmp_path: Path, rota_start: str, on_control_start: tuple[str, ...]
) -> None:
    plan = load_with_rota_start(tmp_path, rota_start)
    other = ("seven",) if on_control_start == ("paper",) else ("paper",)
    assert plan.running_groups(D(2010, 10, 1)) == on_control_start
    assert plan.running_groups(D(2010, 10, 2)) == other
    assert plan.running_groups(D(2010, 12, 31)) == other  # 91 days after control.start: odd
    assert plan.running_groups(D(2010, 9, 30)) == ("paper", "seven")  # outside control: no rota


def test_control_days_before_a_later_rota_start_run_every_group(tmp_path: Path) -> None:
    plan = load_with_rota_start(tmp_path, "2010-10-05")
    assert [plan.running_groups(D(2010, 10, d)) for d in range(1, 8)] == [
        ("paper", "seven"), ("paper", "seven"), ("paper", "seven"), ("paper", "seven"),
        ("paper",), ("seven",), ("paper",),
    ]  # fmt: skip


# ---- the example township's rota -------------------------------------------------------------------------


def test_the_example_rota_gives_each_group_every_other_day() -> None:
    """config/township.toml: the paper mill alternates with the seven firms over the whole control period, and its
    override is a real swap (the mill gives up 10-25 and gets 10-26), not a day the mill loses.

    A swap of two days in a strict alternation always puts two days of one group side by side (10-24, 10-25 the
    seven; 10-26, 10-27 the mill), so "each group runs in every two days" cannot hold for any override; what must
    hold is that no group is off for more than two days running and each keeps its share of days."""
    policy = load(ROOT / "config" / "township.toml", environ={}).policy
    plan = Plan(policy)
    days = [
        policy.control.start + dt.timedelta(days=k) for k in range((policy.control.end - policy.control.start).days + 1)
    ]
    runs = [plan.running_groups(day) for day in days]
    assert all(len(running) == 1 for running in runs)  # one group a day: never both, never neither
    for group in ("paper", "seven"):
        assert sum(group in running for running in runs) == len(days) // 2  # 46 days each, as the plain cycle gives
        for k in range(len(days) - 2):
            assert any(group in running for running in runs[k : k + 3]), f"{group} off {days[k]}..{days[k + 2]}"
    assert [plan.running_groups(D(2010, 10, d)) for d in range(24, 28)] == [
        ("seven",),
        ("seven",),
        ("paper",),
        ("paper",),
    ]

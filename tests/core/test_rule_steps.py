"""The design property of quotad/core/rules: a rule is written once, as steps, and its quiet threshold comes from
them. A rule unit defined here, with deliberately odd steps (out of Wh order, on two totals, one only on even days,
none of it known to the engine), gets exact quiet behaviour without anyone writing its inverse."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from functools import partial

import pytest
from hypothesis import given, settings

from quotad.core.alerts import Alert, kwh
from quotad.core.engine import Engine
from quotad.core.policy import Firm
from quotad.core.readings import Reading
from quotad.core.rules import Context
from quotad.core.rules.steps import DAY, MONTH, Level, Step, fire, level_steps, levels, quiet
from quotad.schedule.calendar import Micros
from tests.conftest import at, make_policy, r
from tests.core.test_properties import exhaustive, meter_walk

POLICY = make_policy(meter_extra="max_kw = 200")


class Odd:
    """Firm p's day: 0.3 at 30 kWh declared before 0.1 at 10 kWh; on even days, a month step at 5 kWh."""

    rule = "odd"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.calls = 0

    def steps(self, firm: Firm, day: dt.date) -> Iterator[Step]:
        self.calls += 1
        if firm.id != "p":
            return
        period = day.isoformat()
        for level, wh in ((0.3, 30_000), (0.1, 10_000)):
            aid = self.ctx.id(firm.id, self.rule, period, level)
            yield Step(aid, DAY, wh, partial(self._alert, aid, firm, period, level))
        if day.day % 2 == 0:
            aid = self.ctx.id(firm.id, self.rule, f"{day:%Y-%m}", 0.5)
            yield Step(aid, MONTH, 5_000, partial(self._alert, aid, firm, f"{day:%Y-%m}", 0.5))

    def _alert(self, aid: str, firm: Firm, period: str, level: float, value: float, t: Micros) -> Alert:
        return self.ctx.alert(
            aid, t, self.rule, "notice", period, firm=firm, level=level, consumed_kwh=kwh(value), limit_kwh=None,
            projected_kwh=None, action="none", cutoff_until=None, message=f"odd {level}",
        )  # fmt: skip


def with_odd(engine: Engine) -> tuple[Engine, Odd]:
    """`engine` with Odd registered after the policy's firm rules: the one line a new rule adds, and no other."""
    odd = Odd(engine.ctx)
    engine.rules.firm_rules = (*engine.rules.firm_rules, odd)
    return engine, odd


def odd_ids(alerts: list[Alert]) -> list[str]:
    return [a.id for a in alerts if a.rule == "odd"]


def test_an_odd_rule_is_quiet_exactly_below_its_own_steps() -> None:
    engine, odd = with_odd(Engine(POLICY))
    day = dt.date(2010, 10, 20)  # even: the month step applies
    total = lambda: engine.ledger.firm_day[("p", day)]  # noqa: E731
    month = lambda: engine.ledger.firm_month[("p", (2010, 10))]  # noqa: E731

    assert odd_ids(engine.ingest(r("p-m", "2010-10-20 00:00", 0.0))) == []
    assert odd_ids(engine.ingest(r("p-m", "2010-10-20 01:00", 4.0))) == []
    assert (total().mark, month().mark) == (10_000, 5_000)  # the least of each total's steps, whatever their order
    calls = odd.calls
    assert odd_ids(engine.ingest(r("p-m", "2010-10-20 01:30", 4.9))) == []
    assert odd.calls == calls  # below every threshold: the rules were not even asked
    assert odd_ids(engine.ingest(r("p-m", "2010-10-20 02:00", 6.0))) == ["t/p/odd/2010-10/0.5"]
    assert (total().mark, month().mark) == (10_000, math.inf)  # raised: the month has nothing left to watch
    assert odd_ids(engine.ingest(r("p-m", "2010-10-20 03:00", 12.0))) == ["t/p/odd/2010-10-20/0.1"]
    assert total().mark == 30_000
    calls = odd.calls
    assert odd_ids(engine.ingest(r("p-m", "2010-10-20 03:30", 29.999))) == []
    assert odd.calls == calls
    assert odd_ids(engine.ingest(r("p-m", "2010-10-20 04:00", 30.0))) == ["t/p/odd/2010-10-20/0.3"]
    assert total().mark == 50_001  # what is left on the day: p's group is off (rota_off_day, over 50 kWh standby)


def test_an_odd_days_steps_do_not_lower_another_days_threshold_of_the_month() -> None:
    """An odd day has no month step; the even day's stays armed on the month's total (the least of its days')."""
    engine, _odd = with_odd(Engine(POLICY))
    engine.ingest(r("p-m", "2010-10-20 00:00", 0.0))
    engine.ingest(r("p-m", "2010-10-20 12:00", 1.0))  # the even day's month step: 5 kWh
    engine.ingest(r("p-m", "2010-10-21 12:00", 2.0))  # the odd day 21 is judged, with no month step
    assert engine.ledger.firm_month[("p", (2010, 10))].mark == 5_000


@settings(max_examples=150, deadline=None)
@given(meter_walk(meter="p-m"))
def test_an_odd_rule_raises_the_same_with_and_without_thresholds(walk: list[Reading]) -> None:
    (fast, _), (slow, _) = with_odd(Engine(POLICY)), with_odd(exhaustive(POLICY))
    for reading in walk:
        assert [a.to_json() for a in fast.ingest(reading)] == [a.to_json() for a in slow.ingest(reading)]
    assert fast.raised == slow.raised


class _Raised:
    def __init__(self) -> None:
        self.ids: set[str] = set()

    def raised(self, alert_id: str) -> bool:
        return alert_id in self.ids

    def record(self, alert: Alert) -> None:
        self.ids.add(alert.id)


class _Ids:
    def id(self, subject: str, rule: str, period: str, level: float | None = None) -> str:
        return f"{subject}/{rule}/{period}/{level}"


def _walk(walk: tuple[Level, ...]) -> list[Step]:
    def build(aid: str, level: Level, value: float, t: Micros) -> Alert:
        return Alert(
            id=aid, ts="", t=t, township="t", firm=None, firm_name=None, rule="r", severity=level.severity,
            level=level.level, period="p", consumed_kwh=value, limit_kwh=None, projected_kwh=None, action="none",
            cutoff_until=None, message="",
        )  # fmt: skip

    return list(level_steps(_Ids(), "s", "r", "p", DAY, walk, build))


def test_fire_raises_every_step_reached_and_quiet_is_the_least_left() -> None:
    """Several levels at once, lowest first, each once; the threshold then the next level's, then none."""
    steps = _walk(levels((0.8, 0.9), 100))
    ctx = _Raised()
    assert quiet(ctx, steps) == {DAY: 80_000}
    assert [a.level for a in fire(ctx, steps, {DAY: 95_000}, at("2010-10-20 12:00"))] == [0.8, 0.9]
    assert quiet(ctx, steps) == {DAY: 100_001}
    assert fire(ctx, steps, {DAY: 95_000}, at("2010-10-20 12:00")) == []  # raised once
    assert [a.level for a in fire(ctx, steps, {DAY: 100_001}, at("2010-10-20 12:00"))] == [1.0]
    assert quiet(ctx, steps) == {}  # nothing left: no threshold at all


def test_a_step_that_builds_another_id_is_refused() -> None:
    """The id a step declares is the id it raises: `quiet` and `fire` speak of the same alert."""
    step = _walk(levels((0.8, 0.9), 100))[0]
    liar = Step("s/r/p/other", step.watch, step.wh, step.build)
    with pytest.raises(AssertionError, match="s/r/p/other"):
        fire(_Raised(), [liar], {DAY: 10**9}, 0)

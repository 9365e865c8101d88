"""The console's figures (`quotad.core.console`), from the engine directly: what the pages show is the engine's."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from quotad.core import console
from quotad.core.engine import Engine
from quotad.core.orders import ACTIONS
from quotad.core.readings import Reading
from tests.conftest import at, make_policy

POLICY = make_policy(cap=500, meter_extra="max_kw = 200", township_extra="load_cap_kw = 20")
NO_LOAD_CAP = make_policy(cap=500)
MICROS = 1_000_000


def test_who_may_do_what() -> None:
    assert not [a for a in console.ACTION_ROLE if console.allowed("viewer", a)]
    assert sorted(a for a in console.ACTION_ROLE if console.allowed("inspector", a)) == ["confirm", "dismiss", "visit"]
    assert all(console.allowed("operator", a) for a in console.ACTION_ROLE)
    assert not console.allowed("admin", "confirm")  # no such role
    assert not console.allowed("operator", "delete")  # no such action
    assert console.order_actions("pending", "inspector") == ["confirm", "dismiss"]
    assert console.order_actions("issued", "inspector") == []
    assert console.order_actions("issued", "operator") == ["notified", "executed", "lift"]
    assert console.order_actions("dismissed", "operator") == []
    assert set(ACTIONS) <= set(console.ACTION_ROLE)  # every change of an order has a role that may give it


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(min_value=1, max_value=3 * 3600), st.floats(min_value=0, max_value=40)),
        min_size=1,
        max_size=60,
    ),
    load_cap=st.booleans(),
)
def test_todays_curve_is_the_ledgers_day(steps: list[tuple[int, float]], load_cap: bool) -> None:
    policy = POLICY if load_cap else NO_LOAD_CAP
    engine = Engine(policy)
    meter = policy.meters[0].id
    t, counter = at("2010-10-20 00:00"), 1000.0
    engine.ingest(Reading(meter, t, counter))
    for gap, rise in steps:
        t += gap * MICROS
        counter = round(counter + rise, 3)
        engine.ingest(Reading(meter, t, counter))
    today = console.today(engine, t)
    day = engine.calendar.day_of(t)
    assert today.day == day
    assert today.consumed_kwh == round(engine.ledger.township_day_wh(day) / 1000, 3)
    values = [v for _t, v in today.curve]
    assert values == sorted(values)  # cumulative: never down
    assert values or today.consumed_kwh == 0  # a day with use has its curve
    if values:
        assert values[-1] == today.consumed_kwh  # it ends on the day's figure
        assert today.day_start <= today.curve[0][0]
        assert today.curve[-1][0] <= today.day_end
        # the 15-minute load is the curve's slope: its intervals add up to the day (kW x 1/4 h, to 0.1 kW)
        assert abs(sum(kw for _t, kw in today.load) / 4 - today.consumed_kwh) <= 0.05 * len(today.load) + 0.01
    if today.projection:
        (_t0, v0), (t1, v1) = today.projection
        assert v0 == today.consumed_kwh
        assert t1 == today.day_end
        assert v1 >= v0


def test_firms_are_sorted_by_risk() -> None:
    policy = make_policy(cap=100_000)
    engine = Engine(policy)
    for m in policy.meters:
        engine.ingest(Reading(m.id, at("2010-10-20 00:00"), 0.0))
    rows = console.firm_rows(engine, at("2010-10-20 01:00"))
    assert [r.risk for r in rows] == sorted(r.risk for r in rows)
    assert {r.id for r in rows} == {f.id for f in policy.firms}
    assert all(r.state in console.FIRM_STATES for r in rows)

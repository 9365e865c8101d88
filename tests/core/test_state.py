"""The engine's state as a value: exported, carried (in memory or as JSON) and imported, it goes on exactly as the
engine it came from; a schema of another version is refused; a policy edit keeps what readings made."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotad.core.engine import Engine
from quotad.core.policy import Policy
from quotad.core.readings import Reading
from quotad.core.state import STATE_VERSION, EngineState, StateVersionError
from quotad.core.windows import Piece, TrailingHour
from tests.conftest import at
from tests.core.test_properties import BERLIN, POLICY, START, township_feed


def carried(engine: Engine, policy: Policy, through_json: bool) -> Engine:
    state = engine.state()
    if through_json:
        state = EngineState.from_dict(json.loads(json.dumps(state.as_dict())))
    return Engine(policy, state)


def shifted(feed: list[Reading], policy: Policy) -> list[Reading]:
    if policy is not BERLIN:
        return feed
    shift = at("2010-03-26 00:00", "Europe/Berlin") - START
    return [Reading(x.meter, x.t + shift, x.energy_kwh) for x in feed]


@settings(max_examples=200, deadline=None)
@given(township_feed(), st.sampled_from([POLICY, BERLIN]), st.data())
def test_an_engine_from_its_state_goes_on_as_the_uninterrupted_one(
    feed: list[Reading], policy: Policy, data: st.DataObject
) -> None:
    """Export at any moments (as many as restarts), import, continue: the same alerts in the same order, the same
    orders, totals and raised ids as the engine that was never interrupted; through JSON as through memory."""
    feed = shifted(feed, policy)
    cuts = data.draw(st.sets(st.integers(min_value=0, max_value=len(feed)), max_size=3))
    through_json = data.draw(st.booleans())
    straight, carried_engine = Engine(policy), Engine(policy)
    for n, reading in enumerate(feed):
        if n in cuts:
            carried_engine = carried(carried_engine, policy, through_json)
        expected = [a.to_json() for a in straight.ingest(reading)]
        assert [a.to_json() for a in carried_engine.ingest(reading)] == expected
    assert carried_engine.orders == straight.orders
    assert carried_engine.raised == straight.raised
    assert carried_engine.ledger.firm_day == straight.ledger.firm_day
    assert carried_engine.ledger.firm_month == straight.ledger.firm_month
    assert carried_engine.ledger.township_day == straight.ledger.township_day
    assert carried_engine.state() == straight.state()


@settings(max_examples=100, deadline=None)
@given(township_feed())
def test_the_json_form_holds_the_whole_state(feed: list[Reading]) -> None:
    engine = Engine(POLICY)
    for reading in feed:
        engine.ingest(reading)
    state = engine.state()
    text = json.dumps(state.as_dict(), allow_nan=False)  # plain JSON: no NaN, no objects of ours
    assert EngineState.from_dict(json.loads(text)) == state


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(
        st.tuples(
            st.integers(0, 10**15),
            st.integers(0, 10**15),
            st.integers(0, 10**9),
            st.sampled_from([None, "p", "s", "纸厂"]),
            st.booleans(),
        ),
        max_size=30,
    )
)
def test_the_trailing_hour_survives_the_json_form_exactly(pieces: list[Piece]) -> None:
    """Kept as columns, times as differences, firms numbered: every piece comes back, in order, firm and flag
    included, and the township's bound with them."""
    engine = Engine(POLICY)
    engine.trailing.restore(tuple(pieces), sum(p[2] for p in pieces if p[4]))
    back = EngineState.from_dict(json.loads(json.dumps(engine.state().as_dict())))
    assert list(back.trailing) == pieces
    assert back.trailing_township_wh == sum(p[2] for p in pieces if p[4])
    trailing = TrailingHour()
    trailing.restore(back.trailing, back.trailing_township_wh)
    assert trailing.pieces() == tuple(pieces)


def test_a_state_of_another_version_is_refused_by_name() -> None:
    data = Engine(POLICY).state().as_dict()
    data["version"] = STATE_VERSION + 1
    with pytest.raises(StateVersionError, match=f"schema version {STATE_VERSION + 1}; this quotad reads version 1"):
        EngineState.from_dict(data)
    del data["version"]
    with pytest.raises(StateVersionError, match="schema version None"):
        EngineState.from_dict(data)


def test_a_policy_edit_keeps_cursors_totals_raised_and_orders() -> None:
    """A reload: the standby raised, a meter removed, a meter added. What readings made carries over; the removed
    meter's cursor goes (its energy stays counted); the new one starts unread and is watched from now."""
    engine = Engine(POLICY)
    t = at("2010-10-20 08:00")
    for k in range(30):
        for meter in ("p-m", "s-m"):
            engine.ingest(Reading(meter, t + k * 600_000_000, 100.0 + k * 20))
    assert engine.orders
    township = POLICY.township.model_copy(update={"standby_kwh": 51.0})
    meters = [m for m in POLICY.meters if m.id != "s-m"]
    meters.append(meters[0].model_copy(update={"id": "p-new"}))
    firms = [f for f in POLICY.firms if f.id != "s"]
    edited = POLICY.model_copy(update={"township": township, "meters": meters, "firms": firms})
    reloaded = Engine(edited, engine.state())
    assert "s-m" not in reloaded.ledger.meters
    assert reloaded.ledger.meters["p-m"].last_t == engine.ledger.meters["p-m"].last_t
    assert reloaded.ledger.firm_day == engine.ledger.firm_day
    assert reloaded.raised == engine.raised
    assert reloaded.orders == engine.orders
    assert reloaded.now == engine.now
    new = reloaded.ledger.meters["p-new"]
    assert new.last_t is None
    assert [d for d in reloaded.deadlines if d[1] == "p-new"] == [(engine.now + new.offline_us, "p-new", -1)]
    assert not [d for d in reloaded.deadlines if d[1] == "s-m"]
    # the removed firm's energy of the last hour stays the township's, and it is no longer one to shed
    assert reloaded.trailing.township_wh(engine.now) == engine.trailing.township_wh(engine.now)
    assert {p[3] for p in reloaded.trailing.pieces()} == {"p", None}
    assert all(entry.firm != "s" for entry in reloaded.shed(engine.now))  # and no KeyError

"""Hypothesis properties of the ledger and the engine: conservation, idempotence, no negative energy."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from quotad.core.engine import Engine
from quotad.core.ledger import split
from quotad.core.readings import Reading
from quotad.core.windows import HOUR_US, Piece, TrailingHour
from tests.conftest import at, make_policy

START = at("2010-10-18 00:00")
POLICY = make_policy(cap=500, meter_extra="max_kw = 200", township_extra="load_cap_kw = 20")
# standby 50 and a 100 kWh daily limit with a 310 kWh monthly quota: the feeds cross them often
BERLIN = make_policy(tz="Europe/Berlin", start="2010-03-01", cap_from="2010-03-01", cap=500, meter_extra="max_kw = 200")
MICROS = 1_000_000


@given(
    total=st.integers(min_value=0, max_value=10**12),
    t0=st.integers(min_value=0, max_value=10**15),
    span=st.integers(min_value=1, max_value=10**12),
    cuts=st.lists(st.floats(min_value=0, max_value=1, exclude_min=True, exclude_max=True), max_size=6),
)
def test_split_conserves_and_is_never_negative(total: int, t0: int, span: int, cuts: list[float]) -> None:
    bounds = sorted({t0 + max(1, min(span - 1, int(c * span))) for c in cuts if span > 1})
    parts = split(total, t0, t0 + span, bounds)
    assert sum(parts) == total
    assert all(p >= 0 for p in parts)
    assert len(parts) == len(bounds) + 1


@st.composite
def meter_walk(draw: st.DrawFn, meter: str = "p-m", start: int = START) -> list[Reading]:
    """A meter's readings: gaps from a second to two days, rises, some drops (replaced meter) and jumps."""
    t, counter = start, draw(st.floats(min_value=0, max_value=1e5))
    out = [Reading(meter, t, counter)]
    for _ in range(draw(st.integers(min_value=1, max_value=40))):
        t += draw(st.integers(min_value=1, max_value=48 * 3600)) * MICROS + draw(st.integers(0, MICROS - 1))
        step = draw(st.sampled_from(["rise", "rise", "rise", "drop", "jump"]))
        if step == "rise":
            counter += draw(st.floats(min_value=0, max_value=500))
        elif step == "drop":
            counter = draw(st.floats(min_value=0, max_value=counter))
        else:
            counter += draw(st.floats(min_value=0, max_value=1e6))
        out.append(Reading(meter, t, round(counter, 3)))
    return out


@st.composite
def township_feed(draw: st.DrawFn) -> list[Reading]:
    """Several meters' walks, interleaved in a random order that keeps each meter's own order."""
    walks = [draw(meter_walk(meter=f"{f}-m")) for f in draw(st.sets(st.sampled_from("psxgw"), min_size=1))]
    merged: list[Reading] = []
    while any(walks):
        walk = draw(st.sampled_from([w for w in walks if w]))
        merged.append(walk.pop(0))
    return merged


@settings(max_examples=200, deadline=None)
@given(meter_walk(), st.sampled_from([POLICY, BERLIN]))
def test_daily_sums_equal_rise_minus_excluded(walk: list[Reading], policy: object) -> None:
    engine = Engine(POLICY if policy is POLICY else BERLIN)
    if policy is BERLIN:
        walk = [
            Reading(x.meter, x.t - at("2010-10-18 00:00") + at("2010-03-26 00:00", "Europe/Berlin"), x.energy_kwh)
            for x in walk
        ]
    for reading in walk:
        engine.ingest(reading)
    m = engine.ledger.meters["p-m"]
    days = {d: total.wh for (firm, d), total in engine.ledger.firm_day.items() if firm == "p"}
    assert m.first_wh is not None
    assert sum(days.values()) == m.last_wh - m.first_wh - m.excluded_wh == m.counted_wh
    assert all(wh >= 0 for wh in days.values())


@settings(max_examples=150, deadline=None)
@given(township_feed(), st.data())
def test_redelivery_changes_nothing(feed: list[Reading], data: st.DataObject) -> None:
    again = list(feed)
    for _ in range(data.draw(st.integers(min_value=1, max_value=10))):
        original = data.draw(st.integers(min_value=0, max_value=len(feed) - 1))
        position = data.draw(st.integers(min_value=again.index(feed[original]) + 1, max_value=len(again)))
        again.insert(position, feed[original])
    a, b = Engine(POLICY), Engine(POLICY)
    alerts_a = [x.to_json() for r in feed for x in a.ingest(r)]
    alerts_b = [x.to_json() for r in again for x in b.ingest(r)]
    assert alerts_a == alerts_b
    assert a.ledger.firm_day == b.ledger.firm_day
    assert a.ledger.township_day == b.ledger.township_day
    assert a.orders == b.orders


@settings(max_examples=150, deadline=None)
@given(township_feed())
def test_no_consumption_is_ever_negative(feed: list[Reading]) -> None:
    engine = Engine(POLICY)
    alerts = [x for r in feed for x in engine.ingest(r)]
    ledger = engine.ledger
    for totals in (ledger.firm_day, ledger.firm_month, ledger.township_day):
        assert all(total.wh >= 0 for total in totals.values())  # type: ignore[attr-defined]
    assert all(wh >= 0 for wh in engine.load.wh.values())
    assert all(a.consumed_kwh is None or a.consumed_kwh >= 0 for a in alerts)
    assert all(a.projected_kwh is None or a.projected_kwh >= 0 for a in alerts)
    assert len({a.id for a in alerts}) == len(alerts)  # each id raised once


@settings(max_examples=100, deadline=None)
@given(township_feed())
def test_township_total_is_the_sum_of_firms(feed: list[Reading]) -> None:
    engine = Engine(POLICY)
    for reading in feed:
        engine.ingest(reading)
    by_day: dict[dt.date, int] = {}
    for (_firm, day), total in engine.ledger.firm_day.items():
        by_day[day] = by_day.get(day, 0) + total.wh
    township = {d: total.wh for d, total in engine.ledger.township_day.items() if total.wh}
    assert {d: wh for d, wh in by_day.items() if wh} == township


class _NeverCached(dict):  # type: ignore[type-arg]
    """A cache that never answers: every rule is evaluated on every reading."""

    def get(self, key: object, default: object = None) -> object:  # type: ignore[override]
        return default  # "not cached": the engine computes it again


def _exhaustive(policy: object) -> Engine:
    engine = Engine(policy)  # type: ignore[arg-type]
    # the totals' marks at 0: every firm's and the township's rules are evaluated on every reading
    engine.rules.firm_quiet = lambda firm, day: (0.0, 0.0)  # type: ignore[method-assign]
    engine.rules.township_quiet = lambda rule, day: 0.0  # type: ignore[method-assign]
    engine._load_quiet = _NeverCached()
    engine._days = _NeverCached()
    return engine


@settings(max_examples=200, deadline=None)
@given(township_feed(), st.sampled_from([POLICY, BERLIN]))
def test_thresholds_are_only_an_optimisation(feed: list[Reading], policy: object) -> None:
    """The engine's cached 'nothing can fire below X' thresholds never change what is raised."""
    fast, slow = Engine(policy), _exhaustive(policy)  # type: ignore[arg-type]
    if policy is BERLIN:
        shift = at("2010-03-26 00:00", "Europe/Berlin") - START
        feed = [Reading(x.meter, x.t + shift, x.energy_kwh) for x in feed]
    for reading in feed:
        assert [a.to_json() for a in fast.ingest(reading)] == [a.to_json() for a in slow.ingest(reading)]
    assert fast.orders == slow.orders


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(
        st.tuples(st.integers(0, 3 * HOUR_US), st.integers(1, 2 * HOUR_US), st.integers(0, 10**6), st.booleans()),
        max_size=40,
    ),
    now=st.integers(0, 5 * HOUR_US),
)
def test_trailing_hour_sum_is_each_pieces_share_in_order(pieces: list[tuple[int, int, int, bool]], now: int) -> None:
    """The inlined township sum equals `_share` summed piece by piece, to the last bit (projections are in alerts)."""
    trailing = TrailingHour()
    kept: list[Piece] = [(t0, t0 + span, wh, None, township) for t0, span, wh, township in pieces]
    trailing._pieces.extend(kept)
    expected = sum(TrailingHour._share(p, now) for p in kept if p[4])
    assert trailing.township_wh(now) == expected

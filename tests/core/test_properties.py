"""Hypothesis properties of the ledger and the engine: conservation, idempotence, no negative energy."""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from quotad.core.engine import Engine
from quotad.core.ledger import split
from quotad.core.policy import Policy
from quotad.core.readings import Reading
from quotad.core.rules.steps import DAY, MONTH, PROJECTED, QUARTER, Step
from quotad.core.rules.thresholds import Thresholds
from quotad.core.windows import HOUR_US, Piece, TrailingHour
from tests.conftest import at, make_policy, policy_text
from tests.orders_help import end

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


class Exhaustive(Thresholds):
    """Thresholds that never spare a rule: every firm's, the township's, every interval's and the projection's
    rules are evaluated at every reading (the rules' own steps still decide what fires)."""

    def derive(self, steps: Iterable[Step]) -> dict[str, float]:
        return dict.fromkeys((DAY, MONTH, QUARTER, PROJECTED), 0.0)

    def starts(self, day: dt.date) -> int:
        return -(2**62)


def exhaustive(policy: Policy) -> Engine:
    engine = Engine(policy)
    engine.thresholds = Exhaustive(engine.rules)
    return engine


# A firm with two meters (energy of an earlier day arrives after a later day was judged), a general firm with a
# daily limit too (a daily cutoff silences its month), feeders and a 15-minute load cap
TWO_METERS = (
    policy_text(
        cap=300,
        township_extra='load_cap_kw = 20\nfeeder_meters = ["t-f"]',
        firms_extra='\n[[firms]]\nid = "h"\nname = "二厂"\nkind = "general"\nmonthly_quota_kwh = 300\n'
        "daily_limit_kwh = 60\nstandby_kwh = 8\n",
        meters=("p", "s", "x", "g", "w"),
        meter_extra="max_kw = 200",
    )
    + '\n[[meters]]\nid = "h-m"\nfirm = "h"\nmax_kw = 200\n[meters.mqtt]\n'
    + '\n[[meters]]\nid = "h-n"\nfirm = "h"\nmax_kw = 200\n[meters.mqtt]\n'
    + '\n[[meters]]\nid = "t-f"\nmax_kw = 400\n[meters.mqtt]\n'
)
MANY = Policy.model_validate(tomllib.loads(TWO_METERS))


@st.composite
def wide_feed(draw: st.DrawFn) -> list[Reading]:
    """The walks of MANY's meters (firm h has two), interleaved."""
    names = draw(st.sets(st.sampled_from(["p-m", "x-m", "g-m", "w-m", "h-m", "h-n", "t-f"]), min_size=1))
    walks = [draw(meter_walk(meter=name)) for name in sorted(names)]
    merged: list[Reading] = []
    while any(walks):
        walk = draw(st.sampled_from([w for w in walks if w]))
        merged.append(walk.pop(0))
    return merged


def _same(fast: Engine, slow: Engine, reading: Reading) -> None:
    assert [a.to_json() for a in fast.ingest(reading)] == [a.to_json() for a in slow.ingest(reading)]


@settings(max_examples=200, deadline=None)
@given(township_feed(), st.sampled_from([POLICY, BERLIN]))
def test_thresholds_are_only_an_optimisation(feed: list[Reading], policy: Policy) -> None:
    """The engine's derived 'nothing can fire below X' thresholds never change what is raised."""
    fast, slow = Engine(policy), exhaustive(policy)
    if policy is BERLIN:
        shift = at("2010-03-26 00:00", "Europe/Berlin") - START
        feed = [Reading(x.meter, x.t + shift, x.energy_kwh) for x in feed]
    for reading in feed:
        _same(fast, slow, reading)
    assert fast.orders == slow.orders
    assert fast.raised == slow.raised


@settings(max_examples=200, deadline=None)
@given(wide_feed(), st.data())
def test_thresholds_are_only_an_optimisation_with_late_days_and_lifts(feed: list[Reading], data: st.DataObject) -> None:
    """The same with two meters on one firm, feeders and the load cap, and operators lifting orders as they come:
    a lift re-arms the thresholds (`forget_firm`), never more nor less than evaluating everything would."""
    fast, slow = Engine(MANY), exhaustive(MANY)
    for n, reading in enumerate(feed):
        _same(fast, slow, reading)
        standing = sorted(firm for firm, order in fast.orders.items() if order.open)
        if standing and data.draw(st.booleans()):
            firm = data.draw(st.sampled_from(standing))
            for engine in (fast, slow):
                end(engine, firm, reason=f"test {n}")
    assert fast.orders == slow.orders
    assert fast.raised == slow.raised


def test_the_exhaustive_engine_really_evaluates_everything() -> None:
    """The differential tests compare with something: every firm day's mark stays 0 in the exhaustive engine, and
    the fast one derives real thresholds."""
    feed = [Reading("x-m", START, 0.0), Reading("x-m", START + HOUR_US, 10.0)]
    fast, slow = Engine(POLICY), exhaustive(POLICY)
    for reading in feed:
        _same(fast, slow, reading)
    day = dt.date(2010, 10, 18)
    assert slow.ledger.firm_day[("x", day)].mark == 0.0
    assert fast.ledger.firm_day[("x", day)].mark == 80_000  # x: 100 kWh a day, notice at 0.8


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

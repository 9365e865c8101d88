"""A reading no meter can show is refused before it is counted, and no value of a reading makes the core fail."""

from __future__ import annotations

import math
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotad.core.engine import Engine
from quotad.core.errors import ReadingError
from quotad.core.readings import MAX_COUNTER_KWH, MAX_POWER_KW, Reading
from tests.conftest import at, make_policy

POLICY = make_policy(meters=("x",))  # firm x: a daily limit of 100 kWh


def started() -> Engine:
    engine = Engine(POLICY)
    engine.ingest(Reading("x-m", at("2010-10-20 08:00"), 10.0))
    engine.ingest(Reading("x-m", at("2010-10-20 09:00"), 20.0))
    return engine


@pytest.mark.parametrize(
    ("energy", "power", "why"),
    [
        (1e306, None, "energy_kwh: 1e+306 is not a counter a meter can show"),  # the one that overflowed the ledger
        (1.7976931348623157e308, None, "energy_kwh"),
        (MAX_COUNTER_KWH * 1.0000001, None, "energy_kwh"),
        (-0.5, None, "energy_kwh: -0.5"),
        (math.nan, None, "energy_kwh: nan"),
        (30.0, 1e306, "power_kw: 1e+306 is not a power a meter can show"),
        (30.0, -1e8, "power_kw"),
    ],
)
def test_an_impossible_reading_is_refused_and_changes_nothing(energy: float, power: float | None, why: str) -> None:
    engine = started()
    before = pickle.dumps(engine.ledger)
    with pytest.raises(ReadingError, match=why.replace("+", r"\+")):
        engine.ingest(Reading("x-m", at("2010-10-20 10:00"), energy, power))
    assert pickle.dumps(engine.ledger) == before
    # the meter goes on from its last good counter: 150 kWh today is a violation of the 100 kWh limit
    alerts = engine.ingest(Reading("x-m", at("2010-10-20 11:00"), 150.0))
    assert [a.severity for a in alerts] == ["notice", "warning", "violation"]


def test_the_largest_possible_reading_is_counted() -> None:
    engine = Engine(make_policy(meters=("x",)))
    engine.ingest(Reading("x-m", at("2010-10-20 08:00"), MAX_COUNTER_KWH - 1, MAX_POWER_KW))
    engine.ingest(Reading("x-m", at("2010-10-20 09:00"), MAX_COUNTER_KWH, -MAX_POWER_KW))
    assert engine.ledger.meters["x-m"].last_wh == round(MAX_COUNTER_KWH * 1000)


@settings(max_examples=500, deadline=None)
@given(
    energy=st.floats(allow_nan=True, allow_infinity=True),
    power=st.none() | st.floats(allow_nan=True, allow_infinity=True),
    minutes=st.integers(min_value=1, max_value=3000),
)
def test_no_value_makes_the_core_fail(energy: float, power: float | None, minutes: int) -> None:
    """Whatever the numbers: counted, or refused with a ReadingError; never another exception (an OverflowError
    once stopped the daemon's ingestion for good)."""
    engine = started()
    try:
        engine.ingest(Reading("x-m", at("2010-10-20 09:00") + minutes * 60_000_000, energy, power))
    except ReadingError:
        assert not (0 <= energy <= MAX_COUNTER_KWH) or (power is not None and not abs(power) <= MAX_POWER_KW)

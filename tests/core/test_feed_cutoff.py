"""The simulated township obeys the 供电所: a firm whose supply is cut draws only its lights until reconnected."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from quotad.config.load import load
from quotad.core.feed import TownshipModel
from quotad.schedule.calendar import MICROS_PER_S
from tests.test_schedule_orders import CONFIG

POLICY = load(CONFIG / "township.toml").policy
HOUR = 3600 * MICROS_PER_S
METERS = [m.id for m in POLICY.meters if m.firm == "rongsheng-paper"]


def firm_kwh(model: TownshipModel, t0: int, t1: int) -> float:
    """The paper mill's use between t0 and t1 (kWh, its meters' multipliers applied)."""
    meters = {m.id: m for m in POLICY.meters}
    return sum((model.counter(m, t1) - model.counter(m, t0)) * meters[m].multiplier for m in METERS)


@settings(max_examples=20, deadline=None)
@given(cut_hour=st.integers(min_value=1, max_value=40), hours=st.integers(min_value=2, max_value=20))
def test_a_cut_firm_draws_its_lights_only_until_reconnected(cut_hour: int, hours: int) -> None:
    model, free = TownshipModel(POLICY, dt.date(2010, 10, 20)), TownshipModel(POLICY, dt.date(2010, 10, 20))
    start = model.origin + cut_hour * HOUR
    model.cut_off("rongsheng-paper", start)
    end = start + hours * HOUR
    standby = POLICY.township.standby_kwh
    used = firm_kwh(model, start + 60 * MICROS_PER_S, end)  # from the minute after the cut
    assert used <= standby * 0.3 * hours / 24 + 1e-6  # 30% of standby a day: lights and guards
    assert used > 0
    assert firm_kwh(model, model.origin, start) == firm_kwh(free, free.origin, start)  # the past is untouched
    model.reconnect("rongsheng-paper", end)
    after = end + 60 * MICROS_PER_S
    again, usual = firm_kwh(model, after, after + 2 * HOUR), firm_kwh(free, after, after + 2 * HOUR)
    assert abs(again - usual) < 1e-6  # draws again as it would have (the counters differ, not the use)

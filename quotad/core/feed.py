"""A simulated township's meters: realistic load shapes, the rota obeyed by most, misbehaviour by a few.

Pure and deterministic for a seed. `TownshipModel.counter(meter, t)` is a meter's own counter (kWh, before
its multiplier) at any instant from the model's start on: each minute's energy is drawn from the firm's day
target, the hour's share of the load shape and a noise seeded by (seed, meter, minute), so the simulator
can serve live values and `counters()` can write the same values as a feed.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from quotad.core.policy import Firm, Meter, Policy
from quotad.core.readings import Reading
from quotad.schedule.calendar import MICROS_PER_S, Calendar, Micros
from quotad.schedule.rota import Plan

__all__ = ["Misbehaviour", "TownshipModel", "counters", "default_misbehaviour", "firm_day_kwh", "to_jsonl"]

# Relative load per local hour: night shift low, day shift high, a lunch dip.
_SHAPE = (0.45, 0.4, 0.4, 0.4, 0.45, 0.55, 0.8, 1.2, 1.5, 1.6, 1.6, 1.5, 1.1, 1.5, 1.6, 1.6, 1.5, 1.3, 1.0, 0.9,
          0.8, 0.7, 0.6, 0.5)  # fmt: skip
_SHAPE_SUM = sum(_SHAPE)
_OFF_DAY_KWH = 24.0  # a firm that obeys an off day: lights and guards, under the 50 kWh standby
_MINUTE: Micros = 60 * MICROS_PER_S
_ON = 2**62  # the end of a cut that still lasts


@dataclass(frozen=True)
class Misbehaviour:
    """On `day`, firm `firm` does `kind`: 'run_off_day' (runs at `factor` of normal on a day it must be off),
    'overdraw' (uses `factor` x its daily limit), 'meter_replaced' (its meter's counter restarts near zero
    at local `hour`), 'silent' (its meter reports nothing from `hour` for `factor` hours)."""

    day: dt.date
    firm: str
    kind: str
    factor: float = 1.0
    hour: float = 0.0


def default_misbehaviour(policy: Policy) -> tuple[Misbehaviour, ...]:
    """The example township's deliberate faults, from 2010-10-20 (a seven-group day) on."""
    d = dt.date(2010, 10, 20)
    wanted = (
        Misbehaviour(d, "rongsheng-paper", "run_off_day", 0.05),
        Misbehaviour(d, "shengda", "overdraw", 1.08),
        Misbehaviour(d, "w-003", "run_off_day", 1.0),
        Misbehaviour(d, "g-006", "meter_replaced", hour=14.5),
        Misbehaviour(d, "w-005", "silent", factor=0.5, hour=10.0),
        Misbehaviour(d + dt.timedelta(days=1), "huayu-plastics", "run_off_day", 0.4),
        Misbehaviour(d + dt.timedelta(days=2), "rongsheng-paper", "run_off_day", 0.02),
    )
    firms = {f.id for f in policy.firms}
    return tuple(m for m in wanted if m.firm in firms)


def firm_day_kwh(policy: Policy, firm: Firm, day: dt.date, plan: Plan) -> float:
    """What a law-abiding `firm` uses on `day` (before noise and misbehaviour)."""
    if plan.group_off(firm, day) or plan.rest_day(firm, day):
        return _OFF_DAY_KWH if firm.kind != "workshop" else 2.0
    return _running_kwh(policy, firm, day)


def _running_kwh(policy: Policy, firm: Firm, day: dt.date) -> float:
    """What `firm` uses on a day it runs."""
    if firm.daily_limit_kwh is not None:
        return firm.daily_limit_kwh * 0.9
    if firm.kind == "large":
        members = sum(1 for f in policy.firms if f.group == firm.group and f.group is not None)
        return 26_000.0 if members == 1 else 7_000.0
    if firm.kind == "general":
        month = firm.monthly_quota_kwh or (firm.baseline_kwh or 0.0) * (1 - firm.effective_reduction)
        weekend = 0.6 if day.weekday() == 6 else 1.0
        return month / 30.0 * 0.93 * weekend
    return 40.0


def _seed(*parts: object) -> int:
    return zlib.crc32(":".join(map(str, parts)).encode())


class TownshipModel:
    """Every firm meter's counter as a function of time, from the local midnight of `start` on."""

    def __init__(self, policy: Policy, start: dt.date, seed: int = 1) -> None:
        self.policy, self.seed = policy, seed
        self.plan, self.cal = Plan(policy), Calendar(policy.township.timezone)
        self.origin: Micros = self.cal.day_start(start)
        self.meters = {m.id: m for m in policy.meters if m.firm is not None}
        self.firms = {f.id: f for f in policy.firms}
        self._faults = {(m.firm, m.day, m.kind): m for m in default_misbehaviour(policy)}
        self._per_firm = {fid: sum(1 for m in self.meters.values() if m.firm == fid) for fid in self.firms}
        # per meter: (minutes accounted since origin, multiplied kWh at that minute's end)
        self._state = {m: (0, random.Random(_seed(seed, m)).uniform(10_000.0, 90_000.0)) for m in self.meters}
        self._targets: dict[tuple[str, dt.date], float] = {}
        # firms whose supply the 供电所 has cut (an executed order): minute ranges [from, to) since origin
        self._cut: dict[str, list[list[int]]] = {}
        standby = policy.township.standby_kwh
        self._trickle = {f.id: (standby if f.standby_kwh is None else f.standby_kwh) * 0.3 / 1440 for f in policy.firms}

    def cut_off(self, firm: str, t: Micros) -> None:
        """The 供电所 cut `firm`'s supply at `t` (its order executed): from the next minute on, its meters count only
        lights and guards (30% of its standby energy a day) until `reconnect`."""
        ranges = self._cut.setdefault(firm, [])
        if not ranges or ranges[-1][1] != _ON:
            ranges.append([(t - self.origin) // _MINUTE + 1, _ON])

    def reconnect(self, firm: str, t: Micros) -> None:
        """`firm`'s supply restored at `t` (its order lifted)."""
        ranges = self._cut.get(firm)
        if ranges and ranges[-1][1] == _ON:
            ranges[-1][1] = (t - self.origin) // _MINUTE + 1

    def _cut_at(self, firm: str, minute: int) -> bool:
        return any(start <= minute < end for start, end in self._cut.get(firm, ()))

    def counter(self, meter_id: str, t: Micros) -> float:
        """The meter's own counter (kWh, divided by its multiplier) at `t`."""
        meter = self.meters[meter_id]
        minute = max(0, (t - self.origin) // _MINUTE)
        done, energy = self._state[meter_id]
        if minute < done:  # the past: recompute from the origin
            done, energy = 0, random.Random(_seed(self.seed, meter_id)).uniform(10_000.0, 90_000.0)
        while done < minute:
            energy = self._after_minute(meter, done, energy)
            done += 1
        self._state[meter_id] = (done, energy)
        partial = max(0, t - self.origin - minute * _MINUTE) / _MINUTE
        now = energy + self._minute_kwh(meter, minute) * partial
        return now / meter.multiplier

    def power_kw(self, meter_id: str, t: Micros) -> float:
        """The meter's own power reading (kW, divided by its multiplier) at `t`: this minute's mean."""
        meter = self.meters[meter_id]
        minute = max(0, (t - self.origin) // _MINUTE)
        return self._minute_kwh(meter, minute) * 60.0 / meter.multiplier

    def silent(self, meter_id: str, t: Micros) -> bool:
        """The meter answers nothing at `t` (its deliberate outage)."""
        meter = self.meters[meter_id]
        local = self.cal.local(t)
        fault = self._faults.get((meter.firm or "", local.date(), "silent"))
        hour = local.hour + local.minute / 60
        return fault is not None and fault.hour <= hour < fault.hour + fault.factor

    def _after_minute(self, meter: Meter, minute: int, energy: float) -> float:
        local = self.cal.local(self.origin + minute * _MINUTE)
        replaced = self._faults.get((meter.firm or "", local.date(), "meter_replaced"))
        if replaced is not None and local.hour + local.minute / 60 == replaced.hour:
            energy = random.Random(_seed(self.seed, meter.id, "new")).uniform(0.0, 5.0) * meter.multiplier
        return energy + self._minute_kwh(meter, minute)

    def _minute_kwh(self, meter: Meter, minute: int) -> float:
        local = self.cal.local(self.origin + minute * _MINUTE)
        firm = self.firms[meter.firm or ""]
        if firm.id in self._cut and self._cut_at(firm.id, minute):
            return self._trickle[firm.id] / max(1, self._per_firm[firm.id])
        key = (firm.id, local.date())
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = self._day_target(firm, local.date()) / max(1, self._per_firm[firm.id])
        noise = random.Random(_seed(self.seed, meter.id, minute)).uniform(0.85, 1.15)
        return target * _SHAPE[local.hour] / _SHAPE_SUM / 60.0 * noise

    def _day_target(self, firm: Firm, day: dt.date) -> float:
        if (run := self._faults.get((firm.id, day, "run_off_day"))) is not None:
            return _running_kwh(self.policy, firm, day) * run.factor
        if (over := self._faults.get((firm.id, day, "overdraw"))) is not None:
            return (firm.daily_limit_kwh or _running_kwh(self.policy, firm, day)) * over.factor
        return firm_day_kwh(self.policy, firm, day, self.plan)


def counters(policy: Policy, start: dt.date, days: int, step_s: int = 60, seed: int = 1) -> Iterator[Reading]:
    """Every meter's reading every `step_s` seconds of local days `start` .. `start + days - 1`, in time order
    (counters to 0.01 kWh, as meters report them); a silent meter yields nothing."""
    model = TownshipModel(policy, start, seed)
    end = model.cal.day_start(start + dt.timedelta(days=days))
    t, step = model.origin, step_s * MICROS_PER_S
    while t <= end:
        for meter_id in model.meters:
            if not model.silent(meter_id, t):
                yield Reading(meter_id, t, round(model.counter(meter_id, t), 2))
        t += step


def to_jsonl(reading: Reading, cal: Calendar) -> str:
    return json.dumps({"meter": reading.meter, "ts": cal.isoformat(reading.t), "energy_kwh": reading.energy_kwh})

"""A simulated township's meter counters: realistic load shapes, the rota obeyed by most, misbehaviour by a few.

Pure and deterministic for a seed: `counters(policy, ...)` yields the readings every meter would report
every `step_s` seconds. It is the source of the shipped recorded day, the replay benchmark and the simulator
that serves the same counters over Modbus and MQTT.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from quotad.config.policy import Firm, Policy
from quotad.readings import Reading
from quotad.schedule.calendar import MICROS_PER_S, Calendar, Micros
from quotad.schedule.rota import Plan

__all__ = ["Misbehaviour", "counters", "default_misbehaviour", "firm_day_kwh", "to_jsonl"]

# Relative load per local hour: night shift low, day shift high, a lunch dip.
_SHAPE = (0.45, 0.4, 0.4, 0.4, 0.45, 0.55, 0.8, 1.2, 1.5, 1.6, 1.6, 1.5, 1.1, 1.5, 1.6, 1.6, 1.5, 1.3, 1.0, 0.9,
          0.8, 0.7, 0.6, 0.5)  # fmt: skip
_SHAPE_SUM = sum(_SHAPE)
_OFF_DAY_KWH = 24.0  # a firm that obeys an off day: lights and guards, under the 50 kWh standby


@dataclass(frozen=True)
class Misbehaviour:
    """On `day`, firm `firm` does `kind`: 'run_off_day' (runs at `factor` of normal on a day it must be off),
    'overdraw' (uses `factor` x its normal day), 'meter_replaced' (the meter's counter restarts near zero at
    `hour`), 'silent' (the meter reports nothing from `hour` for `factor` hours)."""

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


def _seed(seed: int, name: str) -> int:
    return zlib.crc32(f"{seed}:{name}".encode())


def counters(policy: Policy, start: dt.date, days: int, step_s: int = 60, seed: int = 1) -> Iterator[Reading]:
    """Every meter's counter every `step_s` seconds of local days `start` .. `start + days - 1`, in time order."""
    plan, cal = Plan(policy), Calendar(policy.township.timezone)
    faults = {(m.firm, m.day, m.kind): m for m in default_misbehaviour(policy)}
    firms = {f.id: f for f in policy.firms}
    meters = [m for m in policy.meters if m.firm is not None]
    per_firm = {fid: sum(1 for m in meters if m.firm == fid) for fid in firms}
    rngs = {m.id: random.Random(_seed(seed, m.id)) for m in meters}
    energy = {m.id: rngs[m.id].uniform(10_000.0, 90_000.0) for m in meters}  # multiplied kWh
    t0 = cal.day_start(start)
    t_end = cal.day_start(start + dt.timedelta(days=days))
    step: Micros = step_s * MICROS_PER_S
    for meter in meters:  # every counter as the first day begins: the baselines
        yield Reading(meter.id, t0, round(energy[meter.id] / meter.multiplier, 2))
    targets: dict[tuple[str, dt.date], float] = {}
    t = t0 + step
    while t <= t_end:
        local = cal.local(t - step // 2)
        day, hour = local.date(), local.hour + local.minute / 60
        for meter in meters:
            firm = firms[meter.firm or ""]
            key = (firm.id, day)
            if key not in targets:
                targets[key] = _target(policy, firm, day, faults, plan) / max(1, per_firm[firm.id])
            rng = rngs[meter.id]
            share = _SHAPE[local.hour] / _SHAPE_SUM * step_s / 3600.0
            energy[meter.id] += targets[key] * share * rng.uniform(0.85, 1.15)
            replaced = faults.get((firm.id, day, "meter_replaced"))
            if replaced is not None and hour - step_s / 3600 < replaced.hour <= hour:
                energy[meter.id] = rng.uniform(0.0, 5.0) * meter.multiplier
            silent = faults.get((firm.id, day, "silent"))
            if silent is not None and silent.hour <= hour < silent.hour + silent.factor:
                continue
            yield Reading(meter.id, t, round(energy[meter.id] / meter.multiplier, 2))
        t += step


def to_jsonl(reading: Reading, cal: Calendar) -> str:
    return json.dumps({"meter": reading.meter, "ts": cal.isoformat(reading.t), "energy_kwh": reading.energy_kwh})


def _target(
    policy: Policy, firm: Firm, day: dt.date, faults: dict[tuple[str, dt.date, str], Misbehaviour], plan: Plan
) -> float:
    normal = firm_day_kwh(policy, firm, day, plan)
    if (run := faults.get((firm.id, day, "run_off_day"))) is not None:
        return _running_kwh(policy, firm, day) * run.factor
    if (over := faults.get((firm.id, day, "overdraw"))) is not None:
        return (firm.daily_limit_kwh or normal) * over.factor
    return normal

"""Steps: what a rule declares, once, for one subject (a firm's day, the township's day, a quarter hour).

A step is one alert a rule may raise: its id, the total it watches, the Wh at which it is reached, and how to
build its alert. From that one declaration come both halves of a rule:

- `fire` raises every step reached and not yet raised, in the order declared;
- `quiet` derives the threshold below which the rule cannot fire: per watched total, the least Wh among the steps
  not yet raised. The engine caches it (see `thresholds`) and skips the rules while every total stays below.

A rule is a generator of steps, so a step may depend on what earlier steps did (a cutoff order silences the rules
declared after it: they look at the orders when the evaluator reaches them). Thresholds are exact: a level is
reached when consumption (integer Wh) is >= fraction x limit, computed with `fractions.Fraction` from the decimal
values of the policy; a violation when it is > the limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Protocol

from quotad.core.alerts import Alert
from quotad.schedule.calendar import Micros

__all__ = ["DAY", "MONTH", "PROJECTED", "QUARTER", "Level", "Step", "exact", "fire", "level_steps", "levels", "over_wh",
           "quiet"]  # fmt: skip

# The totals a step may watch (what `fire` is given values of, and `quiet` derives thresholds for)
DAY = "day"  # the subject's day: a firm's, or the township's
MONTH = "month"  # a firm's month to date
QUARTER = "quarter"  # the township's energy in one 15-minute interval
PROJECTED = "projected"  # the township's day, projected to its end at the trailing hour's rate

Build = Callable[[float, Micros], Alert]  # (the watched total's value, event time) -> the step's alert


@dataclass(frozen=True, slots=True)
class Step:
    id: str  # the alert id it raises (once)
    watch: str  # DAY, MONTH, QUARTER or PROJECTED
    wh: float  # reached when the watched total >= wh
    build: Build  # its alert (with id `id`), and its effects (a cutoff order)


@dataclass(frozen=True, slots=True)
class Level:
    level: float
    severity: str
    wh: int  # reached when consumption >= wh


def exact(value: float) -> Fraction:
    return Fraction(repr(float(value)))


def levels(fractions: tuple[float, ...], limit_kwh: Fraction | float, top: str = "violation") -> tuple[Level, ...]:
    """The levels below the limit (reached at >= fraction x limit), then 1.0 (exceeded at > limit)."""
    limit_wh = (limit_kwh if isinstance(limit_kwh, Fraction) else exact(limit_kwh)) * 1000
    names = ("notice", "warning") if len(fractions) == 2 else ("warning",)
    below = [Level(f, name, math.ceil(exact(f) * limit_wh)) for f, name in zip(fractions, names, strict=True)]
    return (*below, Level(1.0, top, math.floor(limit_wh) + 1))


def over_wh(kwh_limit: float) -> int:
    """The least integer Wh that exceeds `kwh_limit`."""
    return math.floor(exact(kwh_limit) * 1000) + 1


class Ids(Protocol):
    def id(self, subject: str, rule: str, period: str, level: float | None = None) -> str: ...


def level_steps(
    ids: Ids,
    subject: str,
    rule: str,
    period: str,
    watch: str,
    walk: tuple[Level, ...],
    build: Callable[[str, Level, float, Micros], Alert],
) -> Iterator[Step]:
    """The one walk over a rule's levels: a step per level, lowest first, each with its level's id (which `build`
    is given, with the level, the watched total's value and the event time)."""
    for level in walk:
        aid = ids.id(subject, rule, period, level.level)
        yield Step(aid, watch, level.wh, partial(build, aid, level))


class Raised(Protocol):
    def raised(self, alert_id: str) -> bool: ...
    def record(self, alert: Alert) -> None: ...


def fire(ctx: Raised, steps: Iterable[Step], values: Mapping[str, float], t: Micros) -> list[Alert]:
    """Raise every step reached and not yet raised, in the order declared (`values`: each watched total's Wh)."""
    out = []
    for step in steps:
        value = values[step.watch]
        if value >= step.wh and not ctx.raised(step.id):
            alert = step.build(value, t)
            if alert.id != step.id:
                msg = f"a step declared {step.id!r} built {alert.id!r}"
                raise AssertionError(msg)
            ctx.record(alert)
            out.append(alert)
    return out


def quiet(ctx: Raised, steps: Iterable[Step]) -> dict[str, float]:
    """Per watched total, the least Wh among the steps not yet raised: below it, none of `steps` can fire (a total
    no step watches is absent: nothing can fire on it)."""
    out: dict[str, float] = {}
    for step in steps:
        if step.wh < out.get(step.watch, math.inf) and not ctx.raised(step.id):
            out[step.watch] = step.wh
    return out

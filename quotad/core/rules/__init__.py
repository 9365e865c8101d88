"""The quota rules of SPEC, one unit each: a rule declares its steps for a subject (see `steps`), from which one
evaluator raises its alerts and derives the threshold below which it cannot fire.

A rule is registered here, in its family, in the order its alerts come (SPEC: the firm's rules, then the
township's; a cutoff silences the firm rules after it). Families differ in their subject and the totals they watch:

- firm rules: a firm's day, watching the firm's day (DAY) and month to date (MONTH), on control days only;
- township day rules: the township's day (DAY);
- interval rules: one 15-minute interval of a day (QUARTER);
- projection rules: the township's day at now, projected to its end (PROJECTED).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Protocol

from quotad.core.policy import Firm
from quotad.core.rules.context import Context
from quotad.core.rules.firm_day import DailyLimit
from quotad.core.rules.monthly import MonthlyQuota
from quotad.core.rules.pending import PendingBeyondAccuracy
from quotad.core.rules.standby import CutoffBreach, RestDay, RotaOffDay
from quotad.core.rules.steps import Level, Step, levels
from quotad.core.rules.township import Projection, TownshipCap, TownshipLoad
from quotad.schedule.calendar import Micros

__all__ = [
    "FIRM_RULES",
    "INTERVAL_RULES",
    "PROJECTION_RULES",
    "TOWNSHIP_RULES",
    "Context",
    "Level",
    "Rules",
    "Step",
    "levels",
]


class FirmRule(Protocol):
    def steps(self, firm: Firm, day: dt.date) -> Iterator[Step]: ...


class TownshipRule(Protocol):
    def steps(self, day: dt.date) -> Iterator[Step]: ...


class IntervalRule(Protocol):
    def steps(self, day: dt.date, start: Micros) -> Iterator[Step]: ...


class ProjectionRule(Protocol):
    def starts(self, day: dt.date) -> Micros: ...
    def steps(self, day: dt.date, now: Micros) -> Iterator[Step]: ...


FIRM_RULES: tuple[Callable[[Context], FirmRule], ...] = (
    PendingBeyondAccuracy, CutoffBreach, RotaOffDay, RestDay, DailyLimit, MonthlyQuota,
)  # fmt: skip
TOWNSHIP_RULES: tuple[Callable[[Context], TownshipRule], ...] = (TownshipCap,)
INTERVAL_RULES: tuple[Callable[[Context], IntervalRule], ...] = (TownshipLoad,)
PROJECTION_RULES: tuple[Callable[[Context], ProjectionRule], ...] = (Projection,)


class Rules:
    """The registered rules of one township, by family. Each family's steps come lazily, rule after rule, so a
    rule sees what the rules before it did (an order they issued)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.firm_rules = tuple(rule(ctx) for rule in FIRM_RULES)
        self.township_rules = tuple(rule(ctx) for rule in TOWNSHIP_RULES)
        self.interval_rules = tuple(rule(ctx) for rule in INTERVAL_RULES)
        self.projection_rules = tuple(rule(ctx) for rule in PROJECTION_RULES)
        self._monthly = MonthlyQuota(ctx)  # its quotas, for statuses and dashboards

    def firm(self, firm: Firm, day: dt.date) -> Iterator[Step]:
        if day in self.ctx.plan.control:  # quota rules apply on control days only
            for rule in self.firm_rules:
                yield from rule.steps(firm, day)

    def township(self, day: dt.date) -> Iterator[Step]:
        for rule in self.township_rules:
            yield from rule.steps(day)

    def interval(self, day: dt.date, start: Micros) -> Iterator[Step]:
        for rule in self.interval_rules:
            yield from rule.steps(day, start)

    def projection(self, day: dt.date, now: Micros) -> Iterator[Step]:
        for rule in self.projection_rules:
            yield from rule.steps(day, now)

    def projection_starts(self, day: dt.date) -> Micros:
        """The first moment of `day` a projection rule may fire."""
        return min(rule.starts(day) for rule in self.projection_rules)

    def month_quota(self, firm: Firm, year: int, month: int) -> tuple[Fraction, tuple[Level, ...]]:
        """A general firm's quota for the month (kWh, exact) and its levels (for statuses and dashboards)."""
        return self._monthly.quota(firm, year, month)

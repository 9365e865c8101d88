"""Who runs on a day: the staggered-supply rota, workshops' rest days, the residents' experience day."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from quotad.core.policy import WEEKDAYS, Firm, Policy
from quotad.schedule.control import ControlPeriod

__all__ = ["DaySchedule", "Plan"]


@dataclass(frozen=True)
class DaySchedule:
    day: dt.date
    in_control: bool
    phase: str | None
    cap_kwh: float | None
    running_groups: tuple[str, ...]
    off_groups: tuple[str, ...]
    exempt_running: tuple[str, ...]  # firms of an off group that run all the same (rota_exempt, under their limit)
    resting_workshops: tuple[str, ...]
    cut_off_firms: tuple[str, ...]
    residents_hours: str | None


class Plan:
    """The calendar side of a policy: control period, rota, rest days. Pure; no clock of its own."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.control = ControlPeriod(policy)
        self._groups = tuple(g.id for g in policy.groups)
        self._rota = policy.rota
        self._overrides = {o.date: tuple(o.runs) for o in policy.rota.overrides} if policy.rota else {}
        self._off: dict[dt.date, tuple[str, ...]] = {}
        self._rest = {
            f.id: ({WEEKDAYS.index(d) for d in f.rest_days}, set(f.rest_dates))
            for f in policy.firms
            if f.kind == "workshop"
        }
        self._experience_dates = frozenset(policy.residents.experience_dates if policy.residents else ())

    def running_groups(self, day: dt.date) -> tuple[str, ...]:
        """The groups allowed to run on `day`, in the policy's order: all of them without a rota, outside the
        control period and on its days before `rota.start`; else the cycle counted from `rota.start` (which may
        lie before the control period: a cycle already running), or the day's override."""
        rota = self._rota
        if rota is None or day not in self.control or day < rota.start:
            return self._groups
        runs = self._overrides.get(day)
        if runs is None:
            entry = rota.order[(day - rota.start).days % len(rota.order)]
            runs = (entry,) if isinstance(entry, str) else entry
        return tuple(g for g in self._groups if g in runs)

    def off_groups(self, day: dt.date) -> tuple[str, ...]:
        off = self._off.get(day)
        if off is None:
            running = self.running_groups(day)
            off = self._off[day] = tuple(g for g in self._groups if g not in running)
        return off

    def group_off(self, firm: Firm, day: dt.date) -> bool:
        """The firm's group is off on `day` and the firm is bound by the rota."""
        return firm.group is not None and not firm.rota_exempt and firm.group in self.off_groups(day)

    def rest_day(self, firm: Firm, day: dt.date) -> bool:
        """A workshop's declared rest day inside the control period."""
        rest = self._rest.get(firm.id)
        return rest is not None and day in self.control and (day.weekday() in rest[0] or day in rest[1])

    def allowed_to_run(self, firm: Firm, day: dt.date, cut_off: Collection[str]) -> bool:
        return firm.id not in cut_off and not self.group_off(firm, day) and not self.rest_day(firm, day)

    def residents_hours(self, day: dt.date) -> str | None:
        residents = self.policy.residents
        if residents is None or day not in self.control:
            return None
        if WEEKDAYS[day.weekday()] == residents.experience_weekday or day in self._experience_dates:
            return residents.experience_hours
        return None

    def day(self, day: dt.date, cut_off: Collection[str] = ()) -> DaySchedule:
        inside = day in self.control
        phase = self.control.phase(day)
        off = self.off_groups(day)
        cut = tuple(f.id for f in self.policy.firms if inside and f.id in cut_off)
        return DaySchedule(
            day=day,
            in_control=inside,
            phase=phase.name if phase else None,
            cap_kwh=self.control.cap_kwh(day) if self.control.capped(day) else None,
            running_groups=self.running_groups(day),
            off_groups=off,
            exempt_running=tuple(
                f.id for f in self.policy.firms if f.rota_exempt and f.group in off and f.id not in cut
            ),
            resting_workshops=tuple(f.id for f in self.policy.firms if self.rest_day(f, day)),
            cut_off_firms=cut,
            residents_hours=self.residents_hours(day),
        )

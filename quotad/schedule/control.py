"""The control period, its phases and the township's cap on each day."""

from __future__ import annotations

import calendar as _cal
import datetime as dt

from quotad.core.policy import Phase, Policy

__all__ = ["ControlPeriod"]


class ControlPeriod:
    def __init__(self, policy: Policy) -> None:
        self.start = policy.control.start
        self.end = policy.control.end
        self.cap_from = policy.cap_from
        self._default_cap = policy.township.daily_cap_kwh
        self._phases = sorted(policy.control.phases, key=lambda p: p.start)

    def __contains__(self, day: object) -> bool:
        return isinstance(day, dt.date) and self.start <= day <= self.end

    def capped(self, day: dt.date) -> bool:
        """Township rules apply: inside the control period and from cap_from on."""
        return self.start <= day <= self.end and day >= self.cap_from

    def phase(self, day: dt.date) -> Phase | None:
        for phase in self._phases:
            if phase.start <= day <= phase.end:
                return phase
        return None

    def cap_kwh(self, day: dt.date) -> float:
        phase = self.phase(day)
        if phase is not None and phase.daily_cap_kwh is not None:
            return phase.daily_cap_kwh
        return self._default_cap

    def days_in_month(self, year: int, month: int) -> tuple[int, int]:
        """(days of the month inside the control period, days of the month)."""
        length = _cal.monthrange(year, month)[1]
        first, last = dt.date(year, month, 1), dt.date(year, month, length)
        lo, hi = max(first, self.start), min(last, self.end)
        return max(0, (hi - lo).days + 1), length

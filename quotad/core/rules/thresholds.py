"""The engine's one threshold cache: for each subject, the Wh below which none of its rules can fire, derived by
`quiet` from the very steps the rules fire (never written as a rule's inverse by hand). Derived, not state: it is
rebuilt from the policy, the totals and the raised ids, and a subject it knows nothing of is evaluated.

Where the thresholds live, so that the common reading compares a number it already holds: a firm's day and the
township's day on their totals' `mark` (see `Total`); a firm's month, whose total every day of the month feeds, on
the month's `mark` as the least of its days' thresholds; the 15-minute intervals and the projection per day here.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable

from quotad.core.ledger import Ledger, Month, Total
from quotad.core.policy import Firm
from quotad.core.rules import Rules
from quotad.core.rules.steps import DAY, MONTH, PROJECTED, QUARTER, Step, quiet
from quotad.schedule.calendar import Micros

__all__ = ["Thresholds", "Window"]

Window = tuple[Micros, Micros, float]  # a day's projection: (from, end of day, threshold of the projected Wh)


class Thresholds:
    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._months: dict[tuple[str, Month], dict[dt.date, float]] = {}  # a firm's month: its days' thresholds
        self.interval: dict[dt.date, float] = {}  # every 15-minute interval of the day
        self.projection: dict[dt.date, Window | None] = {}  # None: the projection cannot fire that day

    def derive(self, steps: Iterable[Step]) -> dict[str, float]:
        return quiet(self.rules.ctx, steps)

    def firm(self, firm: Firm, day: dt.date, day_total: Total, month_total: Total | None) -> None:
        marks = self.derive(self.rules.firm(firm, day))
        day_total.mark = marks.get(DAY, math.inf)
        if month_total is not None:
            days = self._months.setdefault((firm.id, (day.year, day.month)), {})
            days[day] = marks.get(MONTH, math.inf)
            month_total.mark = min(days.values())

    def township(self, day: dt.date, total: Total) -> None:
        total.mark = self.derive(self.rules.township(day)).get(DAY, math.inf)

    def quarters(self, day: dt.date, start: Micros) -> None:
        self.interval[day] = self.derive(self.rules.interval(day, start)).get(QUARTER, math.inf)

    def starts(self, day: dt.date) -> Micros:
        return self.rules.projection_starts(day)

    def window(self, day: dt.date) -> Window | None:
        start = self.starts(day)
        mark = self.derive(self.rules.projection(day, start)).get(PROJECTED, math.inf)
        window = self.projection[day] = None if mark == math.inf else (start, self.rules.ctx.cal.bounds(day)[1], mark)
        return window

    def forget_firm(self, ledger: Ledger, firm_id: str) -> None:
        """Evaluate `firm_id`'s rules again at its next reading of any day (an order changed what its steps are)."""
        for totals in (ledger.firm_day, ledger.firm_month):
            for (firm, _when), total in totals.items():
                if firm == firm_id:
                    total.mark = 0.0
        for key in [key for key in self._months if key[0] == firm_id]:
            del self._months[key]

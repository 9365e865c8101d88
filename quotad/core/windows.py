"""Energy in windows of time: the trailing hour (projection, whom to shed) and 15-minute load intervals.

Both apportion a reading's interval by time, like the midnight split. The trailing hour is an estimate
(float kWh); load intervals are exact integer Wh, cut at :00, :15, :30 and :45 (every UTC offset in use is
a multiple of 15 minutes, so local quarter hours are multiples of 900 s on the epoch line).
"""

from __future__ import annotations

from array import array
from collections import deque
from typing import Any, Final

from quotad.core.ledger import split
from quotad.schedule.calendar import Micros

__all__ = ["HOUR_US", "QUARTER_US", "LoadIntervals", "Piece", "TrailingHour"]

HOUR_US: Micros = 3_600_000_000
QUARTER_US: Micros = 900_000_000
_KEEP_QUARTERS = 2 * 96  # load intervals are kept two days behind the newest


# A counted interval: (t0, t1, wh, firm or None, counts toward the township). A plain tuple, not a NamedTuple:
# a snapshot of 10,000 meters reporting every minute holds 600,000 of them, and NamedTuples took a second to
# unpickle where `zip` builds plain tuples in a tenth of that.
Piece = tuple[Micros, Micros, int, str | None, bool]
T0: Final = 0
T1: Final = 1
WH: Final = 2
FIRM: Final = 3
TOWNSHIP: Final = 4


class TrailingHour:
    """Counted intervals overlapping the last hour of event time.

    Pickled as columns (a 10,000-meter state holds 600,000 pieces): arrays of integers, the firms as numbers
    into a table of their ids, the township flags as bytes."""

    def __init__(self) -> None:
        self._pieces: deque[Piece] = deque()  # in arrival order
        self.township_wh_bound = 0  # sum over kept township pieces: an upper bound of the trailing hour (Wh)

    def __getstate__(self) -> dict[str, Any]:
        pieces = self._pieces
        firms = [p[FIRM] for p in pieces]
        table = list(dict.fromkeys(firms))  # each firm once; the pieces refer to it by number
        return {
            "t0": array("q", [p[T0] for p in pieces]),
            "t1": array("q", [p[T1] for p in pieces]),
            "wh": array("q", [p[WH] for p in pieces]),
            "firms": table,
            "firm": array("I", map({firm: n for n, firm in enumerate(table)}.__getitem__, firms)),
            "township": bytes([p[TOWNSHIP] for p in pieces]),
            "township_wh_bound": self.township_wh_bound,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        firms = map(state["firms"].__getitem__, state["firm"])
        self._pieces = deque(
            zip(state["t0"], state["t1"], state["wh"], firms, map(bool, state["township"]), strict=True)
        )
        self.township_wh_bound = state["township_wh_bound"]

    def add(self, piece: Piece, now: Micros) -> None:
        if piece[T1] <= now - HOUR_US:
            return
        pieces = self._pieces
        pieces.append(piece)
        if piece[TOWNSHIP]:
            self.township_wh_bound += piece[WH]
        if pieces[0][T1] <= now - HOUR_US:
            self.prune(now)

    def prune(self, now: Micros) -> None:
        pieces, cutoff = self._pieces, now - HOUR_US
        while pieces and pieces[0][T1] <= cutoff:
            gone = pieces.popleft()
            if gone[TOWNSHIP]:
                self.township_wh_bound -= gone[WH]

    def township_wh(self, now: Micros) -> float:
        """The township pieces' energy inside (now - 1 h, now]: `_share` of each, summed in order (inlined: this
        runs over every piece of the hour for each township point)."""
        cutoff, total = now - HOUR_US, 0.0
        for t0, t1, wh, _firm, township in self._pieces:
            if not township or t1 <= cutoff:
                continue
            if cutoff <= t0 and t1 <= now:
                total += wh  # the whole piece: what `_share` gives exactly (wh * span / span)
                continue
            lo, hi = max(t0, cutoff), min(t1, now)
            if hi > lo:
                total += wh * (hi - lo) / (t1 - t0)
        return total

    def firms_wh(self, now: Micros) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self._pieces:
            firm = p[FIRM]
            if firm is not None:
                share = self._share(p, now)
                if share > 0:
                    out[firm] = out.get(firm, 0.0) + share
        return out

    @staticmethod
    def _share(p: Piece, now: Micros) -> float:
        t0, t1, wh = p[T0], p[T1], p[WH]
        lo, hi = max(t0, now - HOUR_US), min(t1, now)
        if hi <= lo:
            return 0.0
        return wh * (hi - lo) / (t1 - t0)


class LoadIntervals:
    """The township's energy per 15-minute interval (Wh), keyed by the interval's start."""

    def __init__(self) -> None:
        self.wh: dict[Micros, int] = {}
        self._newest: Micros = 0

    def add(self, t0: Micros, t1: Micros, wh: int) -> list[Micros]:
        """Apportion (t0, t1] and return the starts of the intervals that received energy."""
        first = t0 - t0 % QUARTER_US
        if t1 <= first + QUARTER_US:  # the common case: one interval
            self.wh[first] = self.wh.get(first, 0) + wh
            if first <= self._newest:
                return [first]  # not a new one: nothing to prune
            touched = [first]
        else:
            bounds = list(range(first + QUARTER_US, t1, QUARTER_US))
            touched = []
            for start, part in zip([first, *bounds], split(wh, t0, t1, bounds), strict=True):
                if part:
                    self.wh[start] = self.wh.get(start, 0) + part
                    touched.append(start)
        if touched and touched[-1] > self._newest:
            self._newest = touched[-1]
            if len(self.wh) > 2 * _KEEP_QUARTERS:
                horizon = self._newest - _KEEP_QUARTERS * QUARTER_US
                self.wh = {k: v for k, v in self.wh.items() if k >= horizon}
        return touched

"""Energy in windows of time: the trailing hour (projection, whom to shed) and 15-minute load intervals.

Both apportion a reading's interval by time, like the midnight split. The trailing hour is an estimate
(float kWh); load intervals are exact integer Wh, cut at :00, :15, :30 and :45 (every UTC offset in use is
a multiple of 15 minutes, so local quarter hours are multiples of 900 s on the epoch line).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Final

from quotad.core.ledger import split
from quotad.schedule.calendar import Micros

__all__ = ["HOUR_US", "QUARTER_US", "LoadIntervals", "Piece", "TrailingHour"]

HOUR_US: Micros = 3_600_000_000
QUARTER_US: Micros = 900_000_000
_KEEP_QUARTERS = 2 * 96  # load intervals are kept two days behind the newest


# A counted interval: (t0, t1, wh, firm or None, counts toward the township). A plain tuple, not a NamedTuple:
# the state of 10,000 meters reporting every minute holds 600,000 of them, and `zip` builds plain tuples from a
# saved state's columns in a tenth of the time NamedTuples take.
Piece = tuple[Micros, Micros, int, str | None, bool]
T0: Final = 0
T1: Final = 1
WH: Final = 2
FIRM: Final = 3
TOWNSHIP: Final = 4


class TrailingHour:
    """Counted intervals overlapping the last hour of event time."""

    def __init__(self) -> None:
        self._pieces: deque[Piece] = deque()  # in arrival order
        self.township_wh_bound = 0  # sum over kept township pieces: an upper bound of the trailing hour (Wh)
        self._changes = 0  # pieces added or dropped so far: `township_wh`'s last sum holds while it is the same
        self._summed: tuple[int, Micros, float] = (-1, 0, 0.0)  # (changes, now, township_wh(now))

    def pieces(self) -> tuple[Piece, ...]:
        """The kept pieces, in arrival order (the engine's state)."""
        return tuple(self._pieces)

    def restore(self, pieces: tuple[Piece, ...], township_wh: int) -> None:
        """Hold `pieces` (a saved state's, in arrival order; `township_wh`: the township ones' energy)."""
        self._pieces = deque(pieces)
        self.township_wh_bound = township_wh
        self._changes += 1

    def add(self, piece: Piece, now: Micros) -> None:
        if piece[T1] <= now - HOUR_US:
            return
        pieces = self._pieces
        pieces.append(piece)
        self._changes += 1
        if piece[TOWNSHIP]:
            self.township_wh_bound += piece[WH]
        if pieces[0][T1] <= now - HOUR_US:
            self.prune(now)

    def prune(self, now: Micros) -> None:
        pieces, cutoff = self._pieces, now - HOUR_US
        while pieces and pieces[0][T1] <= cutoff:
            gone = pieces.popleft()
            self._changes += 1
            if gone[TOWNSHIP]:
                self.township_wh_bound -= gone[WH]

    def township_wh(self, now: Micros) -> float:
        """The township pieces' energy inside (now - 1 h, now]: `_share` of each, summed in order (inlined: this
        runs over every piece of the hour for each township point). The last sum is kept: the daemon's status asks
        again every second, for the same `now` while no reading comes."""
        changes, at, total = self._summed
        if changes == self._changes and at == now:
            return total
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
        self._summed = (self._changes, now, total)
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

    @property
    def newest(self) -> Micros:
        """The start of the newest interval that received energy (0 before any)."""
        return self._newest

    def restore(self, wh: Mapping[Micros, int], newest: Micros) -> None:
        """Hold a saved state's intervals instead of what it held."""
        self.wh, self._newest = dict(wh), newest

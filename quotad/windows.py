"""Energy in windows of time: the trailing hour (projection, whom to shed) and 15-minute load intervals.

Both apportion a reading's interval by time, like the midnight split. The trailing hour is an estimate
(float kWh); load intervals are exact integer Wh, cut at :00, :15, :30 and :45 (every UTC offset in use is
a multiple of 15 minutes, so local quarter hours are multiples of 900 s on the epoch line).
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from quotad.ledger import split
from quotad.schedule.calendar import Micros

__all__ = ["HOUR_US", "QUARTER_US", "LoadIntervals", "Piece", "TrailingHour"]

HOUR_US: Micros = 3_600_000_000
QUARTER_US: Micros = 900_000_000
_KEEP_QUARTERS = 2 * 96  # load intervals are kept two days behind the newest


class Piece(NamedTuple):
    t0: Micros
    t1: Micros
    wh: int
    firm: str | None
    township: bool


class TrailingHour:
    """Counted intervals overlapping the last hour of event time."""

    def __init__(self) -> None:
        self._pieces: deque[Piece] = deque()
        self.township_wh_bound = 0  # sum over kept township pieces: an upper bound of the trailing hour (Wh)

    def add(self, piece: Piece, now: Micros) -> None:
        if piece.t1 <= now - HOUR_US:
            return
        pieces = self._pieces
        pieces.append(piece)
        if piece.township:
            self.township_wh_bound += piece.wh
        if pieces[0].t1 <= now - HOUR_US:
            self.prune(now)

    def prune(self, now: Micros) -> None:
        pieces, cutoff = self._pieces, now - HOUR_US
        while pieces and pieces[0].t1 <= cutoff:
            gone = pieces.popleft()
            if gone.township:
                self.township_wh_bound -= gone.wh

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
            if p.firm is not None:
                share = self._share(p, now)
                if share > 0:
                    out[p.firm] = out.get(p.firm, 0.0) + share
        return out

    @staticmethod
    def _share(p: Piece, now: Micros) -> float:
        lo, hi = max(p.t0, now - HOUR_US), min(p.t1, now)
        if hi <= lo:
            return 0.0
        return p.wh * (hi - lo) / (p.t1 - p.t0)


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

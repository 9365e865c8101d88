"""How often the shell tries again, and how often it says so: one bounded backoff, one sampled log.

- `Backoff`: bounded exponential backoff (a delay doubling from `first_s` up to `max_s`, from `first_s` again after
  a success). Every reconnection and retry loop of the shell takes its delays from one (the MQTT driver, the
  InfluxDB sink, the daemon's refused writes), each with its own bounds.
- `Tally`: counts a recurring fault per key (a meter, a topic) and says when it is worth a log line: the first, then
  every `every`th, with the count; `clear(key)` when the fault is over, so that the next outage is said again. A
  fault is logged once per outage, never once per occurrence.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Backoff", "Tally"]

K = TypeVar("K", bound=Hashable)


class Backoff:
    """Delays of `first_s`, doubling up to `max_s`; `reset` after a success."""

    def __init__(self, first_s: float = 1.0, max_s: float = 30.0) -> None:
        if not 0 < first_s <= max_s:
            msg = f"a backoff needs 0 < first_s <= max_s, not {first_s}, {max_s}"
            raise ValueError(msg)
        self.first_s, self.max_s = first_s, max_s
        self.current = first_s  # the delay the next `next()` returns

    def next(self) -> float:
        """The delay to wait now; the one after it is doubled (bounded)."""
        delay = self.current
        self.current = min(delay * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self.current = self.first_s


class Tally(Generic[K]):
    """Occurrences of a recurring fault, per key; `hit` says which are worth a log line."""

    def __init__(self, every: int = 100) -> None:
        self.every = every
        self.counts: dict[K, int] = {}

    def hit(self, key: K) -> int | None:
        """Count one more for `key`; its count when it is the first or an `every`th (log it), else None."""
        count = self.counts[key] = self.counts.get(key, 0) + 1
        return count if count == 1 or count % self.every == 0 else None

    def clear(self, key: K) -> int:
        """The fault on `key` is over: its count, forgotten (the next one is a first again)."""
        return self.counts.pop(key, 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __bool__(self) -> bool:
        return bool(self.counts)

    def __len__(self) -> int:
        return len(self.counts)

"""The daemon's and the simulator's clock: real time, or a simulated time running `speed` times faster.

A simulated clock reads `start` at the real instant `anchor` (Unix seconds). Processes that must agree on
simulated time (the simulator and the daemon of `quotad demo`) share the anchor through a small file:
the first to start writes it, the others read it (`shared_anchor`).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from quotad.schedule.calendar import MICROS_PER_S, Micros

__all__ = ["Clock", "shared_anchor"]


class Clock:
    def __init__(self, start: Micros | None = None, speed: float = 1.0, anchor: float | None = None) -> None:
        """Real time when `start` is None; else simulated: `start` at real time `anchor` (default: now)."""
        self.start = start
        self.speed = speed if start is not None else 1.0
        self.anchor = time.time() if anchor is None else anchor

    @property
    def simulated(self) -> bool:
        return self.start is not None

    def now(self) -> Micros:
        real = time.time()
        if self.start is None:
            return round(real * MICROS_PER_S)
        return self.start + round((real - self.anchor) * self.speed * MICROS_PER_S)

    def real_seconds(self, span: Micros) -> float:
        """How long `span` of this clock lasts in real seconds."""
        return span / MICROS_PER_S / self.speed

    async def sleep_until(self, t: Micros) -> None:
        delay = self.real_seconds(t - self.now())
        if delay > 0:
            await asyncio.sleep(delay)


def shared_anchor(path: Path, start: Micros) -> float:
    """The real instant at which simulated time `start` began, shared through `path` (created if absent)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = json.dumps({"start": start, "anchor": time.time()})
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("start") == start:
            return float(saved["anchor"])
        path.write_text(record, encoding="utf-8")  # a different simulation: start afresh
        return float(json.loads(record)["anchor"])
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(record)
    return float(json.loads(record)["anchor"])

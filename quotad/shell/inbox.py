"""The daemon's inbox: readings waiting for the journal, taken in batches by the ingest loop.

Everything here runs on the daemon's loop: the Modbus poller and the MQTT source (paho on the same loop) `put`,
the ingest loop `take`s. The inbox never refuses a reading; the MQTT source stops reading its socket while the
inbox is `full`, so a broker's backlog stays on the broker rather than in memory, and nothing is dropped. Each
reading may carry an `ack`, called by the ingest loop once the reading is durable.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from quotad.core.readings import Reading

__all__ = ["Inbox", "Item"]

Item = tuple[Reading, Callable[[], object] | None]


class Inbox:
    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._items: collections.deque[Item] = collections.deque()
        self._wake = asyncio.Event()
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        """At least `limit` readings wait: a source that can hold back should."""
        return len(self._items) >= self.limit

    def put(self, reading: Reading, ack: Callable[[], object] | None = None) -> None:
        """Queue `reading` (from the loop's thread). Once closed (stopping), a reading is not queued and not
        acknowledged: the broker sends it again after the restart, the poller reads it again."""
        if self.closed:
            return
        self._items.append((reading, ack))
        self._wake.set()

    async def take(self, limit: int = 1000) -> list[Item]:
        """The waiting readings, oldest first, at most `limit`; waits while there are none."""
        items = self._items
        while not items:
            self._wake.clear()
            await self._wake.wait()
        return [items.popleft() for _ in range(min(limit, len(items)))]

"""The daemon's inbox: readings waiting for the journal, taken in batches by the ingest loop.

Two doors. The loop's own sources (the Modbus poller) `put` without limit: a poll round is bounded by the
meters. Paho's network thread calls `put_from_thread`, which blocks while `limit` readings wait: a broker's
backlog then stays on the broker (paho stops reading its socket), never grows in memory, and nothing is
dropped. Each reading may carry an `ack`, called by the ingest loop once the reading is durable.
"""

from __future__ import annotations

import asyncio
import collections
import queue
from collections.abc import Callable

from quotad.readings import Reading

__all__ = ["Inbox", "Item"]

Item = tuple[Reading, Callable[[], object] | None]


class Inbox:
    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = 10_000) -> None:
        self._loop = loop
        self._local: collections.deque[Item] = collections.deque()
        self._threaded: queue.Queue[Item] = queue.Queue(limit)
        self._wake = asyncio.Event()
        self._wake_pending = False  # a wake is on its way to the loop (set by producers, cleared by `take`)
        self.closed = False

    def __len__(self) -> int:
        return len(self._local) + self._threaded.qsize()

    def put(self, reading: Reading) -> None:
        """From the loop's thread."""
        self._local.append((reading, None))
        self._wake.set()

    def put_from_thread(self, reading: Reading, ack: Callable[[], object] | None = None) -> None:
        """From another thread: blocks while the inbox is full. Once closed, a reading is left unacknowledged
        (the broker sends it again after the restart)."""
        while not self.closed:
            try:
                self._threaded.put((reading, ack), timeout=0.2)
                break
            except queue.Full:
                continue
        else:
            return
        if not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._wake.set)

    async def take(self, limit: int = 1000) -> list[Item]:
        """The waiting readings, oldest first per door, at most `limit`; waits while there are none."""
        while True:
            self._wake_pending = False  # before looking: a reading put after this wakes us again
            batch: list[Item] = []
            local = self._local
            while local and len(batch) < limit:
                batch.append(local.popleft())
            try:
                while len(batch) < limit:
                    batch.append(self._threaded.get_nowait())
            except queue.Empty:
                pass
            if batch:
                return batch
            self._wake.clear()
            if not len(self):
                await self._wake.wait()

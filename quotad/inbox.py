"""The daemon's inbox: readings waiting for the journal, taken in batches by the ingest loop.

Two doors. The loop's own sources (the Modbus poller) `put` without limit: a poll round is bounded by the
meters. Paho's network thread calls `put_from_thread`, which blocks while `limit` readings wait: a broker's
backlog then stays on the broker (paho stops reading its socket), never grows in memory, and nothing is
dropped. Each reading may carry an `ack`, called by the ingest loop once the reading is durable.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable

from quotad.readings import Reading

__all__ = ["Inbox", "Item"]

Item = tuple[Reading, Callable[[], object] | None]


class Inbox:
    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = 10_000) -> None:
        self._loop = loop
        self._limit = limit
        self._local: collections.deque[Item] = collections.deque()
        # The threaded door is a deque too (appends and pops are atomic): a lock is taken only by a producer that
        # finds it full, and by `take` when such a producer waits.
        self._threaded: collections.deque[Item] = collections.deque()
        self._room = threading.Condition()
        self._producer_waits = False
        self._wake = asyncio.Event()
        self._wake_pending = False  # a wake is on its way to the loop (set by producers, cleared by `take`)
        self.closed = False

    def __len__(self) -> int:
        return len(self._local) + len(self._threaded)

    def put(self, reading: Reading) -> None:
        """From the loop's thread."""
        self._local.append((reading, None))
        self._wake.set()

    def put_from_thread(self, reading: Reading, ack: Callable[[], object] | None = None) -> None:
        """From another thread: blocks while the inbox is full. Once closed, a reading is left unacknowledged
        (the broker sends it again after the restart)."""
        threaded = self._threaded
        if len(threaded) >= self._limit:
            with self._room:
                while len(threaded) >= self._limit and not self.closed:
                    self._producer_waits = True
                    self._room.wait(0.2)  # `take` wakes it; the timeout only notices `closed`
                self._producer_waits = False
        if self.closed:
            return
        threaded.append((reading, ack))
        if not self._wake_pending:
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._wake.set)

    async def take(self, limit: int = 1000) -> list[Item]:
        """The waiting readings, oldest first per door, at most `limit`; waits while there are none."""
        while True:
            self._wake_pending = False  # before looking: a reading put after this wakes us again
            batch: list[Item] = []
            local, threaded = self._local, self._threaded
            while local and len(batch) < limit:
                batch.append(local.popleft())
            taken = len(batch)
            while threaded and len(batch) < limit:
                batch.append(threaded.popleft())
            if len(batch) > taken and self._producer_waits:
                with self._room:
                    self._room.notify_all()
            if batch:
                return batch
            self._wake.clear()
            if not len(self):
                await self._wake.wait()

"""The daemon's readings, from its inbox into the journal, a batch per transaction, and what goes wrong on the way:
a reading the core fails on (set apart, the batch goes on), a reading refused (counted, logged once then every
100th), a state directory that refuses the write (the engine rebuilt from the journal, the write tried again with
backoff, the daemon degraded until a write goes through). A part of `quotad.shell.daemon.Daemon`, kept apart."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from quotad.core.alerts import Alert
from quotad.core.errors import ReadingError, StoreError
from quotad.core.readings import Reading
from quotad.schedule.calendar import MICROS_PER_S
from quotad.shell.inbox import Inbox, Item
from quotad.shell.journal import SNAPSHOT_EVERY
from quotad.shell.pacing import Backoff, Tally

if TYPE_CHECKING:
    from quotad.config.daemon import DaemonSettings
    from quotad.shell.clock import Clock
    from quotad.shell.journal import Journal
    from quotad.shell.snapshots import Snapshotter
    from quotad.shell.store import Store
    from quotad.web.app import Console

__all__ = ["FUTURE_LIMIT", "Ingesting", "retry_backoff"]

log = logging.getLogger("quotad.shell.daemon")  # the daemon's log lines, as they were
FUTURE_LIMIT = 5 * 60 * MICROS_PER_S  # a reading stamped further ahead of the clock is refused
_RETRY_MIN_S, _RETRY_MAX_S = 1.0, 60.0  # a refused write is tried again after 1 s, doubling up to a minute


def retry_backoff() -> Backoff:
    return Backoff(_RETRY_MIN_S, _RETRY_MAX_S)


class _Faulted(Exception):
    """The core failed on the batch's reading `index` (a bug, or a value no check foresaw)."""

    def __init__(self, index: int, why: str) -> None:
        super().__init__(why)
        self.index, self.why = index, why


class Ingesting:
    """The ingest loop and the refused writes, mixed into the daemon (which owns the attributes below)."""

    journal: Journal
    store: Store
    clock: Clock
    settings: DaemonSettings
    inbox: Inbox | None
    rejected: Tally[str]
    where: dict[str, str]
    wakes: dict[str, asyncio.Event]
    trouble: StoreError | None
    exit_code: int
    _stop: asyncio.Event
    _retry: Backoff
    _retry_at: float
    _commits_then: int

    snapshots: Snapshotter
    console: Console | None
    _touched: Callable[[Iterable[str | None]], None]  # `quotad.shell.statuses.Publishing`'s, in the daemon

    def _rebuild(self) -> None:
        raise NotImplementedError

    def _say_state(self) -> None:
        raise NotImplementedError

    # -- readings ------------------------------------------------------------------------------

    async def _ingest(self) -> None:
        """Readings from the inbox into the journal, a batch per transaction; each acknowledged to its broker
        only once the batch is durable, so a crash anywhere loses none (the broker sends them again)."""
        try:
            await self._ingest_batches()
        except Exception:  # a bug: the engine may be ahead of the journal; a restart rebuilds it from the journal
            log.exception("ingesting readings failed: stopping, so that a restart rebuilds the state from the journal")
            self.exit_code = 1
            self._stop.set()

    async def _ingest_batches(self) -> None:
        assert self.inbox is not None
        while True:
            batch = await self.inbox.take()
            alerts, refused = await self._journal_batch(batch)
            meters = self.journal.engine.ledger.meters
            self._touched(meters[r.meter].firm for r, _ack in batch if r.meter in meters)  # their statuses
            for _reading, ack in batch:
                if ack is not None:
                    ack()
            for reading, why in refused:
                self._reject(reading.meter, why)
            for alert in alerts:
                log.warning("%s %s", alert.id, alert.message)
            if alerts and self.console is not None:
                self.console.alerts([alert.payload() for alert in alerts])
            for wake in self.wakes.values():
                wake.set()
            if self.journal.last_event - self.snapshots.covered >= SNAPSHOT_EVERY:
                self.snapshots.start()  # copied now, between two batches; encoded on a worker thread
            await asyncio.sleep(0)  # the sinks and the tick get their turn between batches

    async def _journal_batch(self, batch: list[Item]) -> tuple[list[Alert], list[tuple[Reading, str]]]:
        """Journal `batch` in one transaction, trying again until it is durable: a write the disk refuses is tried
        again with backoff (the engine rebuilt from the journal each time, so it never runs ahead of it); a reading
        the core fails on is set apart (journaled as rejected) and the rest of the batch goes on."""
        quarantined: dict[int, str] = {}
        while True:
            if self.trouble is not None:
                await asyncio.sleep(max(0.0, self._retry_at - time.monotonic()))
            try:
                return self._write_batch(batch, quarantined)
            except _Faulted as fault:
                reading = batch[fault.index][0]
                quarantined[fault.index] = f"the core failed on it: {fault.why}"
                log.error("reading of meter %s (%s) set apart: the core failed on it (%s): %r",
                          reading.meter, self.where.get(reading.meter, "?"), fault.why, reading,
                          exc_info=fault.__cause__ if reading.meter not in self.rejected.counts else None)  # fmt: skip
                self._rebuild()  # the core may have half-applied it
            except StoreError as exc:
                self._refused(exc)

    def _write_batch(
        self, batch: list[Item], quarantined: dict[int, str]
    ) -> tuple[list[Alert], list[tuple[Reading, str]]]:
        journal, alerts, refused = self.journal, [], []
        limit = self.clock.now() + FUTURE_LIMIT
        with self.store.batch():
            for index, (reading, _ack) in enumerate(batch):
                why = quarantined.get(index)
                if why is None and reading.t > limit:
                    why = "stamped more than 5 minutes ahead of the clock"
                if why is None:
                    try:
                        alerts += journal.record_reading(reading)
                        continue
                    except ReadingError as exc:  # refused before anything was counted
                        why = str(exc)
                    except Exception as exc:  # whatever it is, one reading never stops ingestion
                        raise _Faulted(index, f"{type(exc).__name__}: {exc}") from exc
                journal.record_rejected(reading, why)
                refused.append((reading, why))
        self._written()
        return alerts, refused

    def _reject(self, meter: str, why: str) -> None:
        count = self.rejected.hit(meter)
        if count is not None:
            log.warning("reading of meter %s (%s) refused (%d so far): %s", meter, self.where.get(meter, "?"),
                        count, why)  # fmt: skip

    def _refused(self, exc: StoreError) -> None:
        """A write was refused: nothing of it is committed, but the engine may have applied it. The engine is rebuilt
        from the journal (what is committed), and the write is tried again after a backoff."""
        first = self.trouble is None
        self.trouble, self._commits_then = exc, self.store.commits
        self._rebuild()
        self._retry_at = time.monotonic() + self._retry.next()
        if first:
            log.error(
                "%s: quotad is degraded: readings are held unacknowledged (their brokers keep them) and the write is "
                "tried again, from every %.0f s up to every %.0f s", exc, _RETRY_MIN_S, _RETRY_MAX_S,
            )  # fmt: skip
            self._say_state()

    def _written(self) -> None:
        """A write succeeded: the state directory takes writes again."""
        self._retry.reset()
        if self.trouble is not None:
            log.warning("the state directory %s takes writes again: quotad resumes", self.settings.state_dir)
            self.trouble = None
            self._say_state()

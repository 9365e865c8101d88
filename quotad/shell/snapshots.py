"""Snapshots of the journal's state: the engine's state (`quotad.core.state`) and the energy points' clock, as
zlib-compressed JSON, taken every SNAPSHOT_EVERY events, every 5 minutes and at a reload.

A snapshot is taken in two steps: `capture` copies the state on the event loop (a value: the engine may go on at
once), `encode` turns it into bytes anywhere (the daemon does it on a worker thread). A restart loads the
newest snapshot it can read and replays the events after it; one it cannot read (damaged, or of a schema this
quotad does not know) costs a replay from the one before, or from the journal's start, never the state.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from quotad.core.engine import Engine
from quotad.core.errors import StoreError
from quotad.core.outputs import EnergyPoints
from quotad.core.policy import Policy
from quotad.core.state import EngineState, StateVersionError
from quotad.schedule.calendar import Micros

if TYPE_CHECKING:
    from quotad.shell.journal import Journal

__all__ = ["FORMAT", "Captured", "Loaded", "Snapshotter", "load"]

log = logging.getLogger(__name__)
# The snapshots' `version` column: how the blob is written. The state's schema version is inside the JSON, and
# `EngineState.from_dict` checks it; a pickle of an older quotad says its own version there, and is not read.
FORMAT: Final = "state+json+zlib"


@dataclass(frozen=True, slots=True)
class Captured:
    """The journal's state through event `event`, as a value."""

    event: int
    state: EngineState
    points: dict[str, Micros]  # when each subject's energy point was last written (`EnergyPoints.last`)
    policy: str  # the fingerprint of the policy it was taken under (for the log: a state carries over any)

    def encode(self) -> bytes:
        body = {"policy": self.policy, "engine": self.state.as_dict(), "points": self.points}
        return zlib.compress(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(), 1)


def decode(blob: bytes) -> tuple[EngineState, dict[str, Micros], str]:
    body: dict[str, Any] = json.loads(zlib.decompress(blob))
    collecting = gc.isenabled()
    gc.disable()  # 600,000 pieces of the trailing hour are made at once, and none is garbage: a third faster
    try:
        return EngineState.from_dict(body["engine"]), dict(body["points"]), str(body["policy"])
    finally:
        if collecting:
            gc.enable()


@dataclass(frozen=True, slots=True)
class Loaded:
    event: int
    engine: Engine
    points: EnergyPoints


def load(snapshots: Iterable[tuple[int, str, bytes]], policy: Policy, fingerprint: str) -> Loaded | None:
    """The engine of the newest snapshot (`snapshots`: newest first) that can be read, under `policy`; None when
    none can (the journal is then replayed from its start)."""
    for event, version, blob in snapshots:
        if version != FORMAT:
            log.info("state snapshot at event %d is from an older quotad (%s): not read", event, version)
            continue
        try:
            state, points, taken_under = decode(blob)
            engine = Engine(policy, state)
        except StateVersionError as exc:
            log.warning("state snapshot at event %d not read: %s", event, exc)
            continue
        except Exception as exc:  # a damaged snapshot costs a longer replay, never the state
            log.warning("state snapshot unreadable at event %d (%s: %s)", event, type(exc).__name__, exc)
            continue
        if taken_under != fingerprint:
            log.info("state snapshot at event %d was taken under another policy: it carries over", event)
        dropped(state, policy)
        return Loaded(event, engine, EnergyPoints(policy.township.id, points))
    return None


def dropped(state: EngineState, policy: Policy) -> None:
    """Log the meters of `state` that `policy` no longer has (their cursors are dropped, their energy stays)."""
    gone = sorted(set(state.meters) - {m.id for m in policy.meters})
    if gone:
        shown = ", ".join(gone[:20]) + (f" and {len(gone) - 20} more" if len(gone) > 20 else "")
        log.warning(
            "%d meter(s) no longer in the policy: %s; their readings are refused from now on, the energy they "
            "counted stays in the totals", len(gone), shown,
        )  # fmt: skip


class Snapshotter:
    """The daemon's snapshots, off its ingest path: the state is copied on the loop, between two batches (the
    engine as journaled, and not changing while copied), encoded on a worker thread while the loop goes on
    (readings, watchdog pings), then written and the journal compacted behind it, back on the loop.
    `journal`: the daemon's journal now (a reload or a rebuild replaces it); `healthy`: writes are taken."""

    def __init__(self, journal: Callable[[], Journal], healthy: Callable[[], bool]) -> None:
        self._journal, self._healthy = journal, healthy
        self.task: asyncio.Task[None] | None = None
        self.covered = 0  # the event the latest snapshot (taken or under way) covers through
        self._again = False

    def start(self) -> None:
        """Snapshot on the running loop; if one is under way, another follows it (a reload's must be taken)."""
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="snapshot")
        else:
            self._again = True

    async def _run(self) -> None:
        await self._take()
        while self._again:
            self._again = False
            await self._take()

    async def _take(self) -> None:
        if not self._healthy():
            return  # a snapshot is an optimisation: it waits for the disk, like everything else
        started = time.monotonic()
        captured = self._journal().capture()
        self.covered = captured.event
        copied = time.monotonic()
        blob = await asyncio.to_thread(captured.encode)
        encoded = time.monotonic()
        if self._healthy():
            self._save(captured, blob)
        log.debug("snapshot through event %d: %.0f KB; copied in %.3f s, encoded in %.3f s, saved in %.3f s",
                  captured.event, len(blob) / 1e3, copied - started, encoded - copied,
                  time.monotonic() - encoded)  # fmt: skip

    def now(self) -> None:
        """Snapshot now, all of it on this thread (at a stop)."""
        if self._healthy():
            captured = self._journal().capture()
            self.covered = captured.event
            self._save(captured, captured.encode())

    def _save(self, captured: Captured, blob: bytes) -> None:
        journal = self._journal()
        try:
            journal.save(captured, blob)
            deleted = journal.compact()
        except StoreError as exc:  # the engine is unchanged by a refused snapshot: only the next restore is longer
            log.warning("state snapshot not saved (%s): the next start replays the journal from the previous one", exc)
            return
        if deleted:
            log.debug("journal compacted: %d reading events covered by a snapshot deleted", deleted)

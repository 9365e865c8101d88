"""A sink's outbox kept within a bound (bytes and age) while its peer is away: the oldest telemetry gives way.

Telemetry is the outbox rows of key `readings` (`meter_reading`, `firm_energy`, `township_energy` points): every
reading stays in the journal, so nothing the rules counted is lost, only its copy for the dashboards. Alerts,
orders, order changes and notices never give way, however far past the bound. An episode runs from the first
drop until the outbox is delivered; it is logged once when it begins and once when it ends, with the counts. The
counts since the state directory began are kept in its meta table, for the daemon's status.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from quotad.core.errors import StoreError
from quotad.shell.store import Dropped, Store

__all__ = ["OutboxBound"]

log = logging.getLogger(__name__)
_MB = 1_000_000
_HOUR_S = 3600.0


class OutboxBound:
    """The bound of `sink`'s outbox: at most `max_mb` megabytes (10^6 bytes) of bodies, and no telemetry waiting
    longer than `max_age_h` hours. Past the byte bound, it drops down to 95% of it: one delete per 5% of growth."""

    def __init__(
        self, store: Store, sink: str, max_mb: float, max_age_h: float, now: Callable[[], float] = time.time
    ) -> None:
        self.store, self.sink, self.now = store, sink, now
        self.max_mb, self.max_age_h = max_mb, max_age_h
        self.max_bytes, self.max_age_s = int(max_mb * _MB), max_age_h * _HOUR_S
        self._age_every_s = min(60.0, self.max_age_s / 4)  # the age bound is looked at this often
        self._age_looked = 0.0
        self._meta_key = f"outbox_dropped:{sink}"
        self._failing = False

    def enforce(self) -> Dropped:
        """Drop what is past the bound (nothing, as a rule: a look at the counted bytes, the age once a minute). A
        store that cannot be written now (a full disk) is said once; the next look tries again."""
        try:
            dropped = self._enforce()
        except (sqlite3.Error, StoreError) as exc:
            if not self._failing:
                log.error("%s outbox: cannot drop what is past its bound (%s); tried again at the next look", self.sink,
                          exc)  # fmt: skip
            self._failing = True
            return Dropped()
        if self._failing:
            log.warning("%s outbox: its bound is kept again", self.sink)
        self._failing = False
        return dropped

    def _enforce(self) -> Dropped:
        store, now = self.store, self.now()
        over = store.outbox_bytes(self.sink) - self.max_bytes
        aged = False
        if now - self._age_looked >= self._age_every_s:
            self._age_looked = now
            oldest = store.oldest_telemetry(self.sink)
            aged = oldest is not None and oldest < now - self.max_age_s
        if over <= 0 and not aged:
            return Dropped()
        free = over + self.max_bytes // 20 if over > 0 else 0
        with store.batch():  # the drop and its count, durable together
            dropped = store.drop_telemetry(self.sink, free=free, queued_before=now - self.max_age_s)
            if not dropped.points:
                return dropped
            counts = self.counts()
            began = counts["episode"] is None
            episode = counts["episode"] or [0, 0]
            counts.update(
                points=counts["points"] + dropped.points,
                readings=counts["readings"] + dropped.readings,
                last=dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds"),
                episode=[episode[0] + dropped.points, episode[1] + dropped.readings],
            )
            store.put(self._meta_key, json.dumps(counts))
        if began:
            why = f"over {self.max_mb:g} MB" if over > 0 else f"waiting over {self.max_age_h:g} h"
            log.warning(
                "%s outbox past its bound (%s): the oldest telemetry gives way, %d points (%d meter readings) so "
                "far; alerts and orders are kept; every reading stays in the journal",
                self.sink, why, dropped.points, dropped.readings,
            )  # fmt: skip
        return dropped

    def caught_up(self) -> None:
        """The outbox was delivered: an episode of drops, if one was running (before a restart too), is over."""
        counts = self.counts()
        if counts["episode"] is None:
            return
        try:
            self.store.put(self._meta_key, json.dumps({**counts, "episode": None}))
        except (sqlite3.Error, StoreError):  # a full disk: the episode ends at the next delivery
            return
        points, readings = counts["episode"]
        log.warning(
            "%s outbox delivered: %d telemetry points (%d meter readings) gave way to its bound in that outage; "
            "every alert and order was kept", self.sink, points, readings,
        )  # fmt: skip

    def counts(self) -> dict[str, Any]:
        """What gave way since the state directory began: `points`, `readings`, when `last` (ISO 8601, UTC), and
        `episode`: [points, readings] since the outbox was last delivered, or None."""
        saved = self.store.get(self._meta_key)
        counts: dict[str, Any] = {"points": 0, "readings": 0, "last": None, "episode": None}
        if saved is not None:
            counts.update(json.loads(saved))
        return counts

    def status(self) -> dict[str, Any]:
        """The outbox's part of the daemon's status."""
        counts = self.counts()
        return {
            "pending_mb": round(self.store.outbox_bytes(self.sink) / _MB, 1),
            "max_mb": self.max_mb,
            "max_age_h": self.max_age_h,
            "dropped_points": counts["points"],
            "dropped_readings": counts["readings"],
            "last_dropped": counts["last"],
        }

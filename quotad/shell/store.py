"""Durable state under `state_dir`: an ordered event log, engine snapshots, and one outbox per sink.

SQLite in WAL mode. Every accepted reading (and every operator action) is appended to `events` in the
same transaction as the outbox rows it produced, so after a crash at any moment either both are there or
neither. The engine is pure and deterministic: replaying the log after the latest snapshot rebuilds
exactly the state (totals, raised ids, orders) an uninterrupted run has. Sinks deliver their outbox in
order and delete only what was acknowledged; each sink has its own queue, so one outage never holds back
the other. A sink's outbox is bounded by the sink: the store keeps each outbox's size in bytes and drops the oldest
telemetry rows (key `readings`) on request; every other row (alerts, orders, notices) stays until delivered
(`quotad.shell.outbox`).

The log is bounded too: the two newest snapshots are kept, and the readings the older one covers that raised and
ordered nothing are deleted (`compact`). What stays is the register (readings that raised or ordered, lifts,
notices, multipliers, rejected readings) and the readings since the older snapshot: with a snapshot every 20,000
events, at most 40,000 of them.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from quotad.core.errors import StoreError
from quotad.shell.outbox import TELEMETRY, Dropped, Outboxes, OutboxItem, _coalesced

__all__ = ["TELEMETRY", "DaemonLock", "Dropped", "Event", "OutboxItem", "Store", "make_private_dir", "private_file"]

_INCREMENTAL = 2  # PRAGMA auto_vacuum's value for incremental
_WAL_LIMIT = 32 * 2**20  # bytes of WAL file kept after a checkpoint

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,         -- the newest is never deleted: a new one is always the highest
    kind TEXT NOT NULL,              -- 'reading' | 'order' | 'issue' | 'talk' | 'inspection' | 'inspections' | 'notice'
                                     -- | 'multipliers' | 'order_end' | 'rejected' | 'lift' (older)
    body TEXT NOT NULL               -- JSON
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,         -- max + 1: higher than every item still waiting (what order needs)
    sink TEXT NOT NULL,              -- 'mqtt' | 'influx'
    key TEXT NOT NULL,               -- what it is: 'alert', 'order', 'notice', 'points', a measurement, or
                                     -- 'readings': telemetry only, which may give way under the sink's bound
    body TEXT NOT NULL,              -- mqtt: {"topic", "payload", "retain"}; influx: lines of line protocol
    event INTEGER,                   -- the event that produced it
    queued REAL                      -- when it was written (Unix time; NULL in rows from before the column)
);
CREATE INDEX IF NOT EXISTS outbox_sink ON outbox (sink, seq);
CREATE TABLE IF NOT EXISTS snapshots (
    event INTEGER PRIMARY KEY,       -- the last event folded into the snapshot
    version TEXT NOT NULL,
    blob BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,              -- an operator's request for the running daemon
    done TEXT                        -- its outcome, JSON, once handled
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Event:
    seq: int
    kind: str
    body: dict[str, Any]


class Store(Outboxes):
    def __init__(self, state_dir: Path) -> None:
        make_private_dir(state_dir)
        self.path = state_dir / "quotad.db"
        # 0600 before SQLite opens it: SQLite gives the -wal and -shm files it creates the database's own mode
        for path in (self.path, *(self.path.with_name(self.path.name + end) for end in ("-wal", "-shm"))):
            private_file(path, create=path == self.path)
        self.db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        if self.db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None:  # a new database (first)
            self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # compaction gives pages back to the file system
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process; WAL keeps it consistent
        self.db.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")  # the WAL shrinks back after a big checkpoint
        self.db.executescript(_SCHEMA)
        if "queued" not in {row[1] for row in self.db.execute("PRAGMA table_info(outbox)")}:
            self.db.execute("ALTER TABLE outbox ADD COLUMN queued REAL")  # a state_dir from before the bounds
        self._sizes: dict[str, int] | None = None  # each outbox's bytes, counted once when first asked for
        self._unsettled: dict[str, int] = {}  # bytes added (or, < 0, removed) by the open transaction
        self._batch_depth = 0
        self.commits = 0  # transactions committed: a daemon in trouble knows a write went through
        # Inside a batch, appends are gathered and written at its end, two statements for all of them.
        self._next_seq = 0
        self._events: list[tuple[int, str, str]] = []
        self._outbox: list[tuple[str, str, str, int]] = []

    def close(self) -> None:
        self.db.close()

    @classmethod
    def read_only(cls, state_dir: Path) -> Store | None:
        """The store of `state_dir` opened for reading only (a command beside a running daemon, or after it); None
        when there is none. Creates nothing. Raises OSError when the state is there but cannot be read."""
        path = state_dir / "quotad.db"
        if not path.is_file():
            return None
        if not os.access(path, os.R_OK):
            msg = f"cannot read {path} (the daemon's state is readable by the daemon's own user)"
            raise PermissionError(msg)
        store = cls.__new__(cls)
        store.path = path
        try:
            store.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0, check_same_thread=False)
            store.db.execute("SELECT 1 FROM events LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            msg = f"cannot read {path}: {exc}"
            raise OSError(msg) from None
        store._batch_depth, store._next_seq, store._events, store._outbox, store.commits = 0, 0, [], [], 0
        store._sizes, store._unsettled = None, {}
        return store

    def order_events(self) -> Iterator[Event]:
        """The events that made or changed an order, in order: readings that made one, people's commands on
        orders, and lifts (journaled before orders had states)."""
        cursor = self.db.execute(
            "SELECT seq, kind, body FROM events WHERE kind IN ('lift', 'order', 'issue', 'inspection') "
            "OR (kind = 'reading' AND json_array_length(body, '$.orders') > 0) ORDER BY seq"
        )
        for seq, kind, body in cursor:
            yield Event(seq, kind, json.loads(body))

    def alert_payloads(self, *, newest_first: bool = False) -> Iterator[dict[str, Any]]:
        """The alerts the journal records, as published, in the order raised, or `newest_first` (read backwards: the
        console's page of the latest does not read the whole journal). Events journaled by a quotad before alerts
        were kept whole carry their ids only, and are not among them."""
        cursor = self.db.execute(
            "SELECT body FROM events WHERE kind IN ('reading', 'issue', 'inspection') "
            "AND json_type(body, '$.alerts') = 'array' "
            f"ORDER BY seq {'DESC' if newest_first else 'ASC'}"
        )
        for (body,) in cursor:
            alerts = json.loads(body)["alerts"]
            yield from reversed(alerts) if newest_first else alerts

    def ended_orders(self) -> set[str]:
        """The alert ids of the orders that ran to their end (past their `until`)."""
        rows = self.db.execute("SELECT json_extract(body, '$.alert_id') FROM events WHERE kind = 'order_end'")
        return {str(alert_id) for (alert_id,) in rows}

    def latest(self, kind: str) -> Event | None:
        """The newest event of `kind`, if any."""
        row = self.db.execute("SELECT seq, kind, body FROM events WHERE kind = ? ORDER BY seq DESC LIMIT 1", (kind,))
        found = row.fetchone()
        return Event(found[0], found[1], json.loads(found[2])) if found else None

    def visits(self) -> Iterator[dict[str, Any]]:
        """The inspection visits recorded, in order (the commands as journaled)."""
        for (body,) in self.db.execute("SELECT body FROM events WHERE kind = 'inspection' ORDER BY seq"):
            yield json.loads(body)

    # -- the log -------------------------------------------------------------------------------

    def append(self, kind: str, body: dict[str, Any] | str, outbox: Sequence[tuple[str, str, str]] = ()) -> int:
        """Append one event (its body: a dict, or already JSON text) and its outbox rows (sink, key, body)
        atomically; returns the event's seq."""
        if self._batch_depth:  # the batch's transaction writes them at its end (the only writer: the daemon)
            gathered = self._next_seq
            self._next_seq += 1
            self._events.append((gathered, kind, body if isinstance(body, str) else _dumps(body)))
            self._outbox += [(sink, key, item, gathered) for sink, key, item in outbox]
            return gathered
        with self._transaction():
            text = body if isinstance(body, str) else _dumps(body)
            cursor = self.db.execute("INSERT INTO events (kind, body) VALUES (?, ?)", (kind, text))
            seq = cursor.lastrowid
            assert seq is not None
            self._insert_outbox([(sink, key, item, seq) for sink, key, item in outbox])
        return seq

    def events(self, after: int = 0) -> Iterator[Event]:
        cursor = self.db.execute("SELECT seq, kind, body FROM events WHERE seq > ? ORDER BY seq", (after,))
        for seq, kind, body in cursor:
            yield Event(seq, kind, json.loads(body))

    def has_event(self, kind: str) -> bool:
        return self.db.execute("SELECT 1 FROM events WHERE kind = ? LIMIT 1", (kind,)).fetchone() is not None

    def last_event(self) -> int:
        row = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        return int(row[0])

    # -- snapshots ------------------------------------------------------------------------------

    def save_snapshot(self, event: int, version: str, blob: bytes) -> None:
        """Save the snapshot of the state through `event`; the two newest are kept (the older one stands in for
        the newer should it not be readable, and the journal is compacted behind it, see `compact`)."""
        with self._transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO snapshots (event, version, blob) VALUES (?, ?, ?)", (event, version, blob)
            )
            self.db.execute(
                "DELETE FROM snapshots WHERE event < (SELECT event FROM snapshots ORDER BY event DESC LIMIT 1 OFFSET 1)"
            )

    def latest_snapshot(self) -> tuple[int, str, bytes] | None:
        return next(self.snapshots(), None)

    def snapshots(self) -> Iterator[tuple[int, str, bytes]]:
        """The snapshots kept, newest first: (the event it covers through, its format, its blob)."""
        for (event,) in self.db.execute("SELECT event FROM snapshots ORDER BY event DESC").fetchall():
            row = self.db.execute("SELECT version, blob FROM snapshots WHERE event = ?", (event,)).fetchone()
            if row is not None:
                yield int(event), str(row[0]), bytes(row[1])

    def snapshot_events(self) -> list[tuple[int, str]]:
        """(event, format) of each snapshot kept, newest first."""
        return [
            (int(e), str(v)) for e, v in self.db.execute("SELECT event, version FROM snapshots ORDER BY event DESC")
        ]

    def has_snapshots(self) -> bool:
        return self.db.execute("SELECT 1 FROM snapshots LIMIT 1").fetchone() is not None

    # -- compaction ----------------------------------------------------------------------------

    def compact(self, through: int) -> int:
        """Delete the reading events up to `through` (covered by a snapshot) that raised and ordered nothing; keep
        every other event: the register of alerts and orders (`order_events`, `quotad alerts`), lifts, notices,
        multipliers, rejected readings. The newest event always stays (a new seq is max + 1: never one reused).
        Returns how many were deleted; free pages are given back to the file system when they are many."""
        done = self.compacted_through()
        newest = self.last_event()
        through = min(through, newest - 1)
        if through <= done:
            return 0
        with self._transaction():
            cursor = self.db.execute(
                "DELETE FROM events WHERE seq > ? AND seq <= ? AND kind = 'reading' "
                "AND json_array_length(body, '$.raised') = 0 AND json_array_length(body, '$.orders') = 0",
                (done, through),
            )
            deleted = cursor.rowcount
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('compacted_through', ?)", (str(through),))
        if not self._batch_depth:
            self._reclaim()
        return deleted

    def compacted_through(self) -> int:
        """The event up to which the journal's plain readings were deleted (0: none ever were)."""
        value = self.get("compacted_through")
        return int(value) if value is not None else 0

    def _reclaim(self) -> None:
        """Give free pages back when more than a quarter of the file is free, down to an eighth (what the next
        events reuse). Only a database made with incremental auto-vacuum can (every one made since compaction);
        in an older one the free pages are reused by the next events, and the file stays at its largest."""
        pages = int(self.db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self.db.execute("PRAGMA freelist_count").fetchone()[0])
        if free * 4 > pages and int(self.db.execute("PRAGMA auto_vacuum").fetchone()[0]) == _INCREMENTAL:
            try:
                self.db.execute(f"PRAGMA incremental_vacuum({free - pages // 8})").fetchall()
            except sqlite3.Error as exc:  # space is an optimisation: the next compaction tries again
                raise _refused(exc, self.path) from exc

    # -- operator requests and small values ----------------------------------------------------

    def request(self, body: dict[str, Any]) -> int:
        with self._transaction():
            cursor = self.db.execute("INSERT INTO requests (body) VALUES (?)", (_dumps(body),))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def open_requests(self) -> list[tuple[int, dict[str, Any]]]:
        rows = self.db.execute("SELECT id, body FROM requests WHERE done IS NULL ORDER BY id")
        return [(int(i), json.loads(b)) for i, b in rows]

    def finish_request(self, request: int, outcome: dict[str, Any]) -> None:
        with self._transaction():
            self.db.execute("UPDATE requests SET done = ? WHERE id = ?", (_dumps(outcome), request))

    def outcome(self, request: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT done FROM requests WHERE id = ?", (request,)).fetchone()
        return json.loads(row[0]) if row and row[0] is not None else None

    def get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def put(self, key: str, value: str) -> None:
        with self._transaction():
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def batch(self) -> _Transaction:
        """One transaction around many appends (and snapshots): all of them are durable, or none."""
        return _Transaction(self)

    def _transaction(self) -> _Transaction:
        return _Transaction(self)


class _Transaction:
    """A transaction; inside an open one (a batch) it joins it. A write the state directory refuses (a full disk,
    an I/O error) rolls the whole transaction back and raises StoreError: nothing of it is committed."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> None:
        store = self.store
        if store._batch_depth == 0:
            try:
                store.db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _refused(exc, store.path) from exc
            store._next_seq = store.last_event() + 1
        store._batch_depth += 1

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        store = self.store
        store._batch_depth -= 1
        if store._batch_depth:
            return
        events, outbox = store._events, store._outbox
        store._events, store._outbox = [], []
        if kind is not None:
            _rollback(store.db)
            store._settle(committed=False)
            if isinstance(value, sqlite3.Error):  # a statement inside the transaction was refused
                raise _refused(value, store.path) from value
            return
        committed = False
        try:
            store.db.executemany("INSERT INTO events (seq, kind, body) VALUES (?, ?, ?)", events)
            store._insert_outbox(_coalesced(outbox))
            store.db.execute("COMMIT")
            committed = True
            store.commits += 1
        except sqlite3.Error as exc:
            _rollback(store.db)
            raise _refused(exc, store.path) from exc
        except BaseException:
            _rollback(store.db)
            raise
        finally:
            store._settle(committed)


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already done so (it does after some errors, SQLITE_FULL
    among them)."""
    if db.in_transaction:
        db.execute("ROLLBACK")


def _refused(exc: sqlite3.Error, path: Path) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary result code
    full = code == sqlite3.SQLITE_FULL
    what = "the disk is full" if full else f"the write failed ({exc})"
    return StoreError(f"cannot write the state in {path}: {what}", full=full)


def private_file(path: Path, *, create: bool = True) -> None:
    """Make `path` 0600 whatever the umask (created empty when `create` and absent; left absent otherwise)."""
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_CREAT if create else 0), 0o600)
    except FileNotFoundError:
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def make_private_dir(path: Path) -> None:
    """Create `path` 0700 (parents as needed); tighten it if it exists with wider permissions."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, 0o700)


def _dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


class DaemonLock:
    """`state_dir/daemon.lock`, held (flock) while a daemon runs on that state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "daemon.lock"
        self._handle: IO[str] | None = None

    def acquire(self) -> bool:
        private_file(self.path)  # 0600 like the rest of the state, whatever the umask
        handle = self.path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

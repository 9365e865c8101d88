"""Durable state under `state_dir`: an ordered event log, engine snapshots, and one outbox per sink.

SQLite in WAL mode. Every accepted reading (and every operator action) is appended to `events` in the
same transaction as the outbox rows it produced, so after a crash at any moment either both are there or
neither. The engine is pure and deterministic: replaying the log after the latest snapshot rebuilds
exactly the state (totals, raised ids, orders) an uninterrupted run has. Sinks deliver their outbox in
order and delete only what was acknowledged; each sink has its own queue, so one outage never holds back
the other. A sink's outbox is bounded by the sink: the store keeps each outbox's size in bytes and drops the oldest
telemetry rows (key `readings`) on request; every other row (alerts, orders, notices) stays until delivered.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from quotad.core.errors import StoreError

__all__ = ["TELEMETRY", "DaemonLock", "Dropped", "Event", "OutboxItem", "Store", "make_private_dir", "private_file"]

TELEMETRY = "readings"  # the outbox key of pure telemetry (meter_reading, firm_energy, township_energy lines)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,         -- never deleted: a new one is always the highest
    kind TEXT NOT NULL,              -- 'reading' | 'lift' | 'notice' | 'multipliers' | 'order_end' | 'rejected'
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


@dataclass(frozen=True)
class OutboxItem:
    seq: int
    key: str
    body: str


@dataclass(frozen=True)
class Dropped:
    """Telemetry rows an outbox gave way: their points (lines), how many were `meter_reading`, their bytes."""

    points: int = 0
    readings: int = 0
    size: int = 0


class Store:
    def __init__(self, state_dir: Path) -> None:
        make_private_dir(state_dir)
        self.path = state_dir / "quotad.db"
        # 0600 before SQLite opens it: SQLite gives the -wal and -shm files it creates the database's own mode
        for path in (self.path, *(self.path.with_name(self.path.name + end) for end in ("-wal", "-shm"))):
            private_file(path, create=path == self.path)
        self.db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process; WAL keeps it consistent
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
        """The events that made or changed an order, in order: readings that issued one, and lifts."""
        cursor = self.db.execute(
            "SELECT seq, kind, body FROM events WHERE kind = 'lift' "
            "OR (kind = 'reading' AND json_array_length(body, '$.orders') > 0) ORDER BY seq"
        )
        for seq, kind, body in cursor:
            yield Event(seq, kind, json.loads(body))

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

    # -- snapshots -----------------------------------------------------------------------------

    def save_snapshot(self, event: int, version: str, blob: bytes) -> None:
        with self._transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO snapshots (event, version, blob) VALUES (?, ?, ?)", (event, version, blob)
            )
            self.db.execute("DELETE FROM snapshots WHERE event < ?", (event,))

    def latest_snapshot(self) -> tuple[int, str, bytes] | None:
        row = self.db.execute("SELECT event, version, blob FROM snapshots ORDER BY event DESC LIMIT 1").fetchone()
        return (int(row[0]), str(row[1]), bytes(row[2])) if row else None

    # -- outboxes ------------------------------------------------------------------------------

    def pending(self, sink: str, limit: int = 500, after: int = 0) -> list[OutboxItem]:
        """The oldest `limit` items of `sink` after seq `after`."""
        rows = self.db.execute(
            "SELECT seq, key, body FROM outbox WHERE sink = ? AND seq > ? ORDER BY seq LIMIT ?", (sink, after, limit)
        )
        return [OutboxItem(int(s), str(k), str(b)) for s, k, b in rows]

    def pending_text(self, sink: str, limit: int) -> tuple[int, str] | None:
        """The oldest pending bodies of `sink` joined by newlines, as many as make at most `limit` lines (and at
        least one body, however long), and the last one's seq (for `acknowledge_through`); None when there are
        none. Line protocol is sent this way, a batch at a time."""
        cursor = self.db.execute("SELECT seq, body FROM outbox WHERE sink = ? ORDER BY seq", (sink,))
        bodies: list[str] = []
        last, lines = 0, 0
        for seq, body in cursor:
            more = body.count("\n") + 1
            if bodies and lines + more > limit:
                break
            bodies.append(body)
            last, lines = int(seq), lines + more
            if lines >= limit:
                break
        cursor.close()
        return (last, "\n".join(bodies)) if bodies else None

    def acknowledge(self, sink: str, seqs: Sequence[int]) -> None:
        """Remove delivered items."""
        with self._transaction():
            for seq in seqs:
                self._deleted(sink, self.db.execute(_DELETE + "seq = ?" + _SIZES, (sink, seq)))

    def acknowledge_through(self, sink: str, last: int) -> None:
        """Remove `sink`'s items up to `last`: a batch of the oldest pending, all delivered, in one delete."""
        with self._transaction():
            self._deleted(sink, self.db.execute(_DELETE + "seq <= ?" + _SIZES, (sink, last)))

    def requeue(self, sink: str, seqs: Sequence[int]) -> None:
        """Move items to the back of `sink`'s outbox (in their order), behind every newer one."""
        with self._transaction():
            for seq in seqs:
                self.db.execute(
                    "INSERT INTO outbox (sink, key, body, event, queued) SELECT sink, key, body, event, queued "
                    "FROM outbox WHERE sink = ? AND seq = ?", (sink, seq),
                )  # fmt: skip
                self.db.execute("DELETE FROM outbox WHERE sink = ? AND seq = ?", (sink, seq))

    def backlog(self, sink: str) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM outbox WHERE sink = ?", (sink,)).fetchone()[0])

    def outbox_bytes(self, sink: str) -> int:
        """The bytes (UTF-8) of `sink`'s waiting bodies: counted once (a scan), then kept as rows come and go."""
        if self._sizes is None:
            rows = self.db.execute("SELECT sink, SUM(length(CAST(body AS BLOB))) FROM outbox GROUP BY sink")
            self._sizes = {str(name): int(size or 0) for name, size in rows}
        return max(0, self._sizes.get(sink, 0))

    def oldest_telemetry(self, sink: str) -> float | None:
        """When `sink`'s oldest telemetry row was queued; None when it has none."""
        row = self.db.execute(
            "SELECT queued FROM outbox WHERE sink = ? AND key = ? ORDER BY seq LIMIT 1", (sink, TELEMETRY)
        ).fetchone()
        return None if row is None else float(row[0] or 0.0)

    def drop_telemetry(self, sink: str, *, free: int, queued_before: float) -> Dropped:
        """Delete `sink`'s oldest telemetry rows (key `readings`): at least `free` bytes of them, and every one
        queued before `queued_before` (Unix time); in one delete. Other rows are never touched."""
        cursor = self.db.execute(
            "SELECT seq, queued, body FROM outbox WHERE sink = ? AND key = ? ORDER BY seq", (sink, TELEMETRY)
        )
        last, points, readings, size = None, 0, 0, 0
        for seq, queued, body in cursor:
            if size >= free and (queued or 0.0) >= queued_before:
                break
            last, size = int(seq), size + _size(body)
            points += body.count("\n") + 1
            readings += body.count("meter_reading,")
        cursor.close()
        if last is None:
            return Dropped()
        with self._transaction():
            self._deleted(sink, self.db.execute(_DELETE + "key = ? AND seq <= ?" + _SIZES, (sink, TELEMETRY, last)))
        return Dropped(points, readings, size)

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

    def _insert_outbox(self, rows: Sequence[tuple[str, str, str, int]]) -> None:
        """Insert outbox rows (sink, key, body, event), stamped now, and count their bytes."""
        if not rows:
            return
        queued = time.time()
        self.db.executemany(
            "INSERT INTO outbox (sink, key, body, event, queued) VALUES (?, ?, ?, ?, ?)",
            [(sink, key, body, event, queued) for sink, key, body, event in rows],
        )
        for sink, _key, body, _event in rows:
            self._unsettled[sink] = self._unsettled.get(sink, 0) + _size(body)

    def _deleted(self, sink: str, sizes: sqlite3.Cursor) -> None:
        """Take the bytes of deleted rows (a DELETE ... RETURNING their sizes) off `sink`'s count."""
        self._unsettled[sink] = self._unsettled.get(sink, 0) - sum(size for (size,) in sizes)

    def _settle(self, committed: bool) -> None:
        """The open transaction ended: its outbox bytes count if it was committed."""
        unsettled, self._unsettled = self._unsettled, {}
        if committed and self._sizes is not None:
            for sink, change in unsettled.items():
                self._sizes[sink] = self._sizes.get(sink, 0) + change


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


def _coalesced(rows: list[tuple[str, str, str, int]]) -> list[tuple[str, str, str, int]]:
    """A batch's outbox rows with its line-protocol rows (sink `influx`) joined into two at most, each where the
    first of its rows stood, their lines in order: the telemetry (key `readings`, which may give way under the
    outbox's bound) and the rest (alerts, orders: never dropped), keyed as its rows when they share a key, else
    `points`. The sink writes lines in batches anyway, and two rows instead of a thousand is most of the cost of
    a batch's transaction."""
    influx = [i for i, row in enumerate(rows) if row[0] == "influx"]
    if len(influx) < 2:
        return rows
    joined: dict[int, tuple[str, str, str, int]] = {}
    telemetry = [i for i in influx if rows[i][1] == TELEMETRY]
    for group in (telemetry, [i for i in influx if rows[i][1] != TELEMETRY]) if telemetry else (influx,):
        if group:
            keys = {rows[i][1] for i in group}
            key = keys.pop() if len(keys) == 1 else "points"
            joined[group[0]] = ("influx", key, "\n".join([rows[i][2] for i in group]), rows[group[-1]][3])
    return [joined.get(i, row) for i, row in enumerate(rows) if row[0] != "influx" or i in joined]


_DELETE = "DELETE FROM outbox WHERE sink = ? AND "
_SIZES = " RETURNING length(CAST(body AS BLOB))"


def _size(text: str) -> int:
    """The UTF-8 bytes of `text` (line protocol is ASCII as a rule: then its length, without encoding it)."""
    return len(text) if text.isascii() else len(text.encode())


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

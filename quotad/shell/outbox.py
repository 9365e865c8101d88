"""The sinks' outboxes in the store: what waits for the broker and for InfluxDB, in order, each with its size.

Each sink has its own queue (a broker outage never holds back InfluxDB, nor the reverse) and deletes only what
was acknowledged. The store keeps each outbox's size in bytes, so that a sink can bound it: the oldest telemetry
rows (key `readings`) give way on request; every other row (alerts, orders, notices) stays until delivered.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from quotad.core.notices import Notice

__all__ = ["TELEMETRY", "Dropped", "OutboxItem", "Outboxes", "channel_sink", "notice_rows"]

TELEMETRY = "readings"  # the outbox key of pure telemetry (meter_reading, firm_energy, township_energy lines)


def channel_sink(channel: str) -> str:
    """The outbox queue of a notice channel (SPEC "Notices and channels"): one per channel."""
    return f"channel:{channel}"


def notice_rows(channels: frozenset[str], notices: Iterable[Notice]) -> list[tuple[str, str, str]]:
    """The outbox rows of `notices` for the channels this daemon has (none for a command or a report run without
    the daemon file's channels)."""
    return [(channel_sink(n.channel), n.kind, n.to_json()) for n in notices if n.channel in channels]


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


class Outboxes:
    """The outbox half of `Store` (a mixin: the store's connection, its transactions, its byte counts)."""

    db: sqlite3.Connection
    _sizes: dict[str, int] | None  # each outbox's bytes, counted once when first asked for
    _unsettled: dict[str, int]  # bytes added (or, < 0, removed) by the open transaction

    def _transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

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

    def channel_backlogs(self) -> dict[str, int]:
        """The notices waiting in each channel's queue, by channel name (those with any)."""
        rows = self.db.execute("SELECT sink, COUNT(*) FROM outbox WHERE sink LIKE 'channel:%' GROUP BY sink")
        return {str(sink).removeprefix("channel:"): int(n) for sink, n in rows}

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

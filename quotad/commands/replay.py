"""`quotad replay`: recorded readings through the core, alerts out as JSONL. Touches no file but its input.

`--commands FILE` gives people's commands too (JSONL: `{"ts", "kind": "issue"|"order"|"talk", "firm", "by",
"action", "reason" or "note"}`, in time order): each is applied after every reading up to its `ts`, at the
township's now (the latest reading's event time), as the daemon applies one given while it runs; what it raises
(an escalation) comes out with the alerts. A command that cannot be carried out is said on stderr and skipped.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterable, Iterator
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any, TextIO

from quotad.core.alerts import SEVERITY_NAMES, Alert
from quotad.core.enforcement import apply
from quotad.core.engine import Engine
from quotad.core.errors import QuotadError, ReadingError
from quotad.core.policy import Policy
from quotad.core.readings import Reading, parse_csv_lines, parse_jsonl_lines
from quotad.schedule.calendar import to_micros

__all__ = ["Command", "format_text", "read_commands", "read_readings", "replay"]


def read_readings(path: Path, errors: TextIO) -> Iterator[tuple[int, Reading]]:
    """(line number, reading) in file order; a malformed line is reported on `errors` and skipped."""
    with _open(path) as handle:
        for line_no, item in _items(path, handle):
            if isinstance(item, Reading):
                yield line_no, item
            elif item is not None:
                print(f"{path}:{line_no}: skipped: {item}", file=errors)


def format_text(alert: Alert) -> str:
    return f"{alert.ts[:16].replace('T', ' ')} [{SEVERITY_NAMES.get(alert.severity, alert.severity)}] {alert.message}"


def replay(
    policy: Policy, path: Path, out: TextIO, errors: TextIO = sys.stderr, text: bool = False,
    commands: Path | None = None,
) -> int:  # fmt: skip
    """Run the rules over `path` (and the people's `commands`); returns the number of alerts written."""
    engine = Engine(policy)
    ingest, written = engine.ingest, 0
    people = read_commands(commands, errors) if commands is not None else []
    with _open(path) as handle:
        for line_no, item in _items(path, handle):
            if item.__class__ is not Reading:
                if item is not None:
                    print(f"{path}:{line_no}: skipped: {item}", file=errors)
                continue
            if people and people[0][0] < item.t:
                written += _people(engine, people, item.t, out, errors, text)
            try:
                alerts = ingest(item)
            except ReadingError as exc:
                print(f"{path}:{line_no}: skipped: {exc}", file=errors)
                continue
            if alerts:
                for alert in alerts:
                    out.write((format_text(alert) if text else alert.to_json()) + "\n")
                written += len(alerts)
    return written + _people(engine, people, None, out, errors, text)


Command = tuple[int, int, dict[str, Any]]  # (event time, line number, the command)


def read_commands(path: Path, errors: TextIO) -> list[Command]:
    found = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
            t = to_micros(dt.datetime.fromisoformat(body["ts"]))
        except (ValueError, KeyError, TypeError) as exc:
            print(f"{path}:{n}: skipped: not a command with an ISO 8601 ts ({exc})", file=errors)
            continue
        found.append((t, n, body))
    return sorted(found, key=lambda c: c[:2])


def _people(engine: Engine, people: list[Command], before: int | None, out: TextIO, errors: TextIO,
            text: bool) -> int:  # fmt: skip
    """Apply the commands due before `before` (all when None); the number of alerts they raised."""
    written = 0
    while people and (before is None or people[0][0] < before):
        _t, n, body = people.pop(0)
        try:
            _order, alerts = apply(engine, body)
        except (QuotadError, KeyError) as exc:
            print(f"commands:{n}: skipped: {exc}", file=errors)
            continue
        for alert in alerts:
            out.write((format_text(alert) if text else alert.to_json()) + "\n")
        written += len(alerts)
    return written


def _open(path: Path) -> TextIO:
    return path.open(encoding="utf-8", newline="" if path.name.endswith(".csv") else None)  # as the csv module asks


def _items(path: Path, handle: TextIO) -> Iterable[tuple[int, Reading | ReadingError | None]]:
    """(line number, what the line holds) of a CSV (with its header) or a JSONL file."""
    if path.name.endswith(".csv"):
        return parse_csv_lines(handle)
    # JSONL, read in large blocks (the hot path of replay)
    lines = chain.from_iterable(iter(partial(handle.readlines, 1 << 20), []))
    return enumerate(parse_jsonl_lines(lines), 1)

"""`quotad replay`: recorded readings through the core, alerts out as JSONL. Touches no file but its input."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from functools import partial
from itertools import chain
from pathlib import Path
from typing import TextIO

from quotad.core.alerts import SEVERITY_NAMES, Alert
from quotad.core.engine import Engine
from quotad.core.errors import ReadingError
from quotad.core.policy import Policy
from quotad.core.readings import Reading, parse_csv_lines, parse_jsonl_lines

__all__ = ["format_text", "read_readings", "replay"]


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


def replay(policy: Policy, path: Path, out: TextIO, errors: TextIO = sys.stderr, text: bool = False) -> int:
    """Run the rules over `path`; returns the number of alerts written."""
    engine = Engine(policy)
    ingest, written = engine.ingest, 0
    with _open(path) as handle:
        for line_no, item in _items(path, handle):
            if item.__class__ is not Reading:
                if item is not None:
                    print(f"{path}:{line_no}: skipped: {item}", file=errors)
                continue
            try:
                alerts = ingest(item)
            except ReadingError as exc:
                print(f"{path}:{line_no}: skipped: {exc}", file=errors)
                continue
            if alerts:
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

"""`quotad replay`: recorded readings through the core, alerts out as JSONL. Touches no file but its input."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from quotad.alerts import SEVERITY_NAMES, Alert
from quotad.config.policy import Policy
from quotad.engine import Engine
from quotad.errors import ReadingError
from quotad.readings import Reading, parse_csv_lines, parse_jsonl_line

__all__ = ["format_text", "read_readings", "replay"]


def read_readings(path: Path, errors: TextIO) -> Iterator[tuple[int, Reading]]:
    """(line number, reading) in file order; a malformed line is reported on `errors` and skipped."""
    with path.open(encoding="utf-8", newline="") as handle:
        if path.name.endswith(".csv"):
            for line_no, item in parse_csv_lines(handle):
                if isinstance(item, ReadingError):
                    print(f"{path}:{line_no}: skipped: {item}", file=errors)
                else:
                    yield line_no, item
            return
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield line_no, parse_jsonl_line(line)
            except ReadingError as exc:
                print(f"{path}:{line_no}: skipped: {exc}", file=errors)


def format_text(alert: Alert) -> str:
    return f"{alert.ts[:16].replace('T', ' ')} [{SEVERITY_NAMES.get(alert.severity, alert.severity)}] {alert.message}"


def replay(policy: Policy, path: Path, out: TextIO, errors: TextIO = sys.stderr, text: bool = False) -> int:
    """Run the rules over `path`; returns the number of alerts written."""
    engine = Engine(policy)
    ingest, written = engine.ingest, 0
    if path.name.endswith(".csv"):
        readings: Iterator[tuple[int, Reading]] = read_readings(path, errors)
    else:
        readings = _jsonl(path, errors)
    for line_no, reading in readings:
        try:
            alerts = ingest(reading)
        except ReadingError as exc:
            print(f"{path}:{line_no}: skipped: {exc}", file=errors)
            continue
        if alerts:
            for alert in alerts:
                out.write((format_text(alert) if text else alert.to_json()) + "\n")
            written += len(alerts)
    return written


def _jsonl(path: Path, errors: TextIO) -> Iterator[tuple[int, Reading]]:
    """JSONL readings, read in large blocks (the hot path of replay)."""
    with path.open(encoding="utf-8") as handle:
        line_no = 0
        while block := handle.readlines(1 << 20):
            for line in block:
                line_no += 1
                try:
                    yield line_no, parse_jsonl_line(line)
                except ReadingError as exc:
                    if line.strip():
                        print(f"{path}:{line_no}: skipped: {exc}", file=errors)

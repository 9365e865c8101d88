"""Readings: the one object every source (Modbus, MQTT, a recorded file) hands the core.

Parsing here is pure (text in, `Reading` out); a malformed record raises `ReadingError` with the reason.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any, NamedTuple

from quotad.errors import ReadingError
from quotad.schedule.calendar import MICROS_PER_S, Micros, to_micros

__all__ = ["Reading", "parse_csv_lines", "parse_jsonl_line", "parse_record", "parse_ts"]

_INF = math.inf
_EPOCH_MIN_S, _EPOCH_MAX_S = 0, 32_503_680_000  # 1970-01-01 .. 3000-01-01
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US = dt.timedelta(microseconds=1)
_last_ts: list[Any] = [None, 0]  # the last ISO timestamp parsed on the fast path, and its value
_COMMON_LINE = re.compile(
    r'[ \t]*\{"meter": ?"([^"\\\x00-\x1f]+)", ?"ts": ?"([0-9T:.+Z-]+)", ?"energy_kwh": ?'
    r"((?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,15})?)\}[ \t]*\r?\n?"
).fullmatch


def _iso(ts: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(ts)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


class Reading(NamedTuple):
    """A meter's own cumulative counter (kWh, before `multiplier`) at event time `t` (epoch microseconds)."""

    meter: str
    t: Micros
    energy_kwh: float
    power_kw: float | None = None


# The same Reading objects as Reading(...), built without NamedTuple's Python-level __new__ (hot path).
_reading: Callable[[tuple[str, Micros, float, None]], Reading] = partial(tuple.__new__, Reading)


def parse_ts(value: Any) -> Micros:
    """ISO 8601 with an offset, or epoch seconds (int, float, or a numeric string)."""
    if isinstance(value, bool):
        msg = f"ts: expected a timestamp, got {value!r}"
        raise ReadingError(msg)
    if isinstance(value, int | float):
        if not math.isfinite(value) or not _EPOCH_MIN_S <= value <= _EPOCH_MAX_S:
            msg = f"ts: not a time between 1970 and 3000: {value!r}"
            raise ReadingError(msg)
        return round(value * MICROS_PER_S) if isinstance(value, float) else value * MICROS_PER_S
    if not isinstance(value, str):
        msg = f"ts: expected ISO 8601 or epoch seconds, got {type(value).__name__}"
        raise ReadingError(msg)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        try:
            return parse_ts(float(value))
        except (ValueError, ReadingError):
            msg = f"ts: not ISO 8601 or epoch seconds: {value!r}"
            raise ReadingError(msg) from None
    if moment.tzinfo is None:
        msg = f"ts: {value!r} has no UTC offset"
        raise ReadingError(msg)
    return to_micros(moment)


def _number(record: Mapping[str, Any], key: str, required: bool) -> float | None:
    value = record.get(key)
    if value is None or value == "":
        if required:
            msg = f"{key}: missing"
            raise ReadingError(msg)
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            msg = f"{key}: not a number: {value!r}"
            raise ReadingError(msg) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{key}: expected a number, got {type(value).__name__}"
        raise ReadingError(msg)
    value = float(value)
    if not math.isfinite(value):
        msg = f"{key}: not a finite number: {value!r}"
        raise ReadingError(msg)
    return value


def parse_record(record: Any) -> Reading:
    """A reading from a mapping with `meter`, `ts`, `energy_kwh` and optional `power_kw`."""
    if not isinstance(record, Mapping):
        msg = f"expected an object, got {type(record).__name__}"
        raise ReadingError(msg)
    meter = record.get("meter")
    if not isinstance(meter, str) or not meter:
        msg = "meter: missing or not a string"
        raise ReadingError(msg)
    if "ts" not in record:
        msg = "ts: missing"
        raise ReadingError(msg)
    energy = _number(record, "energy_kwh", required=True)
    assert energy is not None
    if energy < 0:
        msg = f"energy_kwh: a counter cannot be negative: {energy!r}"
        raise ReadingError(msg)
    return Reading(meter, parse_ts(record["ts"]), energy, _number(record, "power_kw", required=False))


def parse_jsonl_line(line: str) -> Reading:
    """A reading from one JSON object. The shape every poller writes is matched directly (no escapes, keys in
    order, a plain JSON number): the same result as `json.loads`, at a fraction of its cost; any other line
    goes through `json.loads` and `parse_record`, with their precise errors."""
    match = _COMMON_LINE(line)
    if match is not None:
        ts = match[2]
        if ts == _last_ts[0]:  # a poll round: every meter's reading carries the same time
            return _reading((match[1], _last_ts[1], float(match[3]), None))
        moment = _iso(ts)
        if moment is not None:
            t = (moment - _EPOCH) // _ONE_US
            _last_ts[:] = [ts, t]
            return _reading((match[1], t, float(match[3]), None))
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        msg = f"not JSON: {exc}"
        raise ReadingError(msg) from None
    # The common shape, checked cheaply; anything else takes the full path with its precise errors.
    if type(record) is dict and len(record) == 3:
        meter, ts, energy = record.get("meter"), record.get("ts"), record.get("energy_kwh")
        if type(meter) is str and meter and type(ts) is str and type(energy) is float and 0 <= energy < _INF:
            if ts == _last_ts[0]:  # a poll round: every meter's reading carries the same time
                return Reading(meter, _last_ts[1], energy)
            try:
                moment = dt.datetime.fromisoformat(ts)
            except ValueError:
                moment = None
            if moment is not None and moment.tzinfo is not None:
                t = (moment - _EPOCH) // _ONE_US
                _last_ts[:] = [ts, t]
                return Reading(meter, t, energy)
    return parse_record(record)


def parse_csv_lines(lines: Iterator[str]) -> Iterator[tuple[int, Reading | ReadingError]]:
    """(line number, reading or the error) for each data row of a CSV file with a header row."""
    reader = csv.DictReader(lines)
    missing = {"meter", "ts", "energy_kwh"} - set(reader.fieldnames or ())
    if missing:
        yield 1, ReadingError(f"CSV header lacks {', '.join(sorted(missing))}")
        return
    for row in reader:
        try:
            yield reader.line_num, parse_record(row)
        except ReadingError as exc:
            yield reader.line_num, exc

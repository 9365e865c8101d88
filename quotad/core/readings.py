"""Readings: the one object every source (Modbus, MQTT, a recorded file) hands the core.

Parsing here is pure (text in, `Reading` out); a malformed record raises `ReadingError` with the reason.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any, NamedTuple

from quotad.core.errors import ReadingError
from quotad.schedule.calendar import MICROS_PER_S, Micros, to_micros

__all__ = [
    "MAX_COUNTER_KWH",
    "MAX_POWER_KW",
    "Reading",
    "out_of_bounds",
    "parse_csv_lines",
    "parse_jsonl_line",
    "parse_jsonl_lines",
    "parse_record",
    "parse_ts",
]

_INF = math.inf
# What no meter can show. A counter past ten billion kWh: more than any register holds (DL/T 645: 999,999.99 kWh; a
# 32-bit Modbus register of 0.01 kWh: 42,949,672.95) and than a large power station makes in a year. A power past
# ten million kW (10 GW): more than the grid delivers to a whole province's towns. Such a value is a broken or
# hostile meter, and is refused before it is counted (a 1e306 counter once overflowed the ledger's Wh).
MAX_COUNTER_KWH = 1e10
MAX_POWER_KW = 1e7
_EPOCH_MIN_S, _EPOCH_MAX_S = 0, 32_503_680_000  # 1970-01-01 .. 3000-01-01
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US = dt.timedelta(microseconds=1)
# Possessive quantifiers (`*+`, `++`, `?+`): no part can give back what it matched to let a later part match
# (each is followed by a character it cannot match), so the regex engine keeps no backtracking state.
_COMMON_LINE = re.compile(
    r'[ \t]*+\{"meter": ?+"([^"\\\x00-\x1f]++)", ?+"ts": ?+"([0-9T:.+Z-]++)", ?+"energy_kwh": ?+'
    r"((?:0|[1-9][0-9]{0,14}+)(?:\.[0-9]{1,15}+)?+)\}[ \t]*+\r?+\n?+"
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


def out_of_bounds(energy_kwh: float, power_kw: float | None) -> str | None:
    """Why a reading's values are physically impossible, or None when they are not."""
    if not 0.0 <= energy_kwh <= MAX_COUNTER_KWH:  # also refuses NaN
        return f"energy_kwh: {energy_kwh!r} is not a counter a meter can show (0 to {MAX_COUNTER_KWH:.0e} kWh)"
    if power_kw is not None and not -MAX_POWER_KW <= power_kw <= MAX_POWER_KW:
        return f"power_kw: {power_kw!r} is not a power a meter can show (at most {MAX_POWER_KW:.0e} kW either way)"
    return None


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
    """A reading from one JSON object (raises ReadingError with the reason)."""
    item = next(parse_jsonl_lines((line,)))
    if item is None:
        msg = "not JSON: an empty line"
        raise ReadingError(msg)
    if isinstance(item, ReadingError):
        raise item
    return item


def parse_jsonl_lines(lines: Iterable[str]) -> Iterator[Reading | ReadingError | None]:
    """For each line in order: its reading, the ReadingError of a malformed line, or None for a blank one.

    The shape every poller writes (no escapes, keys in order, a plain JSON number) is matched directly, in this
    one loop: the same result as `json.loads`, at a fraction of its cost. A poll round gives every meter the same
    timestamp, parsed once. Any other line goes through `json.loads` and `parse_record`, with their precise errors.
    """
    common, last_ts, last_t = _COMMON_LINE, "", 0
    for line in lines:
        match = common(line)
        if match is not None:
            meter, ts, energy = match.groups()
            if ts == last_ts:
                yield _reading((meter, last_t, float(energy), None))
                continue
            moment = _iso(ts)
            if moment is not None:
                last_ts, last_t = ts, (moment - _EPOCH) // _ONE_US
                yield _reading((meter, last_t, float(energy), None))
                continue
        try:
            yield _parse_object(line)
        except ReadingError as exc:
            yield exc if line.strip() else None


def _parse_object(line: str) -> Reading:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        msg = f"not JSON: {exc}"
        raise ReadingError(msg) from None
    # The common shape, checked cheaply; anything else takes the full path with its precise errors.
    if type(record) is dict and len(record) == 3:
        meter, ts, energy = record.get("meter"), record.get("ts"), record.get("energy_kwh")
        if type(meter) is str and meter and type(ts) is str and type(energy) is float and 0 <= energy < _INF:
            moment = _iso(ts)
            if moment is not None:
                return Reading(meter, (moment - _EPOCH) // _ONE_US, energy)
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

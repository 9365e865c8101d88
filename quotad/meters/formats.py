"""MQTT meter payloads → `Reading`: pure parsing, one function per `format` of `[meters.mqtt]`.

`parse_payload` either returns a reading whose energy is a finite, non-negative counter in kWh (power, when
given, finite, in kW) and whose time lies in [1970, 3000), or raises `ReadingError` with a short reason. It never
raises anything else, whatever the bytes: payloads over 64 KiB are refused before decoding; non-UTF-8,
non-JSON, JSON's `NaN`/`Infinity` tokens (which Python's `json` would accept), booleans where numbers belong,
numbers too large for a float and nesting too deep to parse are all `ReadingError`s.

Payload shapes, as the devices publish them:

- `json` (SPEC "MQTT topics"): `{"ts": ISO 8601 with offset | epoch seconds, "energy_kwh": n, "power_kw"?: n}`.
  Other keys are ignored; `energy_kwh` and `power_kw` must be JSON numbers (a string is refused).
- `tasmota`: the `tele/<topic>/SENSOR` telemetry of Tasmota's energy driver, e.g. (Local Bytes power-monitoring
  guide, https://blog.mylocalbytes.com/kb/2022-01-10/LB-PM-Power-Monitoring)
  `{"Time":"2022-01-11T21:57:38","ENERGY":{"TotalStartTime":"2020-10-21T22:15:00","Total":3.705,
  "Yesterday":0.028,"Today":0.026,"Period":1,"Power":5,"ApparentPower":5,...,"Voltage":233,"Current":0.021}}`.
  `Total` is kWh, `Power` W. `Time` is the device's local time without an offset: it is read in the township's
  timezone (an ambiguous or skipped local time at a DST change takes the first/earlier offset, `fold=0`); a
  `Time` carrying an offset (Tasmota's `SetOption52 1`) is honoured; epoch seconds are accepted; without
  `Time` the reading is stamped with its arrival. On multi-channel devices `Total`/`Power` may be arrays (one
  value per channel): they are summed.
- `shelly`, Gen2+ (Plus/Pro/Gen3/Gen4), the status a device publishes on `<prefix>/status/switch:<id>` (also
  `pm1:<id>`, `cover:<id>`), documented at https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/Switch
  (status: `apower` W; `aenergy.total` Wh; `aenergy.minute_ts` "Unix timestamp of the first second of the last
  minute"), e.g. as published by a Shelly Plus 2PM:
  `{"id":0,"source":"MQTT","output":false,"apower":0.0,"voltage":237.0,"freq":50.0,"current":0.000,"pf":0.00,
  "aenergy":{"total":62758.285,"by_minute":[0.000,0.000,0.000],"minute_ts":1709223337},"temperature":{...}}`.
  Energy meters (Pro 3EM, Pro EM, EM Gen3) keep their counters in separate components: `emdata:<id>` with
  `total_act` Wh (https://shelly-api-docs.shelly.cloud/gen2/ComponentsAndServices/EMData) and `em1data:<id>`
  with `total_act_energy` Wh (.../EM1Data); these carry no timestamp nor power. `em:<id>` and `em1:<id>` carry
  only power and are refused (no counter). A reading is stamped on arrival: `aenergy.minute_ts` is the start of
  the last whole minute, up to a minute before the counter was read, so it would date the energy too early.
- `shelly`, Gen1: `shellies/<model>-<id>/relay/<i>/energy` (also `.../emeter/<i>/energy`, `.../light/<i>/energy`)
  is a bare number, "energy consumed in Watt-minute" (Shelly Gen1 MQTT API,
  https://shelly-api-docs.shelly.cloud/gen1/#shelly1-1pm-mqtt): kWh = Wmin / 60000, stamped on arrival. (Gen1
  `emeter/<i>/total` is in Wh, not Wmin: subscribe to `energy` instead.) The counter restarts at 0 when the
  device reboots; the ledger treats that like any counter decrease.
  A JSON object is read by the Gen2 rules, anything else as a Gen1 bare number.
- `number`: a bare kWh value as text (`"1234.5"`), stamped on arrival.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from typing import Any, Literal, NoReturn
from zoneinfo import ZoneInfo

from quotad.core.errors import ReadingError
from quotad.core.readings import Reading, parse_ts
from quotad.schedule.calendar import Micros, to_micros

__all__ = ["FORMATS", "MAX_PAYLOAD_BYTES", "Format", "parse_payload"]

Format = Literal["json", "tasmota", "shelly", "number"]
FORMATS: tuple[Format, ...] = ("json", "tasmota", "shelly", "number")
MAX_PAYLOAD_BYTES = 64 * 1024
_T_MIN: Micros = 0
_T_MAX: Micros = to_micros(dt.datetime(3000, 1, 1, tzinfo=dt.UTC))
_BARE_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII).fullmatch
_Parser = Callable[[str, str, Micros, ZoneInfo], Reading]


def _fail(message: str) -> NoReturn:
    raise ReadingError(message)


def _reject_constant(token: str) -> NoReturn:
    _fail(f"not a finite number: {token}")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # made once: json.loads with options makes one a call


def _load_json(text: str) -> Any:
    try:
        return _DECODER.decode(text)
    except RecursionError:
        _fail("JSON nested too deeply")
    except json.JSONDecodeError as exc:
        _fail(f"not JSON: {exc.msg} at character {exc.pos}")
    except ValueError:  # an integer longer than Python's digit limit for str → int
        _fail("not JSON: a number with too many digits")


def _object(text: str) -> dict[str, Any]:
    record = _load_json(text)
    if not isinstance(record, dict):
        _fail(f"expected a JSON object, got {type(record).__name__}")
    return record


def _number(value: Any, field: str) -> float:
    """A JSON number as a finite float; booleans, strings and numbers beyond a float's range are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(f"{field}: expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        _fail(f"{field}: number out of range")
    if not math.isfinite(number):
        _fail(f"{field}: not a finite number")
    return number


def _summed(value: Any, field: str) -> float:
    """A number, or a non-empty array of numbers (one per channel) summed."""
    if isinstance(value, list):
        if not value:
            _fail(f"{field}: empty array")
        try:
            total = math.fsum(_number(v, field) for v in value)
        except OverflowError:
            _fail(f"{field}: sum out of range")
        if not math.isfinite(total):
            _fail(f"{field}: not a finite number")
        return total
    return _number(value, field)


def _energy(value: float, field: str, per_kwh: float = 1.0) -> float:
    """A counter in kWh from `value` in units of 1/`per_kwh` kWh: finite and non-negative."""
    energy = value / per_kwh
    if energy < 0:
        _fail(f"{field}: a counter cannot be negative: {value!r}")
    return energy + 0.0  # -0.0 → 0.0


def _optional_power(value: Any, field: str, per_kw: float = 1.0) -> float | None:
    return None if value is None else _summed(value, field) / per_kw


def _in_range(t: Micros, field: str) -> Micros:
    if not _T_MIN <= t < _T_MAX:
        _fail(f"{field}: timestamp out of range (1970 to 3000)")
    return t


def _ts(value: Any, field: str = "ts") -> Micros:
    """ISO 8601 with an offset, or epoch seconds (`parse_ts`), bounded to [1970, 3000)."""
    try:
        t = parse_ts(value)
    except ReadingError as exc:
        reason = str(exc)
        _fail(f"{field}{reason[2:]}" if reason.startswith("ts:") else f"{field}: {reason}")
    except (OverflowError, ValueError):  # e.g. 1e308 epoch seconds overflow the float → int conversion
        _fail(f"{field}: timestamp out of range (1970 to 3000)")
    return _in_range(t, field)


def _local_ts(value: Any, tz: ZoneInfo, field: str) -> Micros:
    """Tasmota's `Time`: local time in `tz` when it has no offset; honoured when it has one; or epoch seconds."""
    if not isinstance(value, str):
        return _ts(value, field)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return _ts(value, field)  # epoch seconds as text, or a precise error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    try:
        return _in_range(to_micros(moment), field)
    except (OverflowError, ValueError):  # a moment at the edge of datetime's range
        _fail(f"{field}: timestamp out of range (1970 to 3000)")


def _bare_number(text: str, field: str) -> float:
    stripped = text.strip(" \t\r\n")
    if not _BARE_NUMBER(stripped):
        _fail(f"{field}: not a number: {stripped[:40]!r}")
    number = float(stripped)
    if not math.isfinite(number):
        _fail(f"{field}: not a finite number")
    return number


def _parse_json(text: str, meter_id: str, received_at: Micros, tz: ZoneInfo) -> Reading:
    record = _object(text)
    for key in ("ts", "energy_kwh"):
        if key not in record:
            _fail(f"{key}: missing")
    energy = _energy(_number(record["energy_kwh"], "energy_kwh"), "energy_kwh")
    power = None if record.get("power_kw") is None else _number(record["power_kw"], "power_kw")
    return Reading(meter_id, _ts(record["ts"]), energy, power)


def _parse_tasmota(text: str, meter_id: str, received_at: Micros, tz: ZoneInfo) -> Reading:
    record = _object(text)
    block = record.get("ENERGY")
    if not isinstance(block, dict):
        _fail("ENERGY: missing or not an object (not a Tasmota energy SENSOR message)")
    if "Total" not in block:
        _fail("ENERGY.Total: missing")
    energy = _energy(_summed(block["Total"], "ENERGY.Total"), "ENERGY.Total")
    power = _optional_power(block.get("Power"), "ENERGY.Power", per_kw=1000.0)
    t = received_at if record.get("Time") is None else _local_ts(record["Time"], tz, "Time")
    return Reading(meter_id, t, energy, power)


def _shelly_gen2(record: dict[str, Any], meter_id: str, received_at: Micros) -> Reading:
    aenergy = record.get("aenergy")
    if isinstance(aenergy, dict):
        if "total" not in aenergy:
            _fail("aenergy.total: missing")
        energy = _energy(_number(aenergy["total"], "aenergy.total"), "aenergy.total", per_kwh=1000.0)
        if "minute_ts" in aenergy:
            _ts(aenergy["minute_ts"], "aenergy.minute_ts")  # still checked: a garbage stamp means a garbage payload
        return Reading(meter_id, received_at, energy, _optional_power(record.get("apower"), "apower", per_kw=1000.0))
    if aenergy is not None:
        _fail(f"aenergy: expected an object, got {type(aenergy).__name__}")
    for key in ("total_act", "total_act_energy"):  # emdata:<id> (Pro 3EM), em1data:<id> (Pro EM, EM Gen3)
        if key in record:
            return Reading(meter_id, received_at, _energy(_number(record[key], key), key, per_kwh=1000.0))
    _fail("no energy counter (aenergy.total, total_act or total_act_energy): not a Shelly meter status")


def _parse_shelly(text: str, meter_id: str, received_at: Micros, tz: ZoneInfo) -> Reading:
    if text.lstrip(" \t\r\n").startswith("{"):
        return _shelly_gen2(_object(text), meter_id, received_at)
    watt_minutes = _bare_number(text, "energy")
    return Reading(meter_id, received_at, _energy(watt_minutes, "energy (Wmin)", per_kwh=60_000.0))


def _parse_number(text: str, meter_id: str, received_at: Micros, tz: ZoneInfo) -> Reading:
    return Reading(meter_id, received_at, _energy(_bare_number(text, "energy_kwh"), "energy_kwh"))


_PARSERS: dict[str, _Parser] = {
    "json": _parse_json,
    "tasmota": _parse_tasmota,
    "shelly": _parse_shelly,
    "number": _parse_number,
}


def parse_payload(fmt: Format, payload: bytes, meter_id: str, received_at: Micros, tz: ZoneInfo) -> Reading:
    """The reading in an MQTT `payload` of format `fmt` from meter `meter_id`, which arrived at `received_at`
    (used by the formats that carry no time). `tz` is the township's: Tasmota's `Time` is local time.
    Raises `ReadingError` with a short reason for anything that is not a valid reading."""
    parser = _PARSERS.get(fmt)
    if parser is None:
        _fail(f"unknown payload format {fmt!r}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        _fail(f"payload too large: {len(payload)} bytes (at most {MAX_PAYLOAD_BYTES})")
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(f"not UTF-8: {exc.reason} at byte {exc.start}")
    return parser(text, meter_id, received_at, tz)

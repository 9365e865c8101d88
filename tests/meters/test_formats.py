"""MQTT meter payloads: every format's valid shapes (real devices' payloads among them), every rejection,
and properties over arbitrary bytes, arbitrary JSON and deep nesting: a `Reading` or a `ReadingError`, nothing else."""

from __future__ import annotations

import json
import math
import os
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quotad.core.errors import ReadingError
from quotad.core.readings import Reading
from quotad.meters.formats import FORMATS, MAX_PAYLOAD_BYTES, Format, parse_payload
from tests.conftest import at

TZ = ZoneInfo("Asia/Shanghai")
ARRIVED = at("2010-10-20 08:00:30")  # epoch microseconds
T_2010 = at("2010-10-20 08:00")
T_MAX = at("3000-01-01 08:00")  # 3000-01-01T00:00Z


def parse(fmt: Format, payload: bytes | str, tz: ZoneInfo = TZ) -> Reading:
    data = payload.encode() if isinstance(payload, str) else payload
    return parse_payload(fmt, data, "m1", ARRIVED, tz)


# --- valid payloads ---------------------------------------------------------------------------------------------

VALID: list[tuple[Format, str, Reading]] = [
    # json: SPEC's payload
    ("json", '{"ts": "2010-10-20T08:00:00+08:00", "energy_kwh": 1234.5}', Reading("m1", T_2010, 1234.5)),
    ("json", '{"ts": "2010-10-20T00:00:00Z", "energy_kwh": 1, "power_kw": 12.5}', Reading("m1", T_2010, 1.0, 12.5)),
    ("json", '{"ts": 1287532800, "energy_kwh": 0}', Reading("m1", T_2010, 0.0)),
    ("json", '{"ts": 1287532800.5, "energy_kwh": 7.25, "power_kw": -3}', Reading("m1", T_2010 + 500_000, 7.25, -3.0)),
    ("json", '{"ts": "1287532800", "energy_kwh": 2, "power_kw": null}', Reading("m1", T_2010, 2.0)),
    ("json", '{"meter": "x", "ts": "2010-10-20T08:00:00+08:00", "energy_kwh": -0.0, "extra": [1]}',
     Reading("m1", T_2010, 0.0)),
    # tasmota: tele/<topic>/SENSOR (Local Bytes' example); Time is local time in the township's zone
    ("tasmota", '{"Time": "2010-10-20T08:00:00", "ENERGY": {"TotalStartTime": "2020-10-21T22:15:00", "Total": 3.705,'
     ' "Yesterday": 0.028, "Today": 0.026, "Period": 1, "Power": 5, "ApparentPower": 5, "ReactivePower": 0,'
     ' "Factor": 1.00, "Voltage": 233, "Current": 0.021}}', Reading("m1", T_2010, 3.705, 0.005)),
    ("tasmota", '{"Time": "2010-10-20T01:00:00+01:00", "ENERGY": {"Total": 10, "Power": 1500}}',
     Reading("m1", T_2010, 10.0, 1.5)),
    ("tasmota", '{"Time": "2010-10-20T08:00:00", "ENERGY": {"Total": [1.5, 2.5], "Power": [100, 200]}}',
     Reading("m1", T_2010, 4.0, 0.3)),
    ("tasmota", '{"Time": 1287532800, "ENERGY": {"Total": 1}}', Reading("m1", T_2010, 1.0)),
    ("tasmota", '{"ENERGY": {"Total": 1, "Power": 0}}', Reading("m1", ARRIVED, 1.0, 0.0)),
    # shelly Gen2: status/switch:0 of a Shelly Plus 2PM, as published; pm1:0; emdata:0 (Pro 3EM); em1data:0
    ("shelly", '{"id":0, "source":"MQTT", "output":false, "apower":0.0, "voltage":237.0, "freq":50.0, "current":0.000,'
     ' "pf":0.00, "aenergy":{"total":62758.285,"by_minute":[0.000,0.000,0.000],"minute_ts":1287532800},'
     ' "temperature":{"tC":35.5, "tF":96.0}}', Reading("m1", ARRIVED, 62.758285, 0.0)),  # minute_ts is not used
    ("shelly", '{"id":0, "voltage":230.1, "current":0.5, "apower":115.0, "freq":50.0,'
     ' "aenergy":{"total":1500.0,"by_minute":[1916.7,1916.7,1916.7]}}', Reading("m1", ARRIVED, 1.5, 0.115)),
    ("shelly", '{"id":0, "a_total_act_energy":0.06, "a_total_act_ret_energy":0, "b_total_act_energy":0.06,'
     ' "b_total_act_ret_energy":0.01, "c_total_act_energy":26289.44, "c_total_act_ret_energy":131881.85,'
     ' "total_act":26289.57, "total_act_ret":131881.86}', Reading("m1", ARRIVED, 26.28957)),
    ("shelly", '{"id":1, "total_act_energy":6644.90, "total_act_ret_energy":2595.26}', Reading("m1", ARRIVED, 6.6449)),
    # shelly Gen1: shellies/<id>/relay/0/energy, watt-minutes
    ("shelly", "60000", Reading("m1", ARRIVED, 1.0)),
    ("shelly", " 123456\n", Reading("m1", ARRIVED, 123456 / 60000)),
    ("shelly", "0", Reading("m1", ARRIVED, 0.0)),
    # number: a bare kWh value
    ("number", "1234.5", Reading("m1", ARRIVED, 1234.5)),
    ("number", "  42\r\n", Reading("m1", ARRIVED, 42.0)),
    ("number", "1e3", Reading("m1", ARRIVED, 1000.0)),
    ("number", ".5", Reading("m1", ARRIVED, 0.5)),
    ("number", "+7.", Reading("m1", ARRIVED, 7.0)),
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "payload", "expected"), VALID)
def test_valid_payloads(fmt: Format, payload: str, expected: Reading) -> None:
    reading = parse(fmt, payload)
    assert reading.meter == expected.meter
    assert reading.t == expected.t
    assert reading.energy_kwh == pytest.approx(expected.energy_kwh, rel=1e-12)
    if expected.power_kw is None:
        assert reading.power_kw is None
    else:
        assert reading.power_kw == pytest.approx(expected.power_kw, rel=1e-12)


def test_tasmota_time_is_local_time_of_the_townships_zone() -> None:
    payload = '{"Time": "2010-10-20T08:00:00", "ENERGY": {"Total": 1}}'
    assert parse("tasmota", payload, ZoneInfo("UTC")).t == T_2010 + 8 * 3600 * 1_000_000
    assert parse("tasmota", payload, ZoneInfo("Asia/Shanghai")).t == T_2010


def test_tasmota_time_in_a_dst_fold_takes_the_first_offset() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    reading = parse("tasmota", '{"Time": "2010-10-31T02:30:00", "ENERGY": {"Total": 1}}', berlin)
    assert reading.t == parse("json", '{"ts": "2010-10-31T02:30:00+02:00", "energy_kwh": 1}').t


def test_an_object_takes_the_gen2_rules_a_bare_number_the_gen1_rules() -> None:
    assert parse("shelly", "1000").energy_kwh == pytest.approx(1000 / 60000)  # watt-minutes
    assert parse("shelly", '{"aenergy": {"total": 1000}}').energy_kwh == pytest.approx(1.0)  # watt-hours


def test_payload_of_exactly_the_limit_is_read() -> None:
    body = b'{"ts": 1287532800, "energy_kwh": 1}'
    payload = body + b" " * (MAX_PAYLOAD_BYTES - len(body))
    assert parse("json", payload).energy_kwh == 1.0


# --- rejections -------------------------------------------------------------------------------------------------

DEEP = "[" * 50_000  # within the size limit, beyond the parser's recursion limit
REJECTED: list[tuple[Format, bytes | str, str]] = [
    # every format
    *[(fmt, b"\xff\xfe1", "not UTF-8") for fmt in FORMATS],
    *[(fmt, b"1" * (MAX_PAYLOAD_BYTES + 1), "too large") for fmt in FORMATS],
    *[(fmt, "", "") for fmt in FORMATS],
    # json
    ("json", "not json", "not JSON"),
    ("json", '{"ts": 1287532800, "energy_kwh": 1', "not JSON"),
    ("json", DEEP, "nested too deeply"),
    ("json", '{"a":' * 10_000 + "1" + "}" * 10_000, "nested too deeply"),
    ("json", "[1287532800, 1]", "expected a JSON object"),
    ("json", "12.5", "expected a JSON object"),
    ("json", '{"energy_kwh": 1}', "ts: missing"),
    ("json", '{"ts": 1287532800}', "energy_kwh: missing"),
    ("json", '{"ts": 1287532800, "energy_kwh": NaN}', "not a finite number"),
    ("json", '{"ts": 1287532800, "energy_kwh": Infinity}', "not a finite number"),
    ("json", '{"ts": 1287532800, "energy_kwh": -Infinity}', "not a finite number"),
    ("json", '{"ts": NaN, "energy_kwh": 1}', "not a finite number"),
    ("json", '{"ts": 1287532800, "energy_kwh": 1, "power_kw": NaN}', "not a finite number"),
    ("json", '{"ts": 1287532800, "energy_kwh": 1e999}', "energy_kwh: not a finite number"),
    ("json", '{"ts": 1287532800, "energy_kwh": 1' + "0" * 400 + "}", "energy_kwh: number out of range"),
    ("json", '{"ts": 1287532800, "energy_kwh": 1' + "0" * 5000 + "}", "too many digits"),
    ("json", '{"ts": 1287532800, "energy_kwh": -0.001}', "cannot be negative"),
    ("json", '{"ts": 1287532800, "energy_kwh": true}', "energy_kwh: expected a number, got bool"),
    ("json", '{"ts": 1287532800, "energy_kwh": "12.5"}', "energy_kwh: expected a number, got str"),
    ("json", '{"ts": 1287532800, "energy_kwh": null}', "energy_kwh: expected a number"),
    ("json", '{"ts": 1287532800, "energy_kwh": [1]}', "energy_kwh: expected a number, got list"),
    ("json", '{"ts": 1287532800, "energy_kwh": 1, "power_kw": false}', "power_kw: expected a number, got bool"),
    ("json", '{"ts": 1287532800, "energy_kwh": 1, "power_kw": "3"}', "power_kw: expected a number, got str"),
    ("json", '{"ts": true, "energy_kwh": 1}', "ts: expected a timestamp"),
    ("json", '{"ts": null, "energy_kwh": 1}', "ts:"),
    ("json", '{"ts": "2010-10-20T08:00:00", "energy_kwh": 1}', "has no UTC offset"),
    ("json", '{"ts": "yesterday", "energy_kwh": 1}', "not ISO 8601"),
    ("json", '{"ts": 1e308, "energy_kwh": 1}', "between 1970 and 3000"),
    ("json", '{"ts": -1, "energy_kwh": 1}', "between 1970 and 3000"),
    ("json", '{"ts": 32503680000, "energy_kwh": 1}', "out of range"),
    ("json", '{"ts": "0001-01-01T00:00:00+00:00", "energy_kwh": 1}', "out of range"),
    # tasmota
    ("tasmota", "[]", "expected a JSON object"),
    ("tasmota", '{"Time": "2010-10-20T08:00:00", "DS18B20": {"Temperature": 21.5}}', "ENERGY: missing"),
    ("tasmota", '{"Time": "2010-10-20T08:00:00", "ENERGY": 5}', "ENERGY: missing or not an object"),
    ("tasmota", '{"Time": "2010-10-20T08:00:00", "ENERGY": {"Power": 5}}', "ENERGY.Total: missing"),
    ("tasmota", '{"Time": "2010-10-20T08:00:00", "ENERGY": {"Total": -1}}', "cannot be negative"),
    ("tasmota", '{"Time": "2010-10-20T08:00:00", "ENERGY": {"Total": "3.7"}}', "expected a number, got str"),
    ("tasmota", '{"Time": "2010-10-20T08:00:00", "ENERGY": {"Total": true}}', "expected a number, got bool"),
    ("tasmota", '{"Time": "2010-10-20T08:00:00", "ENERGY": {"Total": []}}', "empty array"),
    ("tasmota", '{"Time": "2010-10-20T08:00:00", "ENERGY": {"Total": [1, "2"]}}', "expected a number"),
    ("tasmota", '{"Time": "2010-10-20T08:00:00", "ENERGY": {"Total": [1e308, 1e308]}}', "out of range"),
    ("tasmota", '{"Time": "2010-10-20T08:00:00", "ENERGY": {"Total": NaN}}', "not a finite number"),
    ("tasmota", '{"Time": "2010-10-20T08:00:00", "ENERGY": {"Total": 1, "Power": Infinity}}', "not a finite"),
    ("tasmota", '{"Time": "2010-10-20T08:00:00", "ENERGY": {"Total": 1, "Power": true}}', "ENERGY.Power"),
    ("tasmota", '{"Time": "soon", "ENERGY": {"Total": 1}}', "Time: not ISO 8601"),
    ("tasmota", '{"Time": true, "ENERGY": {"Total": 1}}', "Time: expected a timestamp"),
    ("tasmota", '{"Time": "3010-10-20T08:00:00", "ENERGY": {"Total": 1}}', "Time: timestamp out of range"),
    ("tasmota", '{"Time": "0001-01-01T00:00:00", "ENERGY": {"Total": 1}}', "Time: timestamp out of range"),
    ("tasmota", '{"Time": "9999-12-31T23:59:59-23:59", "ENERGY": {"Total": 1}}', "out of range"),
    ("tasmota", DEEP, "nested too deeply"),
    # shelly Gen2
    ("shelly", '{"id": 0, "apower": 5}', "no energy counter"),
    ("shelly", '{"id":0,"act_power":5080.3,"aprt_power":5142.4}', "no energy counter"),  # em1:1 has no counter
    ("shelly", '{"aenergy": 5}', "aenergy: expected an object"),
    ("shelly", '{"aenergy": {"by_minute": [1, 2, 3]}}', "aenergy.total: missing"),
    ("shelly", '{"aenergy": {"total": -5}}', "cannot be negative"),
    ("shelly", '{"aenergy": {"total": "5"}}', "aenergy.total: expected a number, got str"),
    ("shelly", '{"aenergy": {"total": false}}', "aenergy.total: expected a number, got bool"),
    ("shelly", '{"aenergy": {"total": NaN}}', "not a finite number"),
    ("shelly", '{"aenergy": {"total": 5, "minute_ts": "now"}}', "aenergy.minute_ts:"),
    ("shelly", '{"aenergy": {"total": 5, "minute_ts": true}}', "aenergy.minute_ts:"),
    ("shelly", '{"aenergy": {"total": 5, "minute_ts": 1e300}}', "aenergy.minute_ts: not a time between 1970 and 3000"),
    ("shelly", '{"aenergy": {"total": 5}, "apower": "5"}', "apower: expected a number"),
    ("shelly", '{"total_act": -1}', "cannot be negative"),
    ("shelly", '{"total_act_energy": null}', "total_act_energy: expected a number"),
    ("shelly", '{"aenergy": {"total": 5}', "not JSON"),
    ("shelly", '{"aenergy":' * 5_000 + "1" + "}" * 5_000, "nested too deeply"),
    # shelly Gen1
    ("shelly", "-5", "cannot be negative"),
    ("shelly", "on", "not a number"),
    ("shelly", "nan", "not a number"),
    ("shelly", "1e999", "not a finite number"),
    ("shelly", "[60000]", "not a number"),
    ("shelly", "true", "not a number"),
    # number
    ("number", "-0.5", "cannot be negative"),
    ("number", "NaN", "not a number"),
    ("number", "inf", "not a number"),
    ("number", "Infinity", "not a number"),
    ("number", "1e400", "not a finite number"),
    ("number", "1_000", "not a number"),
    ("number", "١٢٣", "not a number"),  # Arabic-Indic digits, which float() would accept
    ("number", "0x10", "not a number"),
    ("number", "12 kWh", "not a number"),
    ("number", '{"energy_kwh": 12}', "not a number"),
    ("number", "true", "not a number"),
    ("number", "1.2.3", "not a number"),
]


@pytest.mark.parametrize(("fmt", "payload", "reason"), REJECTED)
def test_rejected_payloads(fmt: Format, payload: bytes | str, reason: str) -> None:
    with pytest.raises(ReadingError) as caught:
        parse(fmt, payload)
    assert reason in str(caught.value)
    assert len(str(caught.value)) < 200  # a short reason, fit for a log line


def test_unknown_format_is_a_reading_error() -> None:
    with pytest.raises(ReadingError, match="unknown payload format"):
        parse_payload("xml", b"<a/>", "m1", ARRIVED, TZ)  # type: ignore[arg-type]


# --- properties -------------------------------------------------------------------------------------------------

KEYS = ["ts", "energy_kwh", "power_kw", "Time", "ENERGY", "Total", "Power", "aenergy", "total", "minute_ts",
        "apower", "total_act", "total_act_energy", "meter"]  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["2010-10-20T08:00:00", "2010-10-20T08:00:00+08:00", "1287532800", "NaN", "-1", "1e999"])
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), children, max_size=6)
    ),
    max_leaves=15,
)
NEAR_VALID = {
    "json": st.fixed_dictionaries({"ts": JSON_VALUES, "energy_kwh": JSON_VALUES}, optional={"power_kw": JSON_VALUES}),
    "tasmota": st.fixed_dictionaries(
        {"ENERGY": st.fixed_dictionaries({"Total": JSON_VALUES}, optional={"Power": JSON_VALUES}) | JSON_VALUES},
        optional={"Time": JSON_VALUES},
    ),
    "shelly": st.fixed_dictionaries(
        {},
        optional={
            "aenergy": st.fixed_dictionaries({"total": JSON_VALUES}, optional={"minute_ts": JSON_VALUES}) | JSON_VALUES,
            "apower": JSON_VALUES,
            "total_act": JSON_VALUES,
            "total_act_energy": JSON_VALUES,
        },
    ),
    "number": JSON_VALUES,
}
NESTED = st.builds(
    lambda depth, opener, leaf: (opener * depth + leaf).encode(),
    st.integers(min_value=0, max_value=40_000),
    st.sampled_from(["[", '{"ENERGY":', '{"aenergy":', '{"a":[', " "]),
    st.sampled_from(["", "1", "{}", "NaN", '"x"']),
)
NUMBERISH = st.from_regex(r"\A[ \t\r\n]*[+-]?[0-9._eE+\-]{0,30}[ \t\r\n]*\Z").map(str.encode)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def payloads(fmt: Format) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes (and number-like text), arbitrary JSON, JSON shaped like the format's payload with
    arbitrary values, and deep nesting."""
    return st.one_of(st.binary(max_size=300) | NUMBERISH, JSON_VALUES.map(_dumps), NEAR_VALID[fmt].map(_dumps), NESTED)


def check_outcome(fmt: Format, payload: bytes) -> None:
    try:
        reading = parse_payload(fmt, payload, "m1", ARRIVED, TZ)
    except ReadingError:
        return
    assert isinstance(reading, Reading)
    assert reading.meter == "m1"
    assert isinstance(reading.energy_kwh, float)
    assert math.isfinite(reading.energy_kwh)
    assert reading.energy_kwh >= 0
    assert reading.power_kw is None or (isinstance(reading.power_kw, float) and math.isfinite(reading.power_kw))
    assert isinstance(reading.t, int)
    assert 0 <= reading.t < T_MAX


# 1,000 payloads a format in every run; FUZZ_EXAMPLES=10000 for the long run (about 150 s for the four formats).
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "1000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize("fmt", FORMATS)
def test_any_payload_gives_a_reading_or_a_reading_error(fmt: Format) -> None:
    @FUZZ
    @given(payloads(fmt))
    def run(payload: bytes) -> None:
        check_outcome(fmt, payload)

    run()


@settings(max_examples=300, deadline=None)
@given(
    energy=st.floats(min_value=0, max_value=1e12, allow_nan=False),
    seconds=st.integers(min_value=0, max_value=32_503_679_999),
    power=st.none() | st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
)
def test_json_readings_round_trip(energy: float, seconds: int, power: float | None) -> None:
    body: dict[str, Any] = {"ts": seconds, "energy_kwh": energy}
    if power is not None:
        body["power_kw"] = power
    reading = parse("json", json.dumps(body))
    assert reading == Reading("m1", seconds * 1_000_000, energy + 0.0, power)

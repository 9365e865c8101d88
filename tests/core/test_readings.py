"""Parsing readings: the fast path for the common line equals json.loads + parse_record, on any input."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotad.core import readings
from quotad.core.errors import ReadingError
from quotad.core.readings import Reading, parse_jsonl_line, parse_jsonl_lines, parse_record, parse_ts


def reference(line: str) -> object:
    """What the general path makes of a line: a reading, or the fact that it is refused."""
    try:
        return parse_record(json.loads(line))
    except (ReadingError, ValueError, RecursionError):
        return "refused"


def fast(line: str) -> object:
    try:
        return parse_jsonl_line(line)
    except ReadingError:
        return "refused"


meters = st.text(min_size=0, max_size=12)
stamps = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),  # naive: refused
    st.text(max_size=30),
    st.sampled_from(["2010-10-20T00:00:00Z", "2010-10-20T00:00:00+08:00", "2010-10-20 00:00:00+08:00"]),
)
numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(["0", "0.0", "00", "1e3", "-0", "1.", ".5", "NaN", "Infinity", "0.1234567890123456789"]),
)


@st.composite
def lines(draw: st.DrawFn) -> str:
    sep = draw(st.sampled_from([", ", ",", " , "]))
    colon = draw(st.sampled_from([": ", ":"]))
    meter = json.dumps(draw(meters), ensure_ascii=draw(st.booleans()))
    fields = [f'"meter"{colon}{meter}', f'"ts"{colon}"{draw(stamps)}"', f'"energy_kwh"{colon}{draw(numbers)}']
    if draw(st.booleans()):
        fields = draw(st.permutations(fields))
    tail = draw(st.sampled_from(["", "\n", "\r\n", "  \n", " x"]))
    return "{" + sep.join(fields) + "}" + tail


@settings(max_examples=2000)
@given(lines())
def test_fast_path_equals_the_general_path(line: str) -> None:
    expected = reference(line)
    assert fast(line) == expected
    twice = [x if isinstance(x, Reading) else "refused" for x in parse_jsonl_lines([line, line])]
    assert twice == [expected, expected]  # the second through the timestamp cache


@settings(max_examples=500)
@given(st.lists(lines(), max_size=8))
def test_a_stream_of_lines_gives_each_line_its_own_reading(stream: list[str]) -> None:
    """The timestamp cache carries from line to line: a line with another stamp, or a refused one, resets
    nothing it should not."""
    got = [x if isinstance(x, Reading) else "refused" for x in parse_jsonl_lines(stream)]
    assert got == [reference(line) for line in stream]


def test_blank_lines_are_neither_readings_nor_errors() -> None:
    line = '{"meter": "rs-main", "ts": "2010-10-20T00:00:00+08:00", "energy_kwh": 804.31}\n'
    items = list(parse_jsonl_lines(["\n", line, "  \n", "nonsense\n"]))
    assert items[0] is None
    assert isinstance(items[1], Reading)
    assert items[2] is None
    assert isinstance(items[3], ReadingError)


def test_fast_path_is_taken_for_the_common_shape() -> None:
    line = '{"meter": "rs-main", "ts": "2010-10-20T00:00:00+08:00", "energy_kwh": 804.31}\n'
    assert readings._COMMON_LINE(line) is not None
    reading = parse_jsonl_line(line)
    assert (reading.meter, reading.energy_kwh) == ("rs-main", 804.31)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "expected an object"),
        ('{"ts": "2010-10-20T00:00:00+08:00", "energy_kwh": 1}', "meter"),
        ('{"meter": "a", "energy_kwh": 1}', "ts: missing"),
        ('{"meter": "a", "ts": "2010-10-20T00:00:00", "energy_kwh": 1}', "no UTC offset"),
        ('{"meter": "a", "ts": "2010-10-20T00:00:00+08:00", "energy_kwh": -1}', "cannot be negative"),
        ('{"meter": "a", "ts": "2010-10-20T00:00:00+08:00", "energy_kwh": NaN}', "finite"),
        ('{"meter": "a", "ts": "2010-10-20T00:00:00+08:00", "energy_kwh": "x"}', "not a number"),
        ('{"meter": "a", "ts": "2010-10-20T00:00:00+08:00", "energy_kwh": true}', "expected a number"),
        ('{"meter": "a", "ts": true, "energy_kwh": 1}', "ts"),
        ('{"meter": "a", "ts": 1e400, "energy_kwh": 1}', "between 1970 and 3000"),
        ('{"meter": "a", "ts": 1e308, "energy_kwh": 1}', "between 1970 and 3000"),  # overflowed before
        ('{"meter": "a", "ts": -5, "energy_kwh": 1}', "between 1970 and 3000"),
    ],
)
def test_malformed_readings_say_why(line: str, error: str) -> None:
    with pytest.raises(ReadingError, match=error):
        parse_jsonl_line(line)


@pytest.mark.parametrize(
    ("value", "micros"),
    [
        (1287504000, 1287504000 * 10**6),
        (1287504000.5, 1287504000 * 10**6 + 500_000),
        ("1287504000", 1287504000 * 10**6),
        ("2010-10-20T00:00:00+08:00", 1287504000 * 10**6),
        ("2010-10-19T16:00:00Z", 1287504000 * 10**6),
    ],
)
def test_timestamps(value: object, micros: int) -> None:
    assert parse_ts(value) == micros
    assert not math.isnan(micros)

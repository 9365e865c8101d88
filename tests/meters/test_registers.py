"""Register decoding: tables of known words, every sentinel, NaN/inf, round trips, and pymodbus for comparison."""

from __future__ import annotations

import math
import struct
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client.mixin import ModbusClientMixin

from quotad.core.errors import DecodeError, MeterError, QuotadError
from quotad.meters.registers import RegisterType, WordOrder, decode, encode, word_count

TYPES: tuple[RegisterType, ...] = get_args(RegisterType)
ORDERS: tuple[WordOrder, ...] = get_args(WordOrder)
INT_RANGES: dict[RegisterType, tuple[int, int]] = {
    "u16": (0, 2**16 - 1),
    "i16": (-(2**15), 2**15 - 1),
    "u32": (0, 2**32 - 1),
    "i32": (-(2**31), 2**31 - 1),
    "u64": (0, 2**53),  # decode returns a float: exact up to 2**53 (9e15 Wh), as documented
}
SENTINEL_VALUES: dict[RegisterType, tuple[int, ...]] = {  # as decoded integers
    "u16": (2**16 - 1,),
    "i16": (-(2**15), 2**15 - 1),
    "u32": (2**32 - 1,),
    "i32": (-(2**31), 2**31 - 1),
    "u64": (2**64 - 1,),
}
DT = ModbusClientMixin.DATATYPE
PYMODBUS_TYPES = {
    "u16": DT.UINT16,
    "i16": DT.INT16,
    "u32": DT.UINT32,
    "i32": DT.INT32,
    "u64": DT.UINT64,
    "f32": DT.FLOAT32,
    "f64": DT.FLOAT64,
}


def words_of(kind: RegisterType, order: WordOrder) -> st.SearchStrategy[list[int]]:
    n = word_count(kind)
    return st.lists(st.integers(0, 0xFFFF), min_size=n, max_size=n)


def swapped(words: list[int], order: WordOrder) -> list[int]:
    """Words written most significant first, put in `order`."""
    return words if order == "big" else words[::-1]


# ---- tables -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "count"), [("u16", 1), ("i16", 1), ("u32", 2), ("i32", 2), ("u64", 4),
                                             ("f32", 2), ("f64", 4)])  # fmt: skip
def test_word_count(kind: RegisterType, count: int) -> None:
    assert word_count(kind) == count


def test_word_count_refuses_unknown_type() -> None:
    with pytest.raises(ValueError, match="unknown register type 'u8'"):
        word_count("u8")  # type: ignore[arg-type]


KNOWN = [
    # kind, words most significant first, scale, value
    ("u16", [0x1234], 1.0, 4660),
    ("u16", [0x0000], 1.0, 0),
    ("i16", [0xFFFE], 1.0, -2),
    ("i16", [0x8001], 1.0, -32767),
    ("i16", [0x7FFE], 1.0, 32766),
    ("u32", [0x0001, 0x0002], 1.0, 65538),
    ("u32", [0x0012, 0xD687], 0.01, 12345.67),
    ("u32", [0xFFFF, 0xFFFE], 1.0, 4294967294),
    ("i32", [0xFFFF, 0xFFFE], 1.0, -2),
    ("i32", [0xFFFF, 0xCFF4], 0.001, -12.3),
    ("i32", [0x8000, 0x0001], 1.0, -2147483647),
    ("u64", [0x0000, 0x0000, 0x0001, 0x0002], 1.0, 65538),
    ("u64", [0x0001, 0x0000, 0x0000, 0x0000], 1.0, 2**48),
    ("u64", [0x0000, 0x0000, 0x0012, 0xD687], 0.001, 1234.567),
    ("f32", [0x4640, 0xE6AE], 1.0, 12345.669921875),
    ("f32", [0x3F80, 0x0000], 1.0, 1.0),
    ("f32", [0xC640, 0x3000], 1.0, -12300.0),
    ("f32", [0x4955, 0xDE00], 0.1, 87600.0),
    ("f32", [0x8000, 0x0000], 1.0, -0.0),
    ("f32", [0x0000, 0x0001], 1.0, 2.0**-149),  # smallest subnormal: a value, not a sentinel
    ("f64", [0x3FF0, 0x0000, 0x0000, 0x0000], 1.0, 1.0),
    ("f64", [0x40C8, 0x1CD5, 0xC28F, 0x5C29], 1.0, 12345.67),
    ("f64", [0xC000, 0x0000, 0x0000, 0x0000], 10.0, -20.0),
]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(("kind", "words", "scale", "value"), KNOWN)
def test_decode_known_words(kind: RegisterType, words: list[int], scale: float, value: float, order: WordOrder) -> None:
    decoded = decode(swapped(words, order), kind, order, scale)
    assert decoded == value
    assert isinstance(decoded, float)
    assert math.copysign(1, decoded) == math.copysign(1, value)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(("kind", "words", "scale", "value"), KNOWN)
def test_encode_known_values(
    kind: RegisterType, words: list[int], scale: float, value: float, order: WordOrder
) -> None:
    assert encode(value, kind, order, scale) == swapped(words, order)


def test_little_is_word_swapped_not_byte_swapped() -> None:
    assert decode([0xE6AE, 0x4640], "f32", "little") == 12345.669921875  # CDAB
    assert decode([0x0002, 0x0001], "u32", "little") == 0x0001_0002
    assert decode([0x0004, 0x0003, 0x0002, 0x0001], "u64", "little") == 0x0001_0002_0003_0004


def test_decimal_scales_give_the_nearest_double() -> None:
    assert decode([0x0012, 0xD687], "u32", "big", 0.01) == 12345.67
    assert decode([0x0000, 0x0023], "u32", "big", 0.01) == 0.35  # not 0.35000000000000003
    assert 35 * 0.01 != 0.35  # why decode divides by 100 instead of multiplying by 0.01
    assert decode([0x0003], "u16", "big", 0.1) == 0.3
    assert 3 * 0.1 != 0.3
    assert decode([0x0003], "u16", "big", 2.5) == 7.5
    assert decode([0x0003], "u16", "big", -1.0) == -3.0


# ---- sentinels, NaN, inf: never a number, never 0 ------------------------------------------------------------

SENTINELS = [
    ("u16", [0xFFFF], "all ones"),
    ("i16", [0x8000], "signed minimum"),
    ("i16", [0x7FFF], "signed maximum"),
    ("u32", [0xFFFF, 0xFFFF], "all ones"),
    ("i32", [0x8000, 0x0000], "signed minimum"),
    ("i32", [0x7FFF, 0xFFFF], "signed maximum"),
    ("u64", [0xFFFF] * 4, "all ones"),
    ("f32", [0xFFFF, 0xFFFF], "all ones"),
    ("f64", [0xFFFF] * 4, "all ones"),
]


@pytest.mark.parametrize("scale", [1.0, 0.01, 1000.0])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(("kind", "words", "reason"), SENTINELS)
def test_sentinels_raise(kind: RegisterType, words: list[int], reason: str, order: WordOrder, scale: float) -> None:
    sent = swapped(words, order)
    with pytest.raises(DecodeError, match=reason) as caught:
        decode(sent, kind, order, scale)
    message = str(caught.value)
    assert ", ".join(f"0x{w:04X}" for w in sent) in message
    assert kind in message


def test_sentinel_table_covers_every_type() -> None:
    assert {kind for kind, _, _ in SENTINELS} == set(TYPES)


def test_word_order_decides_what_is_a_sentinel() -> None:
    # 0x7FFF_FFFF is the i32 maximum; its words in the wrong order are an ordinary number
    assert decode([0xFFFF, 0x7FFF], "i32", "big") == -32769
    with pytest.raises(DecodeError):
        decode([0xFFFF, 0x7FFF], "i32", "little")


NOT_A_NUMBER = [
    ("f32", [0x7FC0, 0x0000], "nan"),  # quiet NaN
    ("f32", [0xFFC0, 0x0000], "nan"),  # negative quiet NaN
    ("f32", [0x7F80, 0x0001], "nan"),  # signalling NaN
    ("f32", [0x7FFF, 0xFFFF], "nan"),
    ("f32", [0x7F80, 0x0000], "inf"),
    ("f32", [0xFF80, 0x0000], "-inf"),
    ("f64", [0x7FF8, 0x0000, 0x0000, 0x0000], "nan"),
    ("f64", [0xFFF8, 0x0000, 0x0000, 0x0000], "nan"),
    ("f64", [0x7FF0, 0x0000, 0x0000, 0x0001], "nan"),
    ("f64", [0x7FF0, 0x0000, 0x0000, 0x0000], "inf"),
    ("f64", [0xFFF0, 0x0000, 0x0000, 0x0000], "-inf"),
]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize(("kind", "words", "what"), NOT_A_NUMBER)
def test_nan_and_inf_raise(kind: RegisterType, words: list[int], what: str, order: WordOrder) -> None:
    sent = swapped(words, order)
    with pytest.raises(DecodeError, match=f"{what} is not a reading") as caught:
        decode(sent, kind, order)
    assert f"0x{sent[0]:04X}" in str(caught.value)


def test_scaling_overflow_raises() -> None:
    with pytest.raises(DecodeError, match="overflows"):
        decode([0x7FEF, 0xFFFF, 0xFFFF, 0xFFFF], "f64", "big", 10.0)


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("count_delta", [-1, 1])
def test_wrong_word_count_raises(kind: RegisterType, count_delta: int) -> None:
    words = [0] * (word_count(kind) + count_delta)
    with pytest.raises(DecodeError, match=f"{len(words)} words, a {kind} needs {word_count(kind)}"):
        decode(words, kind, "big")


@pytest.mark.parametrize(("bad", "shown"), [(-1, "-1"), (0x10000, "0x10000"), (1.0, "1.0"), (True, "True"),
                                           (None, "None"), ("0x1234", "'0x1234'")])  # fmt: skip
def test_words_outside_the_register_range_raise(bad: object, shown: str) -> None:
    with pytest.raises(DecodeError, match=r"outside 0\.\.0xFFFF") as caught:
        decode([0x1234, bad], "u32", "big")  # type: ignore[list-item]
    assert f"[0x1234, {shown}]" in str(caught.value)


@pytest.mark.parametrize("scale", [0.0, -0.0, math.nan, math.inf])
def test_a_scale_that_would_invent_or_lose_values_is_refused(scale: float) -> None:
    with pytest.raises(ValueError, match="scale"):
        decode([0x0001], "u16", "big", scale)
    with pytest.raises(ValueError, match="scale"):
        encode(1.0, "u16", "big", scale)


def test_decode_errors_are_meter_errors() -> None:
    assert issubclass(DecodeError, MeterError)
    assert issubclass(MeterError, QuotadError)


# ---- encode refuses what decode would refuse -----------------------------------------------------------------


@pytest.mark.parametrize(("value", "kind", "scale"), [
    (65536, "u16", 1.0), (-1, "u16", 1.0), (40000, "i16", 1.0), (2**32, "u32", 1.0), (-(2**31) - 1, "i32", 1.0),
    (2**64, "u64", 1.0), (1e39, "f32", 1.0), (3.5e38, "f32", 1.0), (43e6, "u32", 0.01),
])  # fmt: skip
def test_encode_refuses_values_out_of_range(value: float, kind: RegisterType, scale: float) -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode(value, kind, "big", scale)


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_encode_refuses_nan_and_inf(kind: RegisterType, value: float) -> None:
    with pytest.raises(ValueError, match="cannot encode"):
        encode(value, kind, "big")


@pytest.mark.parametrize(("kind", "value"), [(k, v) for k, vs in SENTINEL_VALUES.items() for v in vs])
def test_encode_refuses_sentinel_values(kind: RegisterType, value: int) -> None:
    with pytest.raises(ValueError, match="'no value' marker"):
        encode(value, kind, "little")


def test_encode_rounds_integer_types() -> None:
    assert encode(12345.674, "u32", "big", 0.01) == [0x0012, 0xD687]
    assert encode(12345.666, "u32", "big", 0.01) == [0x0012, 0xD687]
    assert encode(-0.4, "i16", "big") == [0x0000]


# ---- round trips ---------------------------------------------------------------------------------------------


@given(data=st.data())
def test_integers_round_trip(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(list(INT_RANGES)))
    order = data.draw(st.sampled_from(ORDERS))
    low, high = INT_RANGES[kind]
    value = data.draw(st.integers(low, high).filter(lambda v: v not in SENTINEL_VALUES[kind]))
    words = encode(value, kind, order)
    assert len(words) == word_count(kind)
    assert all(0 <= w <= 0xFFFF for w in words)
    assert decode(words, kind, order) == value


@given(data=st.data())
def test_scaled_integers_round_trip(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["u32", "i32", "u64"]))
    order = data.draw(st.sampled_from(ORDERS))
    divisor = data.draw(st.sampled_from([10, 100, 1000]))
    low, high = INT_RANGES[kind]
    steps = data.draw(
        st.integers(max(low, -(2**40)), min(high, 2**40)).filter(lambda v: v not in SENTINEL_VALUES[kind])
    )
    value = steps / divisor
    assert decode(encode(value, kind, order, 1 / divisor), kind, order, 1 / divisor) == value


F32_MAX = struct.unpack(">f", bytes.fromhex("7f7fffff"))[0]


@given(value=st.floats(width=32, allow_nan=False, allow_infinity=False), order=st.sampled_from(ORDERS))
def test_f32_values_round_trip_exactly(value: float, order: WordOrder) -> None:
    assert decode(encode(value, "f32", order), "f32", order) == value


@given(value=st.floats(-F32_MAX, F32_MAX), order=st.sampled_from(ORDERS), scale=st.sampled_from([1.0, 0.1, 0.001]))
def test_any_double_round_trips_within_f32_precision(value: float, order: WordOrder, scale: float) -> None:
    try:
        words = encode(value, "f32", order, scale)
    except ValueError:  # value / scale beyond the f32 range
        assert abs(value / scale) > F32_MAX * (1 - 2**-24)
        return
    back = decode(words, "f32", order, scale)
    assert math.isclose(back, value, rel_tol=2**-23, abs_tol=2**-149 * abs(scale) * 2)


@given(value=st.floats(allow_nan=False, allow_infinity=False), order=st.sampled_from(ORDERS))
def test_f64_values_round_trip_exactly(value: float, order: WordOrder) -> None:
    assert decode(encode(value, "f64", order), "f64", order) == value


@given(data=st.data())
def test_any_words_decode_to_a_finite_number_that_encodes_back_or_raise(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(TYPES))
    order = data.draw(st.sampled_from(ORDERS))
    words = data.draw(words_of(kind, order))
    try:
        value = decode(words, kind, order)
    except DecodeError:
        return
    assert math.isfinite(value)
    if abs(value) <= 2**53:  # a u64 beyond 2**53 does not survive the trip through a float
        assert encode(value, kind, order) == words


# ---- pymodbus, for comparison --------------------------------------------------------------------------------


@given(data=st.data())
def test_pymodbus_agrees_for_big_word_order(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(TYPES))
    words = data.draw(words_of(kind, "big"))
    try:
        ours = decode(words, kind, "big")
    except DecodeError:
        return
    theirs = ModbusClientMixin.convert_from_registers(words, PYMODBUS_TYPES[kind], word_order="big")
    assert float(theirs) == ours  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "words", "scale", "value"), [k for k in KNOWN if k[2] == 1.0])
def test_pymodbus_agrees_on_the_known_table(kind: RegisterType, words: list[int], scale: float, value: float) -> None:
    assert ModbusClientMixin.convert_from_registers(words, PYMODBUS_TYPES[kind], word_order="big") == value
    assert ModbusClientMixin.convert_to_registers(value, PYMODBUS_TYPES[kind], word_order="big") == words


def test_what_pymodbus_does_for_little_word_order() -> None:
    """pymodbus 3.16 reverses the registers of each value (CDAB; GH EF CD AB for 64 bits), as quotad's "little".

    Earlier 3.x releases reversed the whole register list, so a list of several values came back in reverse
    order (pymodbus issue #2675). quotad decodes each field itself and does not depend on either behaviour.
    """
    convert = ModbusClientMixin.convert_from_registers
    assert convert([0xE6AE, 0x4640], DT.FLOAT32, word_order="little") == decode([0xE6AE, 0x4640], "f32", "little")
    assert convert([4, 3, 2, 1], DT.UINT64, word_order="little") == decode([4, 3, 2, 1], "u64", "little")
    assert convert([0, 0x3F80, 0, 0x4000], DT.FLOAT32, word_order="little") == [1.0, 2.0]  # each value swapped
    assert ModbusClientMixin.convert_to_registers([1.0, 2.0], DT.FLOAT32, word_order="little") == [0, 0x3F80, 0, 0x4000]


def test_pymodbus_has_no_sentinels() -> None:
    """Why quotad does not use pymodbus' helpers: they return the meter's 'no value' marker as a number."""
    convert = ModbusClientMixin.convert_from_registers
    assert convert([0xFFFF, 0xFFFF], DT.UINT32) == 4294967295
    assert convert([0x7FFF, 0xFFFF], DT.INT32) == 2147483647
    assert math.isnan(convert([0xFFFF, 0xFFFF], DT.FLOAT32))  # type: ignore[arg-type]
    for kind, words in (("u32", [0xFFFF, 0xFFFF]), ("i32", [0x7FFF, 0xFFFF]), ("f32", [0xFFFF, 0xFFFF])):
        with pytest.raises(DecodeError):
            decode(words, kind, "big")  # type: ignore[arg-type]

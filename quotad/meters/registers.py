"""Modbus register words to numbers and back: pure, no IO.

A Modbus register is one 16-bit word, its two bytes always sent most significant first. A value wider than
a register spans 2 or 4 consecutive registers, and the protocol does not say in which order; each meter's
manual does. `WordOrder`:

- ``"big"``: the first register holds the most significant word (ABCD; for 64 bits AB CD EF GH).
- ``"little"``: the least significant word comes first (CDAB; for 64 bits GH EF CD AB, every word reversed,
  as evcc's ``uint64s``).

Decoding never invents a number. Wrong word counts, words outside 0..0xFFFF, NaN, infinities and the
sentinels meters put in a register that has no value (all ones for unsigned types and floats, 0x8000/0x7FFF
and 0x80000000/0x7FFFFFFF for signed ones) raise `DecodeError` naming the raw words; none of them becomes 0.
This is the evcc lesson: its ``*nan`` decoders turn 0x7FFFFFFF into 0, which corrupts an energy counter.

Scaling: the decoded value is ``raw * scale``. For decimal scales such as 0.01 it is computed as
``raw / 100`` instead, so 1234567 with scale 0.01 gives exactly 12345.67, not 12345.670000000002.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from typing import Literal, get_args

from quotad.core.errors import DecodeError

__all__ = ["RegisterType", "WordOrder", "decode", "decoder", "encode", "word_count"]

RegisterType = Literal["u16", "i16", "u32", "i32", "u64", "f32", "f64"]
WordOrder = Literal["big", "little"]

# struct format character and number of registers of each type
_LAYOUT: dict[str, tuple[str, int]] = {
    "u16": ("H", 1),
    "i16": ("h", 1),
    "u32": ("I", 2),
    "i32": ("i", 2),
    "u64": ("Q", 4),
    "f32": ("f", 2),
    "f64": ("d", 4),
}
_ONES16, _ONES32, _ONES64 = 0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF
# the bit patterns (read as one big-endian unsigned integer) that mean "no value", and how to say so
_SENTINELS: dict[str, dict[int, str]] = {
    "u16": {_ONES16: "all ones"},
    "i16": {0x8000: "the signed minimum", 0x7FFF: "the signed maximum"},
    "u32": {_ONES32: "all ones"},
    "i32": {0x8000_0000: "the signed minimum", 0x7FFF_FFFF: "the signed maximum"},
    "u64": {_ONES64: "all ones"},
    "f32": {_ONES32: "all ones"},
    "f64": {_ONES64: "all ones"},
}
assert set(_LAYOUT) == set(get_args(RegisterType)) == set(_SENTINELS)


def word_count(kind: RegisterType) -> int:
    """How many 16-bit registers a value of `kind` spans."""
    return _layout(kind)[1]


def decode(words: Sequence[int], kind: RegisterType, word_order: WordOrder, scale: float = 1.0) -> float:
    """The value held in `words` (as read from the meter, in register order), times `scale`.

    Raises DecodeError for a wrong word count, a word outside 0..0xFFFF, NaN, +-inf and sentinels. The result
    is a float, so a u64 is exact up to 2**53 (9e15: Wh counters to 9e12 kWh).
    """
    return decoder(kind, word_order, scale)(words)


def decoder(kind: RegisterType, word_order: WordOrder, scale: float = 1.0) -> Callable[[Sequence[int]], float]:
    """`decode` with the type, word order and scale fixed: they are checked and prepared once, here (a poller
    makes one per register field when it starts), so that each reading only decodes."""
    fmt, count = _layout(kind)
    _check_scale(scale)
    words_struct, value_struct = struct.Struct(f">{count}H"), struct.Struct(f">{fmt}")
    sentinels, divisor, big = _SENTINELS[kind], _divisor(scale), word_order == "big"
    isfinite = math.isfinite

    def decode_words(words: Sequence[int]) -> float:
        if len(words) != count:
            msg = f"{_where(words, kind, word_order)}: {len(words)} words, a {kind} needs {count}"
            raise DecodeError(msg)
        for w in words:
            if type(w) is not int or not 0 <= w <= _ONES16:
                msg = f"{_where(words, kind, word_order)}: a word outside 0..0xFFFF"
                raise DecodeError(msg)
        raw = words_struct.pack(*(words if big else words[::-1]))
        sentinel = sentinels.get(int.from_bytes(raw, "big"))
        if sentinel is not None:
            msg = f"{_where(words, kind, word_order)}: {sentinel}, the meter's 'no value' marker"
            raise DecodeError(msg)
        value: float = value_struct.unpack(raw)[0]
        if not isfinite(value):
            msg = f"{_where(words, kind, word_order)}: {value!r} is not a reading"
            raise DecodeError(msg)
        scaled = value / divisor if divisor is not None else value * scale
        if not isfinite(scaled):
            msg = f"{_where(words, kind, word_order)}: {value!r} times scale {scale!r} overflows"
            raise DecodeError(msg)
        return scaled

    return decode_words


def _where(words: Sequence[int], kind: RegisterType, word_order: WordOrder) -> str:
    """The context of a decoding error (built only when there is one: decoding is on the polling hot path)."""
    return f"{kind} words [{_hex(words)}] (word order {word_order})"


def encode(value: float, kind: RegisterType, word_order: WordOrder, scale: float = 1.0) -> list[int]:
    """The words a meter would send for `value` (the inverse of `decode`): value / scale, rounded for integers.

    Raises ValueError for NaN, +-inf, a value out of the type's range, or one whose bits are a sentinel
    (decode would refuse it).
    """
    fmt, _count = _layout(kind)
    _check_scale(scale)
    raw_value = _unscaled(value, scale)
    if math.isnan(raw_value) or math.isinf(raw_value):
        msg = f"cannot encode {value!r} (scale {scale!r}) as {kind}"
        raise ValueError(msg)
    number: float = raw_value if kind.startswith("f") else round(raw_value)
    try:
        raw = struct.pack(f">{fmt}", number)
    except (struct.error, OverflowError) as exc:
        msg = f"{value!r} (scale {scale!r}) is out of range for {kind}"
        raise ValueError(msg) from exc
    sentinel = _SENTINELS[kind].get(int.from_bytes(raw, "big"))
    if sentinel is not None:
        msg = f"{value!r} (scale {scale!r}) encodes as {sentinel}, the 'no value' marker of a {kind}"
        raise ValueError(msg)
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    return words if word_order == "big" else words[::-1]


def _layout(kind: str) -> tuple[str, int]:
    try:
        return _LAYOUT[kind]
    except KeyError:
        msg = f"unknown register type {kind!r} (one of {', '.join(_LAYOUT)})"
        raise ValueError(msg) from None


def _check_scale(scale: float) -> None:
    if not math.isfinite(scale) or scale == 0:
        msg = f"scale must be a finite number other than 0, got {scale!r}"
        raise ValueError(msg)


def _divisor(scale: float) -> int | None:
    """100 for a scale of 0.01: the integer whose inverse the scale is, if any."""
    if abs(scale) >= 1:
        return None
    inverse = round(1 / scale)
    return inverse if inverse != 0 and 1 / inverse == scale else None


def _unscaled(value: float, scale: float) -> float:
    if scale == 1 and type(value) is int:
        return value  # exact, also for 64-bit integers beyond a float's 53 bits
    divisor = _divisor(scale)
    return value * divisor if divisor is not None else value / scale


def _hex(words: Sequence[object]) -> str:
    return ", ".join(f"0x{w:04X}" if type(w) is int and w >= 0 else repr(w) for w in words)

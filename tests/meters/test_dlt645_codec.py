"""The DL/T 645-2007 codec, pure: frames worked out by hand from the standard, values, error replies, garbage.

Golden frames: the standard's frame (6.1) is FE FE FE FE | 68 | A0..A5 (LSB first) | 68 | C | L | DATA+33H | CS | 16,
CS the byte sum mod 256 from the first 68 to the data's end. The broadcast read of forward active total energy,
`68 AA AA AA AA AA AA 68 11 04 33 33 34 33 AE 16`, and the broadcast read-address `68 AA AA AA AA AA AA 68 13 00
DF 16` are the two frames every DL/T 645 integration guide prints; the others below were summed by hand.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotad.core.errors import DecodeError, MeterError
from quotad.meters import dlt645, rtu
from quotad.meters.dlt645 import (
    ENERGY_TOTAL,
    POWER_TOTAL,
    decode_value,
    encode_value,
    find_frame,
    read_address,
    read_data,
    reply,
    reply_address,
    reply_value,
)

PACKAGE = Path(dlt645.__file__).resolve().parents[1]
ADDRESS = "000000000001"


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# -- requests ---------------------------------------------------------------------------------------------------------


def test_read_energy_of_meter_1() -> None:
    # 68+01+68+11+04+33+33+34+33 = 0x1B3 -> B3
    assert read_data(ADDRESS, ENERGY_TOTAL) == h("FEFEFEFE 68 010000000000 68 11 04 33333433 B3 16")


def test_read_power_of_a_printed_address() -> None:
    # address 210987654321 goes on the wire 21 43 65 87 09 21; DI 02030000 as 00 00 03 02, +33: 33 33 36 35
    # 68+21+43+65+87+09+21+68+11+04+33+33+36+35 = 0x330 -> 30
    assert read_data("210987654321", POWER_TOTAL) == h("FEFEFEFE 68 214365870921 68 11 04 33333635 30 16")


def test_the_frames_every_guide_prints() -> None:
    broadcast = h("FEFEFEFE 68 AAAAAAAAAAAA 68 11 04 33333433 AE 16")
    assert dlt645._frame(dlt645.BROADCAST, 0x11, h("00000100")) == broadcast
    assert read_address() == h("FEFEFEFE 68 AAAAAAAAAAAA 68 13 00 DF 16")


@pytest.mark.parametrize(
    "address", ["00000000001", "0000000000012", "00000000000A", "AAAAAAAAAAAA", "０００００００００００１"]
)
def test_a_request_needs_a_12_digit_address(address: str) -> None:
    with pytest.raises(MeterError, match="12-digit address"):
        read_data(address, ENERGY_TOTAL)


@pytest.mark.parametrize("di", ["0001000", "0001000G", "04000401", "C0320000"])
def test_a_request_needs_an_energy_or_power_identifier(di: str) -> None:
    with pytest.raises(MeterError, match="identifier"):
        read_data(ADDRESS, di)


# -- replies ----------------------------------------------------------------------------------------------------------

# 12345.67 kWh: XXXXXX.XX -> 00 01 23 45 67 as digits 01234567 -> LSB first 67 45 23 01 -> +33: 9A 78 56 34;
# 68+01+68+91+08+33+33+34+33+9A+78+56+34 = 0x3D3 -> D3
ENERGY_REPLY = h("FEFEFEFE 68 010000000000 68 91 08 33333433 9A785634 D3 16")
# -12.3456 kW: XX.XXXX -> 12 34 56 with the sign in the top bit: 92 34 56 -> LSB first 56 34 92 -> +33: 89 67 C5;
# 68+01+68+91+07+33+33+36+35+89+67+C5 = 0x3EF -> EF
POWER_REPLY = h("68 010000000000 68 91 07 33333635 8967C5 EF 16")
# error reply to 0x11 (C = 0x91 | 0x40 = D1), error byte 02 (no such data) -> 35; 68+01+68+D1+01+35 = 0x1D8 -> D8
ERROR_REPLY = h("FEFE 68 010000000000 68 D1 01 35 D8 16")
# the read-address reply: C = 93, data the address (01 00 00 00 00 00, +33: 34 33 33 33 33 33)
# 68+01+68+93+06+34+33*5 = 0x29D -> 9D
ADDRESS_REPLY = h("68 010000000000 68 93 06 343333333333 9D 16")


def frame_of(raw: bytes) -> dlt645.Frame:
    frame, used = find_frame(raw)
    assert frame is not None
    assert used == len(raw)
    return frame


def test_golden_energy_reply() -> None:
    assert reply_value(frame_of(ENERGY_REPLY), ADDRESS, ENERGY_TOTAL) == 12345.67
    assert dlt645.quick_value(ENERGY_REPLY, ADDRESS, ENERGY_TOTAL) == (12345.67, len(ENERGY_REPLY))
    assert reply(ADDRESS, 0x11, h("00000100") + encode_value(ENERGY_TOTAL, 12345.67)) == ENERGY_REPLY


def test_golden_power_reply_with_its_sign() -> None:
    assert reply_value(frame_of(POWER_REPLY), ADDRESS, POWER_TOTAL) == -12.3456
    assert reply(ADDRESS, 0x11, h("00000302") + encode_value(POWER_TOTAL, -12.3456)) == PREAMBLE + POWER_REPLY


PREAMBLE = h("FEFEFEFE")


def test_golden_error_reply_is_spelt_out() -> None:
    with pytest.raises(MeterError, match=r"error reply 0x02: no such data"):
        reply_value(frame_of(ERROR_REPLY), ADDRESS, ENERGY_TOTAL)


def test_golden_address_reply() -> None:
    assert reply_address(frame_of(ADDRESS_REPLY)) == ADDRESS


def test_noise_before_and_after_a_frame() -> None:
    raw = h("00 68 16 FE 68") + ENERGY_REPLY + h("FE FE")
    frame, used = find_frame(raw)
    assert frame is not None
    assert raw[used:] == h("FE FE")
    assert reply_value(frame, ADDRESS, ENERGY_TOTAL) == 12345.67


def test_a_frame_still_arriving_is_kept() -> None:
    for cut in range(len(ENERGY_REPLY)):
        frame, used = find_frame(ENERGY_REPLY[:cut])
        assert frame is None
        assert ENERGY_REPLY[used:cut] == ENERGY_REPLY[used:][: cut - used]  # only certain garbage is dropped
        assert used <= 4  # the preamble at most


def _sum(body: bytes) -> bytes:
    return bytes([sum(body) & 0xFF, 0x16])


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (h("68 020000000000 68 91 08 33333433 9A785634") + _sum(h("68 020000000000 68 91 08 33333433 9A785634")),
         "reply from address 000000000002"),
        (h("68 010000000000 68 91 08 33333533 9A785634") + _sum(h("68 010000000000 68 91 08 33333533 9A785634")),
         "data identifier 00020000"),
        (h("68 010000000000 68 11 08 33333433 9A785634") + _sum(h("68 010000000000 68 11 08 33333433 9A785634")),
         "not a reply"),
        (h("68 010000000000 68 94 08 33333433 9A785634") + _sum(h("68 010000000000 68 94 08 33333433 9A785634")),
         "control code 0x94"),
        (h("68 010000000000 68 91 08 33333433 32323232") + _sum(h("68 010000000000 68 91 08 33333433 32323232")),
         "not BCD"),  # FF FF FF FF: a meter's "no value" filler, never a counter
        (h("68 010000000000 68 91 07 33333433 9A7856") + _sum(h("68 010000000000 68 91 07 33333433 9A7856")),
         "3 value bytes"),
        (h("68 010000000000 68 91 04 33333433") + _sum(h("68 010000000000 68 91 04 33333433")), "0 value bytes"),
    ],
    ids=["other-address", "other-identifier", "a-request", "other-control", "ff-filler", "short", "no-value"],
)  # fmt: skip
def test_replies_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(MeterError, match=reason):
        reply_value(frame_of(raw), ADDRESS, ENERGY_TOTAL)


def test_bad_checksum_or_end_is_no_frame() -> None:
    bad_sum = ENERGY_REPLY[:-2] + bytes([ENERGY_REPLY[-2] ^ 1, 0x16])
    bad_end = ENERGY_REPLY[:-1] + h("17")
    assert find_frame(bad_sum)[0] is None
    assert find_frame(bad_end)[0] is None


def test_decode_refuses_what_is_not_bcd() -> None:
    with pytest.raises(DecodeError, match="not BCD"):
        decode_value(ENERGY_TOTAL, h("0A000000"))


# -- properties -------------------------------------------------------------------------------------------------------


@given(st.integers(0, 99_999_999))
def test_energy_round_trip(hundredths: int) -> None:
    value = hundredths / 100
    assert decode_value(ENERGY_TOTAL, encode_value(ENERGY_TOTAL, value)) == value


@given(st.integers(-799_999, 799_999))
def test_power_round_trip(units: int) -> None:
    value = units / 10_000
    assert decode_value(POWER_TOTAL, encode_value(POWER_TOTAL, value)) == value


def test_a_power_past_the_format_is_not_encoded() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode_value(POWER_TOTAL, 80.0)


def _reading(raw: bytes) -> float | None:
    """What quotad makes of `raw` as the answer to its energy request: a value, or None (no frame, or refused). The
    fast path (`quick_value`) and the general one (`find_frame`, `reply_value`) must agree on every input."""
    quick = dlt645.quick_value(raw, ADDRESS, ENERGY_TOTAL)
    general = _general(raw)
    if quick is not None:
        assert quick[0] == general
    return general if quick is None else quick[0]


def _general(raw: bytes) -> float | None:
    frame, _used = find_frame(raw)
    if frame is None:
        return None
    try:
        return reply_value(frame, ADDRESS, ENERGY_TOTAL)
    except MeterError:
        return None


@settings(max_examples=3000)
@given(st.binary(max_size=80))
def test_garbage_never_crashes_and_never_reads(raw: bytes) -> None:
    assert _reading(raw) is None
    find_frame(raw)  # no exception on any input


@settings(max_examples=2000)
@given(st.integers(4, len(ENERGY_REPLY) - 1), st.integers(1, 255))
def test_one_corrupted_byte_never_reads_another_value(at: int, flip: int) -> None:
    corrupted = bytearray(ENERGY_REPLY)
    corrupted[at] ^= flip
    assert _reading(bytes(corrupted)) in (None, 12345.67)


@settings(max_examples=1000)
@given(st.binary(max_size=40), st.binary(max_size=40))
def test_a_valid_reply_in_garbage_is_found_or_refused_never_misread(before: bytes, after: bytes) -> None:
    assert _reading(before + ENERGY_REPLY + after) in (None, 12345.67)


# -- read-only by construction ----------------------------------------------------------------------------------------


@given(
    st.text("0123456789", min_size=12, max_size=12), st.sampled_from(["00010000", "00000000", "02030000", "0001FF00"])
)
def test_every_request_is_a_read(address: str, di: str) -> None:
    for frame in (read_data(address, di), read_address()):
        assert frame[4] == frame[11] == 0x68
        assert frame[12] in (dlt645.READ_DATA, dlt645.READ_ADDRESS)


@given(st.integers(0, 255))
def test_a_reply_frame_is_never_a_command(request: int) -> None:
    assert reply(ADDRESS, request, b"")[12] & 0x80


def _calls(module: Path, name: str) -> dict[str, int]:
    """Which functions of `module` call `name` (as `name(...)` or `x.name(...)`), and how often."""
    found: dict[str, int] = {}
    for function in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Call):
                callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if callee == name:
                    found[function.name] = found.get(function.name, 0) + 1
    return found


def test_only_the_read_builders_make_a_frame() -> None:
    """`_frame` is the one place a frame is made; only the two requests and the (meters') reply call it."""
    assert set(_calls(PACKAGE / "meters" / "dlt645.py", "_frame")) == {"read_data", "read_address", "reply"}
    for module in PACKAGE.rglob("*.py"):
        if module.name != "dlt645.py":
            assert "_frame" not in _calls(module, "_frame"), module


def test_the_line_writes_only_read_requests() -> None:
    """quotad's own line (`StreamLink`) writes in one place, `_exchange`, called only by the three reads, whose
    requests come from `read_data`, `read_address` (DL/T 645) and `read_request` (Modbus FC 3/4)."""
    lines = PACKAGE / "meters" / "lines.py"
    writers = _calls(lines, "write")
    assert set(writers) <= {"_exchange", "write"}  # _exchange, and the ports' own write()
    assert set(_calls(lines, "_exchange")) == {"read_data", "read_address", "read"}
    source = lines.read_text(encoding="utf-8")
    for builder in ("dlt645.read_data(", "dlt645.read_address(", "rtu.read_request("):
        assert builder in source
    assert [name for name in dir(dlt645) if name.lower().startswith(("write", "set", "control", "relay"))] == []


@pytest.mark.parametrize("table", ["coils", "discrete", "write", ""])
def test_rtu_requests_are_reads_only(table: str) -> None:
    with pytest.raises(KeyError):
        rtu.read_request(table, 0, 2, 1)
    assert rtu.read_request("holding", 0x48, 2, 1)[1] == 3
    assert rtu.read_request("input", 0x48, 2, 1)[1] == 4


def test_rtu_golden_request() -> None:
    # unit 1, FC 4, address 0x0048, 2 registers: CRC-16/MODBUS of 01 04 00 48 00 02 is F1 DD (low byte first)
    assert rtu.read_request("input", 0x48, 2, 1) == h("01 04 0048 0002 F1DD")

"""DL/T 645-2007 frames, pure: the two requests quotad can send, and the replies it accepts.

A frame (the standard's 6.1) is: a wake-up preamble (0xFE x 4, sent, skipped on receipt), 0x68, the meter's address
(6 bytes, 12 BCD digits, least significant byte first), 0x68, the control code, the data length, the data (each byte
plus 0x33 on the wire), the checksum (the sum, mod 256, of every byte from the first 0x68 to the data's end), 0x16.

- Read-only by construction: the one frame builder, `_frame`, is private, and only `read_data` (control code 0x11)
  and `read_address` (0x13) call it. Writing data (0x14), the relay (拉闸, 0x1C), clearing (0x19, 0x1A, 0x1B) and
  every other control code cannot be built here.
- A reply is accepted only when whole and exact: checksum, end byte, length, the slave-reply bit, the request's
  control code, the meter's address, the identifier echoed, BCD digits 0-9. Anything else is a `MeterError` (an
  error reply: the meter's error byte, spelt out) or, for bytes that are no frame, more bytes to wait for.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from quotad.core.errors import DecodeError, MeterError

__all__ = [
    "BROADCAST",
    "ENERGY_TOTAL",
    "POWER_TOTAL",
    "READ_ADDRESS",
    "READ_DATA",
    "Frame",
    "address_problem",
    "decode_value",
    "di_problem",
    "encode_value",
    "expected_reply",
    "find_frame",
    "read_address",
    "read_data",
    "reply",
    "reply_address",
    "reply_value",
]

READ_DATA, READ_ADDRESS = 0x11, 0x13  # the only control codes quotad sends
ENERGY_TOTAL = "00010000"  # forward active total energy, XXXXXX.XX kWh
POWER_TOTAL = "02030000"  # instantaneous total active power, XX.XXXX kW (sign in the top bit)
BROADCAST = "AAAAAAAAAAAA"  # the read-address request's address: whichever meter is on the line answers
PREAMBLE = b"\xfe\xfe\xfe\xfe"
_START, _END, _OFFSET = 0x68, 0x16, 0x33
_REPLY, _ERROR, _FOLLOWS = 0x80, 0x40, 0x20
_ADD = bytes((b + _OFFSET) & 0xFF for b in range(256))  # the wire's +0x33, as a bytes.translate table
_SUBTRACT = bytes((b - _OFFSET) & 0xFF for b in range(256))
_ERRORS = (  # the error byte of an error reply (the standard's table 7), bit 0 first
    "other error",
    "no such data (the meter does not have this identifier)",
    "password wrong or not authorised",
    "baud rate cannot be changed",
    "too many annual time zones",
    "too many daily time slots",
    "too many tariffs",
)


class Frame(NamedTuple):  # a NamedTuple: built once per reply, the cheapest immutable record (a frozen dataclass's
    # __init__ cost a tenth of an exchange in the bench)
    """A received frame: the address as printed (12 digits, most significant first), control code, data (the
    0x33 offset removed)."""

    address: str
    control: int
    data: bytes


def address_problem(address: str) -> str | None:
    """Why `address` is not a meter's 12-digit address (None when it is)."""
    if len(address) != 12 or not address.isascii() or not address.isdigit():
        return f"expected the meter's 12-digit address (digits 0-9, as printed on it), got {address!r}"
    return None


def di_problem(di: str) -> str | None:
    """Why `di` is not a data identifier this codec can read (None when it is)."""
    if len(di) != 8 or any(c not in "0123456789ABCDEFabcdef" for c in di):
        return f"expected a data identifier of 8 hex digits (like {ENERGY_TOTAL}), got {di!r}"
    if _format(di) is None:
        return f"data identifier {di} is neither an energy (00......) nor a power (0203....) reading"
    return None


@lru_cache(maxsize=64)
def _format(di: str) -> tuple[int, int, bool] | None:
    """(bytes, decimals, signed) of the value under `di`: energies XXXXXX.XX kWh, powers XX.XXXX kW."""
    di = di.upper()
    if di.startswith("00"):
        return 4, 2, di.startswith("0000")  # combined active energy (0000....) may be negative
    if di.startswith(("0203", "0204", "0205")):  # active, reactive, apparent power
        return 3, 4, True
    return None


def _frame(address: str, control: int, data: bytes) -> bytes:
    body = bytes([_START, *bytes.fromhex(address)[::-1], _START, control, len(data)])
    body += data.translate(_ADD)
    return PREAMBLE + body + bytes([sum(body) & 0xFF, _END])


@lru_cache(maxsize=4096)  # a poller sends the same few frames again and again
def read_data(address: str, di: str) -> bytes:
    """The request for data identifier `di` (8 hex digits) of the meter at `address` (12 digits): control 0x11."""
    for problem in (address_problem(address), di_problem(di)):
        if problem is not None:
            raise MeterError(problem)
    return _frame(address, READ_DATA, bytes.fromhex(di)[::-1])


def read_address() -> bytes:
    """The request for the address of the one meter on the line (broadcast address): control 0x13."""
    return _frame(BROADCAST, READ_ADDRESS, b"")


def find_frame(buffer: bytes) -> tuple[Frame | None, int]:
    """The first whole, valid frame in `buffer` and how many bytes to drop (everything up to its end), or None and
    how many bytes are garbage for certain (the rest may be the start of a frame still arriving)."""
    start = 0
    while True:
        start = buffer.find(_START, start)
        if start < 0:
            return None, len(buffer)
        if len(buffer) < start + 10:
            return None, start
        length = buffer[start + 9]
        end = start + 12 + length
        if buffer[start + 7] != _START:
            start += 1
            continue
        if len(buffer) < end:
            return None, start
        if buffer[end - 2] != sum(buffer[start : end - 2]) & 0xFF or buffer[end - 1] != _END:
            start += 1  # not a frame after all (a 0x68 in noise): look further
            continue
        address = buffer[start + 1 : start + 7][::-1].hex().upper()
        data = buffer[start + 10 : end - 2].translate(_SUBTRACT)
        return Frame(address, buffer[start + 8], data), end


@lru_cache(maxsize=4096)
def expected_reply(address: str, di: str) -> tuple[bytes, int]:
    """The head of the normal reply to `read_data(address, di)` (68, address, 68, 0x91, length, identifier) and the
    whole frame's length (from the first 68): what `quick_value` looks for first."""
    size = _format(di)
    assert size is not None, di
    head = bytes([_START, *bytes.fromhex(address)[::-1], _START, _REPLY | READ_DATA, 4 + size[0]])
    return head + _identifier(di).translate(_ADD), 16 + size[0]


def quick_value(buffer: bytes, address: str, di: str) -> tuple[float, int] | None:
    """The common case, fast: `buffer` holds the meter's normal, whole, exact reply to `read_data(address, di)`;
    its value and the bytes it took. None for anything else, which `find_frame` and `reply_value` then judge (the
    same checks: checksum, end byte, address, control code, identifier, BCD)."""
    head, size = expected_reply(address, di)
    start = buffer.find(head)
    end = start + size
    if (
        start < 0
        or len(buffer) < end
        or buffer[end - 1] != _END
        or buffer[end - 2] != sum(buffer[start : end - 2]) & 0xFF
    ):
        return None
    try:
        return decode_value(di, buffer[start + 14 : end - 2].translate(_SUBTRACT)), end
    except DecodeError:
        return None


def _check_reply(frame: Frame, request: int, address: str | None) -> None:
    if not frame.control & _REPLY:
        msg = f"a request (control code 0x{frame.control:02X}), not a reply"
        raise MeterError(msg)
    if frame.control & 0x1F != request:
        msg = f"reply with control code 0x{frame.control:02X} to a request 0x{request:02X}"
        raise MeterError(msg)
    if address is not None and frame.address != address:
        msg = f"reply from address {frame.address}, asked {address}"
        raise MeterError(msg)
    if frame.control & _ERROR:
        code = frame.data[0] if frame.data else 0
        said = [text for bit, text in enumerate(_ERRORS) if code >> bit & 1] or ["unknown error"]
        msg = f"error reply 0x{code:02X}: {'; '.join(said)}"
        raise MeterError(msg)


def reply_address(frame: Frame) -> str:
    """The meter's address from its reply to `read_address`."""
    _check_reply(frame, READ_ADDRESS, None)
    if len(frame.data) != 6 or frame.data[::-1].hex().upper() != frame.address:
        msg = f"read-address reply with data {frame.data.hex()} for address {frame.address}"
        raise MeterError(msg)
    if (problem := address_problem(frame.address)) is not None:
        raise MeterError(problem)
    return frame.address


def reply_value(frame: Frame, address: str, di: str) -> float:
    """The value in the meter's reply to `read_data(address, di)`: kWh for an energy, kW for a power."""
    _check_reply(frame, READ_DATA, address)
    if frame.data[:4] != _identifier(di):
        msg = f"reply for data identifier {frame.data[:4][::-1].hex().upper()}, asked {di.upper()}"
        raise MeterError(msg)
    return decode_value(di, frame.data[4:])


@lru_cache(maxsize=64)
def _identifier(di: str) -> bytes:
    return bytes.fromhex(di)[::-1]


def decode_value(di: str, raw: bytes) -> float:
    """The BCD value `raw` (least significant byte first) of identifier `di`; a `DecodeError` for wrong length or
    digits past 9 (0xFF filler is not a value)."""
    shape = _format(di)
    if shape is None:
        msg = f"data identifier {di} is not an energy or a power"
        raise DecodeError(msg)
    size, decimals, signed = shape
    if len(raw) != size:
        msg = f"{len(raw)} value bytes for {di}, expected {size}"
        raise DecodeError(msg)
    text = raw[::-1].hex()
    negative = signed and text[0] >= "8"  # the sign bit: the top digit 8 or more
    if negative:
        text = f"{int(text[0], 16) - 8}{text[1:]}"
    if not text.isdigit():
        msg = f"not BCD: {raw[::-1].hex().upper()}"
        raise DecodeError(msg)
    value = int(text) / _SCALE[decimals]
    return -value if negative else value


_SCALE = [float(10**n) for n in range(9)]


def encode_value(di: str, value: float) -> bytes:
    """`value` as the meter sends it for `di` (BCD, least significant byte first): for simulated meters and tests."""
    shape = _format(di)
    assert shape is not None, di
    size, decimals, signed = shape
    scaled = round(abs(value) * 10**decimals)
    if scaled >= (8 if signed else 10) * 10 ** (size * 2 - 1):
        msg = f"{value} does not fit {di}'s {size} BCD bytes"
        raise ValueError(msg)
    digits = bytearray.fromhex(f"{scaled:0{size * 2}d}"[-size * 2 :])
    if signed and value < 0:
        digits[0] |= 0x80
    return bytes(digits[::-1])


def reply(address: str, request: int, data: bytes, *, error: bool = False) -> bytes:
    """A meter's reply to `request` (its control code with the slave-reply bit, and the error bit when `error`), for
    simulated meters and tests. A frame with the reply bit is never a command to a meter: quotad's requests are
    `read_data` and `read_address` only."""
    return _frame(address, _REPLY | (_ERROR if error else 0) | (request & 0x1F), data)

"""Modbus RTU frames for a line quotad owns itself, pure: read requests (function codes 3 and 4 only) and replies.

A transparent gateway (a DTU) or an RS-485 port that also carries DL/T 645 meters is one byte stream, so quotad
owns it (`quotad.meters.lines`) and speaks both protocols on it, one request at a time. Lines that carry only Modbus
keep pymodbus (`quotad.meters.modbus.ReadOnlyLink`). Read-only by construction, as there: `read_request` is the one
request builder and it refuses any function code but 3 (holding registers) and 4 (input registers).
"""

from __future__ import annotations

from quotad.core.errors import MeterError

__all__ = ["crc16", "find_reply", "read_request", "registers_reply", "split_request"]

_FUNCTIONS = {"holding": 3, "input": 4}


def crc16(data: bytes) -> bytes:
    """CRC-16/MODBUS (polynomial 0xA001 reflected, initial 0xFFFF), low byte first, as it goes on the wire."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


def read_request(table: str, address: int, count: int, unit: int) -> bytes:
    """Read `count` registers from `address` of `table` ("holding": 3, "input": 4) of unit `unit`."""
    function = _FUNCTIONS[table]  # KeyError for anything else: there is no write here
    if not (0 <= address <= 0xFFFF and 1 <= count <= 125 and 0 <= unit <= 247):
        msg = f"no such read: address {address}, count {count}, unit {unit}"
        raise MeterError(msg)
    body = bytes([unit, function]) + address.to_bytes(2, "big") + count.to_bytes(2, "big")
    return body + crc16(body)


def find_reply(buffer: bytes, table: str, count: int, unit: int) -> tuple[list[int] | None, int]:
    """The registers in the reply at the start of `buffer` to `read_request(table, _, count, unit)`, and how many
    bytes it took; (None, 0) while it is still arriving. An exception reply, a bad CRC, another unit or function, a
    wrong byte count: `MeterError` (an RTU frame has no transaction id: the caller drops the line)."""
    function = _FUNCTIONS[table]
    if len(buffer) < 5:
        return None, 0
    if buffer[1] == function | 0x80:
        if buffer[4:5] and crc16(buffer[:3]) == buffer[3:5] and buffer[0] == unit:
            msg = f"exception response, code {buffer[2]}"
            raise MeterError(msg)
        msg = "garbled exception response"
        raise MeterError(msg)
    size = 5 + buffer[2]
    if len(buffer) < size:
        return None, 0
    if crc16(buffer[: size - 2]) != buffer[size - 2 : size]:
        msg = "reply with a bad CRC"
        raise MeterError(msg)
    if buffer[0] != unit or buffer[1] != function or buffer[2] != 2 * count:
        msg = f"reply from unit {buffer[0]}, function {buffer[1]}, {buffer[2]} bytes; asked unit {unit}, {function}"
        raise MeterError(msg)
    data = buffer[3 : size - 2]
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)], size


def split_request(buffer: bytes) -> tuple[tuple[int, int, int, int] | None, int]:
    """A simulated unit's side: (unit, function, address, count) of the 8-byte request at the start of `buffer` and
    its size, (None, 0) while it arrives, (None, n) for n bytes that are no request of ours (a bad CRC)."""
    if len(buffer) < 8:
        return None, 0
    if crc16(buffer[:6]) != buffer[6:8]:
        return None, 1
    unit, function = buffer[0], buffer[1]
    return (unit, function, int.from_bytes(buffer[2:4], "big"), int.from_bytes(buffer[4:6], "big")), 8


def registers_reply(unit: int, function: int, words: list[int]) -> bytes:
    """A simulated unit's reply with `words`."""
    body = bytes([unit, function, 2 * len(words)]) + b"".join(w.to_bytes(2, "big") for w in words)
    return body + crc16(body)

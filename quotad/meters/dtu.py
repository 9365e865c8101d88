"""A simulated DTU: a transparent TCP gateway with an RS-485 line behind it, its meters answering from the township
model. It carries DL/T 645-2007 meters, and Modbus RTU meters beside them when the policy puts some on the same port.

Every request it receives is recorded (`control_codes` for DL/T 645, `function_codes` for Modbus): the recording
meter of the read-only proof. A request for a meter that is not on the line gets no answer (as on a real bus); a
silent meter does not answer (the client times out); a control code other than 0x11 and 0x13 is refused with an
error reply ("not authorised") and logged: a simulated meter never writes, nor switches its relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence

from quotad.core.feed import TownshipModel
from quotad.core.policy import Meter
from quotad.meters import dlt645, rtu
from quotad.meters.registers import encode
from quotad.meters.templates import fields_for

__all__ = ["SimulatedDtu"]

log = logging.getLogger(__name__)
_UNAUTHORISED = 0x04  # the error byte's bit 2: password wrong or not authorised


class SimulatedDtu:
    def __init__(self, meters: Sequence[Meter], model: TownshipModel, now: Callable[[], int]) -> None:
        self.model, self.now = model, now
        self.by_address = {m.dlt645.address: m for m in meters if m.dlt645 is not None}
        self.by_unit = {m.modbus.unit: m for m in meters if m.modbus is not None}
        self.control_codes: Counter[int] = Counter()
        self.function_codes: Counter[int] = Counter()
        self.connections = 0  # TCP connections accepted: one per owner of the line

    async def serve(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self._connection, host, port)
        log.info("simulated DTU %s:%d: DL/T 645 %s, Modbus RTU units %s", host, port, sorted(self.by_address),
                 sorted(self.by_unit))  # fmt: skip
        async with server:
            await server.serve_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        buffer = b""
        try:
            while chunk := await reader.read(512):
                buffer += chunk
                while buffer:
                    answer, used = self.answer(buffer)
                    if not used:
                        break
                    buffer = buffer[used:]
                    if answer:
                        writer.write(answer)
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:  # the loop ends (nobody awaits a connection's handler): close, quietly
            pass
        except GeneratorExit:  # collected after its loop stopped: nothing may be awaited any more, just close
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                writer.close()
            raise
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()

    def answer(self, buffer: bytes) -> tuple[bytes, int]:
        """The line's answer to the request at the front of `buffer` (b"" for none) and the bytes it took (0: wait
        for more)."""
        if buffer[0] in (0xFE, 0x68) or buffer[0] not in self.by_unit:
            frame, used = dlt645.find_frame(buffer)
            if frame is not None:
                return self._dlt645(frame), used
            if used or buffer[0] not in self.by_unit:
                return b"", used
        request, used = rtu.split_request(buffer)
        return (self._modbus(*request) if request is not None else b""), used

    def _dlt645(self, frame: dlt645.Frame) -> bytes:
        if frame.control & 0x80:
            return b""  # another device's reply on the bus
        self.control_codes[frame.control] += 1
        t = self.now()
        if frame.control == dlt645.READ_ADDRESS:
            if frame.address != dlt645.BROADCAST or len(self.by_address) != 1:
                return b""  # on a line with several meters, a broadcast read collides: nobody is understood
            ((address, only),) = self.by_address.items()
            if self.model.silent(only.id, t):
                return b""
            return dlt645.reply(address, frame.control, bytes.fromhex(address)[::-1])
        meter = self.by_address.get(frame.address)
        if meter is None or self.model.silent(meter.id, t):
            return b""
        if frame.control != dlt645.READ_DATA:
            log.warning("refused control code 0x%02X sent to simulated meter %s", frame.control, meter.id)
            return dlt645.reply(frame.address, frame.control, bytes([_UNAUTHORISED]), error=True)
        di = frame.data[:4][::-1].hex().upper()
        if di.startswith("00"):
            value = self.model.counter(meter.id, t)
        elif di.startswith("0203"):
            value = self.model.power_kw(meter.id, t)
        else:
            return dlt645.reply(frame.address, frame.control, b"\x02", error=True)  # no such data
        try:
            raw = dlt645.encode_value(di, value)
        except ValueError:  # more than the format holds (XX.XXXX kW): the meter's "other error"
            return dlt645.reply(frame.address, frame.control, b"\x01", error=True)
        return dlt645.reply(frame.address, frame.control, frame.data[:4] + raw)

    def _modbus(self, unit: int, function: int, address: int, count: int) -> bytes:
        self.function_codes[function] += 1
        meter = self.by_unit.get(unit)
        if meter is None or meter.modbus is None or self.model.silent(meter.id, self.now()):
            return b""
        if function not in (3, 4):
            log.warning("refused function code %d sent to simulated meter %s", function, meter.id)
            return _exception(unit, function, 1)  # illegal function
        t = self.now()
        values = {"energy_kwh": self.model.counter(meter.id, t), "power_kw": self.model.power_kw(meter.id, t)}
        words, served = [0] * count, False
        for name, field in fields_for(meter.modbus).items():
            scaled = values[name] * (1000.0 if field.unit in ("Wh", "W") else 1.0)
            encoded = encode(scaled, field.type, field.word_order, field.scale)
            offset = field.address - address
            if offset >= 0 and offset + len(encoded) <= count:
                words[offset : offset + len(encoded)] = encoded
                served = True
        return rtu.registers_reply(unit, function, words) if served else _exception(unit, function, 2)


def _exception(unit: int, function: int, code: int) -> bytes:
    """A Modbus exception reply: 1 illegal function, 2 illegal data address (no register of the meter's there)."""
    body = bytes([unit, function | 0x80, code])
    return body + rtu.crc16(body)

"""A line quotad owns itself: a DTU's TCP port or an RS-485 serial port carrying DL/T 645 meters (and Modbus RTU
meters beside them), one request at a time.

- Read-only by construction: `StreamLink` sends nothing but the frames of `quotad.meters.dlt645.read_data` (control
  code 0x11), `read_address` (0x13) and `quotad.meters.rtu.read_request` (function codes 3 and 4); its one writer,
  `_exchange`, is private and called only with those.
- No transaction id on such a line: after a timeout or a garbled answer the connection is dropped (and opened again
  at the next read), so a late answer can never be taken for the next request's.
- The caller holds the line's lock (`quotad.meters.modbus.Gateway.lock`): a line is one conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from functools import lru_cache
from typing import Any, TypeVar

from quotad.core.errors import MeterError
from quotad.core.sources import Dlt645Serial, Dlt645Source, ModbusSerial, WiredSource
from quotad.meters import dlt645, rtu

__all__ = ["StreamLink", "read_meter"]

T = TypeVar("T")
log = logging.getLogger(__name__)
_CHUNK = 512


class _Serial:
    """A serial port as a reader and a writer on the loop (pyserial, non-blocking, the loop's reader callback)."""

    def __init__(self, source: Dlt645Serial | ModbusSerial) -> None:
        import serial  # type: ignore[import-untyped]

        self.port: Any = serial.Serial(
            source.serial, baudrate=source.baudrate, bytesize=source.bytesize, parity=source.parity,
            stopbits=source.stopbits, timeout=0, write_timeout=0,
        )  # fmt: skip
        self.reader = asyncio.StreamReader()
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.port.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data = self.port.read(self.port.in_waiting or 1)
        except OSError as exc:
            self.reader.set_exception(exc)
            return
        if data:
            self.reader.feed_data(data)

    def write(self, data: bytes) -> None:
        self.port.write(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.port.fileno())
        self.port.close()


class _Tcp:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.loop = asyncio.get_running_loop()
        self.write = writer.write  # the stream's own method: one call less per request

    def close(self) -> None:
        self.writer.close()


class _Refused(Exception):
    def __init__(self, error: MeterError) -> None:
        self.error = error


class StreamLink:
    """One DTU (host, port) or serial port, opened on first use, reopened after a fault."""

    def __init__(self, source: WiredSource, timeout_s: float) -> None:
        self.source, self.timeout_s = source, timeout_s
        self._port: _Tcp | _Serial | None = None
        # the timeout of the exchange in flight: its deadline (None between exchanges) and one lazy timer per link,
        # armed when none is and re-armed on firing if the deadline moved on; a timer per exchange cost a quarter
        # of a poll in the bench (the loop's heap of cancelled timers)
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def connected(self) -> bool:
        return self._port is not None

    async def _open(self) -> _Tcp | _Serial:
        if self._port is None:
            source = self.source
            try:
                if isinstance(source, Dlt645Serial | ModbusSerial):
                    self._port = _Serial(source)
                else:
                    host, port = source.line[1], int(source.line[2])
                    async with asyncio.timeout(self.timeout_s):
                        self._port = _Tcp(*await asyncio.open_connection(host, port))
            except Exception as exc:  # pyserial also raises termios.error, no OSError: not connected either way
                msg = f"cannot connect: {exc or type(exc).__name__}"
                raise MeterError(msg) from None
        return self._port

    async def _exchange(
        self, request: bytes, parse: Callable[[bytes], tuple[T | MeterError | None, int]], timeout_s: float
    ) -> T:
        """Send `request`, then read until `parse` finds its answer in what came (it returns the answer or None, and
        how many bytes to drop from the front). The one place bytes are written to the line. An answer that is a
        `MeterError` (a meter's error reply, a refused reply) is raised with the line kept: the conversation is in
        step; a timeout, a closed or garbled line closes it (a late answer must not be read as the next one's)."""
        port = self._port or await self._open()
        buffer = b""
        loop = port.loop
        self._deadline = loop.time() + timeout_s
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._expire, loop)
        try:
            port.write(request)
            while True:
                chunk = await port.reader.read(_CHUNK)
                if not chunk:
                    msg = "the line closed"
                    raise MeterError(msg)
                buffer = buffer + chunk if buffer else chunk
                while buffer:
                    answer, used = parse(buffer)
                    buffer = buffer[used:]
                    if isinstance(answer, MeterError):
                        raise _Refused(answer)
                    if answer is not None:
                        return answer
                    if not used:
                        break
        except _Refused as refused:
            raise refused.error from None
        except TimeoutError:
            self.close()
            msg = f"no answer within {timeout_s:g} s"
            raise MeterError(msg) from None
        except (MeterError, OSError) as exc:
            self.close()
            raise MeterError(str(exc) or type(exc).__name__) from None
        finally:
            self._deadline = None
            if port.reader.exception() is not None:  # the deadline fell as the answer came: start afresh next time
                self.close()

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if self._deadline is None or self._port is None:
            return  # no exchange in flight: the next one arms a timer
        if loop.time() >= self._deadline:
            self._port.reader.set_exception(TimeoutError())
        else:
            self._timer = loop.call_at(self._deadline, self._expire, loop)

    def read_data(self, address: str, di: str, timeout_s: float | None = None) -> Coroutine[Any, Any, float]:
        """The value of identifier `di` of the DL/T 645 meter at `address` (kWh or kW), to await (a plain function
        returning the exchange: one coroutine less per request)."""
        request, parse = _data_plan(address, di)
        return self._exchange(request, parse, timeout_s or self.timeout_s)

    async def read_address(self, timeout_s: float | None = None) -> str:
        """The address of the one DL/T 645 meter on the line (a broadcast read: only with one meter on it)."""

        def parse(buffer: bytes) -> tuple[str | MeterError | None, int]:
            frame, used = dlt645.find_frame(buffer)
            if frame is None or frame.control == dlt645.READ_ADDRESS:
                return None, used
            try:
                return dlt645.reply_address(frame), used
            except MeterError as exc:
                return exc, used

        return await self._exchange(dlt645.read_address(), parse, timeout_s or self.timeout_s)

    async def read(self, table: str, address: int, count: int, unit: int) -> list[int]:
        """Modbus RTU registers (function code 3 or 4) of `unit`, on this line: `ReadOnlyLink.read`'s contract."""

        def parse(buffer: bytes) -> tuple[list[int] | MeterError | None, int]:
            return rtu.find_reply(buffer, table, count, unit)  # its MeterError closes the line: no transaction id

        return await self._exchange(rtu.read_request(table, address, count, unit), parse, self.timeout_s)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._port is not None:
            self._port.close()
            self._port = None


@lru_cache(maxsize=4096)  # a poller asks the same few things again and again: its request and parser made once
def _data_plan(address: str, di: str) -> tuple[bytes, Callable[[bytes], tuple[float | MeterError | None, int]]]:
    """The request for `di` of the meter at `address`, and the parser of what comes back."""

    def parse(buffer: bytes) -> tuple[float | MeterError | None, int]:
        if (quick := dlt645.quick_value(buffer, address, di)) is not None:
            return quick
        frame, used = dlt645.find_frame(buffer)
        if frame is None or (frame.control == dlt645.READ_DATA and frame.address == address):
            return None, used  # noise, or our own request echoed by a half-duplex adapter
        try:
            return dlt645.reply_value(frame, address, di), used
        except MeterError as exc:
            return exc, used

    return dlt645.read_data(address, di), parse


async def read_meter(link: StreamLink, source: Dlt645Source) -> dict[str, float]:
    """One poll of a DL/T 645 meter: its counter (kWh) and, when it has a power identifier and answers it, its power
    (kW). The power is a bonus: a meter that cannot give it (an error reply, no answer) still gives its counter."""
    values = {"energy_kwh": await link.read_data(source.address, source.energy, source.timeout_s)}
    if source.power is not None:
        try:
            values["power_kw"] = await link.read_data(source.address, source.power, source.timeout_s)
        except MeterError as exc:
            log.debug("meter at %s: no power (%s)", source.address, exc)
    return values

"""Wired acquisition: Modbus and DL/T 645 meters behind gateways, read-only, polled on the clock, faults logged once.

- Read-only by construction: `ReadOnlyLink` owns the pymodbus client and exposes one method, `read`, which
  can only send function code 3 (read holding registers) or 4 (read input registers); a line that carries DL/T 645
  meters is quotad's own `StreamLink` (quotad.meters.lines), which can only send DL/T 645 control codes 0x11 and
  0x13 and Modbus RTU function codes 3 and 4.
- Meters with the same gateway (host and port, or serial port) share one link and one lock, whatever their protocol
  (a DTU with DL/T 645 and Modbus RTU meters on its RS-485 side is one conversation); a gateway's meters are read
  one after another, different gateways concurrently, each in its own task.
- Each meter is polled every `poll_s` on the clock's grid (every minute on the minute); a unit that does not
  answer costs its own timeout, then backs off (bounded) without delaying another gateway.
- Never a false zero: a failed read, a timeout, NaN/inf or a sentinel never becomes a reading. A fault is
  logged once per outage with meter, gateway, unit and address; the recovery once.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from quotad.core.errors import DecodeError, MeterError
from quotad.core.policy import Meter
from quotad.core.readings import Reading
from quotad.core.sources import Dlt645Source, ModbusRtuOverTcp, ModbusSerial, ModbusSource, ModbusTcp, WiredSource
from quotad.meters.lines import StreamLink
from quotad.meters.source import Context
from quotad.meters.templates import Block, decode_block, fields_for, plan_blocks
from quotad.schedule.calendar import MICROS_PER_S, Micros
from quotad.shell.clock import Clock

__all__ = ["Gateway", "ModbusPoller", "ReadOnlyLink", "gateway_key"]

log = logging.getLogger(__name__)
GatewayKey = tuple[str, ...]
_MAX_BACKOFF_S = 300.0


def gateway_key(source: WiredSource) -> GatewayKey:
    """One owner per physical port: a serial port by its path, a TCP gateway by host and port. Its meters share
    the line's settings: the policy's cross-check refuses meters that disagree, so a port is never opened twice."""
    return source.line


def describe(source: WiredSource) -> str:
    """The gateway as the log names it: `host:port/framer`, or `port@baudrate` for a serial line."""
    return source.where


class ReadOnlyLink:
    """A Modbus connection that can only read registers (function codes 3 and 4)."""

    _FUNCTIONS: ClassVar[dict[str, int]] = {"holding": 3, "input": 4}

    def __init__(self, source: ModbusSource, timeout_s: float) -> None:
        self._client: Any
        if isinstance(source, ModbusSerial):
            self._client = AsyncModbusSerialClient(
                source.serial, framer=FramerType.RTU, baudrate=source.baudrate, parity=source.parity,
                stopbits=source.stopbits, bytesize=source.bytesize, timeout=timeout_s, retries=0,
            )  # fmt: skip
            self.rtu = True
        else:
            assert isinstance(source, ModbusTcp | ModbusRtuOverTcp)
            framer = FramerType.RTU if source.framer == "rtu" else FramerType.SOCKET
            self._client = AsyncModbusTcpClient(
                source.host, port=source.port, framer=framer, timeout=timeout_s, retries=0, reconnect_delay=0
            )
            self.rtu = source.framer == "rtu"

    async def read(self, table: Literal["holding", "input"], address: int, count: int, unit: int) -> list[int]:
        function = self._FUNCTIONS[table]  # the only two function codes this class can send
        client = self._client
        if not client.connected and not await client.connect():
            msg = "cannot connect"
            raise MeterError(msg)
        read = client.read_holding_registers if function == 3 else client.read_input_registers
        try:
            response = await read(address, count=count, device_id=unit)
        except (TimeoutError, ModbusException, OSError) as exc:
            if self.rtu:  # an RTU frame has no transaction id: drop the line so a late answer cannot be misread
                client.close()
            raise MeterError(str(exc) or type(exc).__name__) from None
        if response.isError():
            msg = f"exception response {response}"
            raise MeterError(msg)
        if response.function_code != function:  # pymodbus takes an FC 4 answer to an FC 3 request (and back)
            msg = f"answer with function code {response.function_code} to a request with {function}"
            raise MeterError(msg)
        registers = list(response.registers)
        if len(registers) != count:
            msg = f"{len(registers)} registers returned, {count} asked"
            raise MeterError(msg)
        return registers

    def close(self) -> None:
        self._client.close()


@dataclass
class _Polled:
    meter: Meter
    unit: int  # a Modbus unit; 0 for a DL/T 645 meter (its address is `dlt645.address`)
    poll_us: Micros
    blocks: list[Block]
    failures: int = 0
    faulty: bool = False
    dlt645: Dlt645Source | None = None

    @property
    def label(self) -> str:
        return f"address {self.dlt645.address}" if self.dlt645 is not None else f"unit {self.unit}"


@dataclass
class Gateway:
    key: GatewayKey
    link: ReadOnlyLink | StreamLink
    name: str  # for the log: describe() of the line's settings
    meters: list[_Polled] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reads: int = 0
    errors: int = 0


class ModbusPoller:
    """Polls every Modbus meter of a policy and hands each good reading to `on_reading`: the source (quotad.meters.
    source) of the meters on Modbus TCP gateways, RTU over TCP and serial lines."""

    def __init__(self, meters: Sequence[Meter], clock: Clock, on_reading: Callable[[Reading], None]) -> None:
        self.clock, self.on_reading = clock, on_reading
        self.gateways: dict[GatewayKey, Gateway] = {}
        self.where: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        wired = [(meter, meter.wired) for meter in meters if meter.wired is not None]
        own = {gateway_key(source) for _meter, source in wired if isinstance(source, Dlt645Source)}
        for meter, source in wired:
            key = gateway_key(source)
            gateway = self.gateways.get(key)
            if gateway is None:
                gateway = self.gateways[key] = Gateway(key, _link(source, wired, key in own), describe(source))
            poll_us = round(source.poll_s * MICROS_PER_S)
            if isinstance(source, Dlt645Source):
                gateway.meters.append(_Polled(meter, 0, poll_us, [], dlt645=source))
                self.where[meter.id] = f"DL/T 645 {':'.join(source.line[1:])} address {source.address}"
                continue
            blocks = plan_blocks(fields_for(source))
            gateway.meters.append(_Polled(meter, source.unit, poll_us, blocks))
            self.where[meter.id] = f"Modbus {':'.join(source.line[1:])} unit {source.unit}"

    @classmethod
    def from_config(cls, meters: Sequence[Meter], context: Context) -> ModbusPoller:
        return cls(meters, context.clock, context.inbox.put)

    # --- the source's life (quotad.meters.source.Source) -----------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[None]]:
        if not self.gateways:
            return []
        self._task = loop.create_task(self.run(), name="modbus")
        return [self._task]

    async def ready(self, timeout: float) -> bool:
        return True  # nothing to wait for: each meter is read at its next poll

    def stop(self) -> None:
        """Close every line (an in-flight read fails now, rather than swallow its cancellation), end the polling."""
        for gateway in self.gateways.values():
            gateway.link.close()
        if self._task is not None:
            self._task.cancel()

    def status(self) -> dict[str, Any]:
        faulty = sum(p.faulty for g in self.gateways.values() for p in g.meters)
        lines = {g.name: {"reads": g.reads, "errors": g.errors} for g in self.gateways.values()}
        return {"kind": "wired", "meters": len(self.where), "faulty": faulty, "lines": lines}

    async def run(self) -> None:
        """Poll until cancelled; one task per gateway."""
        try:
            async with asyncio.TaskGroup() as group:
                for gateway in self.gateways.values():
                    group.create_task(self._gateway(gateway), name=f"modbus {gateway.name}")
        finally:
            for gateway in self.gateways.values():
                gateway.link.close()

    async def _gateway(self, gateway: Gateway) -> None:
        now = self.clock.now()
        due = [(_next_tick(now, p.poll_us), p.unit, n) for n, p in enumerate(gateway.meters)]
        heapq.heapify(due)
        while due:
            tick = due[0][0]
            await self.clock.sleep_until(tick)
            batch = []
            while due and due[0][0] <= tick:
                batch.append(heapq.heappop(due))
            for _tick, _unit, n in batch:  # one unit after another on this line
                polled = gateway.meters[n]
                await self.poll(gateway, polled)
                _stop_if_cancelled()
                heapq.heappush(due, (self._next_due(polled), polled.unit, n))

    def _next_due(self, polled: _Polled) -> Micros:
        now = self.clock.now()
        if not polled.failures:
            return _next_tick(now, polled.poll_us)
        backoff = min(polled.poll_us * 2 ** (polled.failures - 1), round(_MAX_BACKOFF_S * MICROS_PER_S))
        return _next_tick(now + max(0, backoff - polled.poll_us), polled.poll_us)

    async def poll(self, gateway: Gateway, polled: _Polled) -> Reading | None:
        """Read one meter now; its reading (also handed to `on_reading`), or None after a logged fault."""
        values: dict[str, float] = {}
        async with gateway.lock:
            sent = self.clock.now()
            if (dl := polled.dlt645) is not None:  # read_meter's two requests, inlined: a level less per poll
                link = gateway.link
                assert isinstance(link, StreamLink)
                try:
                    values["energy_kwh"] = await link.read_data(dl.address, dl.energy, dl.timeout_s)
                except MeterError as exc:
                    gateway.errors += 1
                    self._fault(gateway, polled, dl.energy, str(exc))
                    return None
                gateway.reads += 1
                if dl.power is not None:
                    try:
                        values["power_kw"] = await link.read_data(dl.address, dl.power, dl.timeout_s)
                    except MeterError as exc:  # the power is a bonus (see read_meter)
                        log.debug("meter %s: no power (%s)", polled.meter.id, exc)
            for block in polled.blocks:
                try:
                    words = await gateway.link.read(block.table, block.start, block.count, polled.unit)
                except MeterError as exc:
                    gateway.errors += 1
                    self._fault(gateway, polled, block.start, str(exc))
                    return None
                gateway.reads += 1
                for name, value in decode_block(block, words).items():
                    if isinstance(value, DecodeError):
                        self._fault(gateway, polled, block.start, str(value))
                        return None
                    values[name] = value
        t = (sent + self.clock.now()) // 2  # the counter was read between the request and the answer
        if "energy_kwh" not in values or values["energy_kwh"] < 0:
            self._fault(gateway, polled, polled.blocks[0].start if polled.blocks else "-", "no usable energy counter")
            return None
        if polled.faulty:
            log.info("meter %s (gateway %s, %s) answers again", polled.meter.id, gateway.name, polled.label)
        polled.failures, polled.faulty = 0, False
        reading = Reading(polled.meter.id, t, values["energy_kwh"], values.get("power_kw"))
        self.on_reading(reading)
        return reading

    def _fault(self, gateway: Gateway, polled: _Polled, register: int | str, reason: str) -> None:
        polled.failures += 1
        if not polled.faulty:
            polled.faulty = True
            what = "data identifier" if polled.dlt645 is not None else "address"
            log.warning(
                "meter %s (gateway %s, %s, %s %s): %s; no reading until it answers again",
                polled.meter.id, gateway.name, polled.label, what, register, reason,
            )  # fmt: skip


def _link(source: WiredSource, wired: Sequence[tuple[Meter, WiredSource]], own: bool) -> ReadOnlyLink | StreamLink:
    """The line's owner: pymodbus for a line of Modbus meters only; quotad's own stream for a line that carries
    DL/T 645 (its Modbus meters then speak RTU on the same stream, with the Modbus meters' timeout)."""
    if not own:
        assert isinstance(source, ModbusSource)
        return ReadOnlyLink(source, source.timeout_s)
    key = gateway_key(source)
    modbus = [s for _m, s in wired if isinstance(s, ModbusSource) and gateway_key(s) == key]
    return StreamLink(source, modbus[0].timeout_s if modbus else source.timeout_s)


def _next_tick(now: Micros, period: Micros) -> Micros:
    """The first instant after `now` on the grid of `period` (every minute on the minute)."""
    return (now // period + 1) * period


def _stop_if_cancelled() -> None:
    """End the polling task if it was asked to, even when a library swallowed the CancelledError (Python 3.11's
    `asyncio.wait_for`, inside pymodbus, loses a cancellation that arrives as its read completes): without this a
    cancelled poller went on polling, and whoever waited for it to end waited forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError

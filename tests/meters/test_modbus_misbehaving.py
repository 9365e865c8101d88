"""Modbus acquisition against gateways that misbehave, over real sockets on loopback.

`RawGateway` is a Modbus TCP server written here with asyncio streams: it reads each request (MBAP header:
transaction id, protocol 0, length, unit id; then the PDU), records its function code and answers as told:
garbage, an exception, a truncated frame, nothing, a wrong transaction id, unit id or function code, a byte
count that disagrees with the registers asked, a closed connection, or (mode "ok") a correct answer. Beside it
a real pymodbus server stays healthy. Time is a simulated clock `SPEED` times faster than real time: a poll
every simulated minute is one every 0.2 s.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import struct
import tomllib
from collections.abc import Callable

import pytest
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from quotad.core.policy import Policy
from quotad.core.readings import Reading
from quotad.meters.modbus import Gateway, ModbusPoller
from quotad.schedule.calendar import MICROS_PER_S
from quotad.shell.clock import Clock
from tests.brokers import free_ports
from tests.conftest import at

START = at("2010-10-20 08:00")
MINUTE = 60 * MICROS_PER_S
SPEED = 300.0  # a simulated minute lasts 0.2 s: room for a loaded machine (2 cores, another suite running)
TIMEOUT_S = 0.25  # each meter's `timeout_s`: 2.5 polls
LOGGER = "quotad.meters.modbus"

# Where the templates under test keep their counters, written down from the meters' manuals rather than read
# from quotad's template files: function code, energy address (f32 kWh), power address (f32), power's scale to W.
METERS: dict[str, tuple[int, int, int, float]] = {
    "dtsu666": (3, 0x101E, 0x2012, 0.1),
    "sdm630": (4, 0x0048, 0x0034, 1.0),
}
HEALTHY_KWH = 4321.5  # the healthy gateway's (pymodbus) SDM630 counter

MISBEHAVIOURS = [
    "garbage",  # random bytes (seeded)
    "exception-2",  # illegal data address
    "exception-4",  # server device failure
    "exception-6",  # server device busy
    "short-open",  # the MBAP header announces more bytes than are sent; the connection stays open
    "short-closed",  # the same, then the gateway closes the connection
    "silence",  # reads the request, never answers
    "wrong-tid",  # a correct answer under another transaction id
    "wrong-unit",  # a correct answer from another unit
    "wrong-function",  # a correct answer under the other read function code (3 <-> 4)
    "byte-count-low",  # one register fewer than asked, byte count and frame agreeing
    "byte-count-high",  # one register more than asked, byte count and frame agreeing
    "byte-count-beyond",  # a byte count running past the end of the frame
    "close",  # closes the connection right after the request
]


def _f32(value: float) -> list[int]:
    """The two registers of a big-endian (ABCD) IEEE 754 single."""
    return list(struct.unpack(">HH", struct.pack(">f", value)))


def _registers(address: int, value: float) -> dict[int, int]:
    """Register address -> word, for an f32 `value` at `address`."""
    return dict(enumerate(_f32(value), start=address))


def _frame(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


class RawGateway:
    """A Modbus TCP gateway with one meter (unit 1) of `template`, answering every request as `mode` says.

    With `heal_after`, only the first `heal_after` requests get `mode`; later ones are answered correctly.
    """

    def __init__(self, port: int, template: str, mode: str = "ok", *, heal_after: int | None = None) -> None:
        self.port, self.mode, self.heal_after = port, mode, heal_after
        self.function, self.energy_at, power_at, power_scale = METERS[template]
        self.function_codes: list[int] = []  # of every request received
        self.served: list[float] = []  # every energy counter sent in a correct answer, in order
        self._power = _registers(power_at, 2500 / power_scale)  # 2.5 kW
        self._counter = itertools.count()
        self._rng = random.Random(20101020)
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Stop listening and drop every connection: the gateway loses power."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in self._connections.values():
            writer.close()
        async with asyncio.timeout(2):
            await asyncio.gather(*self._connections, return_exceptions=True)

    async def __aenter__(self) -> RawGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while True:
                tid, protocol, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                pdu = await reader.readexactly(length - 1) if protocol == 0 and length >= 2 else b""
                self.function_codes.append(pdu[0] if pdu else -1)  # -1: not even a Modbus TCP request
                answer, close = self._answer(tid, unit, pdu)
                writer.write(answer)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the poller hung up
        finally:
            del self._connections[task]
            writer.close()

    def _answer(self, tid: int, unit: int, pdu: bytes) -> tuple[bytes, bool]:
        """The bytes to send back, and whether to close the connection after them."""
        healed = self.heal_after is not None and len(self.function_codes) > self.heal_after
        mode = "ok" if healed else self.mode
        if len(pdu) != 5 or pdu[0] != self.function:
            return _frame(tid, unit, bytes([(pdu[:1] or b"\x00")[0] | 0x80, 1])), True  # illegal function
        function, (address, count) = pdu[0], struct.unpack(">HH", pdu[1:])
        kwh = 1000.0 + 0.5 * next(self._counter)  # exact in an f32; a fresh value in every answer
        registers = self._power | _registers(self.energy_at, kwh)
        if any(a not in registers for a in range(address, address + count)):
            return _frame(tid, unit, bytes([function | 0x80, 2])), False
        data = b"".join(registers[a].to_bytes(2, "big") for a in range(address, address + count))
        good = _frame(tid, unit, bytes([function, len(data)]) + data)
        match mode:
            case "ok":
                if address <= self.energy_at < address + count:
                    self.served.append(kwh)
                return good, False
            case "garbage":
                return self._rng.randbytes(self._rng.randint(1, 40)), False
            case "exception-2" | "exception-4" | "exception-6":
                return _frame(tid, unit, bytes([function | 0x80, int(mode[-1])])), False
            case "short-open" | "short-closed":
                return good[:-3], mode == "short-closed"
            case "silence" | "close":
                return b"", mode == "close"
            case "wrong-tid":
                return _frame(tid + 1, unit, good[7:]), False  # never 0: pymodbus' tids stay in 1..65000
            case "wrong-unit":
                return _frame(tid, unit + 1, good[7:]), False
            case "wrong-function":
                return _frame(tid, unit, bytes([{3: 4, 4: 3}[function], len(data)]) + data), False
            case "byte-count-low":
                return _frame(tid, unit, bytes([function, len(data) - 2]) + data[:-2]), False
            case "byte-count-high":
                return _frame(tid, unit, bytes([function, len(data) + 2]) + data + data[:2]), False
            case "byte-count-beyond":
                return _frame(tid, unit, bytes([function, len(data) + 2]) + data), False
        msg = f"unknown mode {mode!r}"
        raise AssertionError(msg)


class HealthyGateway:
    """A real pymodbus server with one SDM630 (unit 1) whose counter reads `HEALTHY_KWH`."""

    def __init__(self, port: int) -> None:
        device = SimDevice(
            id=1,
            simdata=[
                SimData(0x0034, values=_f32(2500.0), datatype=DataType.REGISTERS),
                SimData(0x0048, values=_f32(HEALTHY_KWH), datatype=DataType.REGISTERS),
            ],
        )
        self.server = ModbusTcpServer(context=[device], framer=FramerType.SOCKET, address=("127.0.0.1", port))

    async def __aenter__(self) -> HealthyGateway:
        await self.server.serve_forever(background=True)  # returns once it listens
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.shutdown()


class Polling:
    """`ModbusPoller.run()` as a task, watched: `until` fails the test if the poller ends or a condition is late."""

    def __init__(self, poller: ModbusPoller) -> None:
        self.poller = poller
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Polling:
        self.task = asyncio.create_task(self.poller.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        async with asyncio.timeout(2):  # cancelling the poller mid-read must not hang
            await asyncio.gather(self.task, return_exceptions=True)

    async def until(self, condition: Callable[[], bool], what: str, limit_s: float = 6.0) -> None:
        assert self.task is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while not condition():
            if self.task.done():
                self.task.result()  # raises whatever crashed the poller
                pytest.fail("the poller stopped by itself")
            if loop.time() > deadline:
                pytest.fail(f"not within {limit_s} s: {what}")
            await asyncio.sleep(0.01)

    def gateway(self, meter_id: str) -> Gateway:
        return next(g for g in self.poller.gateways.values() if any(m.meter.id == meter_id for m in g.meters))


def policy(meters: list[tuple[str, int, str]]) -> Policy:
    """meters: (id, gateway port, template), each unit 1 on its own gateway, polled every minute."""
    text = '[township]\nid = "t"\nname = "测试镇"\ndaily_cap_kwh = 100000\n'
    text += "[control]\nstart = 2010-10-01\nend = 2010-12-31\n"
    for meter_id, _port, _template in meters:
        text += f'\n[[firms]]\nid = "f-{meter_id}"\nname = "{meter_id}"\nkind = "large"\n'
    for meter_id, port, template in meters:
        text += (
            f'\n[[meters]]\nid = "{meter_id}"\nfirm = "f-{meter_id}"\n[meters.modbus]\nhost = "127.0.0.1"\n'
            f'port = {port}\nunit = 1\ntemplate = "{template}"\npoll_s = 60\ntimeout_s = {TIMEOUT_S}\n'
        )
    return Policy.model_validate(tomllib.loads(text))


def of(readings: list[Reading], meter_id: str) -> list[Reading]:
    return [r for r in readings if r.meter == meter_id]


def logged(caplog: pytest.LogCaptureFixture, meter_id: str) -> tuple[list[str], list[str]]:
    """quotad's messages about `meter_id`: (faults, recoveries)."""
    mine = [r for r in caplog.records if r.name == LOGGER and r.getMessage().startswith(f"meter {meter_id} ")]
    faults = [r.getMessage() for r in mine if r.levelno == logging.WARNING]
    recoveries = [r.getMessage() for r in mine if r.levelno == logging.INFO and r.getMessage().endswith("again")]
    assert len(faults) + len(recoveries) == len(mine), [r.getMessage() for r in mine]
    return faults, recoveries


def assert_every_minute(readings: list[Reading], meter_id: str, at_least: int) -> None:
    """`meter_id` read on every simulated minute, never twice in one, at least `at_least` times."""
    minutes = [r.t // MINUTE for r in of(readings, meter_id)]
    assert len(minutes) >= at_least, minutes
    assert minutes == list(range(minutes[0], minutes[0] + len(minutes))), f"{meter_id} skipped a minute: {minutes}"


def assert_strictly_increasing(readings: list[Reading], meter_id: str) -> None:
    series = of(readings, meter_id)
    assert all(b.t > a.t for a, b in itertools.pairwise(series)), [r.t for r in series]


@pytest.mark.parametrize("mode", MISBEHAVIOURS)
def test_a_misbehaving_gateway_gives_no_reading_one_warning_and_never_delays_another(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    bad_port, good_port = free_ports(2)
    p = policy([("bad", bad_port, "dtsu666"), ("good", good_port, "sdm630")])
    caplog.set_level(logging.INFO, logger=LOGGER)
    readings: list[Reading] = []

    async def scenario() -> tuple[RawGateway, Gateway]:
        async with RawGateway(bad_port, "dtsu666", mode) as bad, HealthyGateway(good_port):
            poller = ModbusPoller(p.meters, Clock(START, SPEED), readings.append)
            async with Polling(poller) as polling:
                gateway = polling.gateway("bad")
                await polling.until(lambda: gateway.errors >= 4, "four failed polls of the bad meter")
            return bad, gateway

    bad, gateway = asyncio.run(scenario())
    assert of(readings, "bad") == []
    assert gateway.reads == 0  # not even the first block was taken for an answer
    assert len(bad.function_codes) >= 4
    assert set(bad.function_codes) == {3}  # DTSU666: read holding registers, never a write
    faults, recoveries = logged(caplog, "bad")
    assert len(faults) == 1, faults  # once per outage, not once per poll
    assert f"(gateway 127.0.0.1:{bad_port}/tcp, unit 1, address {0x101E})" in faults[0]
    assert recoveries == []
    # the healthy gateway: a reading every simulated minute while the bad one failed four times (>= 8 minutes)
    assert_every_minute(readings, "good", at_least=7)
    assert {r.energy_kwh for r in of(readings, "good")} == {HEALTHY_KWH}
    assert logged(caplog, "good") == ([], [])


@pytest.mark.parametrize(
    ("mode", "template"),
    [("exception-6", "dtsu666"), ("silence", "sdm630"), ("garbage", "dtsu666"), ("close", "sdm630")],
)
def test_readings_resume_once_the_gateway_answers_again(
    mode: str, template: str, caplog: pytest.LogCaptureFixture
) -> None:
    bad_port, good_port = free_ports(2)
    p = policy([("m", bad_port, template), ("good", good_port, "sdm630")])
    caplog.set_level(logging.INFO, logger=LOGGER)
    readings: list[Reading] = []

    async def scenario() -> RawGateway:
        async with RawGateway(bad_port, template, mode, heal_after=3) as raw, HealthyGateway(good_port):
            poller = ModbusPoller(p.meters, Clock(START, SPEED), readings.append)
            async with Polling(poller) as polling:
                await polling.until(lambda: len(of(readings, "m")) >= 3, "three readings after the recovery")
            return raw

    raw = asyncio.run(scenario())
    assert set(raw.function_codes) == {METERS[template][0]}
    # every reading comes from a correct answer, in order; none from the three bad ones
    series = of(readings, "m")
    assert [r.energy_kwh for r in series] == raw.served[: len(series)]
    assert len(series) >= len(raw.served) - 1  # the last answer's poll may have been cancelled
    assert all(r.power_kw == pytest.approx(2.5) for r in series)
    assert_strictly_increasing(readings, "m")
    faults, recoveries = logged(caplog, "m")
    assert len(faults) == 1, faults
    assert len(recoveries) == 1, recoveries
    assert recoveries[0] == f"meter m (gateway 127.0.0.1:{bad_port}/tcp, unit 1) answers again"
    assert_every_minute(readings, "good", at_least=5)
    assert logged(caplog, "good") == ([], [])


def test_a_flapping_gateway_resumes_after_each_return_and_logs_each_outage_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three outages: the gateway stops listening (refused), drops every request, stops listening again."""
    flappy_port, good_port = free_ports(2)
    p = policy([("flappy", flappy_port, "sdm630"), ("good", good_port, "sdm630")])
    caplog.set_level(logging.INFO, logger=LOGGER)
    readings: list[Reading] = []
    clock = Clock(START, SPEED)
    outages: list[tuple[int, int]] = []  # simulated (down, back) instants

    async def scenario() -> RawGateway:
        async with RawGateway(flappy_port, "sdm630") as raw, HealthyGateway(good_port):
            poller = ModbusPoller(p.meters, clock, readings.append)
            async with Polling(poller) as polling:
                gateway = polling.gateway("flappy")
                for outage in ("stopped", "drops", "stopped"):
                    seen = len(of(readings, "flappy"))
                    await polling.until(lambda n=seen: len(of(readings, "flappy")) >= n + 2, "two readings")
                    errors, down = gateway.errors, clock.now()
                    if outage == "stopped":
                        await raw.stop()
                    else:
                        raw.mode = "close"
                    await polling.until(lambda e=errors: gateway.errors >= e + 2, f"two failed polls ({outage})")
                    if outage == "stopped":
                        await raw.start()  # the same port
                    else:
                        raw.mode = "ok"
                    outages.append((down, clock.now()))
                seen = len(of(readings, "flappy"))
                await polling.until(lambda: len(of(readings, "flappy")) >= seen + 2, "two readings after the last")
            return raw

    raw = asyncio.run(scenario())
    series = of(readings, "flappy")
    for down, back in outages:
        # nothing while the gateway was away (half a minute's grace: a read may straddle its going down)
        assert not [r for r in series if down + MINUTE // 2 < r.t < back], (down, back)
        assert len([r for r in series if r.t > back]) >= 2
    assert_strictly_increasing(readings, "flappy")
    assert [r.energy_kwh for r in series] == raw.served[: len(series)]  # each answer taken once, in order
    assert set(raw.function_codes) == {4}
    faults, recoveries = logged(caplog, "flappy")
    assert len(faults) == 3, faults  # once per outage
    assert len(recoveries) == 3, recoveries
    assert_every_minute(readings, "good", at_least=15)
    assert_strictly_increasing(readings, "good")
    assert logged(caplog, "good") == ([], [])

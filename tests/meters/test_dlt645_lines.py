"""DL/T 645 meters read for real: against an implementation that is not quotad's (the `dlt645` package's meter
server), against the simulated township's DTUs (a DL/T 645 line, and a DTU whose RS-485 line also carries Modbus RTU
units), and on a serial line (a socat pair of ptys). Every frame the simulated meters receive is recorded."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from quotad.core.errors import MeterError
from quotad.core.feed import TownshipModel
from quotad.core.policy import Policy
from quotad.core.readings import Reading
from quotad.core.sources import Dlt645Tcp, ModbusSource
from quotad.meters.dtu import SimulatedDtu
from quotad.meters.lines import StreamLink, read_meter
from quotad.meters.modbus import ModbusPoller
from quotad.meters.registers import encode
from quotad.meters.simulator import Simulator
from quotad.schedule.calendar import MICROS_PER_S
from quotad.shell.clock import Clock
from tests.brokers import free_port, free_ports
from tests.conftest import at
from tests.ptys import linked_ptys

START = at("2010-10-20 08:00")
DAY = dt.date(2010, 10, 20)
MINUTE = 60 * MICROS_PER_S
HEAD = '[township]\nid = "t"\nname = "t"\ndaily_cap_kwh = 100000\n[control]\nstart = 2010-10-01\nend = 2010-12-31\n'


def policy(meters: list[tuple[str, str]]) -> Policy:
    """meters: (id, the source table's lines); one firm each."""
    text = HEAD
    for meter_id, table in meters:
        text += f'[[firms]]\nid = "f-{meter_id}"\nname = "{meter_id}"\nkind = "large"\n'
        # a CT ratio of 100: the meter's own power stays within DL/T 645's XX.XXXX kW
        text += f'[[meters]]\nid = "{meter_id}"\nfirm = "f-{meter_id}"\nmultiplier = 100.0\n{table}\n'
    return Policy.model_validate(tomllib.loads(text))


def dl(port: int, address: str, extra: str = "") -> str:
    return f'[meters.dlt645]\naddress = "{address}"\nhost = "127.0.0.1"\nport = {port}\ntimeout_s = 0.5\n{extra}'


def rtu_unit(port: int, unit: int, template: str = "dtsu666") -> str:
    return (
        f'[meters.modbus]\nhost = "127.0.0.1"\nport = {port}\nunit = {unit}\ntemplate = "{template}"\nframer = "rtu"\n'
    )


# -- an independent meter: the dlt645 package's server -----------------------------------------------------------------


@pytest.fixture
def independent_meter() -> Iterator[int]:
    from dlt645 import MeterServerService

    port = free_port()
    service = MeterServerService.new_tcp_server("127.0.0.1", port, 2.0)
    assert service.set_address(bytearray(bytes.fromhex("000000001234")[::-1]))
    assert service.set_00(0x00010000, 98765.43)
    assert service.set_02(0x02030000, -7.5312)
    assert service.start()
    deadline = time.monotonic() + 5
    while True:  # its server listens from a thread of its own
        try:
            socket = __import__("socket").create_connection(("127.0.0.1", port), timeout=0.2)
            socket.close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the dlt645 package's server did not listen"
            time.sleep(0.05)
    yield port
    service.stop()


def test_an_independent_meter_is_read(independent_meter: int) -> None:
    source = Dlt645Tcp(address="000000001234", host="127.0.0.1", port=independent_meter)

    async def scenario() -> tuple[dict[str, float], str]:
        link = StreamLink(source, 2.0)
        try:
            return await read_meter(link, source), await link.read_address()
        finally:
            link.close()

    values, address = asyncio.run(scenario())
    assert values == {"energy_kwh": 98765.43, "power_kw": -7.5312}
    assert address == "000000001234"


def test_an_independent_meters_error_reply(independent_meter: int) -> None:
    source = Dlt645Tcp(address="000000001234", host="127.0.0.1", port=independent_meter, energy="00900200")

    async def scenario() -> None:
        link = StreamLink(source, 2.0)
        try:
            await read_meter(link, source)
        finally:
            link.close()

    with pytest.raises(MeterError, match="no such data"):
        asyncio.run(scenario())


def test_the_poller_reads_the_independent_meter(independent_meter: int) -> None:
    p = policy([("m", dl(independent_meter, "000000001234"))])

    async def scenario() -> list[Reading]:
        readings: list[Reading] = []
        poller = ModbusPoller(p.meters, Clock(), readings.append)
        gateway = next(iter(poller.gateways.values()))
        await poller.poll(gateway, gateway.meters[0])
        gateway.link.close()
        return readings

    (reading,) = asyncio.run(scenario())
    assert (reading.meter, reading.energy_kwh, reading.power_kw) == ("m", 98765.43, -7.5312)


# -- quotad's Modbus RTU on its own line, against pymodbus's RTU framing ----------------------------------------------


def test_rtu_reads_on_an_owned_line_against_pymodbus() -> None:
    port = free_port()
    source = ModbusSource.from_table(
        {"host": "127.0.0.1", "port": port, "unit": 2, "template": "sdm630", "framer": "rtu"}
    )
    words = encode(12345.67, "f32", "big")

    async def scenario() -> tuple[list[int], str]:
        device = SimDevice(id=2, simdata=[SimData(0x48, values=words, datatype=DataType.REGISTERS)])
        server = ModbusTcpServer(context=[device], framer=FramerType.RTU, address=("127.0.0.1", port))
        task = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0.3)
        link = StreamLink(source, 1.0)
        try:
            got = await link.read("input", 0x48, 2, 2)
            try:
                await link.read("input", 0x48, 2, 9)  # no unit 9: pymodbus answers "gateway target failed" (4)
            except MeterError as exc:
                missing = str(exc)
            return got, missing
        finally:
            link.close()
            await server.shutdown()  # type: ignore[no-untyped-call]
            task.cancel()

    got, missing = asyncio.run(scenario())
    assert got == words
    assert "exception response, code 4" in missing


# -- the simulated township's DTUs ------------------------------------------------------------------------------------


def test_a_dtu_carries_dlt645_and_modbus_rtu_on_one_connection() -> None:
    mixed, pure = free_ports(2)
    p = policy(
        [
            ("rtu-1", rtu_unit(mixed, 1)),
            ("dl-a", dl(mixed, "000000000011")),
            ("rtu-2", rtu_unit(mixed, 2, "sdm630")),
            ("dl-b", dl(mixed, "000000000012", 'power = ""\n')),
            ("dl-c", dl(pure, "000000000013")),
        ]
    )

    async def scenario() -> tuple[list[Reading], Simulator, ModbusPoller]:
        clock = Clock(START, 60.0)
        simulator = Simulator(p, clock, TownshipModel(p, DAY))
        readings: list[Reading] = []
        sim_task = asyncio.create_task(simulator.run())
        await asyncio.sleep(0.3)
        poller = ModbusPoller(p.meters, clock, readings.append)
        poll_task = asyncio.create_task(poller.run())
        await asyncio.sleep(2.6)
        for task in (poll_task, sim_task):
            task.cancel()
        await asyncio.gather(poll_task, sim_task, return_exceptions=True)
        return readings, simulator, poller

    readings, simulator, poller = asyncio.run(scenario())
    model = TownshipModel(p, DAY)
    assert len(poller.gateways) == 2
    assert all(isinstance(g.link, StreamLink) for g in poller.gateways.values())
    assert sorted({r.meter for r in readings}) == ["dl-a", "dl-b", "dl-c", "rtu-1", "rtu-2"]
    for reading in readings:
        exact = reading.meter.startswith("dl")  # BCD hundredths; Modbus f32 keeps ~7 digits
        assert reading.energy_kwh == pytest.approx(
            model.counter(reading.meter, reading.t), abs=0.5 if not exact else 0.3
        )
    assert all(r.power_kw is None for r in readings if r.meter == "dl-b")
    assert all(r.power_kw is not None for r in readings if r.meter == "dl-a")
    assert [dtu.connections for dtu in simulator.dtus] == [1, 1]  # one owner per line, one connection
    assert set(simulator.control_codes) == {0x11}  # the recording meters saw reads, nothing else
    assert set(simulator.function_codes) <= {3, 4}


def test_a_silent_dlt645_meter_is_logged_once_and_never_delays_another_dtu(caplog: pytest.LogCaptureFixture) -> None:
    a, b = free_ports(2)
    served = policy([("ok-a", dl(a, "000000000001")), ("ok-b", dl(b, "000000000002"))])
    polled = policy([("gone", dl(a, "000000000099")), ("ok-a", dl(a, "000000000001")), ("ok-b", dl(b, "000000000002"))])

    async def scenario() -> list[Reading]:
        clock = Clock(START, 60.0)
        simulator = Simulator(served, clock, TownshipModel(served, DAY))
        readings: list[Reading] = []
        sim_task = asyncio.create_task(simulator.run())
        await asyncio.sleep(0.3)
        poll_task = asyncio.create_task(ModbusPoller(polled.meters, clock, readings.append).run())
        await asyncio.sleep(4.4)
        for task in (poll_task, sim_task):
            task.cancel()
        await asyncio.gather(poll_task, sim_task, return_exceptions=True)
        return readings

    with caplog.at_level(logging.WARNING, logger="quotad.meters.modbus"):
        readings = asyncio.run(scenario())
    b_ticks = [r.t // MINUTE for r in readings if r.meter == "ok-b"]
    assert len(b_ticks) >= 4
    assert b_ticks == list(range(b_ticks[0], b_ticks[0] + len(b_ticks)))
    assert len([r for r in readings if r.meter == "ok-a"]) >= 3
    assert not [r for r in readings if r.meter == "gone"]
    faults = [r.getMessage() for r in caplog.records if r.getMessage().startswith("meter gone ")]
    assert len(faults) == 1
    assert "address 000000000099" in faults[0]
    assert "no answer" in faults[0]


def test_a_refused_control_code_is_answered_with_an_error_and_recorded() -> None:
    """The recording meter refuses anything but a read: were quotad to send a write, the test would see it."""
    p = policy([("m", dl(1, "000000000001"))])
    dtu = SimulatedDtu(p.meters, TownshipModel(p, DAY), lambda: START)
    from quotad.meters import dlt645

    relay_off = dlt645._frame("000000000001", 0x1C, b"\x00" * 16)  # what quotad can never build: 拉闸
    answer, used = dtu.answer(relay_off)
    assert used == len(relay_off)
    frame, _ = dlt645.find_frame(answer)
    assert frame is not None
    assert frame.control == 0xDC
    assert dtu.control_codes == {0x1C: 1}


# -- a serial line ----------------------------------------------------------------------------------------------------


@pytest.fixture
def line(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with linked_ptys(tmp_path) as ends:
        yield ends


def _serve_serial(path: str, dtu: SimulatedDtu, stop: threading.Event) -> None:
    """The meters' side of the line: every request answered by the simulated line (a thread, blocking reads)."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    buffer = b""
    try:
        while not stop.is_set():
            import select

            if not select.select([fd], [], [], 0.05)[0]:
                continue
            buffer += os.read(fd, 512)
            while buffer:
                answer, used = dtu.answer(buffer)
                if not used:
                    break
                buffer = buffer[used:]
                if answer:
                    os.write(fd, answer)
    finally:
        os.close(fd)


def test_dlt645_and_modbus_meters_on_one_serial_port(line: tuple[str, str]) -> None:
    meter_side, quotad_side = line
    settings = f'serial = "{quotad_side}"\nbaudrate = 2400\nparity = "E"\n'
    p = policy(
        [
            ("dl", f'[meters.dlt645]\naddress = "000000000021"\n{settings}timeout_s = 1.0\n'),
            ("mb", f'[meters.modbus]\n{settings}unit = 5\ntemplate = "dtsu666"\ntimeout_s = 1.0\n'),
        ]
    )
    dtu = SimulatedDtu(p.meters, TownshipModel(p, DAY), lambda: START)
    stop = threading.Event()
    server = threading.Thread(target=_serve_serial, args=(meter_side, dtu, stop), daemon=True)
    server.start()

    async def scenario() -> tuple[list[Reading], int]:
        readings: list[Reading] = []
        poller = ModbusPoller(p.meters, Clock(START), readings.append)
        (gateway,) = poller.gateways.values()
        for _ in range(2):
            for polled in gateway.meters:
                await poller.poll(gateway, polled)
        gateway.link.close()
        return readings, len(poller.gateways)

    try:
        readings, gateways = asyncio.run(scenario())
    finally:
        stop.set()
        server.join(5)
    model = TownshipModel(p, DAY)
    assert gateways == 1
    assert [r.meter for r in readings] == ["dl", "mb", "dl", "mb"]
    assert readings[0].energy_kwh == pytest.approx(model.counter("dl", START), abs=0.01)
    assert set(dtu.control_codes) == {0x11}
    assert set(dtu.function_codes) == {3}

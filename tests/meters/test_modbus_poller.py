"""Modbus acquisition against real pymodbus servers on loopback: the simulated township's gateways."""

from __future__ import annotations

import ast
import asyncio
import itertools
import logging
import tomllib
from collections.abc import Awaitable
from pathlib import Path

import pytest
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from quotad.core.errors import MeterError
from quotad.core.feed import TownshipModel
from quotad.core.policy import Policy
from quotad.core.readings import Reading
from quotad.meters.modbus import ModbusPoller, ReadOnlyLink
from quotad.meters.simulator import Simulator
from quotad.schedule.calendar import MICROS_PER_S
from quotad.shell.clock import Clock
from tests.brokers import free_port, free_ports
from tests.conftest import at

START = at("2010-10-20 08:00")
MINUTE = 60 * MICROS_PER_S


def policy(
    gateways: dict[str, tuple[int, str]], meters: list[tuple[str, str, str, int, str]], timeout_s: float = 0.3
) -> Policy:
    """meters: (id, firm, gateway name, unit, template); gateways: name -> (port, framer)."""
    text = """
[township]
id = "t"
name = "测试镇"
daily_cap_kwh = 100000
[control]
start = 2010-10-01
end = 2010-12-31
"""
    for firm in sorted({m[1] for m in meters}):
        text += f'\n[[firms]]\nid = "{firm}"\nname = "{firm}"\nkind = "large"\n'
    for meter_id, firm, gateway, unit, template in meters:
        port, framer = gateways[gateway]
        text += (
            f'\n[[meters]]\nid = "{meter_id}"\nfirm = "{firm}"\n[meters.modbus]\nhost = "127.0.0.1"\nport = {port}\n'
            f'unit = {unit}\ntemplate = "{template}"\nframer = "{framer}"\npoll_s = 60\ntimeout_s = {timeout_s}\n'
        )
    return Policy.model_validate(tomllib.loads(text))


async def run_for(
    served: Policy, polled: Policy, real_s: float, speed: float = 60.0
) -> tuple[list[Reading], Simulator, ModbusPoller]:
    clock = Clock(START, speed)
    simulator = Simulator(served, clock, TownshipModel(served, START_DAY))
    readings: list[Reading] = []
    poller = ModbusPoller(polled.meters, clock, readings.append)
    sim_task = asyncio.create_task(simulator.run())
    await asyncio.sleep(0.3)  # the servers listen
    poll_task = asyncio.create_task(poller.run())
    await asyncio.sleep(real_s)
    for task in (poll_task, sim_task):
        task.cancel()
    await asyncio.gather(poll_task, sim_task, return_exceptions=True)
    return readings, simulator, poller


START_DAY = __import__("datetime").date(2010, 10, 20)


def arun(
    coro: Awaitable[tuple[list[Reading], Simulator, ModbusPoller]],
) -> tuple[list[Reading], Simulator, ModbusPoller]:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_every_template_over_tcp_and_rtu_framing() -> None:
    a, b = free_ports(2)
    gateways = {"a": (a, "tcp"), "b": (b, "rtu")}
    meters = [
        (f"{template}-{gw}", f"f-{template}-{gw}", gw, unit, template)
        for gw in ("a", "b")
        for unit, template in enumerate(("dtsu666", "sdm630", "adw300"), start=1)
    ]
    p = policy(gateways, meters)
    readings, simulator, _ = arun(run_for(p, p, real_s=2.6))
    model = TownshipModel(p, START_DAY)
    by_meter: dict[str, list[Reading]] = {}
    for reading in readings:
        by_meter.setdefault(reading.meter, []).append(reading)
    assert sorted(by_meter) == sorted(m[0] for m in meters)
    for meter_id, series in by_meter.items():
        assert len(series) >= 2, meter_id
        assert all(b.t > a.t and b.energy_kwh > a.energy_kwh for a, b in itertools.pairwise(series))
        for reading in series:
            # the served counter at that instant (f32 keeps ~7 digits: within 0.02 kWh of ~50,000 kWh)
            assert reading.energy_kwh == pytest.approx(model.counter(meter_id, reading.t), abs=0.5)
            assert reading.power_kw is not None
            assert reading.power_kw > 0
    assert set(simulator.function_codes) <= {3, 4}
    assert sum(simulator.function_codes.values()) >= len(readings)


def test_polls_land_on_the_grid_of_poll_s() -> None:
    gateways = {"a": (free_port(), "tcp")}
    p = policy(gateways, [("m1", "f1", "a", 1, "sdm630")])
    readings, _, _ = arun(run_for(p, p, real_s=3.3))
    ticks = [r.t - r.t % MINUTE for r in readings]
    assert len(readings) >= 3
    assert ticks == sorted(set(ticks))  # one reading per minute
    assert all(0 <= r.t % MINUTE < 20 * MICROS_PER_S for r in readings)  # on the minute (+ the read's latency)


def test_a_dead_unit_never_delays_another_gateway() -> None:
    """Gateway a has a unit that never answers; gateway b's meter keeps its cadence, tick after tick."""
    a, b = free_ports(2)
    gateways = {"a": (a, "tcp"), "b": (b, "tcp")}
    served = policy(gateways, [("ok-a", "f1", "a", 1, "dtsu666"), ("ok-b", "f2", "b", 1, "dtsu666")], timeout_s=1.5)
    polled = policy(
        gateways,
        [("dead", "f0", "a", 7, "dtsu666"), ("ok-a", "f1", "a", 1, "dtsu666"), ("ok-b", "f2", "b", 1, "dtsu666")],
        timeout_s=1.5,
    )
    readings, _, poller = arun(run_for(served, polled, real_s=4.4, speed=60.0))
    b_ticks = [r.t // MINUTE for r in readings if r.meter == "ok-b"]
    assert len(b_ticks) >= 4
    assert b_ticks == list(range(b_ticks[0], b_ticks[0] + len(b_ticks)))  # no minute missed on gateway b
    assert not [r for r in readings if r.meter == "dead"]
    a_gateway = next(g for g in poller.gateways.values() if any(m.meter.id == "dead" for m in g.meters))
    assert a_gateway.errors >= 1


def test_meters_on_one_gateway_share_one_link() -> None:
    port = free_port()
    p = policy({"a": (port, "tcp")}, [(f"m{u}", f"f{u}", "a", u, "sdm630") for u in (1, 2, 3)])

    async def build() -> ModbusPoller:
        return ModbusPoller(p.meters, Clock(), lambda r: None)  # pymodbus clients are made inside a loop

    poller = asyncio.run(build())
    assert len(poller.gateways) == 1
    assert [m.unit for m in next(iter(poller.gateways.values())).meters] == [1, 2, 3]


def test_read_only_by_construction() -> None:
    assert [n for n in dir(ReadOnlyLink) if "write" in n.lower()] == []
    source = Path(__import__("quotad.meters.modbus").meters.modbus.__file__).read_text(encoding="utf-8")
    called = {
        node.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and node.attr.startswith(("write", "mask", "readwrite"))
    }
    assert called == set()


def _fixed_server(port: int, words: list[int]) -> ModbusTcpServer:
    """A meter whose energy register (SDM630: input 0x0048) holds fixed raw words."""
    device = SimDevice(
        id=1,
        simdata=[
            SimData(0x0034, values=[0, 0], datatype=DataType.REGISTERS),
            SimData(0x0048, values=words, datatype=DataType.REGISTERS),
        ],
    )
    return ModbusTcpServer(context=[device], framer=FramerType.SOCKET, address=("127.0.0.1", port))


@pytest.mark.parametrize(
    "words",
    [[0x7FC0, 0x0000], [0x7F80, 0x0000], [0xFF80, 0x0000], [0xFFFF, 0xFFFF]],
    ids=["nan", "inf", "-inf", "all-ones"],
)
def test_nan_inf_and_sentinels_never_become_readings(words: list[int], caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    p = policy({"a": (port, "tcp")}, [("m1", "f1", "a", 1, "sdm630")])

    async def scenario() -> list[Reading]:
        server = _fixed_server(port, words)
        task = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0.3)
        readings: list[Reading] = []
        poller = ModbusPoller(p.meters, Clock(), readings.append)
        gateway = next(iter(poller.gateways.values()))
        for _ in range(3):
            await poller.poll(gateway, gateway.meters[0])
        gateway.link.close()
        await server.shutdown()
        task.cancel()
        return readings

    with caplog.at_level(logging.WARNING, logger="quotad.meters.modbus"):
        assert asyncio.run(scenario()) == []
    faults = [r for r in caplog.records if "m1" in r.getMessage()]
    assert len(faults) == 1  # logged once per outage, not once per poll
    assert "unit 1" in faults[0].getMessage()


def test_the_simulated_counter_advances_between_reads() -> None:
    port = free_port()
    p = policy({"a": (port, "tcp")}, [("m1", "f1", "a", 1, "dtsu666")])

    async def scenario() -> list[float]:
        clock = Clock(START, 600.0)
        simulator = Simulator(p, clock, TownshipModel(p, START_DAY))
        task = asyncio.create_task(simulator.run())
        await asyncio.sleep(0.3)
        poller = ModbusPoller(p.meters, clock, lambda r: None)
        gateway = next(iter(poller.gateways.values()))
        values = []
        for _ in range(2):
            reading = await poller.poll(gateway, gateway.meters[0])
            assert reading is not None
            values.append(reading.energy_kwh)
            await asyncio.sleep(0.5)  # five simulated minutes
        gateway.link.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return values

    first, second = asyncio.run(scenario())
    assert second > first


def test_a_poller_ends_when_cancelled_even_if_a_read_swallows_the_cancellation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.11's `asyncio.wait_for` (inside pymodbus) loses a cancellation that arrives as its read completes;
    a poller cancelled then went on polling for ever, and the suite once hung on it. Here every read swallows the
    cancellation as that race does: the poller must end anyway."""
    swallowed = []

    async def read(self: ReadOnlyLink, table: str, address: int, count: int, unit: int) -> list[int]:
        try:
            await asyncio.sleep(2.0)
        except asyncio.CancelledError:  # what wait_for does in the race: the cancellation is lost
            swallowed.append(True)
        msg = "no answer"
        raise MeterError(msg)

    monkeypatch.setattr(ReadOnlyLink, "read", read)
    port = free_port()
    polled = policy({"g": (port, "tcp")}, [("m", "f", "g", 1, "dtsu666")])

    async def scenario() -> asyncio.Task[None]:
        poller = ModbusPoller(polled.meters, Clock(START, 3600.0), lambda reading: None)
        task = asyncio.create_task(poller.run())
        await asyncio.sleep(0.5)  # the first read has begun (a tick comes every 1/60 s) and lasts 2 s
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
        return task

    loop = asyncio.new_event_loop()  # not asyncio.run: it would wait for a task that never ends
    try:
        task = loop.run_until_complete(scenario())
        ended = task.done()
        if not ended:  # stop it the hard way, so that the test fails rather than hangs
            monkeypatch.setattr(ReadOnlyLink, "read", _raise_cancelled)
            loop.run_until_complete(asyncio.wait({task}, timeout=5.0))
    finally:
        loop.close()
    assert swallowed
    assert ended, "the poller went on polling after it was cancelled"


async def _raise_cancelled(*args: object) -> list[int]:
    raise asyncio.CancelledError

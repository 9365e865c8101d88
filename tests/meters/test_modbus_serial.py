"""Serial RTU: quotad's poller on one end of a pair of linked pseudo-terminals (socat), a pymodbus serial
server answering on the other, as a meter on an RS-485 line would."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from quotad.config.load import load
from quotad.core.policy import Policy
from quotad.core.readings import Reading
from quotad.core.sources import ModbusSource
from quotad.meters.modbus import ModbusPoller, gateway_key
from quotad.meters.registers import encode
from quotad.shell.clock import Clock
from tests.ptys import linked_ptys


@pytest.fixture
def line(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with linked_ptys(tmp_path) as ends:
        yield ends


def test_a_meter_on_a_serial_line(line: tuple[str, str]) -> None:
    meter_side, quotad_side = line
    policy = Policy.model_validate(
        tomllib.loads(
            '[township]\nid = "t"\nname = "t"\ndaily_cap_kwh = 1\n[control]\nstart = 2010-10-01\nend = 2010-12-31\n'
            '[[firms]]\nid = "f"\nname = "f"\nkind = "large"\n'
            f'[[meters]]\nid = "m"\nfirm = "f"\n[meters.modbus]\nserial = "{quotad_side}"\nbaudrate = 9600\n'
            'unit = 3\ntemplate = "sdm630"\ntimeout_s = 1.0\n'
        )
    )
    energy, power = encode(12345.67, "f32", "big"), encode(2500.0, "f32", "big")  # kWh, W (SDM630)
    requests: list[int] = []

    def trace(sending: bool, pdu: object) -> object:
        if not sending:
            requests.append(pdu.function_code)  # type: ignore[attr-defined]
        return pdu

    async def scenario() -> list[Reading]:
        device = SimDevice(
            id=3,
            simdata=[
                SimData(0x0034, values=power, datatype=DataType.REGISTERS),
                SimData(0x0048, values=energy, datatype=DataType.REGISTERS),
            ],
        )
        server = ModbusSerialServer(
            context=[device], framer=FramerType.RTU, port=meter_side, baudrate=9600, trace_pdu=trace
        )
        task = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0.5)
        readings: list[Reading] = []
        poller = ModbusPoller(policy.meters, Clock(), readings.append)
        gateway = next(iter(poller.gateways.values()))
        for _ in range(2):
            await poller.poll(gateway, gateway.meters[0])
        gateway.link.close()
        await server.shutdown()  # type: ignore[no-untyped-call]
        task.cancel()
        return readings

    readings = asyncio.run(scenario())
    assert len(readings) == 2
    assert readings[0].energy_kwh == pytest.approx(12345.67, abs=0.01)
    assert readings[0].power_kw == pytest.approx(2.5)
    assert set(requests) == {4}  # SDM630 keeps both in input registers: function code 4 only


def _serial_policy(port: str, units: tuple[int, ...]) -> str:
    text = (
        '[township]\nid = "t"\nname = "t"\ndaily_cap_kwh = 1000\n[control]\nstart = 2010-10-01\nend = 2010-12-31\n'
        '[[firms]]\nid = "f"\nname = "f"\nkind = "large"\n'
    )
    for unit in units:  # the first meter spells out the defaults, the others rely on them: the same settings
        settings = 'baudrate = 9600\nparity = "N"\nstopbits = 1\nbytesize = 8\n' if unit == units[0] else ""
        text += (
            f'[[meters]]\nid = "m{unit}"\nfirm = "f"\n[meters.modbus]\nserial = "{port}"\n{settings}'
            f'unit = {unit}\ntemplate = "sdm630"\ntimeout_s = 1.0\n'
        )
    return text


def test_two_meters_on_one_serial_port_share_one_gateway(line: tuple[str, str], tmp_path: Path) -> None:
    """One owner per physical port: one link, the units read one after another on it."""
    meter_side, quotad_side = line
    path = tmp_path / "township.toml"
    path.write_text(_serial_policy(quotad_side, (3, 4)), encoding="utf-8")
    policy = load(path, environ={}).policy  # as `run` loads it: the port's settings agree

    async def scenario() -> tuple[ModbusPoller, list[Reading]]:
        devices = [
            SimDevice(
                id=unit,
                simdata=[
                    SimData(0x0034, values=encode(1000.0, "f32", "big"), datatype=DataType.REGISTERS),  # W
                    SimData(0x0048, values=encode(kwh, "f32", "big"), datatype=DataType.REGISTERS),
                ],
            )
            for unit, kwh in ((3, 100.5), (4, 200.25))
        ]
        server = ModbusSerialServer(context=devices, framer=FramerType.RTU, port=meter_side, baudrate=9600)
        task = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0.5)
        readings: list[Reading] = []
        poller = ModbusPoller(policy.meters, Clock(), readings.append)
        for gateway in poller.gateways.values():
            for polled in gateway.meters:
                await poller.poll(gateway, polled)
            gateway.link.close()
        await server.shutdown()  # type: ignore[no-untyped-call]
        task.cancel()
        return poller, readings

    poller, readings = asyncio.run(scenario())
    assert len(poller.gateways) == 1
    assert [p.meter.id for p in next(iter(poller.gateways.values())).meters] == ["m3", "m4"]
    assert [(r.meter, round(r.energy_kwh, 2)) for r in readings] == [("m3", 100.5), ("m4", 200.25)]


@pytest.mark.parametrize(
    ("one", "other", "same_owner"),
    [
        ({"serial": "/dev/ttyUSB0"}, {"serial": "/dev/ttyUSB0", "baudrate": 19200}, True),
        ({"serial": "/dev/ttyUSB0"}, {"serial": "/dev/ttyUSB0", "parity": "E", "stopbits": 2, "bytesize": 7}, True),
        ({"serial": "/dev/ttyUSB0"}, {"serial": "/dev/ttyUSB1"}, False),
        ({"host": "10.0.0.5", "port": 502}, {"host": "10.0.0.5", "port": 502, "framer": "rtu"}, True),
        ({"host": "10.0.0.5", "port": 502}, {"host": "10.0.0.5", "port": 503}, False),
        ({"host": "10.0.0.5", "port": 502}, {"host": "10.0.0.6", "port": 502}, False),
    ],
)
def test_a_gateway_is_its_physical_port(one: dict[str, object], other: dict[str, object], same_owner: bool) -> None:
    """A serial port is keyed by its path, a TCP gateway by host and port: never opened twice. Settings that
    disagree on one port are a configuration error (tests/config/broken/modbus_*_conflicting_settings.toml)."""

    def source(fields: dict[str, object]) -> ModbusSource:
        return ModbusSource.from_table({"template": "sdm630", **fields})

    assert (gateway_key(source(one)) == gateway_key(source(other))) is same_owner

"""Serial RTU: quotad's poller on one end of a pair of linked pseudo-terminals (socat), a pymodbus serial
server answering on the other, as a meter on an RS-485 line would."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from quotad.clock import Clock
from quotad.config.policy import Policy
from quotad.meters.modbus import ModbusPoller
from quotad.meters.registers import encode
from quotad.readings import Reading


@pytest.fixture
def line(tmp_path: Path) -> tuple[str, str]:
    socat = shutil.which("socat")
    if socat is None:
        pytest.fail("socat is not installed (`./dev test` installs it: apt-get install socat)")
    a, b = tmp_path / "meter-side", tmp_path / "quotad-side"
    process = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"], stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 5
    while not (a.exists() and b.exists()):
        assert time.monotonic() < deadline, "socat did not create the ptys"
        time.sleep(0.02)
    yield str(a), str(b)
    process.terminate()
    process.wait(5)


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

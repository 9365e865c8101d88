"""`quotad probe`: one meter read once over real loopback TCP — a simulated DTU (which records every frame it gets),
the `dlt645` package's meter server, a pymodbus server — and the exit codes 0 / 1 / 2."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from quotad.cli import main
from quotad.core.feed import TownshipModel
from quotad.core.policy import Policy
from quotad.meters.dtu import SimulatedDtu
from quotad.meters.registers import encode
from tests.brokers import free_port
from tests.conftest import at
from tests.meters.test_dlt645_lines import _serve_serial as serve_serial
from tests.ptys import linked_ptys

START = at("2010-10-20 08:00")


def _listening(port: int) -> None:
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.05)


def _in_a_thread(serve: Callable[[], object]) -> Callable[[], None]:
    """Run the coroutine `serve()` on a loop of its own thread (the probe runs its own asyncio.run); its stopper."""
    loop = asyncio.new_event_loop()
    task: list[asyncio.Task[object]] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        task.append(loop.create_task(serve()))  # type: ignore[arg-type]
        with contextlib.suppress(asyncio.CancelledError, Exception):  # stopped from outside
            loop.run_until_complete(task[0])
        rest = asyncio.all_tasks(loop)  # the connections' handlers: ended too, and the loop closed
        for left in rest:
            left.cancel()
        loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def stop() -> None:
        loop.call_soon_threadsafe(task[0].cancel)
        thread.join(5)

    return stop


def dtu_of(addresses: list[str]) -> tuple[int, SimulatedDtu, Callable[[], None]]:
    port = free_port()
    text = '[township]\nid = "t"\nname = "t"\ndaily_cap_kwh = 1\n[control]\nstart = 2010-10-01\nend = 2010-12-31\n'
    for n, address in enumerate(addresses):
        text += f'[[firms]]\nid = "f{n}"\nname = "f{n}"\nkind = "large"\n[[meters]]\nid = "m{n}"\nfirm = "f{n}"\n'
        text += f'multiplier = 100.0\n[meters.dlt645]\naddress = "{address}"\nhost = "127.0.0.1"\nport = {port}\n'
    policy = Policy.model_validate(tomllib.loads(text))
    dtu = SimulatedDtu(policy.meters, TownshipModel(policy, dt.date(2010, 10, 20)), lambda: START)
    stop = _in_a_thread(lambda: dtu.serve("127.0.0.1", port))
    _listening(port)
    return port, dtu, stop


@pytest.fixture
def one_meter() -> Iterator[tuple[int, SimulatedDtu]]:
    port, dtu, stop = dtu_of(["000000000042"])
    yield port, dtu
    stop()


def test_probe_a_dlt645_meter_by_its_address(
    one_meter: tuple[int, SimulatedDtu], capsys: pytest.CaptureFixture[str]
) -> None:
    port, dtu = one_meter
    code = main(["probe", "dlt645", "--host", "127.0.0.1", "--port", str(port), "--address", "000000000042"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "address: 000000000042" in out
    assert "counter (00010000): " in out
    assert " kWh" in out
    assert "power (02030000): " in out
    assert set(dtu.control_codes) == {0x11}  # the recording meter saw reads only


def test_probe_asks_the_one_meter_for_its_address(
    one_meter: tuple[int, SimulatedDtu], capsys: pytest.CaptureFixture[str]
) -> None:
    port, dtu = one_meter
    assert main(["probe", "dlt645", "--host", "127.0.0.1", "--port", str(port)]) == 0
    assert "address: 000000000042 (the one meter on the line answered the broadcast)" in capsys.readouterr().out
    assert set(dtu.control_codes) == {0x11, 0x13}


def test_a_broadcast_on_a_shared_line_says_to_give_the_address(capsys: pytest.CaptureFixture[str]) -> None:
    port, _dtu, stop = dtu_of(["000000000001", "000000000002"])
    try:
        code = main(["probe", "dlt645", "--host", "127.0.0.1", "--port", str(port), "--timeout", "0.5"])
    finally:
        stop()
    assert code == 1
    assert "give --address" in capsys.readouterr().out


def test_probe_an_independent_meter(capsys: pytest.CaptureFixture[str]) -> None:
    from dlt645 import MeterServerService

    port = free_port()
    service = MeterServerService.new_tcp_server("127.0.0.1", port, 2.0)
    service.set_address(bytearray(bytes.fromhex("202412310001")[::-1]))
    service.set_00(0x00010000, 4321.09)
    service.set_02(0x02030000, 1.2345)
    service.start()
    try:
        _listening(port)
        code = main(["probe", "dlt645", "--host", "127.0.0.1", "--port", str(port), "--address", "202412310001"])
    finally:
        service.stop()
    out = capsys.readouterr().out
    assert code == 0, out
    assert "counter (00010000): 4321.09 kWh" in out
    assert "power (02030000): 1.2345 kW" in out


@contextmanager
def sdm630(unit: int, power_w: float, energy_kwh: float, framer: FramerType) -> Iterator[int]:
    """A pymodbus server on a free loopback port holding an SDM630's power and energy registers; its port."""
    port = free_port()
    registers = [(0x0034, power_w), (0x0048, energy_kwh)]
    device = SimDevice(id=unit, simdata=[SimData(a, values=encode(v, "f32", "big"), datatype=DataType.REGISTERS)
                                         for a, v in registers])  # fmt: skip

    async def serve() -> None:
        server = ModbusTcpServer(context=[device], framer=framer, address=("127.0.0.1", port))
        await server.serve_forever()

    stop = _in_a_thread(serve)
    try:
        _listening(port)
        yield port
    finally:
        stop()


def test_probe_a_modbus_meter_shows_its_registers(capsys: pytest.CaptureFixture[str]) -> None:
    with sdm630(unit=3, power_w=2500.0, energy_kwh=12345.67, framer=FramerType.SOCKET) as port:
        args = ["probe", "modbus", "--host", "127.0.0.1", "--port", str(port), "--unit", "3", "--template", "sdm630"]
        code = main(args)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "counter: 12345.6699 kWh  <- input 72 (0x0048), f32, [4640 E6AE]" in out
    assert "power: 2.5000 kW" in out


def test_a_meter_that_does_not_answer_is_exit_1(
    one_meter: tuple[int, SimulatedDtu], capsys: pytest.CaptureFixture[str]
) -> None:
    port, _dtu = one_meter
    args = [
        "probe",
        "dlt645",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--address",
        "000000000043",
        "--timeout",
        "0.3",
    ]
    assert main(args) == 1
    assert "no usable answer: no answer within 0.3 s" in capsys.readouterr().out


def test_nothing_listening_is_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert main(["probe", "dlt645", "--host", "127.0.0.1", "--port", str(port), "--address", "000000000001"]) == 1
    assert "cannot connect" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["dlt645", "--host", "127.0.0.1", "--port", "1", "--address", "12345"], "12-digit address"),
        (["dlt645", "--host", "127.0.0.1", "--port", "1", "--serial", "/dev/ttyUSB0"], "either --host"),
        (["dlt645", "--host", "127.0.0.1"], "--host needs --port"),
        (["dlt645", "--host", "127.0.0.1", "--port", "1", "--energy", "04000401"], "energy's data identifier"),
        (["dlt645", "--host", "127.0.0.1", "--port", "1", "--energy", "02030000"], "starting 00"),
        (["dlt645", "--host", "127.0.0.1", "--port", "1", "--power", "00010000"], "starting 0203"),
        (["modbus", "--host", "127.0.0.1", "--port", "1", "--template", "dtsu66"], "unknown meter template"),
        (["modbus", "--host", "127.0.0.1", "--port", "1", "--template", "sdm630", "--baudrate", "9600"], "serial"),
    ],
    ids=[
        "short-address",
        "host-and-serial",
        "no-port",
        "not-an-energy",
        "power-as-energy",
        "energy-as-power",
        "unknown-template",
        "baud-on-tcp",
    ],
)
def test_bad_usage_is_exit_2(args: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", *args]) == 2
    assert said in capsys.readouterr().err


def test_no_kind_is_exit_2() -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["probe"])
    assert exit_.value.code == 2


def test_probe_a_dlt645_meter_on_a_serial_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The RS-485 case, on a socat pair of ptys: the meter's side answered by the simulated line (2400 8E1)."""
    _port, dtu, stop = dtu_of(["000000000077"])
    stop()  # only its answers are used, on the serial line
    done = threading.Event()
    with linked_ptys(tmp_path) as (meter_side, quotad_side):
        server = threading.Thread(target=serve_serial, args=(meter_side, dtu, done), daemon=True)
        server.start()
        try:
            code = main(["probe", "dlt645", "--serial", quotad_side, "--address", "000000000077"])
        finally:
            done.set()
            server.join(5)
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"DL/T 645 meter on {quotad_side}@2400" in out
    assert "counter (00010000): " in out
    assert set(dtu.control_codes) == {0x11}


def test_a_dtu_probed_as_modbus_tcp_says_to_try_rtu(capsys: pytest.CaptureFixture[str]) -> None:
    """An installer's usual slip: a DTU passes RS-485 through (RTU frames), the probe speaks Modbus TCP by default.
    It says so in one line, without pymodbus's own log lines and hex dumps; with --framer rtu it reads the meter."""
    with sdm630(unit=1, power_w=1500.0, energy_kwh=77.5, framer=FramerType.RTU) as port:
        args = ["probe", "modbus", "--host", "127.0.0.1", "--port", str(port), "--template", "sdm630", "--timeout", "1"]
        wrong = main(args)
        wrong_said = capsys.readouterr()
        right = main([*args, "--framer", "rtu"])
        right_said = capsys.readouterr()
    assert wrong == 1
    assert "try --framer rtu" in wrong_said.out
    assert "pymodbus" not in wrong_said.err + wrong_said.out
    assert right == 0, right_said.out
    assert "counter: 77.5000 kWh" in right_said.out

"""A poisoned reading — a counter no meter can show, on every kind of meter — is refused and journaled as such,
and everything else goes on being enforced exactly as if it had never come.

Once, `{"ts": ..., "energy_kwh": 1e306}` on one meter topic overflowed the ledger, was never acknowledged, came
back at every start and stopped the whole township's enforcement for good.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from quotad.config.load import load
from quotad.core.engine import Engine
from quotad.core.readings import Reading
from quotad.shell.daemon import Daemon
from tests.brokers import Mosquitto, free_port, publish
from tests.shell.feedtown import (
    Publisher,
    all_on_mqtt,
    daemon_file,
    feed,
    journal_of,
    journaled_readings,
    policy_of,
    replayed,
)
from tests.shell.test_daemon_e2e import NotifySocket
from tests.shell.township import Collector, eventually

ROOT = Path(__file__).resolve().parents[2]
POISON_KWH = 1e306
# one meter of each kind on firm g-005, each sending nothing but poison
POISONED = {"p-json": "json", "p-tasmota": "tasmota", "p-shelly": "shelly", "p-number": "number"}
POISON = {
    "json": json.dumps({"ts": "2010-10-19T12:00:00+08:00", "energy_kwh": POISON_KWH}),
    "tasmota": json.dumps({"Time": "2010-10-19T12:00:00", "ENERGY": {"Total": POISON_KWH, "Power": 5}}),
    "shelly": json.dumps({"id": 0, "aenergy": {"total": POISON_KWH}, "apower": 1.0}),  # Wh: 1e303 kWh
    "number": "1e306",
}


def _f32(value: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", value)))


class PoisonGateway:
    """A real pymodbus server whose SDM630 (unit 1) shows 3e38 kWh: a float32 register's largest values."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        device = SimDevice(
            id=1,
            simdata=[
                SimData(0x0034, values=_f32(2500.0), datatype=DataType.REGISTERS),
                SimData(0x0048, values=_f32(3.0e38), datatype=DataType.REGISTERS),
            ],
        )
        self.server = ModbusTcpServer(context=[device], framer=FramerType.SOCKET, address=("127.0.0.1", self.port))
        await self.server.serve_forever(background=True)

    def __enter__(self) -> PoisonGateway:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(10)  # type: ignore[no-untyped-call]
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def poisoned_policy(directory: Path, gateway_port: int) -> None:
    path = all_on_mqtt(directory)
    text = path.read_text(encoding="utf-8")
    for meter, fmt in POISONED.items():
        text += f'\n[[meters]]\nid = "{meter}"\nfirm = "g-005"\n[meters.mqtt]\nformat = "{fmt}"\n'
    text += (
        '\n[[meters]]\nid = "p-modbus"\nfirm = "g-005"\n[meters.modbus]\nhost = "127.0.0.1"\n'
        f'port = {gateway_port}\nunit = 1\ntemplate = "sdm630"\npoll_s = 2.0\n'
    )
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def broker(tmp_path: Path) -> Mosquitto:
    (tmp_path / "mosquitto").mkdir()
    with Mosquitto(data_dir=tmp_path / "mosquitto") as running:
        yield running


def test_a_poisoned_reading_on_each_kind_of_meter_is_refused_and_the_rest_enforced(
    tmp_path: Path, broker: Mosquitto
) -> None:
    with PoisonGateway() as gateway:
        poisoned_policy(tmp_path, gateway.port)
        state = tmp_path / "state"
        config = daemon_file(tmp_path, state, broker, None)
        policy = policy_of(config)
        readings = [r for r in feed(policy) if r.meter not in POISONED and r.meter != "p-modbus"]
        expected = replayed(policy, readings)  # the poisoned meters never count: as if they had sent nothing
        collector = Collector(broker, ["quotad/xx-town/#"])
        log = tmp_path / "daemon.log"
        notify = NotifySocket(tmp_path / "notify.sock")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "quotad", "run", "-c", str(config)], stdout=log.open("ab"), stderr=subprocess.STDOUT,
            env={**os.environ, "NOTIFY_SOCKET": str(notify.path)},
        )  # fmt: skip
        try:
            eventually(lambda: collector.last("quotad/xx-town/daemon") == "online", "the daemon online")
            half = len(readings) // 2
            Publisher(broker, readings[:half], rate=5000).start().join()
            poison = [(f"quotad/xx-town/meters/{m}", POISON[fmt], False) for m, fmt in POISONED.items()]
            publish(broker, poison * 3)  # again and again: each is refused, none blocks what follows
            Publisher(broker, readings[half:], rate=5000).start().join()
            eventually(lambda: len(journaled_readings(state)) == len(readings), "every good reading journaled", 90)
            rejected = journal_of(state, "rejected")
            eventually(lambda: any(b["reading"][0] == "p-modbus" for b in journal_of(state, "rejected")), "modbus")
            eventually(lambda: any("from 5 meter(s), see the log" in d for d in notify.received), "STATUS= counting")
            # a restart: nothing poisoned is waiting on the broker, nothing is replayed wrongly
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(60) == 0
            daemon = subprocess.Popen(
                [sys.executable, "-m", "quotad", "run", "-c", str(config)],
                stdout=log.open("ab"), stderr=subprocess.STDOUT,
            )  # fmt: skip
            eventually(lambda: log.read_text(encoding="utf-8").count("quotad serving") == 2, "up again")
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(60)
            collector.close()
            notify.close()
    ids = [str(i) for body in journal_of(state, "reading") for i in body["raised"]]  # type: ignore[attr-defined]
    assert ids == expected
    assert journaled_readings(state) == [(r.meter, r.t) for r in readings]
    by_meter: dict[str, list[str]] = {}
    for body in rejected:
        meter, _t, energy = body["reading"][:3]  # type: ignore[index]
        by_meter.setdefault(str(meter), []).append(str(body["why"]))
        assert float(energy) > 1e10  # type: ignore[arg-type]
    assert {m: len(w) for m, w in by_meter.items() if m in POISONED} == dict.fromkeys(POISONED, 3)
    assert all("is not a counter a meter can show" in w for ws in by_meter.values() for w in ws)
    text = log.read_text(encoding="utf-8")
    assert code == 0
    assert "Traceback" not in text
    for meter in POISONED:  # logged once each, naming where it came from
        first = f"reading of meter {meter} (MQTT topic quotad/xx-town/meters/{meter}) refused (1 so far)"
        assert text.count(first) == 1
    assert f"reading of meter p-modbus (Modbus 127.0.0.1:{gateway.port} unit 1) refused (1 so far)" in text


def test_replay_skips_a_poisoned_line_and_goes_on(tmp_path: Path) -> None:
    policy = ROOT / "config" / "township.toml"
    path = tmp_path / "readings.jsonl"
    path.write_text(
        '{"meter": "sd-main", "ts": "2010-10-20T00:00:00+08:00", "energy_kwh": 100.0}\n'
        '{"meter": "sd-main", "ts": "2010-10-20T04:00:00+08:00", "energy_kwh": 1e306}\n'
        '{"meter": "sd-main", "ts": "2010-10-20T08:00:00+08:00", "energy_kwh": 4400.0}\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "quotad", "replay", str(path), "-c", str(policy)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "readings.jsonl:2: skipped: energy_kwh: 1e+306 is not a counter a meter can show" in done.stderr
    assert "Traceback" not in done.stderr
    ids = [json.loads(line)["id"] for line in done.stdout.splitlines()]
    assert "xx-town/shengda/firm_daily_limit/2010-10-20/1.0" in ids  # 4,300 kWh in 8 h after the poison: cut off


def test_a_reading_the_core_fails_on_is_set_apart_and_the_batch_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a future bug makes the core raise on one reading: that reading is journaled as rejected, the engine
    (which may have half-applied it) is rebuilt from the journal, and the rest of the batch is enforced."""
    all_on_mqtt(tmp_path)
    config = tmp_path / "quotad.toml"
    config.write_text(f'policy = "township.toml"\nstate_dir = "{tmp_path / "state"}"\n', encoding="utf-8")
    loaded = load(config)
    readings = feed(loaded.policy, days=1)[:2000]
    bad = readings[1234]
    expected = replayed(loaded.policy, [r for r in readings if r is not bad])
    ingest = Engine.ingest

    def failing(self: Engine, reading: Reading) -> list[object]:
        if reading == bad:
            self.ledger.meters[reading.meter].last_t = reading.t  # half-applied before failing
            raise ZeroDivisionError("a bug")
        return ingest(self, reading)  # type: ignore[return-value]

    monkeypatch.setattr(Engine, "ingest", failing)
    daemon = Daemon(loaded, config)
    try:

        async def run() -> list[str]:
            raised = []
            for i in range(0, len(readings), 500):
                alerts, refused = await daemon._journal_batch([(r, None) for r in readings[i : i + 500]])
                raised += [a.id for a in alerts]
                assert refused == ([(bad, "the core failed on it: ZeroDivisionError: a bug")] if i == 1000 else [])
            return raised

        raised = asyncio.run(run())
    finally:
        daemon.store.close()
        daemon.lock.release()
    assert raised == expected
    state = tmp_path / "state"
    assert [b["why"] for b in journal_of(state, "rejected")] == ["the core failed on it: ZeroDivisionError: a bug"]
    assert journaled_readings(state) == [(r.meter, r.t) for r in readings if r is not bad]

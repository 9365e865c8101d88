"""The daemon is the authority on what is retained under its prefix: a forged 停电令 does not outlive its start.

Real mosquitto and `quotad run`, twice. The first run issues a genuine cutoff order (firm x over its daily limit).
While the daemon is away, someone leaves retained messages under its prefix: x's order tampered with, orders for a
firm without one, for a firm the policy does not have and on a deeper topic, a retained alert and notice, statuses
of no firm. Before issue 12 a forged order was shown as a real one for as long as the broker kept it: the daemon
rewrote only the order topics of firms with an order, when they changed. At its next start the daemon sets each
right: x's order as its journal has it, every other one cleared; what is not its own (a meter's retained reading,
topics outside its tree) is left alone.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from quotad.core.outputs import order_message
from quotad.shell.authority import corrections
from tests.brokers import Mosquitto
from tests.conftest import make_policy, policy_text, r, run
from tests.orders_help import end
from tests.shell.township import eventually

BASE = "quotad/t"
FORGED_ORDER = {
    "firm": "p",
    "firm_name": "纸厂",
    "alert_id": "t/p/rota_off_day/2010-10-20",
    "rule": "rota_off_day",
    "issued": "2010-10-20T09:00:00+08:00",
    "from": "2010-10-20",
    "until": "2010-12-31",
    "evidence": {},
}


def retained(broker: Mosquitto, wanted: str = f"{BASE}/#", quiet_s: float = 0.5) -> dict[str, str]:
    """What the broker keeps retained on `wanted`, as a new subscriber gets it."""
    found: dict[str, str] = {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"reader-{time.monotonic_ns()}")
    client.on_connect = lambda c, u, f, r, p: c.subscribe(wanted, 1)
    client.on_message = lambda c, u, m: found.__setitem__(m.topic, m.payload.decode()) if m.retain else None
    client.connect(broker.host, broker.port)
    client.loop_start()
    time.sleep(quiet_s)
    client.disconnect()
    client.loop_stop()
    return found


def publish(broker: Mosquitto, messages: list[tuple[str, str, bool]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"someone-{time.monotonic_ns()}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    for where, payload, retain in messages:
        client.publish(where, payload, qos=1, retain=retain).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


class Daemon:
    def __init__(self, directory: Path, port: int) -> None:
        (directory / "township.toml").write_text(policy_text(), encoding="utf-8")
        self.config = directory / "quotad.toml"
        self.config.write_text(
            f'policy = "township.toml"\nstate_dir = "{directory}/state"\n[mqtt]\nport = {port}\n'
            'client_id = "q-authority"\n[clock]\nstart = 2010-10-20T10:00:00+08:00\nspeed = 1\n',
            encoding="utf-8",
        )
        self.log = directory / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("QUOTAD_", "NOTIFY_", "WATCHDOG_"))}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "quotad", "run", "-c", str(self.config)], stdout=log, stderr=log, env=environ
            )
        runs = self.text().count("quotad serving")
        eventually(lambda: self.text().count("quotad serving") > runs, "the daemon serving")

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(30) == 0, self.text()
        self.process = None

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def test_a_restart_sets_right_every_forged_order_topic(tmp_path: Path) -> None:
    (tmp_path / "mq").mkdir()
    with Mosquitto(data_dir=tmp_path / "mq") as broker:
        daemon = Daemon(tmp_path, broker.port)
        try:
            daemon.start()
            readings = [("2010-10-20T09:00:00+08:00", 0.0), ("2010-10-20T09:30:00+08:00", 101.0)]  # over its 100 kWh
            meter = f"{BASE}/meters/x-m"
            publish(broker, [(meter, json.dumps({"ts": t, "energy_kwh": e}), False) for t, e in readings])
            eventually(lambda: f"{BASE}/orders/x" in retained(broker), "x's cutoff order retained")
            genuine = retained(broker)[f"{BASE}/orders/x"]
            assert json.loads(genuine)["rule"] == "firm_daily_limit"
            daemon.stop()

            tampered = json.dumps(dict(json.loads(genuine), until="2099-12-31"), ensure_ascii=False)
            forged = json.dumps(FORGED_ORDER, ensure_ascii=False)
            theirs = {  # not quotad's to touch: a meter's last reading, a topic outside quotad's tree
                f"{BASE}/meters/p-m": json.dumps({"ts": "2010-10-20T09:40:00+08:00", "energy_kwh": 5.0}),
                "elsewhere/t/orders/p": forged,
            }
            publish(broker, [
                (f"{BASE}/orders/x", tampered, True),
                (f"{BASE}/orders/p", forged, True),  # a firm without an order
                (f"{BASE}/orders/nobody", json.dumps(dict(FORGED_ORDER, firm="nobody")), True),  # not in the policy
                (f"{BASE}/orders/p/extra", forged, True),
                (f"{BASE}/alerts/violation/p", '{"id": "t/p/forged"}', True),  # quotad retains no alert
                (f"{BASE}/notices", '{"kind": "rota", "message": "明日全部停电"}', True),  # nor a notice
                (f"{BASE}/status/firms/nobody", '{"state": "cutoff"}', True),
                (f"{BASE}/status/bogus", "{}", True),
                *((where, payload, True) for where, payload in theirs.items()),
            ])  # fmt: skip
            assert len(retained(broker)) > 8

            daemon.start()

            def set_right() -> bool:
                now = retained(broker)
                forged_left = {t for t in now if t.startswith((f"{BASE}/orders/p", f"{BASE}/orders/nobody"))}
                return now.get(f"{BASE}/orders/x") == genuine and not forged_left

            eventually(set_right, "the forged order topics set right", 20.0)
            now = retained(broker, "#")
            daemon.stop()
        finally:
            daemon.kill()
    assert {t for t in now if "/orders/" in t and t.startswith(BASE)} == {f"{BASE}/orders/x"}
    assert now[f"{BASE}/orders/x"] == genuine
    for gone in ("alerts/violation/p", "notices", "status/firms/nobody", "status/bogus"):
        assert f"{BASE}/{gone}" not in now, gone
    for where, payload in theirs.items():
        assert now.get(where) == payload, where
    assert json.loads(now[f"{BASE}/status/firms/x"])["state"] == "cutoff"  # quotad's own statuses are there
    log = daemon.text()
    assert f"retained {BASE}/orders/p cleared" in log
    assert f"retained {BASE}/orders/x re-published as the journal has it" in log
    assert "Traceback" not in log


def test_what_is_set_right_and_what_is_left_alone() -> None:
    """The rules of `corrections`, on an engine with a standing order (x) and a lifted one (p)."""
    readings = [r("x-m", "2010-10-20 09:00", 0.0), r("x-m", "2010-10-20 09:30", 101.0)]  # over its daily limit
    readings += [r("p-m", "2010-10-20 09:00", 0.0), r("p-m", "2010-10-20 09:30", 60.0)]  # on its group's off day
    engine, _ = run(make_policy(meters=("x", "p")), readings)
    end(engine, "p", "站长", "核实后解除", "2010-10-20T10:00:00+08:00")
    genuine = order_message("quotad", "t", engine.orders["x"]).payload
    day = dt.date(2010, 10, 20)
    left = ["status/township", "status/firms/x", "status/daemon", "schedule/today", "daemon", "meters/p-m",
            "inspections/today", "escalations/x"]  # fmt: skip
    found = {f"{BASE}/{t}": b"anything" for t in left}
    wrong = ["orders/p", "orders/s", "orders/nobody", "orders/x/deeper", "alerts/violation/x", "notices",
             "status/firms/nobody", "status/x"]  # fmt: skip
    found |= {f"{BASE}/{t}": b"{}" for t in wrong}
    found |= {"quotad/other-town/orders/p": b"{}", f"{BASE}/orders/gone": b""}
    fixes = {m.topic.removeprefix(f"{BASE}/"): m.payload for m in corrections(engine, "quotad", day, found)}
    assert fixes == {"orders/x": genuine, **dict.fromkeys(wrong, "")}  # x's standing order was missing: published
    assert corrections(engine, "quotad", day, {f"{BASE}/orders/x": genuine.encode()}) == []  # as it should be
    ended = corrections(engine, "quotad", dt.date(2011, 1, 1), {f"{BASE}/orders/x": genuine.encode()})
    assert [(m.topic, m.payload, m.retain) for m in ended] == [(f"{BASE}/orders/x", "", True)]  # past its until

"""The daemon end to end: the simulated township's morning of 2010-10-20, enforced live.

Real mosquitto, real influxd (v1) or VictoriaMetrics (v2 write path), the simulator and `quotad run` as
processes. From 01:30 to 10:40 of the simulated day the plan is broken five ways (the paper mill draws power
on the seven firms' day, a workshop works on its rest day, a 15-minute interval passes 90% and 100% of the
load cap, the day is projected over the cap, a meter falls silent): those six alerts, no other.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.brokers import Mosquitto
from tests.services import Influx1, Victoria
from tests.shell.township import Collector, Township, eventually, township_files

EXPECTED = {
    "xx-town/rongsheng-paper/rota_off_day/2010-10-20",  # pending at 02:11 (a minute's use past its standby) ...
    "xx-town/rongsheng-paper/rota_off_day/2010-10-20/issued",  # ... issued a minute later, beyond its meter's 1%
    "xx-town/rongsheng-paper/escalation/1",  # its first violation: the first step of escalation
    "xx-town/w-003/rest_day/2010-10-20",
    "xx-town/w-003/rest_day/2010-10-20/issued",
    "xx-town/w-003/escalation/1",
    "xx-town/township/township_load/2010-10-20/0.9",
    "xx-town/township/township_load/2010-10-20/1.0",
    "xx-town/township/township_cap_projection/2010-10-20",
    "xx-town/w-005/meter_offline/2010-10-20/w-005-main",
}
V1 = '[influx]\napi = "v1"\nurl = "{url}"\nbucket = "quotad"'
V2 = '[influx]\napi = "v2"\nurl = "{url}"\nbucket = "quotad"\norg = "township"'


def delivered(collector: Collector, influx: Influx1) -> None:
    """Wait (bounded) until every expected alert reached MQTT and InfluxDB: delivery is asynchronous."""
    eventually(lambda: {a["id"] for a in collector.alerts()} >= EXPECTED, "every alert on MQTT")
    eventually(lambda: len(influx.query("SELECT id FROM quota_alert")) >= len(EXPECTED), "every alert stored")


def quotad_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quotad", *args], capture_output=True, text=True, timeout=60, check=False
    )


def journal_ids(state: Path) -> list[str]:
    """The alert ids the daemon raised, in order, from its journal."""
    with sqlite3.connect(state / "quotad.db") as db:
        rows = db.execute("SELECT body FROM events WHERE kind = 'reading' ORDER BY seq").fetchall()
    return [i for (body,) in rows for i in json.loads(body)["raised"]]


class NotifySocket:
    """A fake systemd NOTIFY_SOCKET: records every datagram the daemon sends."""

    def __init__(self, path: Path) -> None:
        self.path, self.received = path, []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.running = True
        self.thread.start()

    def _read(self) -> None:
        while self.running:
            try:
                self.received.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def broker(tmp_path: Path) -> Mosquitto:
    (tmp_path / "mosquitto").mkdir()
    with Mosquitto(data_dir=tmp_path / "mosquitto") as running:
        yield running


def test_a_morning_enforced_live_with_outages_reload_and_watchdog(tmp_path: Path, broker: Mosquitto) -> None:
    with Influx1(tmp_path / "influx") as influx:
        config = township_files(tmp_path, broker.port, V1.format(url=influx.url))
        town = Township(tmp_path, config)
        collector = Collector(broker, ["quotad/xx-town/#"])
        notify = NotifySocket(tmp_path / "notify.sock")
        follower: subprocess.Popen[str] | None = None
        try:
            town.start_simulator()
            time.sleep(1.0)
            town.start_daemon(env={"NOTIFY_SOCKET": str(notify.path)})
            follower = subprocess.Popen(
                [sys.executable, "-m", "quotad", "alerts", "--follow", "--json", "-c", str(config)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            town.wait_until("2010-10-20 03:00")
            # a good reload, then a broken one: the running policy is kept
            policy = tmp_path / "township.toml"
            good = policy.read_text(encoding="utf-8")
            policy.write_text(good.replace('name = "××镇"', 'name = "××镇（新）"'), encoding="utf-8")
            town.daemon.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
            town.wait_until("2010-10-20 03:30")
            policy.write_text(good.replace("daily_cap_kwh = 54611", "daily_cap_kwh = -5"), encoding="utf-8")
            town.daemon.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
            town.wait_until("2010-10-20 04:00")
            policy.write_text(good, encoding="utf-8")
            # the database down for a long stretch, the broker for a shorter one inside it (shorter than the
            # meters' offline window: its MQTT meters cannot report while it is down)
            influx.stop()
            town.wait_until("2010-10-20 05:30")
            broker.stop()
            town.wait_until("2010-10-20 05:55")
            broker.start()
            town.wait_until("2010-10-20 08:45")
            influx.start()
            town.wait_until("2010-10-20 10:40")
            delivered(collector, influx)
            status = quotad_cli("status", "-c", str(config))
            lift = quotad_cli("order", "lift", "w-003", "--reason", "整改到位，镇里同意复产", "-c", str(config))
            time.sleep(0.5)
            assert town.stop_daemon(signal.SIGTERM) == 0
            follower.send_signal(signal.SIGINT)
            followed, _ = follower.communicate(timeout=10)
            time.sleep(0.5)
        finally:
            if follower is not None and follower.poll() is None:  # a failure above must not leave it running
                follower.kill()
                follower.communicate()
            town.close()
            notify.close()
            collector.close()
        assert status.returncode == 0, status.stderr
        assert "荣生公司造纸厂" in status.stdout
        assert "停电令：" in status.stdout
        assert "错时供电停电日用电" in status.stdout  # the order's rule, in words
        assert "荣生公司造纸厂 已下达 自 2010-10-20 起至 2010-12-31（错时供电停电日用电）" in status.stdout  # its state
        assert lift.returncode == 0, lift.stderr
        assert "through the running daemon" in lift.stdout
        assert collector.last("quotad/xx-town/orders/w-003") == ""  # the lifted order's retained topic cleared
        assert {json.loads(line)["id"] for line in followed.splitlines()} == EXPECTED  # quotad alerts --follow
        log = town.log()
        assert "lift w-003 -> lifted by " in log
        assert "policy reloaded" in log
        assert log.count("township.feeder_meters: empty") == 2  # a warning, logged at start and at the good reload
        assert "reload refused:" in log
        assert "township.daily_cap_kwh" in log
        assert "Traceback" not in log
        raised = journal_ids(tmp_path / "state")
        assert set(raised) == EXPECTED
        assert len(raised) == len(EXPECTED)  # each once
        on_mqtt = [a["id"] for a in collector.alerts()]
        assert sorted(set(on_mqtt)) == sorted(EXPECTED)
        assert list(dict.fromkeys(on_mqtt)) == raised  # in the order raised, despite the outage
        stored = [row["id"] for row in influx.query("SELECT id FROM quota_alert")]
        assert sorted(stored) == sorted(EXPECTED)
        assert influx.query("SELECT count(energy_kwh) FROM meter_reading")[0]["count"] > 26 * 100
        assert {row["firm"] for row in influx.query("SELECT * FROM cutoff_order")} == {"rongsheng-paper", "w-003"}
        assert influx.query("SELECT count(day_kwh) FROM firm_energy")[0]["count"] > 26
        assert collector.last("quotad/xx-town/daemon") == "offline"
        order = json.loads(collector.last("quotad/xx-town/orders/rongsheng-paper") or "{}")
        assert order["rule"] == "rota_off_day"
        assert order["evidence"]["meters"][0]["meter"] == "rs-main"
        assert order["evidence"]["consumed_kwh"] > 50
        township = json.loads(collector.last("quotad/xx-town/status/township") or "{}")
        assert township["cap_kwh"] == 54611
        messages = notify.received
        assert "READY=1" in messages
        assert any(m.startswith("WATCHDOG=1\nSTATUS=2010-10-20: ") for m in messages)
        assert messages[-1] == "STOPPING=1"


def test_kill_9_at_random_moments_loses_and_repeats_nothing(tmp_path: Path, broker: Mosquitto) -> None:
    rng = random.Random(20101020)
    kills = sorted(rng.sample(["02:20", "03:40", "05:10", "06:40", "07:50", "08:20", "09:30"], 4))
    with Influx1(tmp_path / "influx") as influx:
        town = Township(tmp_path, township_files(tmp_path, broker.port, V1.format(url=influx.url)))
        collector = Collector(broker, ["quotad/xx-town/alerts/#"])
        try:
            town.start_simulator()
            time.sleep(1.0)
            town.start_daemon()
            for moment in kills:
                town.wait_until(f"2010-10-20 {moment}")
                assert town.stop_daemon(signal.SIGKILL) == -signal.SIGKILL
                time.sleep(0.3)
                town.start_daemon()
            town.wait_until("2010-10-20 10:40")
            delivered(collector, influx)
            assert town.stop_daemon(signal.SIGTERM) == 0
            time.sleep(0.5)
        finally:
            town.close()
            collector.close()
        raised = journal_ids(tmp_path / "state")
        assert sorted(raised) == sorted(EXPECTED)  # none lost, none raised twice
        alerts = collector.alerts()
        assert {a["id"] for a in alerts} == EXPECTED
        by_id: dict[str, str] = {}
        for alert in alerts:  # a re-delivery after a kill is the same message, never a different alert
            assert by_id.setdefault(alert["id"], json.dumps(alert, sort_keys=True)) == json.dumps(alert, sort_keys=True)
        assert sorted(row["id"] for row in influx.query("SELECT id FROM quota_alert")) == sorted(EXPECTED)
        assert town.log().count("state restored") == len(kills) + 1


def test_v2_write_path_and_order_lift_with_the_daemon_stopped(tmp_path: Path, broker: Mosquitto) -> None:
    with Victoria(tmp_path / "victoria") as victoria:
        config = township_files(tmp_path, broker.port, V2.format(url=victoria.url))
        town = Township(tmp_path, config)
        collector = Collector(broker, ["quotad/xx-town/orders/#"])
        try:
            town.start_simulator()
            time.sleep(1.0)
            town.start_daemon()
            town.wait_until("2010-10-20 04:30")
            assert town.stop_daemon() == 0
            lift = quotad_cli("order", "lift", "rongsheng-paper", "--reason", "县里批准复产", "-c", str(config))
            assert lift.returncode == 0, lift.stderr
            said = "荣生公司造纸厂（rongsheng-paper） (xx-town/rongsheng-paper/rota_off_day/2010-10-20) is now 已解除"
            assert said in lift.stdout
            town.start_daemon()  # it delivers the lift it finds in its journal
            town.wait_until("2010-10-20 05:00")
            assert town.stop_daemon() == 0
            time.sleep(0.5)
        finally:
            town.close()
            collector.close()
        assert collector.last("quotad/xx-town/orders/rongsheng-paper") == ""  # the retained order cleared
        alerts = victoria.export('{__name__="quota_alert_consumed_kwh"}')
        assert {s["metric"]["rule"] for s in alerts} >= {"rota_off_day"}
        readings = victoria.export('{__name__="meter_reading_energy_kwh"}')
        assert len({s["metric"]["meter"] for s in readings}) == 26
        lifted = victoria.export('{__name__="cutoff_order_lifted", firm="rongsheng-paper"}')
        values = [v for s in lifted for v in s["values"]]
        assert set(values) == {0, 1}  # pending, issued beyond its meter's accuracy, then lifted
        assert values[-1] == 1


def test_broker_and_database_down_at_once_with_a_restart_in_between(tmp_path: Path, broker: Mosquitto) -> None:
    """Both peers down together, the daemon restarted while they are down: afterwards every alert arrives on
    both, in the order raised, each id once in the journal and in InfluxDB."""
    with Influx1(tmp_path / "influx") as influx:
        town = Township(tmp_path, township_files(tmp_path, broker.port, V1.format(url=influx.url)))
        collector = Collector(broker, ["quotad/xx-town/alerts/#"])
        try:
            town.start_simulator()
            time.sleep(1.0)
            town.start_daemon()
            town.wait_until("2010-10-20 03:00")
            broker.stop()
            influx.stop()
            town.wait_until("2010-10-20 03:15")
            assert town.stop_daemon(signal.SIGTERM) == 0  # a clean stop with both peers down
            town.start_daemon()
            town.wait_until("2010-10-20 03:40")  # short for the broker: at 900x paho's reconnect backoff of a
            broker.start()  # few real seconds is an hour of simulated silence for the MQTT meters
            town.wait_until("2010-10-20 04:45")
            influx.start()
            town.wait_until("2010-10-20 10:40")
            delivered(collector, influx)
            assert town.stop_daemon(signal.SIGTERM) == 0
            time.sleep(0.5)
        finally:
            town.close()
            collector.close()
        raised = journal_ids(tmp_path / "state")
        assert sorted(raised) == sorted(EXPECTED)
        on_mqtt = [a["id"] for a in collector.alerts()]
        assert list(dict.fromkeys(on_mqtt)) == raised
        assert sorted(row["id"] for row in influx.query("SELECT id FROM quota_alert")) == sorted(EXPECTED)
        assert "Traceback" not in town.log()

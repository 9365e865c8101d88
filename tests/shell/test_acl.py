"""The daemon behind a locked-down broker: a password file, and an ACL that lets quotad write only the topics SPEC
says it publishes and read only its meters' topics.

Real mosquitto (`log_type all`, so its log shows every connection's user, every SUBACK, every delivery and every
denial), `quotad simulate` publishing the MQTT meters as the meter user (its credentials come from the daemon file,
here overridden by `QUOTAD_MQTT__*` variables), `quotad run` as the quotad user, and an inspector who may only read
what quotad publishes.

What mosquitto 2.0 does with an ACL (seen in its log, relied on below): a PUBLISH the ACL forbids is logged as
`Denied PUBLISH from <client>` and dropped, yet acknowledged with an ordinary PUBACK in MQTT 3.1.1 (the publisher
cannot tell); a SUBSCRIBE the ACL forbids is granted (SUBACK with QoS 1) and the messages are then silently not
delivered. So the log is the only witness that nothing quotad sends is denied, and a meter topic quotad may not read
shows up as a silent meter, not as a refused subscription.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.brokers import Mosquitto, publish
from tests.shell.township import Township, eventually, township_files

BASE = "quotad/xx-town"  # P/T: the default prefix, the example township
START = "2010-10-20T05:30:00+08:00"
PASSWORDS = {"quotad": "q-Secret-1", "meter": "m-Secret-2", "inspector": "i-Secret-3"}
# SPEC "MQTT topics": every topic quotad publishes, as narrow as the table allows (severities from "Rules and alerts")
PUBLISHED = [
    *(f"{BASE}/alerts/{severity}/+" for severity in ("notice", "warning", "violation", "breach")),
    f"{BASE}/status/township",
    f"{BASE}/status/firms/+",
    f"{BASE}/schedule/today",
    f"{BASE}/orders/+",
    f"{BASE}/escalations/+",
    f"{BASE}/inspections/+",
    f"{BASE}/notices",
    f"{BASE}/daemon",
]
FORGED = f"{BASE}/alerts/violation/shengda"
# raised between 05:30 and about 08:40 of the simulated day: the township's load at 08:00-08:15, and a workshop read
# over MQTT working on its rest day (when depends on how soon quotad's first reading came: the test waits for them)
REQUIRED = {
    "xx-town/w-003/rest_day/2010-10-20",
    "xx-town/township/township_load/2010-10-20/0.9",
    "xx-town/township/township_load/2010-10-20/1.0",
}
HIDDEN = f"{BASE}/meters/g-007-main"  # the meter topic the second test's ACL withholds from quotad
OFFLINE = "xx-town/g-007/meter_offline/2010-10-20/g-007-main"  # its meter, given 1800 s, then is offline


def meter_topics(policy: Path) -> list[str]:
    """The MQTT meters' topics, read from the policy file itself (SPEC default: `P/T/meters/<meter id>`)."""
    data = tomllib.loads(policy.read_text(encoding="utf-8"))
    return [m["mqtt"].get("topic", f"{BASE}/meters/{m['id']}") for m in data["meters"] if "mqtt" in m]


def acl(meters: list[str], quotad_reads: list[str]) -> str:
    """quotad writes what it publishes and reads `quotad_reads`; the meters write their topics; the inspector reads
    what quotad publishes. Nothing else for anyone (mosquitto denies what no line grants)."""
    return "\n".join([
        "user quotad",
        *(f"topic write {t}" for t in PUBLISHED),
        *(f"topic read {t}" for t in quotad_reads),
        "",
        "user meter",
        *(f"topic write {t}" for t in meters),
        "",
        "user inspector",
        *(f"topic read {t}" for t in PUBLISHED),
        "",
    ])  # fmt: skip


def secret(path: Path, user: str) -> Path:
    path.write_text(PASSWORDS[user] + "\n", encoding="utf-8")
    os.chmod(path, 0o600)
    return path


class Inspector:
    """An MQTT client logged in as the inspector, subscribed to everything under P/T (the ACL filters)."""

    def __init__(self, broker: Mosquitto) -> None:
        self.messages: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="inspector-phone", clean_session=False)
        self.client.username_pw_set("inspector", PASSWORDS["inspector"])
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(f"{BASE}/#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload.decode()))

    def ids(self) -> set[str]:
        return {a["id"] for a in self.alerts()}

    def topics(self) -> set[str]:
        with self.lock:
            return {t for t, _ in self.messages}

    def alerts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(p) for t, p in self.messages if t.startswith(f"{BASE}/alerts/")]

    def last(self, topic: str) -> str | None:
        with self.lock:
            found = [p for t, p in self.messages if t == topic]
        return found[-1] if found else None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def journal_ids(state: Path) -> list[str]:
    """The alert ids the daemon raised, in order, from its journal."""
    with sqlite3.connect(state / "quotad.db") as db:
        rows = db.execute("SELECT body FROM events WHERE kind = 'reading' ORDER BY seq").fetchall()
    return [i for (body,) in rows for i in json.loads(body)["raised"]]


def users_by_client(log: str) -> dict[str, str]:
    """client id → the user it logged in as, from mosquitto's `New client connected ... as ID (..., u'USER')`."""
    return dict(re.findall(r"New client connected from \S+ as (\S+) \([^)]*u'([^']+)'\)", log))


def delivered_to(log: str, client: str) -> set[str]:
    """The topics mosquitto sent to `client`."""
    return set(re.findall(rf"Sending PUBLISH to {re.escape(client)} \([^']*'([^']+)'", log))


def township(tmp_path: Path, broker_port: int, offline_after: dict[str, int] | None = None) -> Township:
    """The e2e township (no database), its daemon file logging in as quotad; `offline_after` shortens a meter's
    offline window (meter id → seconds)."""
    config = township_files(tmp_path, broker_port, "", start=START)
    text = config.read_text(encoding="utf-8")
    assert 'client_id = "quotad-test"\n' in text
    config.write_text(
        text.replace('client_id = "quotad-test"\n', 'client_id = "quotad-test"\nusername = "quotad"\n'
                     'password_file = "quotad.pass"\n'),
        encoding="utf-8",
    )  # fmt: skip
    secret(tmp_path / "quotad.pass", "quotad")
    policy = tmp_path / "township.toml"
    for meter, seconds in (offline_after or {}).items():
        text = policy.read_text(encoding="utf-8")
        old = f'id = "{meter}"\noffline_after_s = 10800'
        assert old in text
        policy.write_text(text.replace(old, f'id = "{meter}"\noffline_after_s = {seconds}'), encoding="utf-8")
    return Township(tmp_path, config)


def start(town: Township, tmp_path: Path) -> None:
    """The simulator, logged in as the meter user (the same daemon file, its [mqtt] login overridden), then quotad."""
    meter_pass = secret(tmp_path / "meter.pass", "meter")
    env = {"QUOTAD_MQTT__USERNAME": "meter", "QUOTAD_MQTT__PASSWORD_FILE": str(meter_pass)}
    town.simulator = town._spawn("simulate", env=env, log="simulator.log")
    clock = tmp_path / "state" / "clock.json"  # the simulated clock starts: the simulator is up (slow when loaded)
    eventually(lambda: clock.exists() and clock.stat().st_size > 0, "the simulator started")
    time.sleep(0.3)
    town.start_daemon()


def test_the_daemon_works_with_exactly_the_rights_it_needs(tmp_path: Path) -> None:
    (tmp_path / "mosquitto").mkdir()
    meters = meter_topics(Path(__file__).resolve().parents[2] / "config" / "township.toml")
    assert len(meters) == 8  # the example township's MQTT meters (its workshops read over DL/T 645)
    rules = acl(meters, quotad_reads=meters)
    inspector_file = tmp_path / "inspector.toml"
    with Mosquitto(data_dir=tmp_path / "mosquitto", users=PASSWORDS, acl=rules, extra="log_type all") as broker:
        town = township(tmp_path, broker.port)
        inspector_file.write_text(
            f'policy = "township.toml"\nstate_dir = "{tmp_path}/inspector-state"\n[mqtt]\nport = {broker.port}\n'
            f'client_id = "inspector-cli"\nusername = "inspector"\npassword_file = "inspector.pass"\n',
            encoding="utf-8",
        )
        secret(tmp_path / "inspector.pass", "inspector")
        inspector = Inspector(broker)
        try:
            start(town, tmp_path)
            town.wait_until("2010-10-20 07:00")
            status = subprocess.run(
                [sys.executable, "-m", "quotad", "status", "-c", str(inspector_file)],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert status.returncode == 0, status.stderr  # the inspector's own tools work with the inspector's login
            # the inspector tries to forge an alert: the broker must deny it
            inspector.client.publish(FORGED, '{"id": "forged"}', qos=1).wait_for_publish(5)
            eventually(lambda: inspector.ids() >= REQUIRED, "the expected alerts at the inspector")
            online = inspector.last(f"{BASE}/daemon")
            assert town.stop_daemon(signal.SIGTERM) == 0
            raised = journal_ids(tmp_path / "state")
            # every alert raised reaches the inspector (a denied publish is PUBACKed all the same: quotad would
            # count it delivered, so only this shows none was lost)
            eventually(lambda: inspector.ids() == set(raised), "every alert raised at the inspector", 10.0)
        finally:
            town.close()
            inspector.close()
        log = broker.log_path.read_text(encoding="utf-8", errors="replace")

    # every client logged in, each as its own user
    assert "not authorised" not in log
    users = users_by_client(log)
    assert users["quotad-test"] == "quotad"  # the sink
    assert users["quotad-test-meters"] == "quotad"  # the meter subscriber
    assert users["quotad-sim-xx-town"] == "meter"
    assert users["inspector-phone"] == "inspector"
    assert {u for c, u in users.items() if c.startswith("inspector-cli-status-")} == {"inspector"}
    # the ACL is in force: the forgery is denied (and never reached anyone), and it is the only denial
    denied = [line for line in log.splitlines() if "Denied" in line]
    assert len(denied) == 1, denied
    assert re.search(rf"Denied PUBLISH from inspector-phone \(d0, q1, r0, m\d+, '{FORGED}'", denied[0])
    assert all('"forged"' not in p for _, p in inspector.messages)
    # quotad subscribed to each meter topic, granted QoS 1, and mosquitto delivered each to it
    for topic in meters:
        assert f"quotad-test-meters 1 {topic}\n" in log
    assert delivered_to(log, "quotad-test-meters") == set(meters)
    # the inspector reads what quotad publishes, never a meter
    assert not {t for t in inspector.topics() if t.startswith(f"{BASE}/meters/")}
    # quotad became ready (`online` once subscribed to every meter topic), and said `offline` on its way out
    daemon_log = town.log()
    assert "quotad serving xx-town: 26 meters" in daemon_log
    assert "refused the subscription" not in daemon_log
    assert "Traceback" not in daemon_log
    assert online == "online"
    assert inspector.last(f"{BASE}/daemon") == "offline"
    # the MQTT meters were read: a firm whose only meter is on MQTT has consumption; a workshop on MQTT working on
    # its rest day is caught, and its cutoff order published
    firm = json.loads(inspector.last(f"{BASE}/status/firms/g-005") or "{}")
    assert firm["consumed_kwh"] > 0
    assert set(raised) >= REQUIRED
    assert len(raised) == len(set(raised))
    order = json.loads(inspector.last(f"{BASE}/orders/w-003") or "{}")
    assert order["rule"] == "rest_day"
    # each kind of topic quotad publishes got through
    assert {f"{BASE}/status/township", f"{BASE}/schedule/today", f"{BASE}/daemon"} <= inspector.topics()
    assert "quotad：运行中" in status.stdout  # `quotad status`, as the inspector


def test_a_meter_topic_quotad_may_not_read_is_a_silent_meter(tmp_path: Path) -> None:
    (tmp_path / "mosquitto").mkdir()
    meters = meter_topics(Path(__file__).resolve().parents[2] / "config" / "township.toml")
    rules = acl(meters, quotad_reads=[t for t in meters if t != HIDDEN])
    with Mosquitto(data_dir=tmp_path / "mosquitto", users=PASSWORDS, acl=rules, extra="log_type all") as broker:
        town = township(tmp_path, broker.port, offline_after={"g-007-main": 1800})
        inspector = Inspector(broker)
        try:
            start(town, tmp_path)
            eventually(lambda: OFFLINE in inspector.ids(), "g-007-main reported offline")
            assert town.daemon is not None
            assert town.daemon.poll() is None  # it runs on
            assert town.stop_daemon(signal.SIGTERM) == 0
        finally:
            town.close()
            inspector.close()
        log = broker.log_path.read_text(encoding="utf-8", errors="replace")

    # mosquitto 2.0 grants the forbidden subscription (QoS 1 in the SUBACK), then delivers nothing on it
    assert f"quotad-test-meters 1 {HIDDEN}\n" in log
    assert re.search(rf"Received PUBLISH from quotad-sim-xx-town \([^']*'{re.escape(HIDDEN)}'", log)
    assert delivered_to(log, "quotad-test-meters") == set(meters) - {HIDDEN}
    assert "Denied" not in log  # a read the ACL withholds is not logged
    # so quotad cannot tell a withheld topic from a silent meter: it reports the meter offline, and goes on
    daemon_log = town.log()
    assert "quotad serving xx-town: 26 meters" in daemon_log
    assert "Traceback" not in daemon_log
    assert OFFLINE in daemon_log
    assert "refused the subscription" not in daemon_log  # what quotad would say, had the broker refused it
    firm = json.loads(inspector.last(f"{BASE}/status/firms/g-007") or "{}")
    other = json.loads(inspector.last(f"{BASE}/status/firms/g-005") or "{}")
    assert firm["consumed_kwh"] == 0
    assert other["consumed_kwh"] > 0
    assert inspector.last(f"{BASE}/daemon") == "offline"


# ---- the ACL and the configuration that deploy/ ships -----------------------------------------------------------

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
SHIPPED_USERS = {**PASSWORDS, "g-005-main": "g5-Secret-4", "mallory": "m-Secret-5"}


class ShippedBroker(Mosquitto):
    """mosquitto run from deploy/mosquitto/quotad.conf as shipped, its ACL file the shipped one, unchanged; only
    what a test machine needs is put in: the port on loopback, the password file made here, the log, the user."""

    def _write_config(self) -> None:
        text = (DEPLOY / "quotad.conf").read_text(encoding="utf-8")
        for shipped, here in (
            ("listener 1883\n", f"listener {self.port} 127.0.0.1\n"),
            ("/etc/mosquitto/quotad.passwd\n", f"{self._write_passwords()}\n"),
            ("/etc/mosquitto/quotad.acl\n", f"{DEPLOY / 'quotad.acl'}\n"),
        ):
            assert shipped in text, shipped
            text = text.replace(shipped, here)
        self.conf.write_text(
            f"{text}\npersistence true\npersistence_location {self.dir}/\nlog_dest stderr\nlog_type all\n"
            f"user {getpass.getuser()}\n",
            encoding="utf-8",
        )


def as_user(broker: Mosquitto, user: str, messages: list[tuple[str, str, bool]]) -> None:
    """Publish (topic, payload, retain) each at QoS 1 as `user` (MQTT 3.1.1: a denied PUBLISH is acknowledged too)."""
    publish(broker, messages, user=user, password=SHIPPED_USERS[user])


def test_the_shipped_acl_lets_only_quotad_publish_under_its_prefix(tmp_path: Path) -> None:
    (tmp_path / "mosquitto").mkdir()
    order = {"firm": "g-001", "firm_name": "明辉服装厂", "alert_id": "x", "rule": "monthly_quota", "from": "2010-10-20"}
    forged_order = json.dumps({**order, "issued": "2010-10-20T05:00:00+08:00", "until": "2010-12-31"})
    forged_alert = json.dumps({"id": "xx-town/g-001/forged", "severity": "violation", "message": "伪造"})
    forgeries = [(f"{BASE}/orders/g-001", forged_order, True), (f"{BASE}/alerts/violation/g-001", forged_alert, False),
                 (f"{BASE}/daemon", "offline", True)]  # fmt: skip
    with ShippedBroker(data_dir=tmp_path / "mosquitto", users=SHIPPED_USERS) as broker:
        as_user(broker, "mallory", forgeries)  # before quotad ever ran
        town = township(tmp_path, broker.port)
        inspector = Inspector(broker)
        try:
            town.start_daemon()
            eventually(lambda: "quotad serving" in town.log(), "the daemon serving")
            eventually(lambda: inspector.last(f"{BASE}/daemon") == "online", "quotad's own publication arrives")
            now = town.sim_now() // 1_000_000
            as_user(broker, "g-005-main", [(f"{BASE}/meters/g-005-main", json.dumps({"ts": t, "energy_kwh": e}), False)
                                           for t, e in ((now - 600, 100.0), (now - 60, 103.5))])  # fmt: skip
            as_user(broker, "g-005-main", [(f"{BASE}/meters/g-006-main", json.dumps({"ts": now, "energy_kwh": 9e3}),
                                            False)])  # another meter's topic  # fmt: skip
            as_user(broker, "inspector", forgeries)
            as_user(broker, "mallory", forgeries)

            def g005() -> float:
                return float(json.loads(inspector.last(f"{BASE}/status/firms/g-005") or "{}").get("consumed_kwh", 0))

            eventually(lambda: g005() == 3.5, "the meter's own readings reach quotad")
            login = {"QUOTAD_MQTT__USERNAME": "inspector",
                     "QUOTAD_MQTT__PASSWORD_FILE": str(secret(tmp_path / "i.pass", "inspector"))}  # fmt: skip
            status = subprocess.run(
                [sys.executable, "-m", "quotad", "status", "-c", str(town.config)], capture_output=True, text=True,
                timeout=60, check=False, env={**os.environ, **login},
            )  # fmt: skip
            assert town.stop_daemon(signal.SIGTERM) == 0
        finally:
            town.close()
            inspector.close()
        log = broker.log_path.read_text(encoding="utf-8", errors="replace")

    # every forgery, from any user but quotad, was refused; the meter's write to another meter's topic too
    denied = [line for line in log.splitlines() if "Denied PUBLISH" in line]
    by = {re.search(r"Denied PUBLISH from (\S+?)-\d+ ", line)[1] for line in denied}  # type: ignore[index]
    assert by == {"mallory", "inspector", "g-005-main"}, denied
    assert len(denied) == 3 * len(forgeries) + 1, denied  # mallory's before and after quotad started, the inspector's
    assert not [line for line in log.splitlines() if "Denied" in line and "quotad-test" in line]
    assert all("forged" not in payload and "伪造" not in payload for _, payload in inspector.messages)
    assert inspector.last(f"{BASE}/orders/g-001") is None
    assert inspector.last(f"{BASE}/meters/g-006-main") is None
    assert f"{BASE}/meters/g-005-main" in inspector.topics()  # inspectors read everything under the prefix
    # quotad's publications all arrived: its state, the statuses; the inspector's `quotad status` shows no forgery
    assert inspector.last(f"{BASE}/daemon") == "offline"  # said by quotad on its way out
    assert status.returncode == 0, status.stderr
    assert "quotad：运行中" in status.stdout
    assert "停电令：无" in status.stdout
    assert "无法解析" not in status.stdout
    assert "Traceback" not in town.log()

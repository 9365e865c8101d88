"""`quotad alerts --follow` across a broker restart: the inspector's view loses no alert and shows each once.

A real mosquitto and the real command as a process. Alerts are published the moment the broker is back, before
the follower has reconnected (its first retry waits a second): with a clean session they would be lost.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.brokers import Mosquitto
from tests.shell.township import eventually

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "quotad/xx-town/alerts/warning/w-005"


def config(directory: Path, port: int) -> Path:
    path = directory / "quotad.toml"
    path.write_text(
        f'policy = "{ROOT / "config" / "township.toml"}"\nstate_dir = "{directory}/state"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nclient_id = "quotad-test"\n',
        encoding="utf-8",
    )
    return path


def publish(port: int, payloads: list[str]) -> None:
    """Publish at QoS 1 and wait for each PUBACK: the broker holds the message when this returns."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"inspector-test-{time.monotonic_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(TOPIC, payload, qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


def alert(i: int) -> str:
    return json.dumps({"id": f"xx-town/w-005/test/{i}", "severity": "warning", "message": f"alert {i}"})


def follow(path: Path) -> subprocess.Popen[str]:
    follower = subprocess.Popen(
        [sys.executable, "-m", "quotad", "alerts", "--follow", "--json", "-c", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.5)  # connected and subscribed
    return follower


def stop(follower: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[list[str], str]:
    follower.send_signal(sig)
    out, err = follower.communicate(timeout=15)
    assert follower.returncode == 0, err
    return [json.loads(line)["id"] for line in out.splitlines()], err


def test_alerts_published_while_the_follower_reconnects_are_shown_once_each(tmp_path: Path) -> None:
    (tmp_path / "mq").mkdir()
    with Mosquitto(data_dir=tmp_path / "mq") as broker:
        follower = follow(config(tmp_path, broker.port))
        publish(broker.port, [alert(0), alert(1)])
        broker.stop()  # mosquitto saves the follower's session
        time.sleep(1.0)
        broker.start()
        publish(broker.port, [alert(2), "not json", alert(3), alert(1)])  # alert 1 again: delivery is at least once
        time.sleep(3.0)  # reconnected
        publish(broker.port, [alert(4)])
        ids, err = stop(follower)
        log = broker.log_tail(20000)
    assert ids == [f"xx-town/w-005/test/{i}" for i in range(5)]
    assert "lost" in err, err
    assert "is back" in err, err
    assert "session" not in err, err
    assert "Traceback" not in err
    assert log.count("quotad-test-alerts-") >= 2  # the follower's two connections, by its own client id


def test_a_broker_that_lost_the_session_is_said_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "mq1").mkdir()
    (tmp_path / "mq2").mkdir()
    first = Mosquitto(data_dir=tmp_path / "mq1").start()
    try:
        follower = follow(config(tmp_path, first.port))
        publish(first.port, [alert(0)])
    finally:
        first.stop()
    with Mosquitto(port=first.port, data_dir=tmp_path / "mq2") as second:  # a new broker: no saved session
        eventually(lambda: "quotad-test-alerts-" in second.log_tail(20000), "the follower reconnected")
        time.sleep(0.5)  # subscribed again
        publish(second.port, [alert(1)])
        ids, err = stop(follower)
    assert ids == ["xx-town/w-005/test/0", "xx-town/w-005/test/1"]
    assert "lost this follower's session" in err, err
    assert "Traceback" not in err


def test_sigterm_ends_the_follower_and_its_session_as_ctrl_c_does(tmp_path: Path) -> None:
    (tmp_path / "mq").mkdir()
    with Mosquitto(data_dir=tmp_path / "mq") as broker:
        follower = follow(config(tmp_path, broker.port))
        publish(broker.port, [alert(0), alert(1)])
        time.sleep(0.5)
        ids, err = stop(follower, signal.SIGTERM)
        log = broker.log_tail(20000)
    assert ids == ["xx-town/w-005/test/0", "xx-town/w-005/test/1"]
    assert "Traceback" not in err
    # an ended session (DISCONNECT), not a dropped socket, which would leave the broker queueing alerts for an hour
    assert re.search(r"Client quotad-test-alerts-[0-9a-f]+ disconnected\.", log), log
    assert not re.search(r"quotad-test-alerts-[0-9a-f]+ closed its connection", log), log

"""The retained statuses and systemd's `STATUS=` speak of the township's event time (SPEC "Time and energy": the
daemon's now is the latest reading it accepted), not of the daemon's clock.

Real mosquitto and `quotad run`. The daemon's simulated clock resumes from `state/clock.json`, anchored twenty real
minutes ago at 360 times real time: it reads five days after the readings the meters send (a recorded day fed in, or
a daemon that was stopped a while). The statuses said that later day, with 0 kWh (issue 12: `2026-12-04: 0 of 54611
kWh`); they must say the readings' day and what was used on it.
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

from quotad.schedule.calendar import to_micros
from tests.brokers import Mosquitto
from tests.conftest import policy_text
from tests.shell.test_daemon_e2e import NotifySocket
from tests.shell.township import Collector, eventually

START = "2010-10-19T08:00:00+08:00"


def test_statuses_and_systemd_status_give_the_day_of_the_readings(tmp_path: Path) -> None:
    (tmp_path / "mq").mkdir()
    (tmp_path / "township.toml").write_text(policy_text(), encoding="utf-8")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    start = to_micros(dt.datetime.fromisoformat(START))
    (state / "clock.json").write_text(json.dumps({"start": start, "anchor": time.time() - 1200}), encoding="utf-8")
    with Mosquitto(data_dir=tmp_path / "mq") as broker:
        config = tmp_path / "quotad.toml"
        config.write_text(
            f'policy = "township.toml"\nstate_dir = "{state}"\n[mqtt]\nport = {broker.port}\nclient_id = "q-time"\n'
            f"[clock]\nstart = {START}\nspeed = 360\n",
            encoding="utf-8",
        )
        collector = Collector(broker, ["quotad/t/status/#"])
        notify = NotifySocket(tmp_path / "notify.sock")
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("QUOTAD_", "NOTIFY_", "WATCHDOG_"))}
        log = (tmp_path / "daemon.log").open("ab")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "quotad", "run", "-c", str(config)],
            stdout=log, stderr=log, env={**environ, "NOTIFY_SOCKET": str(notify.path)},
        )  # fmt: skip
        meter = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="meter-p")
        try:
            eventually(lambda: any("READY=1" in d for d in notify.received), "READY=1")
            meter.connect(broker.host, broker.port)
            meter.loop_start()
            for ts, kwh in (("2010-10-19T08:05:00+08:00", 100.0), ("2010-10-19T08:10:00+08:00", 130.0)):
                body = json.dumps({"ts": ts, "energy_kwh": kwh})
                meter.publish("quotad/t/meters/p-m", body, qos=1).wait_for_publish(5)

            def town() -> dict[str, object]:
                return json.loads(collector.last("quotad/t/status/township") or "{}")  # type: ignore[no-any-return]

            eventually(lambda: town().get("consumed_kwh") == 30.0, "the township's status counts the readings")
            eventually(lambda: any("STATUS=2010-10-19: 30 of 100000 kWh" in d for d in notify.received), "STATUS=")
        finally:
            meter.loop_stop()
            meter.disconnect()
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(30)
            log.close()
            collector.close()
            notify.close()
    assert code == 0
    assert town()["day"] == "2010-10-19"
    assert str(town()["updated"]).startswith("2010-10-19T08:10")  # as of the latest reading
    firm = json.loads(collector.last("quotad/t/status/firms/p") or "{}")
    assert (firm["day"], firm["consumed_kwh"]) == ("2010-10-19", 30.0)
    # once the readings came, the clock's day (2010-10-24) no longer shows: the last STATUS= is of the readings' day
    statuses = [d for d in notify.received if "STATUS=" in d]
    assert "STATUS=2010-10-19: 30 of 100000 kWh" in statuses[-1], statuses[-3:]

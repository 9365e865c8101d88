"""A firm's meter whose clock is an hour wrong, against the real daemon and a real broker, on the real clock.

An hour ahead: every reading is refused (logged, counted) and the township's "now" does not move, so no other
meter is taken for silent. An hour behind: its readings are counted as stamped (rules run on event time), and the
meter shows as `meter_offline` (its newest reading is always an hour old) — what sends an inspector to look at it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.publish as publish_

from quotad.schedule.calendar import MICROS_PER_S
from quotad.shell.store import Store
from tests.brokers import Mosquitto
from tests.conftest import policy_text
from tests.shell.township import Collector, eventually

HOUR = 3600


def publish(broker: Mosquitto, readings: list[tuple[str, float, float]]) -> None:
    """(meter, epoch s, kWh) each, in this order, QoS 1, from one client."""
    messages: list[publish_.MessagesType] = [
        {"topic": f"quotad/t/meters/{meter}", "payload": json.dumps({"ts": round(ts), "energy_kwh": kwh}), "qos": 1}
        for meter, ts, kwh in readings
    ]
    publish_.multiple(messages, hostname=broker.host, port=broker.port, client_id="firm-gateways")


def test_a_meter_clock_an_hour_ahead_is_refused_and_an_hour_behind_shows_offline(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text(policy_text(), encoding="utf-8")  # meters p-m, s-m, x-m, g-m, w-m (JSON)
    config = tmp_path / "quotad.toml"
    with Mosquitto() as broker:
        config.write_text(
            f'policy = "policy.toml"\nstate_dir = "{tmp_path}/state"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "quotad-clocks"\n',
            encoding="utf-8",
        )
        inspector = Collector(broker, ["quotad/t/alerts/#"])
        log = (tmp_path / "daemon.log").open("wb")
        daemon = subprocess.Popen([sys.executable, "-m", "quotad", "run", "-c", str(config)], stdout=log, stderr=log)
        try:
            text = lambda: (tmp_path / "daemon.log").read_text(encoding="utf-8")  # noqa: E731
            eventually(lambda: "quotad serving t" in text(), "the daemon serves")
            now = time.time()
            publish(broker, [
                ("p-m", now - 60, 100.0),  # a good clock
                ("s-m", now + HOUR, 50.0),  # an hour ahead
                ("s-m", now + HOUR + 60, 51.0),
                ("x-m", now - HOUR - 60, 10.0),  # an hour behind
                ("x-m", now - HOUR, 11.0),
                ("p-m", now, 101.0),
            ])  # fmt: skip
            eventually(lambda: "meter_offline" in str(inspector.alerts()), "the offline alert of x-m")
            time.sleep(1.0)  # anything else would have come with it
            alerts = inspector.alerts()
        finally:
            daemon.terminate()
            assert daemon.wait(45) == 0
            inspector.close()
    log_text = text()
    refused = "reading of meter s-m (MQTT topic quotad/t/meters/s-m) refused (1 so far): stamped more than 5 min"
    assert refused in log_text
    assert "refused (2 so far)" not in log_text  # logged once, counted every time (the 100th is logged again)
    assert [(a["rule"], a.get("meter"), a["firm"]) for a in alerts] == [("meter_offline", "x-m", "x")]
    store = Store(tmp_path / "state")
    journaled = [e.body["reading"][:3] for e in store.events() if e.kind == "reading"]
    store.close()
    stamp = lambda t: round(t) * MICROS_PER_S  # noqa: E731
    assert journaled == [  # x-m's energy counts at its own stamps; s-m's never entered the ledger
        ["p-m", stamp(now - 60), 100.0],
        ["x-m", stamp(now - HOUR - 60), 10.0],
        ["x-m", stamp(now - HOUR), 11.0],
        ["p-m", stamp(now), 101.0],
    ]

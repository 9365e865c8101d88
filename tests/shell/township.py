"""A test township: real mosquitto, a real database, `quotad simulate` and `quotad run` as processes.

The example township's policy with its gateways moved to free ports, every meter but w-005 given a three-hour
offline window (at 900x, a broker outage plus paho's reconnect backoff of a few real seconds is an hour of
simulated silence, and a loaded CI machine must not make a meter look silent), on a simulated clock that the
simulator and the daemon share through `state/clock.json`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from quotad.schedule.calendar import MICROS_PER_S
from tests.brokers import Mosquitto, free_port, free_ports
from tests.conftest import at

ROOT = Path(__file__).resolve().parents[2]
START = "2010-10-20T01:30:00+08:00"
SPEED = 900.0


def township_files(directory: Path, mqtt_port: int, influx: str, speed: float = SPEED, start: str = START) -> Path:
    """Write township.toml and quotad.toml into `directory`; returns the daemon file."""
    text = (ROOT / "config" / "township.toml").read_text(encoding="utf-8")
    gateways = sorted(set(re.findall(r"port = (150\d\d)", text)))
    for old, new in zip(gateways, free_ports(len(gateways)), strict=True):
        text = text.replace(f"port = {old}", f"port = {new}")
    text = re.sub(r'(\[\[meters\]\]\nid = "(?!w-005-main)[^"]+")', r"\1\noffline_after_s = 10800", text)
    # At hundreds of times real speed, 0.1 s of scheduling jitter is a minute and a half of simulated time
    # between the counter's serving and its stamping: no max_kw here, or the jitter would look like jumps.
    text = re.sub(r"\nmax_kw = \d+", "", text)
    (directory / "township.toml").write_text(text, encoding="utf-8")
    config = directory / "quotad.toml"
    config.write_text(
        f'policy = "township.toml"\nstate_dir = "{directory}/state"\n{influx}\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}\nclient_id = "quotad-test"\n'
        f"[clock]\nstart = {start}\nspeed = {speed}\n",
        encoding="utf-8",
    )
    return config


class Collector:
    """A persistent-session MQTT subscriber recording every message on `topics`, in arrival order."""

    def __init__(self, broker: Mosquitto, topics: list[str]) -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"collector-{free_port()}", clean_session=False
        )
        self.client.on_connect = lambda c, u, f, r, p: [c.subscribe(t, qos=1) for t in topics]
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload.decode(), bool(message.retain)))

    def alerts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(p) for t, p, _ in self.messages if "/alerts/" in t]

    def last(self, topic: str) -> str | None:
        with self.lock:
            found = [p for t, p, _ in self.messages if t == topic]
        return found[-1] if found else None

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def eventually(check: Callable[[], bool], what: str, limit_s: float = 30.0) -> None:
    """Wait (bounded) until `check()` holds: delivery after an outage is asynchronous."""
    deadline = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < deadline, f"not within {limit_s} s: {what}"
        time.sleep(0.1)


class Township:
    def __init__(self, directory: Path, config: Path) -> None:
        self.dir, self.config = directory, config
        self.simulator: subprocess.Popen[bytes] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def _spawn(self, *args: str, env: dict[str, str] | None = None, log: str) -> subprocess.Popen[bytes]:
        out = (self.dir / log).open("ab")
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("QUOTAD_", "NOTIFY_", "WATCHDOG_"))}
        return subprocess.Popen(
            [sys.executable, "-m", "quotad", *args, "-c", str(self.config)],
            stdout=out,
            stderr=out,
            env={**environ, **(env or {})},
        )

    def start_simulator(self) -> None:
        self.simulator = self._spawn("simulate", log="simulator.log")

    def start_daemon(self, env: dict[str, str] | None = None) -> None:
        self.runs += 1
        self.daemon = self._spawn("run", env=env, log="daemon.log")

    def stop_daemon(self, sig: int = signal.SIGTERM, timeout: float = 45.0) -> int:
        assert self.daemon is not None
        self.daemon.send_signal(sig)
        code = self.daemon.wait(timeout)
        self.daemon = None
        return code

    def sim_now(self) -> int:
        clock = json.loads((self.dir / "state" / "clock.json").read_text(encoding="utf-8"))
        return int(clock["start"] + (time.time() - clock["anchor"]) * SPEED * MICROS_PER_S)

    def wait_until(self, local: str, limit_s: float = 120.0) -> None:
        """Sleep until the simulated clock reads `local` ('YYYY-MM-DD HH:MM' township time)."""
        target = at(local)
        deadline = time.monotonic() + limit_s
        while self.sim_now() < target:
            assert time.monotonic() < deadline, f"the simulated clock did not reach {local}"
            if self.daemon is not None:
                assert self.daemon.poll() is None, f"the daemon died: see {self.dir / 'daemon.log'}"
            time.sleep(0.05)

    def log(self) -> str:
        return (self.dir / "daemon.log").read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        for process in (self.daemon, self.simulator):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

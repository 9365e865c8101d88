"""`quotad demo`: the example township enforced live, for a first look.

Starts a private mosquitto and InfluxDB (Debian's packages; `./dev demo` installs them) on free loopback
ports in a fresh directory, the simulated township (`quotad simulate`) and the daemon (`quotad run`) on a
fast simulated clock; shows the township's day against its cap and the alerts as they arrive; after a few
simulated days (or Ctrl-C) says where the data is and stops everything it started.
"""

from __future__ import annotations

import getpass
import heapq
import json
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

import paho.mqtt.client as mqtt

from quotad.commands.orders import carry_out, command
from quotad.commands.status_text import meters_read
from quotad.commands.watch import format_alert
from quotad.config.daemon import MqttSettings
from quotad.config.load import load
from quotad.config.users import add_user
from quotad.core.errors import QuotadError
from quotad.core.orders import STATE_NAMES
from quotad.shell.mqtt import Driver, mqtt_client

__all__ = ["demo"]


def example_policy() -> Path:
    """The example township: package data of an installed quotad (`quotad/example/`, built from `config/`), or
    `config/` itself in a checkout (an editable install). Either way the one file, `config/township.toml`."""
    package = Path(__file__).resolve().parent.parent  # quotad/
    installed = package / "example" / "township.toml"
    return installed if installed.is_file() else package.parent / "config" / "township.toml"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary(name: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if Path(p).exists()), None)
    if path is None:
        package = "influxdb" if name == "influxd" else name
        msg = f"{name} is not installed: `./dev demo` installs it (Debian package {package})"
        raise QuotadError(msg)
    return path


def _wait_port(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    for _ in range(400):
        if process.poll() is not None:
            msg = f"{name} exited at start (code {process.returncode})"
            raise QuotadError(msg)
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    msg = f"{name} did not listen on 127.0.0.1:{port}"
    raise QuotadError(msg)


class People(threading.Thread):
    """The people of the loop, played for the demo: the inspector (督查) who verifies a pending order on site and
    confirms it, and the power supply station (供电所) that delivers the cutoff notice and cuts the supply. Each act is
    the same journaled command as `quotad order ...`, filed with the running daemon, after a delay in simulated time;
    what they did comes back on the orders' retained topics, as it would to anyone."""

    def __init__(self, config: Path, speed: float, said: queue.Queue[tuple[str, str]]) -> None:
        super().__init__(name="demo-people", daemon=True)
        self.config, self.speed, self.said = config, speed, said
        self.due: list[tuple[float, int, dict[str, Any]]] = []
        self.planned: set[tuple[str, str]] = set()
        self.states: dict[str, str] = {}  # each order's state as last published (alert id -> state)
        self.names: dict[str, str] = {}
        self.wake = threading.Condition()
        self.count = 0

    def saw(self, order: dict[str, Any]) -> None:
        """An order's state as published: plan the next people's act on it (once per order and act)."""
        self.states[str(order.get("alert_id"))] = str(order.get("state"))
        self.names[str(order.get("firm"))] = str(order.get("firm_name"))
        acts = {
            "pending": [
                (3600, "inspection", "督查", "现场核实：确有超限用电"),
                (3900, "confirm", "督查", "现场核实属实"),
            ],
            "issued": [
                (1200, "notified", "供电所", "停电通知书已送达企业"),
                (3600, "executed", "供电所", "已拉闸停电"),
            ],
        }.get(str(order.get("state")), [])
        for delay_s, act, by, reason in acts:
            key = (str(order.get("alert_id")), act)
            if key in self.planned:
                continue
            self.planned.add(key)
            if act == "inspection":
                fields = {"kind": "inspection", "result": "violation", "finding": reason, "issue_order": False,
                          "photo": None}  # fmt: skip
            else:
                fields = {"kind": "order", "action": act, "reason": reason}
            with self.wake:
                self.count += 1
                heapq.heappush(self.due, (time.monotonic() + delay_s / self.speed, self.count,
                                          {**fields, "firm": order["firm"], "by": by,
                                           "alert_id": order.get("alert_id")}))  # fmt: skip
                self.wake.notify()

    def run(self) -> None:
        loaded = load(self.config)
        while True:
            with self.wake:
                while not self.due or self.due[0][0] > time.monotonic():
                    self.wake.wait(timeout=(self.due[0][0] - time.monotonic()) if self.due else None)
                _due, _n, act = heapq.heappop(self.due)
            kind, firm, by, alert_id = act.pop("kind"), act.pop("firm"), act.pop("by"), act.pop("alert_id")
            if act.get("action") == "confirm" and self.states.get(str(alert_id)) != "pending":
                continue  # issued meanwhile (its use went beyond the meters' accuracy): nothing to confirm
            if act.get("action") == "notified" and self.states.get(str(alert_id)) != "issued":
                continue  # its cutoff notice reached the firm's channel: quotad marked it notified
            name = self.names.get(firm, firm)
            try:
                carry_out(loaded, command(loaded, kind, firm, by, **act))
            except QuotadError as exc:  # an order lifted or ended meanwhile: said, and the demo goes on
                self.said.put(("people", f"  [{by}] {name}：{exc}"))
            else:
                if kind == "inspection":
                    self.said.put(("people", f"  [{by}] 到{name}现场督查，记录在案：{act['finding']}"))


class Receiver(ThreadingHTTPServer):
    """The demo's notice channel (`demo-hook`, a webhook): what reaches the firms' phones and the 供电所, printed.
    Two firms (盛达, the paper mill) and the 供电所 have it as their channel in the demo's copy of the policy."""

    def __init__(self, said: queue.Queue[tuple[str, str]]) -> None:
        said_here = said

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                said_here.put(("channel", body.decode(errors="replace")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.port = int(self.server_address[1])
        threading.Thread(target=self.serve_forever, name="demo-receiver", daemon=True).start()


class Demo:
    def __init__(self, directory: Path, speed: float, days: int, out: TextIO) -> None:
        self.dir, self.speed, self.days, self.out = directory, speed, days, out
        self.mqtt_port, self.influx_port = _free_port(), _free_port()
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.whole = False
        self.states: dict[str, str] = {}  # each firm's order state as last shown
        self.config = directory / "quotad.toml"
        self.web_port = 8080 if _port_free(8080) else _free_port()
        # the console's demo users, one per role, each with a password made for this run
        self.logins = {name: secrets.token_urlsafe(9) for name in ("leader", "inspector", "operator")}
        self.inbox: queue.Queue[tuple[str, str]] = queue.Queue()
        self.receiver = Receiver(self.inbox)

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.dir / f"{name}.log").open("ab")
        process = subprocess.Popen(args, stdout=log, stderr=log, cwd=self.dir)
        self.processes.append((name, process))
        return process

    def services(self) -> None:
        (self.dir / "mosquitto.conf").write_text(
            f"listener {self.mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.dir}/\nmax_queued_messages 100000\nuser {getpass.getuser()}\n",
            encoding="utf-8",
        )
        _wait_port(
            self.mqtt_port, self._start("mosquitto", [_binary("mosquitto"), "-c", "mosquitto.conf"]), "mosquitto"
        )
        influx = self.dir / "influx"
        (self.dir / "influxdb.conf").write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{_free_port()}"\n[meta]\n  dir = "{influx}/meta"\n'
            f'[data]\n  dir = "{influx}/data"\n  wal-dir = "{influx}/wal"\n  query-log-enabled = false\n'
            f'[http]\n  bind-address = "127.0.0.1:{self.influx_port}"\n  log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n",
            encoding="utf-8",
        )
        _wait_port(
            self.influx_port, self._start("influxd", [_binary("influxd"), "-config", "influxdb.conf"]), "influxd"
        )
        self._influx_query("CREATE DATABASE quotad")

    def _influx_query(self, q: str) -> dict[str, object]:
        data = urllib.parse.urlencode({"q": q, "db": "quotad"}).encode()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.influx_port}/query", data=data, timeout=10) as response:
            result: dict[str, object] = json.loads(response.read())
            return result

    def township(self) -> Path:
        text = example_policy().read_text(encoding="utf-8")
        for old in sorted(set(re.findall(r"port = (\d+)", text))):
            text = text.replace(f"port = {old}\n", f"port = {_free_port()}\n")
        # Hundreds of times real speed turn 0.1 s of scheduling jitter into a simulated minute between a
        # counter's serving and its stamping: the demo leaves max_kw out so that jitter is not shown as jumps.
        text = re.sub(r"\nmax_kw = \d+[^\n]*", "", text)
        for firm in ("shengda", "rongsheng-paper"):  # two firms and the 供电所 hear on the demo's channel
            contact = 'contacts = [{ name = "厂长", channel = "demo-hook" }]'
            text = text.replace(f'id = "{firm}"\n', f'id = "{firm}"\n{contact}\n', 1)
        text = text.replace("[enforcement]\n", '[enforcement]\nsupply_station = "demo-hook"\n', 1)
        (self.dir / "township.toml").write_text(text, encoding="utf-8")
        self.whole = bool(tomllib.loads(text)["township"].get("feeder_meters"))  # what the township's total covers
        config = self.dir / "quotad.toml"
        config.write_text(
            f'policy = "township.toml"\nstate_dir = "{self.dir}/state"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {self.mqtt_port}\nclient_id = "quotad-demo"\n'
            f'[influx]\napi = "v1"\nurl = "http://127.0.0.1:{self.influx_port}"\nbucket = "quotad"\n'
            f"[clock]\nstart = 2010-10-20T00:00:00+08:00\nspeed = {self.speed}\n"
            f'[web]\nlisten = "127.0.0.1:{self.web_port}"\nusers_file = "users"\n'
            '[[channels]]\nname = "demo-hook"\nkind = "webhook"\nurl_file = "demo-hook.url"\n',
            encoding="utf-8",
        )
        (self.dir / "demo-hook.url").write_text(f"http://127.0.0.1:{self.receiver.port}/hook\n", encoding="utf-8")
        roles = {"leader": "viewer", "inspector": "inspector", "operator": "operator"}
        for name, password in self.logins.items():
            add_user(self.dir / "users", name, roles[name], password)
        return config

    def run(self) -> None:
        self.services()
        config = self.township()
        quotad = [sys.executable, "-m", "quotad"]
        self._start("simulator", [*quotad, "simulate", "-c", str(config)])
        time.sleep(0.5)
        self._start("daemon", [*quotad, "run", "-c", str(config)])
        self.out.write(
            f"quotad demo in {self.dir}: ××镇, {self.days} simulated day(s) from 2010-10-20 at {self.speed:g}x "
            f"(Ctrl-C stops)\n  broker 127.0.0.1:{self.mqtt_port}, InfluxDB http://127.0.0.1:{self.influx_port}\n"
            f"  console http://127.0.0.1:{self.web_port}/  log in as "
            + ", ".join(f"{name} / {password}" for name, password in self.logins.items())
            + " (leader reads, inspector also confirms and records visits, operator also issues and lifts)\n\n"
        )
        self.watch()

    def watch(self) -> None:
        inbox = self.inbox
        people = People(self.config, self.speed, inbox)
        people.start()
        client = mqtt_client(MqttSettings(port=self.mqtt_port), "quotad-demo-view", clean=True)
        driver = Driver(client, "mqtt-demo-view")
        client.on_connect = lambda c, userdata, flags, reason, props: self._subscribe(c)
        client.on_message = lambda c, u, m: inbox.put((m.topic, m.payload.decode(errors="replace")))
        client.connect_async("127.0.0.1", self.mqtt_port)
        driver.start()
        seen: set[str] = set()
        end_day, last_day = 20 + self.days, ""
        try:
            while True:
                topic, payload = inbox.get(timeout=60)
                data = json.loads(payload) if payload and topic not in ("people", "channel") else {}
                if "/alerts/" in topic and str(data.get("id")) not in seen:
                    seen.add(str(data.get("id")))
                    self.out.write(format_alert(data) + "\n")
                elif topic == "people":
                    self.out.write(payload + "\n")
                elif topic == "channel":
                    notice = json.loads(payload)
                    text = str(notice.get("text")).replace("\n", "\n      ")  # a notice's lines, indented
                    self.out.write(f"  [渠道 demo-hook] {notice.get('title')}：{text}\n")
                elif "/orders/" in topic:
                    self._order(topic.rsplit("/", 1)[-1], data, people)
                elif topic.endswith("/inspections/today") and data:
                    self._inspections(data)
                elif topic.endswith("/notices") and data.get("message"):
                    self.out.write(f"  [通知] {data['message']}\n")  # what firms and residents are told
                elif topic.endswith("/status/township") and data:
                    day = str(data.get("day"))
                    if day >= f"2010-10-{end_day:02d}":
                        break
                    if day != last_day:
                        self.out.write(f"\n{day}\n")
                        last_day = day
                    self.out.write(f"  {self._township_line(data)}\n")
                self.out.flush()
        except (KeyboardInterrupt, queue.Empty):
            pass
        finally:
            driver.stop()

    def _order(self, firm: str, data: dict[str, Any], people: People) -> None:
        """An order's retained topic: its state when it changes, with who changed it and why."""
        state = str(data.get("state", "")) if data else ""
        if self.states.get(firm, "") == state:
            return
        self.states[firm] = state
        if not data:
            return  # lifted, dismissed or ended: the register keeps it (`quotad orders --all`)
        last = (data.get("history") or [{}])[-1]
        who = str(last.get("by"))
        if who == "quotad":  # a rule made it; or its cutoff notice reached the firm's channel
            who = f"quotad：{last.get('reason')}" if state == "notified" else "quotad（规则）"
        self.out.write(f"  [停电令] {data.get('firm_name')}：{STATE_NAMES.get(state, state)}（{who}）\n")
        people.saw(data)

    def _inspections(self, data: dict[str, Any]) -> None:
        """Today's inspection list, as published at 07:00: the firms, each with its first reason."""
        entries = data.get("entries") or []
        self.out.write(f"  [今日督查清单 {data.get('day')}] {len(entries)} 家：\n")
        for rank, entry in enumerate(entries[:8], 1):
            reasons = entry.get("reasons") or [""]
            self.out.write(f"    {rank}. {entry.get('firm_name')}：{reasons[0]}\n")

    def _township_line(self, data: dict[str, object]) -> str:
        """'[10-20 08:15] 全镇企业用电 11234.4 kWh / 日上限 54611 kWh，按近一小时推算全天约 55102.2 kWh'."""
        when = str(data.get("updated"))[5:16].replace("T", " ")
        scope = "全镇用电" if self.whole else "全镇企业用电"
        used, cap, projected = data.get("consumed_kwh"), data.get("cap_kwh"), data.get("projected_kwh")
        text = f"[{when}] {scope} {used:.1f} kWh" if isinstance(used, float | int) else f"[{when}] {scope} —"
        if isinstance(cap, float | int):
            text += f" / 日上限 {cap:g} kWh"
        if isinstance(projected, float | int):
            text += f"，按近一小时推算全天约 {projected:.1f} kWh"
        return text

    @staticmethod
    def _subscribe(client: mqtt.Client) -> None:
        client.subscribe("quotad/xx-town/alerts/#", 1)
        client.subscribe("quotad/xx-town/status/township", 1)
        client.subscribe("quotad/xx-town/notices", 1)
        client.subscribe("quotad/xx-town/orders/+", 1)
        client.subscribe("quotad/xx-town/inspections/today", 1)

    def stop(self) -> None:
        self.receiver.shutdown()
        for name, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
            if name == "daemon":
                self._report()

    def _report(self) -> None:
        try:
            rows = self._influx_query("SELECT count(id) FROM quota_alert")
        except OSError:
            rows = {}
        self.out.write(
            f"\nStopped. Everything is in {self.dir} (logs *.log, state/quotad.db; InfluxDB data influx/).\n"
            f"InfluxDB held: {json.dumps(rows, ensure_ascii=False)[:200]}\n"
            f"Meters that reported, by kind (InfluxDB meter_reading): {self._meters_read()}\n"
            f"To look again:  influxd -config {self.dir}/influxdb.conf &\n"
            f"                curl -sG http://127.0.0.1:{self.influx_port}/query --data-urlencode db=quotad "
            "--data-urlencode 'q=SELECT rule, firm, severity, message FROM quota_alert'\n"
            f"Topics (on a broker started with mosquitto -c {self.dir}/mosquitto.conf): "
            "quotad/xx-town/alerts/#, quotad/xx-town/status/#, quotad/xx-town/orders/#, quotad/xx-town/notices, "
            "quotad/xx-town/inspections/#, quotad/xx-town/escalations/#\n"
            f"The register:  quotad orders --all -c {self.dir}/quotad.toml;  "
            f"quotad inspections list -c {self.dir}/quotad.toml\n"
        )

    def _meters_read(self) -> str:
        """Of each kind of meter (Modbus, DL/T 645, MQTT), how many have readings in InfluxDB: `Modbus 12/12, ...`."""
        try:
            rows: Any = self._influx_query("SELECT count(energy_kwh) FROM meter_reading GROUP BY meter")
            read = {serie["tags"]["meter"] for serie in rows["results"][0].get("series", [])}
        except (OSError, KeyError, IndexError, TypeError):
            return "(InfluxDB did not answer)"
        return meters_read(load(self.dir / "township.toml").policy.meters, read)


def demo(speed: float = 720.0, days: int = 2, out: TextIO = sys.stdout) -> int:
    directory = Path(tempfile.mkdtemp(prefix="quotad-demo-"))
    os.chmod(directory, 0o755)
    runner = Demo(directory, speed, days, out)
    try:
        runner.run()
    except QuotadError as exc:
        out.write(f"quotad demo: {exc}\n")
        return 1
    finally:
        runner.stop()
    return 0

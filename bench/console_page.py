"""The console's pages with 10,000 meters' state (issue 15): each page served in < 100 ms at the 95th percentile, the
today page's first load < 400 KB compressed; beside a floor, a static file served by the same server.

A real mosquitto; `quotad run` with `[web]`, 10,000 general firms of one MQTT meter each (each firm's state is
computed for the today page's counts and the firms page's risk order, whichever page is shown); every meter has
sent readings (two sweeps), so every firm has a day and a month. Then, logged in as a leader, each round asks in
turn for the today page (`/`), the firms page (`/firms`, the riskiest 100 of 10,000), one firm (`/firms/f42`), the
today figures (`/api/today`) and the floor (`/static/console.css`, the same server, middleware and session check,
no engine); ROUNDS rounds, one request at a time on a kept-alive connection, gzip accepted as a browser does.

Prints each path's p50/p95 and the first load's compressed bytes (the today page and the files it names), and
last: `console_page: X ms p95, floor Y ms p95, ratio R` where X is the slowest page's p95 and R = X / Y (target:
X < 100 ms). Also: an alert's way to an open alerts page (server-sent events), from the publication of the reading
that raises it, beside that reading's own way to a bare subscriber (target: within 1 s).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.alert_latency import township_head
from quotad.config.users import add_user
from tests.brokers import Mosquitto, free_port, wait_for_port

FIRMS = 10_000
PAGES = ["/", "/firms", "/firms/f42", "/api/today"]
FLOOR = "/static/console.css"
DEBUG = {"PYTHONASYNCIODEBUG": "1"} if os.environ.get("BENCH_LOOP_DEBUG") else {}  # loop steps over 100 ms logged
if os.environ.get("BENCH_DAEMON_PATH"):  # e.g. a sitecustomize that logs the collector's pauses
    DEBUG["PYTHONPATH"] = os.environ["BENCH_DAEMON_PATH"]


def policy_text() -> str:
    text = township_head()
    for n in range(FIRMS):
        text += (
            f'[[firms]]\nid = "f{n}"\nname = "企业 {n}"\nkind = "general"\nmonthly_quota_kwh = {1000 + n % 7 * 500}\n'
            f'[[meters]]\nid = "m{n}"\nfirm = "f{n}"\n[meters.mqtt]\n'
        )
    return text


def feed(port: int, sweeps: int = 2) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-feed")
    client.connect("127.0.0.1", port)
    client.loop_start()
    now = time.time()
    infos = []
    for k in range(sweeps):
        for n in range(FIRMS):
            kwh = 100.0 + k * (n % 13) * 10
            payload = f'{{"ts":{now - 600 + k * 300:.1f},"energy_kwh":{kwh}}}'
            infos.append(client.publish(f"quotad/t/meters/m{n}", payload, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()


def get(conn: http.client.HTTPConnection, path: str, cookie: str) -> tuple[float, int, bytes]:
    started = time.perf_counter()
    conn.request("GET", path, headers={"Cookie": f"quotad_session={cookie}", "Accept-Encoding": "gzip"})
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    assert response.status == 200, (path, response.status, body[:300])
    return elapsed, len(body), body


def login(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = urllib.parse.urlencode({"name": "leader", "password": "bench-pass-1"})
    conn.request("POST", "/login", body=body, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                       "Origin": f"http://127.0.0.1:{port}"})  # fmt: skip
    response = conn.getresponse()
    response.read()
    match = re.search(r"quotad_session=([^;]+)", response.getheader("Set-Cookie") or "")
    assert match, response.status
    return match.group(1)


def first_load(port: int, cookie: str) -> int:
    """The today page and every file it names, as a browser with an empty cache fetches them (gzip accepted)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    _t, size, body = get(conn, "/", cookie)
    import gzip

    html = gzip.decompress(body).decode() if body[:2] == b"\x1f\x8b" else body.decode()
    for ref in re.findall(r'(?:href|src)="(/static/[^"]+)"', html):
        size += get(conn, ref.replace("&amp;", "&"), cookie)[1]
    return size


def alert_latency(mqtt_port: int, web: int, cookie: str, firms: int = 60) -> tuple[list[float], list[float]]:
    """A reading that takes a firm past 80% of its quota, published; the time until its alert arrives on an open
    alerts page's stream (`/events`), and until the reading itself reaches a bare MQTT subscriber (the floor)."""
    arrived: dict[str, float] = {}
    seen: dict[str, float] = {}
    conn = http.client.HTTPConnection("127.0.0.1", web, timeout=60)
    conn.request("GET", "/events", headers={"Cookie": f"quotad_session={cookie}"})
    stream = conn.getresponse()

    def read() -> None:
        for raw in stream:
            line = raw.decode()
            match = re.match(r'data: .*"firm": ?"(f\d+)"', line)
            if match and match.group(1) not in arrived:
                arrived[match.group(1)] = time.perf_counter()

    threading.Thread(target=read, daemon=True).start()
    floor = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-floor")
    floor.on_message = lambda c, u, m: seen.setdefault(m.topic.rsplit("/m", 1)[1], time.perf_counter())
    floor.connect("127.0.0.1", mqtt_port)
    floor.subscribe("quotad/t/meters/#", qos=0)
    floor.loop_start()
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-alerts")
    sender.connect("127.0.0.1", mqtt_port)
    sender.loop_start()
    time.sleep(1.0)
    sent: dict[str, float] = {}
    for n in range(firms):  # f0, f7, f14...: a quota of 1,000 kWh; 950 kWh more is 95% of it
        firm = n * 7
        sent[f"f{firm}"] = time.perf_counter()
        sender.publish(f"quotad/t/meters/m{firm}", f'{{"ts":{time.time():.3f},"energy_kwh":1050.0}}', qos=1)
        time.sleep(0.2)
    time.sleep(2.0)
    sender.loop_stop()
    floor.loop_stop()
    conn.close()
    missing = [f for f in sent if f not in arrived]
    assert not missing, f"no alert on the page for {missing[:5]}"
    live = [(arrived[f] - t) * 1000 for f, t in sent.items()]
    bare = [(seen[f[1:]] - t) * 1000 for f, t in sent.items() if f[1:] in seen]
    return live, bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--floor-only", action="store_true", help="ask for the floor alone (to see the daemon's own)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="quotad-bench-console-") as tmp, Mosquitto() as broker:
        d = Path(tmp)
        (d / "township.toml").write_text(policy_text(), encoding="utf-8")
        add_user(d / "users", "leader", "viewer", "bench-pass-1")
        web = free_port()
        (d / "quotad.toml").write_text(
            f'policy = "township.toml"\nstate_dir = "{d}/state"\n[mqtt]\nport = {broker.port}\nclient_id = "qb"\n'
            f'[web]\nlisten = "127.0.0.1:{web}"\nusers_file = "users"\n',
            encoding="utf-8",
        )
        log = (d / "daemon.log").open("wb")
        daemon = subprocess.Popen([sys.executable, "-m", "quotad", "run", "-c", str(d / "quotad.toml")],
                                  stdout=log, stderr=log, env={**os.environ, **DEBUG})  # fmt: skip
        try:
            assert wait_for_port(web, 120), (d / "daemon.log").read_text()[-2000:]
            time.sleep(2)  # subscribed
            feed(broker.port)
            cookie = login(web)
            conn = http.client.HTTPConnection("127.0.0.1", web, timeout=30)
            deadline = time.monotonic() + 120
            while b"f9999" not in get(conn, "/firms?q=f9999", cookie)[2] and time.monotonic() < deadline:
                time.sleep(0.5)  # the feed ingested (gzip: the name shows only when the firm is found)
            while time.monotonic() < deadline:
                _t, _n, body = get(conn, "/api/today", cookie)
                if b'"ok":10000' in body or b'"ok": 10000' in body:
                    break
                time.sleep(0.5)
            times: dict[str, list[float]] = {p: [] for p in ([] if args.floor_only else PAGES) + [FLOOR]}
            for _ in range(5):  # warm up
                for path in times:
                    get(conn, path, cookie)
            spy = None
            if os.environ.get("BENCH_PYSPY"):  # where the daemon's time goes while it serves the pages
                spy = subprocess.Popen([os.environ["BENCH_PYSPY"], "record", "-p", str(daemon.pid), "-o",
                                        "/tmp/console-spy.txt", "--format", "raw", "-d", "25"])  # fmt: skip
            slow: list[tuple[float, str, float]] = []
            began = time.perf_counter()
            for _ in range(args.rounds):
                for path in times:
                    ms = get(conn, path, cookie)[0] * 1000
                    times[path].append(ms)
                    if ms > 100:
                        slow.append((time.perf_counter() - began, path, ms))
            loaded = first_load(web, cookie)
            live, bare = alert_latency(broker.port, web, cookie)
            if spy is not None:
                spy.wait()
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
            if DEBUG:
                said = (d / "daemon.log").read_text(encoding="utf-8", errors="replace").splitlines()
                print("\n".join(line for line in said if "took" in line or "GCPAUSE" in line)[-6000:])
    p95 = {p: statistics.quantiles(ms, n=20)[18] for p, ms in times.items()}
    if os.environ.get("BENCH_SLOW"):
        print("  over 100 ms (s since start, path, ms):", [(round(t, 1), p, round(ms)) for t, p, ms in slow])
    for path, ms in times.items():
        print(f"  {path:22} p50 {statistics.median(ms):6.1f} ms  p95 {p95[path]:6.1f} ms")
    print(f"  first load of the today page: {loaded / 1024:.0f} KB compressed (target < 400 KB)")
    print(
        f"  an alert on an open page (server-sent events), from the reading's publication: p50 "
        f"{statistics.median(live):.1f} ms, p95 {statistics.quantiles(live, n=20)[18]:.1f} ms, max {max(live):.1f} ms; "
        f"the reading itself at a bare subscriber: p95 {statistics.quantiles(bare, n=20)[18]:.1f} ms (target < 1 s)"
    )
    if args.floor_only:
        return
    worst = max(PAGES, key=lambda p: p95[p])
    print(f"  slowest page: {worst}")
    print(f"console_page: {p95[worst]:.1f} ms p95, floor {p95[FLOOR]:.1f} ms p95, ratio {p95[worst] / p95[FLOOR]:.1f}")


if __name__ == "__main__":
    main()

"""Real databases for the tests, each on a free loopback port with its own data directory.

- `Influx1`: Debian's `influxd` (InfluxDB 1.x), the v1 `/write` path; queried back with InfluxQL. With `admin`
  given, authentication is on (`[http] auth-enabled`): the admin is created at the first start (1.x lets the first
  `CREATE USER ... WITH ALL PRIVILEGES` through unauthenticated) and queries authenticate as it.
- `Victoria`: Debian's `victoria-metrics`, whose InfluxDB endpoint takes the v2 write path (`/api/v2/write`);
  it keeps numeric fields only (a string field is stored as 0), queried back with `/api/v1/export`.
A missing binary is a failure with a clear message, never a skip.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.brokers import free_port, free_ports


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        msg = f"{name} is not installed: `./dev test` installs it (apt-get install {name})"
        raise AssertionError(msg)
    return path


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"{what} exited with {process.returncode}"
            raise AssertionError(msg)
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    msg = f"{what} did not listen on 127.0.0.1:{port} within {timeout} s"
    raise AssertionError(msg)


class _Service:
    process: subprocess.Popen[bytes] | None = None
    port: int

    def __enter__(self) -> _Service:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Influx1(_Service):
    def __init__(self, directory: Path, database: str = "quotad", admin: tuple[str, str] | None = None) -> None:
        self.dir, self.database, self.admin = directory, database, admin
        self.port, self.rpc_port = free_ports(2)
        self.dir.mkdir(parents=True, exist_ok=True)
        auth = "  auth-enabled = true\n" if admin else ""
        (self.dir / "influxdb.conf").write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{self.dir}/meta"\n'
            f'[data]\n  dir = "{self.dir}/data"\n  wal-dir = "{self.dir}/wal"\n  query-log-enabled = false\n'
            f'[http]\n  enabled = true\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n{auth}'
            "[monitor]\n  store-enabled = false\n[continuous_queries]\n  enabled = false\n",
            encoding="utf-8",
        )

    def start(self) -> None:
        log = (self.dir / "influxd.log").open("ab")
        self.process = subprocess.Popen(
            [_binary("influxd"), "-config", str(self.dir / "influxdb.conf")], stdout=log, stderr=log
        )
        _wait_port(self.port, self.process, "influxd")
        if self.admin:  # unauthenticated the first time (no admin yet); as the admin, a no-op, after a restart
            user, password = self.admin
            self.query(f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES")
        self.query(f'CREATE DATABASE "{self.database}"')

    def add_writer(self, user: str, password: str) -> None:
        """A user that may only write to the database (what quotad needs)."""
        self.query(f"CREATE USER \"{user}\" WITH PASSWORD '{password}'")
        self.query(f'GRANT WRITE ON "{self.database}" TO "{user}"')

    def points_written(self) -> int:
        """Points written through the HTTP service since this start (`SHOW STATS`' httpd pointsWrittenOK): a
        point written twice counts twice, though InfluxDB stores it once."""
        return sum(int(row.get("pointsWrittenOK", 0)) for row in self.query("SHOW STATS FOR 'httpd'"))

    def query(self, q: str) -> list[dict[str, Any]]:
        """InfluxQL; the rows of the first series of each statement, as dicts."""
        data = urllib.parse.urlencode({"q": q, "db": self.database}).encode()
        request = urllib.request.Request(f"{self.url}/query", data=data)
        if self.admin:
            request.add_header("Authorization", "Basic " + base64.b64encode(":".join(self.admin).encode()).decode())
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
        rows = []
        for result in body.get("results", []):
            for series in result.get("series", []):
                rows += [dict(zip(series["columns"], values, strict=True)) for values in series["values"]]
        return rows


class Victoria(_Service):
    def __init__(self, directory: Path) -> None:
        self.dir, self.port = directory, free_port()
        self.dir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        log = (self.dir / "victoria.log").open("ab")
        self.process = subprocess.Popen(
            [_binary("victoria-metrics"), f"-httpListenAddr=127.0.0.1:{self.port}",
             f"-storageDataPath={self.dir}/data", "-retentionPeriod=100y", "-search.latencyOffset=0s"],
            stdout=log, stderr=log,
        )  # fmt: skip
        _wait_port(self.port, self.process, "victoria-metrics")

    def export(self, selector: str) -> list[dict[str, Any]]:
        """Every series matching a PromQL selector, e.g. '{__name__=~"quota_alert_.*"}'."""
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).read()
        data = urllib.parse.urlencode({"match[]": selector}).encode()
        with urllib.request.urlopen(f"{self.url}/api/v1/export", data=data, timeout=10) as response:
            return [json.loads(line) for line in response.read().decode().splitlines() if line.strip()]

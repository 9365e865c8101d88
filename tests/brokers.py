"""Real servers for tests, on free loopback ports with temporary data directories.

`Mosquitto` writes its own configuration, starts `mosquitto -c <conf>`, waits (bounded) until the port accepts
connections, and stops it with SIGTERM (so the persistence file is written, as on a real shutdown). A missing
`mosquitto` binary is a test failure with a clear message, never a skip.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

__all__ = ["Mosquitto", "find_binary", "free_port", "free_ports", "wait_for_port"]

_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def publish(
    broker: Mosquitto,
    messages: Iterable[tuple[str, str | bytes, bool]],
    *,
    user: str | None = None,
    password: str | None = None,
) -> None:
    """(topic, payload, retain) each at QoS 1, each acknowledged by the broker before this returns, as `user` when
    given (MQTT 3.1.1: a PUBLISH the ACL denies is acknowledged too)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user or 'publisher'}-{time.monotonic_ns()}")
    if user is not None:
        client.username_pw_set(user, password)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for where, payload, retain in messages:
            client.publish(where, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports free on 127.0.0.1 right now: a port released and picked again can come back the
    same, and two servers would then fight over it (it happened: two of a bench's gateways shared one)."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1") -> bool:
    """True once `host:port` accepts a TCP connection, False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return True
        time.sleep(0.02)
    return False


def find_binary(name: str, package: str) -> str:
    """The path of an executable (also looked for in the sbin directories), or a test failure saying what to install."""
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN_DIRS))
    if path is None:
        pytest.fail(
            f"`{name}` not found on PATH nor in {', '.join(_SBIN_DIRS)}: these tests need a real {name} "
            f"(install the `{package}` package, e.g. `apt-get install {package}`)",
            pytrace=False,
        )
    return path


class Mosquitto:
    """A mosquitto broker on `127.0.0.1:port`, its configuration, data and log in `dir`.

    `users` (name → password) turns anonymous access off and writes a password file with `mosquitto_passwd`;
    `acl` is the text of an ACL file (mosquitto.conf(5), `acl_file`); `extra` is appended to the configuration.
    `restart()` keeps the port and the data directory (retained messages and persistent sessions survive).
    """

    host = "127.0.0.1"

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | None = None,
        *,
        users: Mapping[str, str] | None = None,
        acl: str | None = None,
        extra: str = "",
        start_timeout: float = 10.0,
    ) -> None:
        self.port = port if port is not None else free_port()
        self._tmp = None if data_dir is not None else tempfile.TemporaryDirectory(prefix="quotad-mosquitto-")
        self.dir = Path(data_dir if data_dir is not None else self._tmp.name)  # type: ignore[union-attr]
        self.users, self.acl, self.extra, self.start_timeout = dict(users or {}), acl, extra, start_timeout
        self.conf = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if self.users else 'true'}",
            "persistence true",
            f"persistence_location {self.dir}/",
            "max_queued_messages 100000",
            "max_inflight_messages 0",  # 0: no limit on QoS 1/2 messages in flight to one client
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            f"user {getpass.getuser()}",  # when run as root: stay root, able to write our 0700 temp dir
        ]
        if self.users:
            lines.append(f"password_file {self._write_passwords()}")
        if self.acl is not None:
            acl_path = self.dir / "acl"
            acl_path.write_text(self.acl, encoding="utf-8")
            lines.append(f"acl_file {acl_path}")
        self.conf.write_text("\n".join(lines) + "\n" + self.extra + "\n", encoding="utf-8")

    def _write_passwords(self) -> Path:
        tool = find_binary("mosquitto_passwd", "mosquitto")
        path = self.dir / "passwd"
        path.unlink(missing_ok=True)
        for i, (user, password) in enumerate(self.users.items()):
            flags = ["-c"] if i == 0 else []
            subprocess.run([tool, *flags, "-b", str(path), user, password], check=True, capture_output=True, timeout=10)
        return path

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self) -> Mosquitto:
        if self.proc is not None and self.proc.poll() is None:
            return self
        binary = find_binary("mosquitto", "mosquitto")
        self._write_config()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mosquitto exited with {self.proc.returncode} on start:\n{self.log_tail()}", pytrace=False)
            if wait_for_port(self.port, 0.1):
                return self
        self.kill()
        pytest.fail(f"mosquitto did not accept connections on port {self.port} within {self.start_timeout} s:\n"
                    f"{self.log_tail()}", pytrace=False)  # fmt: skip

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (mosquitto saves its persistence file), then SIGKILL if it has not exited within `timeout` s."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash (nothing saved since the last autosave)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5.0)

    def restart(self) -> Mosquitto:
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

"""A township with its console: real mosquitto, `quotad simulate` and `quotad run` with `[web]`, as processes.

The example township (tests/shell/township.py) with `[enforcement] confirm = "inspector"`, so that an order waits
for an inspector (the console's confirm is tested on an order that stays pending), and a users file with one user
of each role and one kept for the lockout test.
"""

from __future__ import annotations

import http.client
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from quotad.config.users import add_user
from tests.brokers import Mosquitto, free_port, wait_for_port
from tests.shell.township import Township, township_files

PASSWORDS = {"leader": "leader-pass-1", "inspector": "inspector-pass-1", "operator": "operator-pass-1",
             "locked": "locked-pass-1"}  # fmt: skip
ROLES = {"leader": "viewer", "inspector": "inspector", "operator": "operator", "locked": "viewer"}


@dataclass
class ConsoleTown:
    dir: Path
    broker: Mosquitto
    town: Township
    port: int
    config: Path
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.town.close()
        self.broker.close()


def start(directory: Path, speed: float = 600.0, start_at: str = "2010-10-20T01:30:00+08:00") -> ConsoleTown:
    broker = _broker(directory)
    config = township_files(directory, broker.port, "", speed=speed, start=start_at)
    policy = directory / "township.toml"
    text = policy.read_text(encoding="utf-8").replace('confirm = "auto"', 'confirm = "inspector"')
    text += '\n[reports]\nto = ["leaders-hook"]\n'  # the leaders' webhook: nothing listens (the console says so)
    policy.write_text(text, encoding="utf-8")
    port = free_port()
    users = directory / "users"
    for name, password in PASSWORDS.items():
        add_user(users, name, ROLES[name], password)
    with config.open("a", encoding="utf-8") as f:
        f.write(
            f'[web]\nlisten = "127.0.0.1:{port}"\nusers_file = "users"\n'
            '[[channels]]\nname = "leaders-hook"\nkind = "webhook"\nurl_file = "leaders.url"\n'
        )
    (directory / "leaders.url").write_text(f"http://127.0.0.1:{free_port()}/hook\n", encoding="utf-8")
    town = Township(directory, config)
    town.start_simulator()
    time.sleep(0.3)
    town.start_daemon()
    if not wait_for_port(port, 30.0):
        town.close()
        broker.close()
        raise AssertionError(f"the console did not listen: {town.log()[-3000:]}")
    return ConsoleTown(directory, broker, town, port, config)


def _broker(directory: Path) -> Mosquitto:
    (directory / "mosquitto").mkdir(exist_ok=True)
    return Mosquitto(data_dir=directory / "mosquitto").start()


class Http:
    """A plain HTTP client for the console (no browser): a login's cookie, the CSRF token of a page."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie: str | None = None

    def request(self, method: str, path: str, body: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        head = {"Origin": f"http://127.0.0.1:{self.port}", **(headers or {})}
        if self.cookie:
            head["Cookie"] = f"quotad_session={self.cookie}"
        data = None
        if body is not None:
            data = urllib.parse.urlencode(body).encode()
            head["Content-Type"] = "application/x-www-form-urlencoded"
        head = {k: v for k, v in head.items() if v}
        conn.request(method, path, body=data, headers=head)
        response = conn.getresponse()
        text = response.read().decode("utf-8", errors="replace")
        found = dict(response.getheaders())
        conn.close()
        return response.status, found, text

    def login(self, name: str, password: str | None = None) -> int:
        status, headers, _text = self.request("POST", "/login", {"name": name, "password": password or PASSWORDS[name]})
        match = re.search(r"quotad_session=([^;]+)", headers.get("Set-Cookie", ""))
        if match:
            self.cookie = match.group(1)
        return status

    def csrf(self, path: str = "/orders") -> str:
        status, _h, text = self.request("GET", path)
        assert status == 200, (status, text[:500])
        match = re.search(r'name="csrf" value="([^"]+)"', text)
        assert match, text[:2000]
        return match.group(1)

"""The inspectors' commands (`quotad status`, `quotad alerts --follow`) against what anyone may have left on the
broker: forged payloads, retained, on every topic they read. And a broker that refuses their login.

Real mosquitto. Each forged payload of the table is published retained on every topic `status` subscribes to
(`status/#`, `schedule/today`, `orders/#`, `daemon`), on topics under them quotad never publishes, and on an alert
topic; the commands must neither crash (issue 12: `status` raised on 7 of 10 such payloads, `alerts` on
`{"id": ["x"]}`, again at every start since the message is retained) nor show a forgery as genuine: each is flagged
(无法解析 <topic>) and the rest goes on. `alerts` ignores a retained alert: quotad never retains one.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quotad.commands.watch import follow_alerts, show_status
from quotad.config.load import Loaded, load
from quotad.core.errors import QuotadError
from tests.brokers import Mosquitto, publish
from tests.shell.township import eventually

ROOT = Path(__file__).resolve().parents[2]
GENUINE_STATUS = {"day": "2010-10-20", "allowed_today": True, "reason": None, "consumed_kwh": 1234.5,
                  "limit_kwh": 12000.0, "state": "ok", "updated": "2010-10-20T09:00:00+08:00"}  # fmt: skip
GENUINE_ALERT = {
    "id": "xx-town/shengda/firm_daily_limit/2010-10-20/0.8",
    "ts": "2010-10-20T16:50:00+08:00",
    "severity": "notice",
    "message": "盛达机电公司 2010-10-20 用电 3372.9 kWh，已达日限额 4200 kWh 的 80.3%",
}
# (what it is, the payload): none of them is what quotad publishes on any of the topics
FORGED = [
    ("not JSON", b"not json at all"),
    ("not UTF-8", b"\xff\xfe\x00\x81{garbage"),
    ("a list", b"[1, 2, 3]"),
    ("a number", b"42"),
    ("null", b"null"),
    ("a string", b'"online"'),
    ("an empty object", b"{}"),
    ("a list where a string belongs", b'{"id": ["x"]}'),
    ("a number where a list belongs", b'{"day": "2010-10-20", "cut_off_firms": 5, "consumed_kwh": [1], "firm": 7}'),
    ("not a day", b'{"day": "yesterday", "consumed_kwh": 1.0, "firm": "shengda", "rule": "x", "from": "soon"}'),
    (
        "an infinite figure",
        b'{"day": "2010-10-20", "consumed_kwh": 1e999, "allowed_today": true, "state": "ok", "cut_off_firms": [1e999]}',
    ),
    ("a thousand nested lists", b"[" * 1000 + b"]" * 1000),
    ("a million bytes", b'{"day": "' + b"9" * 1_000_000 + b'"}'),
]
# where `status` looks (relative to P/T), and what it must flag there; the genuine firm status of g-001 sits among them
STATUS_TOPICS = ["status/township", "status/firms/shengda", "schedule/today", "orders/shengda", "daemon",
                 "orders/nobody", "orders/a/b", "status/firms/nobody", "status/other"]  # fmt: skip


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    with Mosquitto(data_dir=tmp_path_factory.mktemp("mosquitto")) as running:
        yield running


def daemon_file(directory: Path, port: int, prefix: str, login: str = "") -> Path:
    path = directory / "quotad.toml"
    path.write_text(
        f'policy = "{ROOT / "config" / "township.toml"}"\nstate_dir = "{directory}/state"\n'
        f'[mqtt]\nport = {port}\nclient_id = "inspector"\ntopic_prefix = "{prefix}"\n{login}',
        encoding="utf-8",
    )
    return path


def township(tmp_path: Path, broker: Mosquitto, case: str) -> tuple[Loaded, str]:
    prefix = f"forged-{case.replace(' ', '-')}"  # a prefix of its own per case: no retained message of another
    return load(daemon_file(tmp_path, broker.port, prefix)), f"{prefix}/xx-town"


@pytest.mark.parametrize(("case", "payload"), FORGED, ids=[case for case, _ in FORGED])
def test_status_flags_each_forgery_and_shows_the_rest(tmp_path: Path, broker: Mosquitto, case: str,
                                                      payload: bytes) -> None:  # fmt: skip
    loaded, base = township(tmp_path, broker, case)
    genuine = json.dumps(GENUINE_STATUS).encode()
    publish(broker, [(f"{base}/{t}", payload, True) for t in STATUS_TOPICS]
            + [(f"{base}/status/firms/g-001", genuine, True)])  # fmt: skip
    out = io.StringIO()
    assert show_status(loaded, out, wait_s=1.0) == 0
    text = out.getvalue()
    flagged = [line.strip() for line in text.splitlines() if line.strip().startswith("无法解析 ")]
    assert sorted(line.split("：")[0] for line in flagged) == sorted(f"无法解析 {base}/{t}" for t in STATUS_TOPICS)
    assert "quotad：未知" in text
    assert "停电令：无" in text  # no forgery shown as a cutoff order
    assert "盛达机电公司" not in text.split("停电令：")[0].split("\n", 2)[-1]  # nor as a firm's status
    row = next(line for line in text.splitlines() if line.startswith("明辉服装厂"))  # g-001: the genuine one
    assert row.split()[1:6] == ["—", "—", "1234.5", "12000.0", "正常"]
    assert len(text) < 10_000  # a payload is named, never echoed whole


@pytest.mark.parametrize(("case", "payload"), FORGED, ids=[case for case, _ in FORGED])
def test_alerts_ignores_a_retained_alert_flags_a_forgery_and_shows_the_next(
    tmp_path: Path, broker: Mosquitto, case: str, payload: bytes
) -> None:
    loaded, base = township(tmp_path, broker, case)
    where = f"{base}/alerts/violation/shengda"
    forged_alert = dict(GENUINE_ALERT, id="xx-town/shengda/firm_daily_limit/2010-10-20/1.0", severity="violation",
                        message="伪造：盛达机电公司应停止供电")  # fmt: skip
    elsewhere = f"{base}/alerts/violation/g-001"
    publish(broker, [(where, payload, True), (elsewhere, json.dumps(forged_alert).encode(), True)])
    out, err = io.StringIO(), io.StringIO()
    result: list[int | BaseException] = []

    def follow() -> None:
        try:
            result.append(follow_alerts(loaded, None, None, False, out, limit=1, timeout_s=20, err=err))
        except BaseException as exc:  # the test says what it was
            result.append(exc)

    follower = threading.Thread(target=follow)
    follower.start()
    eventually(lambda: err.getvalue().count("保留的告警") == 2, "both retained alerts flagged", 10.0)
    live_forgery = dict(forged_alert, id="xx-town/shengda/firm_daily_limit/2010-10-21/1.0")
    publish(broker, [(where, payload, False), (elsewhere, json.dumps(live_forgery).encode(), True),
                     (where, json.dumps(GENUINE_ALERT).encode(), False)])  # fmt: skip
    follower.join(20)
    assert result == [0], (result, err.getvalue())
    assert out.getvalue() == "2010-10-20 16:50 [提示] " + GENUINE_ALERT["message"] + "\n"
    said = err.getvalue()
    assert f"忽略 {where} 上保留的告警：quotad 从不保留告警" in said
    assert said.count(f"忽略 {elsewhere} 上保留的告警") == 2  # left before, and published retained while it ran
    assert f"无法解析 {where} 上的告警：" in said  # the same forgery sent live
    assert "伪造" not in out.getvalue()


def test_the_commands_as_processes_survive_every_forgery_at_once(tmp_path: Path, broker: Mosquitto) -> None:
    """Every payload of the table on its own firm's topics at once, and a well-shaped forgery whose text would drive
    the terminal: exit 0, no traceback, no escape character reaches the inspector's screen."""
    prefix = "forged-all"
    base = f"{prefix}/xx-town"
    config = daemon_file(tmp_path, broker.port, prefix)
    firms = ["rongsheng-paper", "shengda", "g-001", "g-002", "g-003", "g-004", "g-005", "g-006", "g-007", "g-008",
             "g-009", "g-010", "g-011"]  # fmt: skip
    messages = [
        (f"{base}/{kind}/{firm}", payload, True)
        for (_case, payload), firm in zip(FORGED, firms, strict=True)
        for kind in ("status/firms", "orders")
    ]
    terminal = dict(GENUINE_STATUS, reason="\x1b[2J\x1b[31m已清屏", allowed_today=False)
    messages += [(f"{base}/status/firms/w-001", json.dumps(terminal).encode(), True),
                 (f"{base}/daemon", b"\x1b]0;owned\x07online", True),
                 (f"{base}/alerts/violation/shengda", b'{"id": ["x"]}', True)]  # fmt: skip
    publish(broker, messages)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("QUOTAD_")}
    status = subprocess.run([sys.executable, "-m", "quotad", "status", "-c", str(config)], capture_output=True,
                            text=True, timeout=60, check=False, env=environ)  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert "Traceback" not in status.stdout + status.stderr
    assert "\x1b" not in status.stdout
    assert "\\x1b[2J\\x1b[31m已清屏" in status.stdout  # shown, defused
    assert status.stdout.count("无法解析 ") == 2 * len(FORGED) + 1  # each firm's two topics, and the daemon's
    follower = subprocess.Popen([sys.executable, "-m", "quotad", "alerts", "-c", str(config)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=environ)  # fmt: skip
    time.sleep(2.0)
    publish(broker, [(f"{base}/alerts/violation/shengda", b'{"id": ["x"]}', False),
                     (f"{base}/alerts/notice/shengda", json.dumps(GENUINE_ALERT).encode(), False)])  # fmt: skip
    time.sleep(1.0)
    follower.send_signal(signal.SIGINT)
    out, err = follower.communicate(timeout=15)
    assert follower.returncode == 0, err
    assert "Traceback" not in out + err
    assert out == "2010-10-20 16:50 [提示] " + GENUINE_ALERT["message"] + "\n"
    assert "保留的告警" in err
    assert "无法解析 " in err


# ---- a broker that refuses the inspector's login ------------------------------------------------------------------


@pytest.mark.parametrize("command", ["status", "alerts"])
def test_a_refused_login_is_said_as_such(tmp_path: Path, command: str) -> None:
    """A wrong password: mosquitto answers CONNACK 'not authorized'; the command says so and exits 1 at once,
    rather than 'nothing retained ... is the daemon running?' (issue 12), or waiting forever."""
    (tmp_path / "mq").mkdir()
    with Mosquitto(data_dir=tmp_path / "mq", users={"inspector": "right-one"}) as secured:
        (tmp_path / "inspector.pass").write_text("wrong-one\n", encoding="utf-8")
        os.chmod(tmp_path / "inspector.pass", 0o600)
        login = 'username = "inspector"\npassword_file = "inspector.pass"\n'
        config = daemon_file(tmp_path, secured.port, "quotad", login)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("QUOTAD_")}
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "quotad", command, "-c", str(config)], capture_output=True,
                                text=True, timeout=60, check=False, env=environ)  # fmt: skip
        took = time.monotonic() - started
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"quotad: the MQTT broker 127.0.0.1:{secured.port} refused the login of user "
                                    "'inspector' (Not authorized)"), result.stderr  # fmt: skip
    assert "is the daemon running" not in result.stderr
    assert result.stdout == ""
    assert took < 15


def test_a_refused_login_in_process_raises_the_reason(tmp_path: Path) -> None:
    (tmp_path / "mq").mkdir()
    with Mosquitto(data_dir=tmp_path / "mq", users={"inspector": "right-one"}) as secured:
        (tmp_path / "inspector.pass").write_text("wrong-one\n", encoding="utf-8")
        os.chmod(tmp_path / "inspector.pass", 0o600)
        login = 'username = "inspector"\npassword_file = "inspector.pass"\n'
        loaded = load(daemon_file(tmp_path, secured.port, "quotad", login))
        with pytest.raises(QuotadError, match="refused the login of user 'inspector'"):
            show_status(loaded, io.StringIO())

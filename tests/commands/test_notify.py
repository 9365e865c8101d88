"""`quotad notify test --channel NAME`: exit 0 delivered, 1 refused or unreachable (with the channel's answer),
2 an unknown channel or a configuration that does not load. Against the local robots (tests/robots.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from quotad.cli import main
from tests.brokers import free_port
from tests.robots import DINGTALK_SECRET, HOOK_SECRET, RobotServer

POLICY = Path(__file__).resolve().parent.parent / "config" / "broken" / "_valid.toml"


@pytest.fixture
def robots() -> Iterator[RobotServer]:
    with RobotServer() as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, robots: RobotServer) -> Path:
    shutil.copy(POLICY, tmp_path / "township.toml")
    secrets = {
        "wecom.url": robots.url("wecom"),
        "wrong.url": robots.url("wecom", "wrong-key"),
        "ding.url": robots.url("dingtalk"),
        "ding.key": DINGTALK_SECRET,
        "hook.url": robots.url("webhook"),
        "hook.key": HOOK_SECRET,
        "down.url": f"http://127.0.0.1:{free_port()}/cgi-bin/webhook/send?key=k",
    }
    for name, text in secrets.items():
        (tmp_path / name).write_text(text + "\n", encoding="utf-8")
        (tmp_path / name).chmod(0o600)
    channels = [
        ("g-wecom", "wecom", "wecom.url", None),
        ("wrong-key", "wecom", "wrong.url", None),
        ("g-ding", "dingtalk", "ding.url", "ding.key"),
        ("hook", "webhook", "hook.url", "hook.key"),
        ("down", "wecom", "down.url", None),
    ]
    text = f'policy = "township.toml"\nstate_dir = "{tmp_path / "state"}"\n'
    for name, kind, url, key in channels:
        text += f'\n[[channels]]\nname = "{name}"\nkind = "{kind}"\nurl_file = "{url}"\n'
        text += f'secret_file = "{key}"\n' if key else ""
    path = tmp_path / "quotad.toml"
    path.write_text(text, encoding="utf-8")
    return path


def notify(capsys: pytest.CaptureFixture[str], config: Path, channel: str) -> tuple[int, str, str]:
    code = main(["notify", "test", "--channel", channel, "-c", str(config)])
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


@pytest.mark.parametrize(("channel", "kind"), [("g-wecom", "wecom"), ("g-ding", "dingtalk"), ("hook", "webhook")])
def test_a_test_message_delivered(
    capsys: pytest.CaptureFixture[str], config: Path, robots: RobotServer, channel: str, kind: str
) -> None:
    code, out, _err = notify(capsys, config, channel)
    assert code == 0, out
    assert out.startswith(f"delivered on {channel} ({kind}): ")
    (got,) = robots.received
    text = got.json()["text"] if kind == "webhook" else got.json()["text"]["content"]
    assert f"quotad 测试消息：测试镇 通知渠道 {channel} 已接通" in text


def test_a_refused_test_message_prints_the_robots_answer(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out, _err = notify(capsys, config, "wrong-key")
    assert (code, out) == (
        1,
        "not delivered on wrong-key (wecom): 93000 invalid webhook url (trying again will not help)",
    )


def test_a_rate_limited_robot(capsys: pytest.CaptureFixture[str], config: Path, robots: RobotServer) -> None:
    robots.set_mode("rate")
    code, out, _err = notify(capsys, config, "g-ding")
    assert (code, out) == (
        1,
        "not delivered on g-ding (dingtalk): 130101 send too fast, exceed 20 times per minute"
        " (worth trying again later)",
    )


def test_an_unreachable_channel(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out, _err = notify(capsys, config, "down")
    assert code == 1
    assert out.startswith("not delivered on down (wecom): ConnectionRefusedError ")
    assert out.endswith("(worth trying again later)")


def test_an_unknown_channel_is_a_usage_error(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out, err = notify(capsys, config, "g-sms")
    assert (code, out) == (2, "")
    assert err == "quotad: no channel 'g-sms' in the daemon file (channels: down, g-ding, g-wecom, hook, wrong-key)"


def test_a_broken_configuration_sends_nothing(
    capsys: pytest.CaptureFixture[str], config: Path, robots: RobotServer
) -> None:
    (config.parent / "ding.key").unlink()
    code, out, err = notify(capsys, config, "g-wecom")
    assert (code, out) == (2, "")
    assert err.startswith(f"{config}:")
    assert "channels[2].secret_file: cannot read" in err
    assert robots.received == []

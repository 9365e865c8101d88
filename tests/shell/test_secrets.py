"""Secrets: read from the files the config names, never printed, and a file readable by everyone is flagged."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quotad.config.daemon import MqttSettings
from quotad.shell.sinks import MqttSink
from quotad.shell.store import Store
from tests.brokers import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Zq-7f3-unique-secret-a91c"


def daemon_file(tmp: Path, mode: int) -> Path:
    (tmp / "township.toml").write_text(
        (ROOT / "config" / "township.toml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    secret = tmp / "mqtt.pass"
    secret.write_text(SECRET + "\n", encoding="utf-8")
    os.chmod(secret, mode)
    token = tmp / "influx.token"
    token.write_text(SECRET + "-token\n", encoding="utf-8")
    os.chmod(token, 0o600)
    config = tmp / "quotad.toml"
    config.write_text(
        f'policy = "township.toml"\nstate_dir = "{tmp}/state"\n'
        '[mqtt]\nusername = "quotad"\npassword_file = "mqtt.pass"\n'
        '[influx]\napi = "v2"\nurl = "http://127.0.0.1:9"\norg = "t"\ntoken_file = "influx.token"\n',
        encoding="utf-8",
    )
    return config


def check_config(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quotad", "check-config", "-c", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_world_readable_secret_is_flagged_and_no_secret_is_printed(tmp_path: Path) -> None:
    result = check_config(daemon_file(tmp_path, 0o644))
    assert result.returncode == 0, result.stdout
    assert f"warning: {tmp_path / 'quotad.toml'}:5: mqtt.password_file: " in result.stderr
    assert "readable by every user" in result.stderr
    assert "influx.token_file" not in result.stderr  # 0600: fine
    assert SECRET not in result.stdout + result.stderr
    strict = check_config(daemon_file(tmp_path, 0o644), "--strict")
    assert strict.returncode == 2, strict.stdout
    assert f"warning: {tmp_path / 'quotad.toml'}:5: mqtt.password_file: " in strict.stdout
    assert SECRET not in strict.stdout + strict.stderr


def test_a_private_secret_is_not_flagged(tmp_path: Path) -> None:
    result = check_config(daemon_file(tmp_path, 0o600))
    assert result.returncode == 0
    # the example township's own warning (no feeder meters) is the only one: nothing about the secrets
    assert [line.split(": ")[2] for line in result.stderr.splitlines()] == ["township.feeder_meters"]


def test_a_broken_config_never_prints_the_secret(tmp_path: Path) -> None:
    config = daemon_file(tmp_path, 0o600)
    config.write_text(config.read_text(encoding="utf-8") + "[notices]\ntomorrow_at = 'evening'\n", encoding="utf-8")
    result = check_config(config)
    assert result.returncode == 2
    assert SECRET not in result.stdout + result.stderr


def test_the_sink_never_logs_the_password(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "mq").mkdir()
    secret = tmp_path / "mqtt.pass"
    secret.write_text(SECRET, encoding="utf-8")
    with Mosquitto(data_dir=tmp_path / "mq", users={"quotad": "another"}) as broker:  # refused: errors get logged
        settings = MqttSettings(port=broker.port, username="quotad", password_file=secret, client_id="s1")

        async def scenario() -> None:
            sink = MqttSink(settings, Store(tmp_path / "state"), "quotad/t/daemon")
            sink.start()
            await asyncio.sleep(2.0)
            await sink.stop()

        with caplog.at_level(logging.DEBUG):
            asyncio.run(scenario())
    assert caplog.records  # the refusal was logged
    assert SECRET not in caplog.text

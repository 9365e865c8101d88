"""`run` and a reload take a policy with warnings (a value that looks like a slip) and log them; only a broken
policy is refused. The daemon is built as `quotad run` builds it, without starting its loop: `reload` is what
SIGHUP runs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from quotad.config.load import load
from quotad.shell.daemon import Daemon

ROOT = Path(__file__).resolve().parents[2]


def test_start_and_reload_take_a_policy_with_warnings_and_log_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy = tmp_path / "township.toml"
    shipped = (ROOT / "config" / "township.toml").read_text(encoding="utf-8")
    policy.write_text(shipped, encoding="utf-8")  # no feeder meters: one warning
    config = tmp_path / "quotad.toml"
    config.write_text(f'policy = "township.toml"\nstate_dir = "{tmp_path}/state"\n', encoding="utf-8")
    caplog.set_level(logging.INFO, logger="quotad")
    daemon = Daemon(load(config), config)
    try:
        started = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(started) == 2
        assert started[0].startswith(f"warning: {policy}:19: township.feeder_meters: empty: ")
        # as check-config says it: the daemon file has no [mqtt], so the policy's MQTT meters are not read
        assert started[1].startswith(f"warning: {policy}:")
        assert started[1].endswith("8 MQTT meter(s) but the daemon file has no [mqtt] section: they are not read")
        caplog.clear()

        policy.write_text(shipped.replace("daily_limit_kwh = 4200", "daily_limit_kwh = 0.42"), encoding="utf-8")
        daemon.reload()
        messages = [r.getMessage() for r in caplog.records]
        assert f"policy reloaded from {policy}" in messages
        limit_line = shipped.splitlines().index("daily_limit_kwh = 4200      # ... under this cap") + 1
        assert any(
            m.startswith(f"warning: {policy}:{limit_line}: firms[1].daily_limit_kwh: a daily limit of 0.42")
            for m in messages
        )
        assert any("township.feeder_meters" in m for m in messages)
        assert next(f for f in daemon.journal.policy.firms if f.id == "shengda").daily_limit_kwh == 0.42  # taken
        caplog.clear()

        policy.write_text(shipped.replace("daily_limit_kwh = 4200", "daily_limit_kwh = -1"), encoding="utf-8")
        daemon.reload()
        messages = [r.getMessage() for r in caplog.records]
        assert any(m.startswith("reload refused: ") and "firms[1].daily_limit_kwh" in m for m in messages)
        assert next(f for f in daemon.journal.policy.firms if f.id == "shengda").daily_limit_kwh == 0.42  # kept
    finally:
        daemon.store.close()
        daemon.lock.release()

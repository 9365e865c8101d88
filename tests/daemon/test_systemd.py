"""The systemd units: valid (`systemd-analyze verify`) and hardened (exposure <= 2.0, judged offline)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


def analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is not installed (Debian: systemd)")
    return path


def installed_copy(unit: str, tmp: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's quotad (verify checks the binary exists)."""
    beside = Path(sys.executable).with_name("quotad")
    quotad = beside if beside.exists() else Path(shutil.which("quotad") or sys.executable)  # any real executable
    text = (UNITS / unit).read_text(encoding="utf-8").replace("/opt/quotad/bin/quotad", str(quotad))
    target = tmp / unit
    target.write_text(text, encoding="utf-8")
    return target


@pytest.mark.parametrize("unit", ["quotad.service", "quotad@.service"])
def test_unit_verifies(unit: str, tmp_path: Path) -> None:
    path = installed_copy(unit, tmp_path)
    if unit.endswith("@.service"):
        path = path.rename(tmp_path / "quotad@xx-town.service")
    result = subprocess.run([analyze(), "verify", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


@pytest.mark.parametrize("unit", ["quotad.service", "quotad@.service"])
def test_unit_exposure_at_most_2(unit: str, tmp_path: Path) -> None:
    path = installed_copy(unit, tmp_path)
    result = subprocess.run(
        [analyze(), "security", "--offline=true", "--no-pager", str(path)], capture_output=True, text=True, check=False
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-500:] + result.stderr
    assert float(match[1]) <= 2.0


@pytest.mark.parametrize("unit", ["quotad.service", "quotad@.service"])
def test_unit_is_a_notify_service_with_a_watchdog(unit: str) -> None:
    text = (UNITS / unit).read_text(encoding="utf-8")
    wanted = ["Type=notify", "WatchdogSec=", "Restart=on-failure", "StateDirectory=quotad", "ProtectSystem=strict"]
    wanted += ["NoNewPrivileges=yes", "PrivateTmp=yes", "DynamicUser=yes", "ExecReload=/bin/kill -HUP $MAINPID"]
    for line in wanted:
        assert line in text

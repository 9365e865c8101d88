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


# ---- the serial drop-in: what a Modbus meter on /dev/ttyUSB0 needs ------------------------------------------------

SERIAL = UNITS / "quotad.service.d" / "serial.conf"


def with_drop_in(unit: str, tmp: Path) -> Path:
    """A root for `--root=`: the unit (ExecStart at this checkout's quotad) and the serial drop-in in its .d folder."""
    root = tmp / "root"
    units = root / "etc" / "systemd" / "system"
    (units / f"{unit}.d").mkdir(parents=True)
    installed_copy(unit, tmp).rename(units / unit)
    (units / f"{unit}.d" / "serial.conf").write_text(SERIAL.read_text(encoding="utf-8"), encoding="utf-8")
    return root


def test_the_serial_drop_in_opens_usb_serial_ports_and_nothing_else() -> None:
    text = SERIAL.read_text(encoding="utf-8")
    settings = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert settings == ["[Service]", "PrivateDevices=no", "PrivateMounts=yes", "DevicePolicy=closed",
                        "DeviceAllow=char-ttyUSB rw", "SupplementaryGroups=dialout"]  # fmt: skip


@pytest.mark.parametrize(("unit", "instance"), [("quotad.service", "quotad.service"),
                                                ("quotad@.service", "quotad@xx-town.service")])  # fmt: skip
def test_the_unit_with_the_serial_drop_in_keeps_exposure_at_most_2(unit: str, instance: str, tmp_path: Path) -> None:
    root = with_drop_in(unit, tmp_path)
    result = subprocess.run(
        [analyze(), "security", "--offline=true", f"--root={root}", "--no-pager", instance],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert re.search(r"DeviceAllow=.*char-ttyUSB:rw", result.stdout), result.stdout[-2000:]  # the drop-in is read
    assert re.search(r"✗ PrivateDevices=", result.stdout), result.stdout[-2000:]
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-500:] + result.stderr
    assert float(match[1]) <= 2.0


@pytest.mark.parametrize("unit", ["quotad.service", "quotad@.service"])
def test_the_unit_with_the_serial_drop_in_verifies(unit: str, tmp_path: Path) -> None:
    """`verify` reads no drop-in beside a unit given by path: the drop-in's [Service] is appended to the unit (what
    systemd makes of a drop-in: its settings after the unit's)."""
    path = installed_copy(unit, tmp_path)
    path.write_text(path.read_text(encoding="utf-8") + "\n" + SERIAL.read_text(encoding="utf-8"), encoding="utf-8")
    if unit.endswith("@.service"):
        path = path.rename(tmp_path / "quotad@xx-town.service")
    result = subprocess.run([analyze(), "verify", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""

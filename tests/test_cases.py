"""Scenario cases: `quotad replay` over tests/cases/<name>/ must print exactly the expected alerts.

Each case folder holds `township.toml`, `readings.jsonl` or `readings.csv`, `expected_alerts.jsonl` (one alert
payload per line, in the order raised) and a README; `commands.jsonl` when people act in it (an order made by hand:
`replay --commands`). A case whose readings deliberately contain malformed lines
lists their line numbers in `malformed_lines.txt`; replay must report each of them on stderr as
`readings.<ext>:<n>:`, and no others.

Expected alerts are written from SPEC by hand, never by running replay.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CASES_DIR = Path(__file__).parent / "cases"
MIN_CASES = 12
REPORTED_LINE = re.compile(r"^(readings\.(?:jsonl|csv)):(\d+):", re.MULTILINE)


def _case_dirs() -> list[Path]:
    if not CASES_DIR.is_dir():
        return []
    return sorted(p for p in CASES_DIR.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


CASES = _case_dirs()


def _readings_name(case: Path) -> str:
    found = [name for name in ("readings.jsonl", "readings.csv") if (case / name).is_file()]
    assert len(found) == 1, f"{case.name}: needs exactly one of readings.jsonl / readings.csv, found {found}"
    return found[0]


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _env() -> dict[str, str]:
    """The caller's environment without quotad overrides, so nothing outside the case folder steers replay."""
    return {k: v for k, v in os.environ.items() if not k.startswith("QUOTAD_")}


def _replay(workdir: Path, readings: str) -> subprocess.CompletedProcess[bytes]:
    commands = ["--commands", "commands.jsonl"] if (workdir / "commands.jsonl").is_file() else []
    return subprocess.run(
        [sys.executable, "-m", "quotad", "replay", "-c", "township.toml", readings, *commands],
        cwd=workdir,
        capture_output=True,
        timeout=120,
        check=False,
        env=_env(),
    )


def _parse_alerts(stdout: bytes, what: str) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate(stdout.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:  # pragma: no cover - a failure message
            pytest.fail(f"{what}:{n}: not JSON ({exc}): {line!r}")
        assert isinstance(item, dict), f"{what}:{n}: not an object: {line!r}"
        out.append(item)
    return out


def _expected_malformed(case: Path) -> set[int]:
    path = case / "malformed_lines.txt"
    if not path.is_file():
        return set()
    return {int(n) for n in path.read_text(encoding="utf-8").split()}


def test_enough_cases() -> None:
    assert len(CASES) >= MIN_CASES, f"tests/cases has {len(CASES)} case folders, expected at least {MIN_CASES}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Path, tmp_path: Path) -> None:
    for required in ("township.toml", "expected_alerts.jsonl", "README.md"):
        assert (case / required).is_file(), f"{case.name}: missing {required}"
    readings = _readings_name(case)

    work = tmp_path / case.name
    shutil.copytree(case, work)
    before = _listing(work)

    first = _replay(work, readings)
    stderr = first.stderr.decode("utf-8", errors="replace")
    assert first.returncode == 0, f"exit {first.returncode}; stderr:\n{stderr}"
    second = _replay(work, readings)
    assert second.returncode == 0, second.stderr.decode("utf-8", errors="replace")

    assert _listing(work) == before, "replay created or removed files in the case folder"
    assert first.stdout == second.stdout, "replay output differs between two runs"

    malformed = _expected_malformed(case)
    reported = {int(m.group(2)) for m in REPORTED_LINE.finditer(stderr) if m.group(1) == readings}
    assert reported == malformed, (
        f"malformed lines reported {sorted(reported)}, expected {sorted(malformed)}:\n{stderr}"
    )
    for n in malformed:
        assert f"{readings}:{n}:" in stderr

    expected = _parse_alerts((case / "expected_alerts.jsonl").read_bytes(), "expected_alerts.jsonl")
    actual = _parse_alerts(first.stdout, "stdout")
    assert actual == expected

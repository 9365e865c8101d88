"""`quotad check-config` on broken configurations: every problem listed at once, each where the operator edits.

Each `broken/<name>.toml` (and `broken/<case>/quotad.toml`, a daemon file) declares at its top the problems it
must produce, one comment line each:

    # expect: 23: firms[1].group: unknown group
    # expect: township.toml:6: township.daily_cap_kwh: Input should be greater than 0

`LINE: field.path: message` is about the declaring file; `FILE:LINE: ...` about another file, named relative to
the declaring file's folder. The output must hold, for each, a line starting with `<file as printed>:LINE:
field.path: message` (the message may go on), and no other problem line. Files under `valid/` and
`broken/_valid.toml` (the policy every broken file is a copy of) must pass.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BROKEN = HERE / "broken"
VALID = HERE / "valid"
VALID_POLICY = BROKEN / "_valid.toml"
VALID_DAEMON = VALID / "quotad.toml"

_EXPECT = re.compile(r"^# expect: (?:(?P<file>[^:\s]+):)?(?P<line>\d+): (?P<rest>.+)$")

BROKEN_FILES = [
    *sorted(p for p in BROKEN.glob("*.toml") if not p.name.startswith("_")),
    *sorted(BROKEN.glob("*/quotad.toml")),
]
VALID_FILES = [VALID_POLICY, *sorted(VALID.glob("*.toml"))]


def _id(path: Path) -> str:
    return path.relative_to(BROKEN if path.is_relative_to(BROKEN) else VALID).as_posix()


def check_config(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `quotad check-config -c path` with a clean environment (no QUOTAD_* variables) plus `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("QUOTAD_")}
    clean.update(PYTHONIOENCODING="utf-8", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "quotad", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=clean,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def expectations(path: Path) -> list[str]:
    """The output-line prefixes that `path`'s `# expect:` comments declare."""
    found = []
    for text in path.read_text(encoding="utf-8").splitlines():
        match = _EXPECT.match(text)
        if match:
            file = path if match["file"] is None else path.parent / match["file"]
            found.append(f"{file}:{match['line']}: {match['rest']}")
    return found


def problem_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.strip()]


def _show(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"


def _no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr, _show(result)


@pytest.mark.parametrize("path", BROKEN_FILES, ids=_id)
def test_broken_file_lists_exactly_its_problems(path: Path) -> None:
    expected = expectations(path)
    assert expected, f"{path} declares no `# expect:` line"
    result = check_config(path)
    _no_traceback(result)
    unmatched = problem_lines(result)
    missing = []
    for prefix in expected:
        hit = next((line for line in unmatched if line.startswith(prefix)), None)
        if hit is None:
            missing.append(prefix)
        else:
            unmatched.remove(hit)
    report = f"missing: {missing}\nunexpected: {unmatched}\n{_show(result)}"
    assert not missing, report
    assert not unmatched, report
    assert len(problem_lines(result)) == len(expected), _show(result)
    assert result.returncode == 2, _show(result)


@pytest.mark.parametrize("path", VALID_FILES, ids=_id)
def test_valid_file_passes_with_a_one_line_summary(path: Path) -> None:
    result = check_config(path)
    _no_traceback(result)
    assert result.returncode == 0, _show(result)
    assert len(problem_lines(result)) == 1, _show(result)


def test_the_suite_covers_enough_cases() -> None:
    assert len(BROKEN_FILES) >= 20


# ---- the environment: QUOTAD_<SECTION>__<KEY> ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("notaport", "Input should be a valid integer"),
        ("70000", "Input should be less than or equal to 65535"),
    ],
)
def test_bad_environment_value_is_reported_against_the_variable(value: str, message: str) -> None:
    result = check_config(VALID_DAEMON, {"QUOTAD_MQTT__PORT": value})
    _no_traceback(result)
    assert result.returncode == 2, _show(result)
    assert len(problem_lines(result)) == 1, _show(result)
    assert problem_lines(result)[0].startswith(f"$QUOTAD_MQTT__PORT: mqtt.port: {message}"), _show(result)


def test_environment_overrides_a_valid_file() -> None:
    result = check_config(VALID_DAEMON, {"QUOTAD_MQTT__PORT": "1884"})
    _no_traceback(result)
    assert result.returncode == 0, _show(result)
    assert len(problem_lines(result)) == 1, _show(result)


def test_bad_environment_value_for_the_policy_is_reported_against_the_variable() -> None:
    result = check_config(VALID_DAEMON, {"QUOTAD_TOWNSHIP__WARNING_AT": "1.5"})
    _no_traceback(result)
    assert result.returncode == 2, _show(result)
    assert len(problem_lines(result)) == 1, _show(result)
    assert problem_lines(result)[0].startswith(
        "$QUOTAD_TOWNSHIP__WARNING_AT: township.warning_at: Input should be less than 1"
    ), _show(result)


# ---- secrets: files named by the daemon file must be readable ----------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_password_file_is_reported_at_its_key(tmp_path: Path, kind: str) -> None:
    secret = tmp_path / "mqtt.pass"
    if kind == "directory":
        secret.mkdir()
    daemon = tmp_path / "quotad.toml"
    daemon.write_text(
        f'policy = "{VALID_POLICY.as_posix()}"\n'
        'state_dir = "state"\n'
        "\n"
        "[mqtt]\n"
        'host = "127.0.0.1"\n'
        'username = "quotad"\n'
        'password_file = "mqtt.pass"\n',  # line 7
        encoding="utf-8",
    )
    result = check_config(daemon)
    _no_traceback(result)
    assert result.returncode == 2, _show(result)
    assert len(problem_lines(result)) == 1, _show(result)
    assert problem_lines(result)[0].startswith(f"{daemon}:7: mqtt.password_file: cannot read"), _show(result)

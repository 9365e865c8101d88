"""`quotad check-config` on broken configurations: every problem listed at once, each where the operator edits.

Each `broken/<name>.toml` (and `broken/<case>/quotad.toml`, a daemon file) declares at its top the problems it
must produce, one comment line each:

    # expect: 23: firms[1].group: unknown group
    # expect: township.toml:6: township.daily_cap_kwh: Input should be greater than 0

`LINE: field.path: message` is about the declaring file; `FILE:LINE: ...` about another file, named relative to
the declaring file's folder. The output must hold, for each, a line starting with `<file as printed>:LINE:
field.path: message` (the message may go on), and no other problem line. Files under `valid/` and
`broken/_valid.toml` (the policy every broken file is a copy of) must pass.

Files under `warned/`, `valid/` and `broken/_valid.toml` declare the warnings they must produce the same way:

    # warn: 7: township.daily_cap_kwh: a daily cap of 5.4611 kWh is below 100 kWh

They pass (exit 0) with exactly those `warning: FILE:LINE: field.path: message` lines on stderr and the `ok`
summary on stdout; under `--strict` the same lines are the problems (exit 2) and there is no `ok`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.locales import english

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BROKEN = HERE / "broken"
VALID = HERE / "valid"
WARNED = HERE / "warned"
VALID_POLICY = BROKEN / "_valid.toml"
VALID_DAEMON = VALID / "quotad.toml"

_EXPECT = re.compile(r"^# expect: (?:(?P<file>[^:\s]+):)?(?P<line>\d+): (?P<rest>.+)$")
_WARN = re.compile(r"^# warn: (?:(?P<file>[^:\s]+):)?(?P<line>\d+): (?P<rest>.+)$")

BROKEN_FILES = [
    *sorted(p for p in BROKEN.glob("*.toml") if not p.name.startswith("_")),
    *sorted(BROKEN.glob("*/quotad.toml")),
]
VALID_FILES = [VALID_POLICY, *sorted(VALID.glob("*.toml"))]
WARNED_FILES = sorted(WARNED.glob("*.toml"))


def _id(path: Path) -> str:
    return path.relative_to(next(d for d in (BROKEN, VALID, WARNED) if path.is_relative_to(d))).as_posix()


def check_config(
    path: Path, env: dict[str, str] | None = None, *args: str, language: Callable[..., dict[str, str]] = english
) -> subprocess.CompletedProcess[str]:
    """Run `quotad check-config -c path [args]` with a clean environment (no QUOTAD_* variables) plus `env`, in
    English (the text the expectations declare) unless `language` says otherwise."""
    clean = language({k: v for k, v in os.environ.items() if not k.upper().startswith("QUOTAD_")})
    clean.update(PYTHONIOENCODING="utf-8", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "quotad", "check-config", "-c", str(path), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=clean,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def expectations(path: Path, declared: re.Pattern[str] = _EXPECT) -> list[str]:
    """The output-line prefixes that `path`'s `# expect:` (or `# warn:`) comments declare."""
    found = []
    for text in path.read_text(encoding="utf-8").splitlines():
        match = declared.match(text)
        if match:
            file = path if match["file"] is None else path.parent / match["file"]
            found.append(f"{file}:{match['line']}: {match['rest']}")
    return found


def unmatched(expected: list[str], lines: list[str]) -> tuple[list[str], list[str]]:
    """(expected prefixes no line starts with, lines no expected prefix accounts for), each line used once."""
    left, missing = list(lines), []
    for prefix in expected:
        hit = next((line for line in left if line.startswith(prefix)), None)
        if hit is None:
            missing.append(prefix)
        else:
            left.remove(hit)
    return missing, left


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
    missing, unexpected = unmatched(expected, problem_lines(result))
    report = f"missing: {missing}\nunexpected: {unexpected}\n{_show(result)}"
    assert not missing, report
    assert not unexpected, report
    assert len(problem_lines(result)) == len(expected), _show(result)
    assert result.returncode == 2, _show(result)


def passed_with_a_summary(result: subprocess.CompletedProcess[str]) -> None:
    """Exit 0; stdout is the `ok` line, then the figures to eyeball, one indented line each."""
    _no_traceback(result)
    assert result.returncode == 0, _show(result)
    lines = problem_lines(result)
    assert ": ok: " in lines[0], _show(result)
    assert all(line.startswith("  ") for line in lines[1:]), _show(result)


@pytest.mark.parametrize("path", VALID_FILES + WARNED_FILES, ids=_id)
def test_valid_file_passes_with_exactly_its_warnings(path: Path) -> None:
    expected = [f"warning: {line}" for line in expectations(path, _WARN)]
    result = check_config(path)
    passed_with_a_summary(result)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    missing, unexpected = unmatched(expected, warnings)
    assert (missing, unexpected) == ([], []), _show(result)
    assert len(result.stderr.splitlines()) == len(expected), _show(result)


@pytest.mark.parametrize("path", VALID_FILES + WARNED_FILES, ids=_id)
def test_strict_makes_the_warnings_problems(path: Path) -> None:
    expected = [f"warning: {line}" for line in expectations(path, _WARN)]
    assert expected, f"{path} declares no `# warn:` line"
    result = check_config(path, None, "--strict")
    _no_traceback(result)
    missing, unexpected = unmatched(expected, problem_lines(result))
    assert (missing, unexpected) == ([], []), _show(result)
    assert result.returncode == 2, _show(result)


def test_the_warnings_cover_every_kind_of_slip() -> None:
    declared = " ".join(line for path in WARNED_FILES for line in expectations(path, _WARN))
    for kind in (
        "township.daily_cap_kwh: a daily cap of 5.4611 kWh is below 100 kWh",  # the issue's own example
        "control.phases[1].daily_cap_kwh:",
        "].daily_limit_kwh: a daily limit of 0.42 kWh is below 100 kWh",
        "is not above the firm's standby of 50 kWh (township.standby_kwh)",
        "is not above the firm's standby of 150 kWh (its standby_kwh)",
        "].monthly_quota_kwh: a monthly quota of",
        "].baseline_kwh: a baseline of",
        "township.feeder_meters: empty",
    ):
        assert kind in declared, kind


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


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("quotad/\n", "contains the control character '\\n' (U+000A)"),
        ("quotad/+", "contains the wildcard '+'"),
        ("quotad/#", "contains the wildcard '#'"),
        ("q" * 257, "257 bytes in UTF-8: at most 256"),
        ("quotad/\udcff", "Input should be a valid string"),  # an environment byte that is not UTF-8 (0xff)
        ("$SYS", "starts with '$'"),
    ],
)
def test_a_topic_prefix_mqtt_refuses_is_reported_against_the_variable(value: str, message: str) -> None:
    result = check_config(VALID_DAEMON, {"QUOTAD_MQTT__TOPIC_PREFIX": value})
    _no_traceback(result)
    assert result.returncode == 2, _show(result)
    assert len(problem_lines(result)) == 1, _show(result)
    assert problem_lines(result)[0].startswith(f"$QUOTAD_MQTT__TOPIC_PREFIX: mqtt.topic_prefix: {message}"), _show(
        result
    )


def test_environment_overrides_a_valid_file() -> None:
    result = check_config(VALID_DAEMON, {"QUOTAD_MQTT__PORT": "1884"})
    passed_with_a_summary(result)


def test_a_slip_from_the_environment_is_reported_against_the_variable() -> None:
    env = {"QUOTAD_TOWNSHIP__DAILY_CAP_KWH": "5.4611"}
    result = check_config(VALID_DAEMON, env)
    passed_with_a_summary(result)
    warning = "warning: $QUOTAD_TOWNSHIP__DAILY_CAP_KWH: township.daily_cap_kwh: a daily cap of 5.4611 kWh is below"
    assert warning in result.stderr, _show(result)
    strict = check_config(VALID_DAEMON, env, "--strict")
    assert strict.returncode == 2, _show(strict)
    assert warning in strict.stdout, _show(strict)


def test_strict_lists_errors_and_warnings_together(tmp_path: Path) -> None:
    """Under --strict a warning is a problem like any other: listed with the errors, in one run."""
    text = VALID_POLICY.read_text(encoding="utf-8")
    text = text.replace("daily_cap_kwh = 54611", "daily_cap_kwh = 5.4611").replace('group = "paper"', 'group = "papr"')
    path = tmp_path / "township.toml"
    path.write_text(text, encoding="utf-8")
    lenient, strict = check_config(path), check_config(path, None, "--strict")
    assert lenient.returncode == strict.returncode == 2, _show(lenient) + _show(strict)
    assert [line.split(": ")[1] for line in problem_lines(lenient)] == ["firms[0].group"], _show(lenient)
    assert problem_lines(strict) == [
        f"warning: {path}:4: township.feeder_meters: not given: the township's total, and its daily cap, count the "
        "firms' meters only, not the residents and shops (list the township's feeder meters here if it has them)",
        f"warning: {path}:8: township.daily_cap_kwh: a daily cap of 5.4611 kWh is below 100 kWh: if it was meant in "
        "万度 (10,000 kWh), write 54,611",
        f"{path}:38: firms[0].group: unknown group 'papr' (groups: paper, seven)",
    ], _show(strict)


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


# ---- [influx]: InfluxDB 1.x's credentials, the outbox's bound ------------------------------------------------

NOT_BOTH = "influx: give either username and password_file or token_file, not both"


@pytest.mark.parametrize(
    ("lines", "env", "problem"),
    [
        ('username = "quotad"\npassword_file = "influx.pass"\n', {}, None),
        ('password_file = "influx.pass"\n', {"QUOTAD_INFLUX__USERNAME": "quotad"}, None),
        ('token_file = "influx.pass"\n', {}, None),  # InfluxDB 1.8+ (user:password), 2.x's v1 /write: README
        ("outbox_max_mb = 64\noutbox_max_age_h = 24\n", {}, None),
        ('password_file = "influx.pass"\n', {}, "3: influx: username and password_file go together"),
        ('username = "quotad"\n', {}, "3: influx: username and password_file go together"),
        ('username = "quotad"\npassword_file = "influx.pass"\ntoken_file = "influx.pass"\n', {}, f"3: {NOT_BOTH}"),
        (
            'api = "v2"\norg = "t"\nusername = "quotad"\npassword_file = "influx.pass"\n',
            {},
            "3: influx: username and password_file are for api = 'v1' (InfluxDB 1.x); api = 'v2' takes token_file",
        ),
        ('username = "quotad"\npassword_file = "gone.pass"\n', {}, "6: influx.password_file: cannot read"),
        ("outbox_max_mb = 0\n", {}, "5: influx.outbox_max_mb: Input should be greater than 0"),
        ("outbox_max_age_h = -1\n", {}, "5: influx.outbox_max_age_h: Input should be greater than 0"),
    ],
)
def test_influx_credentials_and_bound(tmp_path: Path, lines: str, env: dict[str, str], problem: str | None) -> None:
    (tmp_path / "influx.pass").write_text("s3cret\n", encoding="utf-8")
    os.chmod(tmp_path / "influx.pass", 0o600)
    daemon = tmp_path / "quotad.toml"
    daemon.write_text(
        f'policy = "{VALID_POLICY.as_posix()}"\nstate_dir = "state"\n[influx]\nurl = "http://127.0.0.1:8086"\n{lines}',
        encoding="utf-8",
    )
    result = check_config(daemon, env)
    if problem is None:
        passed_with_a_summary(result)
        return
    _no_traceback(result)
    assert result.returncode == 2, _show(result)
    assert len(problem_lines(result)) == 1, _show(result)
    assert problem_lines(result)[0].startswith(f"{daemon}:{problem}"), _show(result)
    assert "s3cret" not in result.stdout + result.stderr

"""`check-config`, `run` and a reload validate through one path (SPEC, "The policy file"): on every broken policy of
the corpus (and a sample of the generated ones) all three refuse it with the same problems, each `file:line`; on
every valid one, all three take it.

- `quotad check-config -c DAEMON_FILE`: exit 2, the problems on stdout.
- `quotad run -c DAEMON_FILE`: exit 2, the same problems on stderr, before anything is touched (no state directory).
- a reload: ONE real daemon (`quotad run`, no broker, no database: it serves the valid policy) is pointed at each
  file in turn (its daemon file rewritten, then SIGHUP) and must log `reload refused: <problem>` for the same
  problems, then that it keeps the running policy; a valid file is taken (`policy reloaded`).

A broken policy file is named by a daemon file written beside the test's state; a broken daemon file
(`broken/<case>/quotad.toml`) is copied over the running daemon's file with its paths made absolute (same lines),
and the daemon's problems are compared with that file's name put back.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quotad.cli import main
from quotad.core import i18n
from tests.config.test_check_config import BROKEN, BROKEN_FILES, VALID_FILES, WARNED_FILES, expectations, unmatched
from tests.config.test_generated_broken import SHIPPED, mutate
from tests.locales import english

ROOT = Path(__file__).resolve().parents[2]
VALID_POLICY = BROKEN / "_valid.toml"
GENERATED = list(range(0, 210, 7))  # a sample of test_generated_broken's seeds: 30 files
_LOCATED = re.compile(r"^(\$QUOTAD_\w+|[^:]+:\d+): ")


class RunningDaemon:
    """`quotad run` on a daemon file of its own; its log read line by line on a thread."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config = folder / "quotad.toml"
        self.state = folder / "state"
        self.point_at(VALID_POLICY)
        env = english({k: v for k, v in os.environ.items() if not k.upper().startswith(("QUOTAD_", "NOTIFY_"))})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "quotad", "run", "-c", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, encoding="utf-8", env=env, cwd=ROOT,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.until(lambda line: "quotad serving" in line, 60)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))

    def point_at(self, policy: Path) -> None:
        self.config.write_text(f'policy = "{policy}"\nstate_dir = "{self.state}"\n', encoding="utf-8")

    def until(self, done: object, timeout: float = 30.0) -> list[str]:
        """The log lines up to and including the first `done(line)` accepts."""
        assert callable(done)
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.process.poll() is None, f"quotad run exited {self.process.returncode}: {seen}"
                continue
            seen.append(line)
            if done(line):
                return seen
        msg = f"no such line within {timeout} s; seen: {seen}"
        raise AssertionError(msg)

    def reload(self) -> tuple[bool, list[str]]:
        """SIGHUP; (taken, the problems it logged as `reload refused: ...`)."""
        self.process.send_signal(signal.SIGHUP)
        seen = self.until(lambda line: "the running policy is kept" in line or "policy reloaded from" in line)
        problems = [line.split("reload refused: ", 1)[1] for line in seen if "reload refused: " in line]
        return "policy reloaded from" in seen[-1], problems

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    running = RunningDaemon(tmp_path_factory.mktemp("running"))
    try:
        yield running
    finally:
        assert running.stop() == 0


@pytest.fixture
def in_english(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The in-process commands in the daemon's language (the catalog is looked up once per process)."""
    for name in [n for n in os.environ if n.upper().startswith("QUOTAD_")] + ["LANGUAGE"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    i18n._current.cache_clear()
    yield
    i18n._current.cache_clear()


def command(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], list[str]]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def daemon_file_for(policy: Path, folder: Path) -> Path:
    config = folder / "quotad.toml"
    config.write_text(f'policy = "{policy}"\nstate_dir = "{folder / "state"}"\n', encoding="utf-8")
    return config


def absolute_copy(case: Path, running: RunningDaemon) -> None:
    """`case` (a daemon file) over the running daemon's file, its relative paths made absolute, line for line."""
    text = case.read_text(encoding="utf-8")
    text = re.sub(
        r'^(policy|state_dir|\w+_file) = "([^"/][^"]*)"', lambda m: f'{m[1]} = "{case.parent / m[2]}"', text, flags=re.M
    )
    running.config.write_text(text, encoding="utf-8")


def three_ways(
    config: Path, daemon: RunningDaemon, capsys: pytest.CaptureFixture[str], as_running: Path | None = None
) -> list[str]:
    """check-config, run and a reload on `config` (already the running daemon's file when `as_running` is set):
    their problems, asserted equal."""
    state = config.parent / "state"
    code, checked, _err = command(capsys, "check-config", "-c", str(config))
    assert code == 2, checked
    assert checked, "check-config refused the file without a problem"
    assert all(_LOCATED.match(line) for line in checked), checked
    code, out, refused = command(capsys, "run", "-c", str(config))
    assert code == 2, out + refused
    assert sorted(refused) == sorted(checked)
    assert not state.exists(), "quotad run touched the state before refusing"
    taken, reloaded = daemon.reload()
    assert not taken
    if as_running is not None:
        reloaded = [line.replace(str(daemon.config), str(as_running)) for line in reloaded]
    assert sorted(reloaded) == sorted(checked)
    return checked


@pytest.mark.usefixtures("in_english")
def test_every_broken_file_is_refused_alike_by_check_config_run_and_reload(
    daemon: RunningDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checked = 0
    for n, path in enumerate(BROKEN_FILES):
        folder = tmp_path / f"case{n}"
        folder.mkdir()
        if path.name == "quotad.toml":  # a daemon file: run and check as it is; reloaded as the running one
            absolute_copy(path, daemon)
            problems = three_ways(path, daemon, capsys, as_running=path)
        else:
            daemon.point_at(path)
            problems = three_ways(daemon_file_for(path, folder), daemon, capsys)
        missing, _others = unmatched(expectations(path), problems)
        assert not missing, (path, problems)
        checked += 1
    assert checked == len(BROKEN_FILES) >= 45
    daemon.point_at(VALID_POLICY)
    assert daemon.reload()[0]


@pytest.mark.usefixtures("in_english")
def test_every_valid_file_is_taken_by_check_config_and_reload(
    daemon: RunningDaemon, capsys: pytest.CaptureFixture[str]
) -> None:
    for path in VALID_FILES + WARNED_FILES:
        code, out, _err = command(capsys, "check-config", "-c", str(path))
        assert code == 0, out
        if path.name == "quotad.toml":
            absolute_copy(path, daemon)
        else:
            daemon.point_at(path)
        assert daemon.reload() == (True, []), path
    daemon.point_at(VALID_POLICY)
    assert daemon.reload()[0]


@pytest.mark.usefixtures("in_english")
def test_generated_broken_files_are_refused_alike(
    daemon: RunningDaemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = 0
    for seed in GENERATED:
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        policy = folder / "township.toml"
        policy.write_text(mutate(SHIPPED, random.Random(seed)), encoding="utf-8")
        config = daemon_file_for(policy, folder)
        daemon.point_at(policy)
        with contextlib.suppress(SystemExit):
            code, _out, _err = command(capsys, "check-config", "-c", str(config))
        if code == 0:  # a mutation that left the file valid: the daemon takes it too
            assert daemon.reload() == (True, []), seed
            continue
        three_ways(config, daemon, capsys)
        refused += 1
    assert refused >= len(GENERATED) // 2
    daemon.point_at(VALID_POLICY)
    assert daemon.reload()[0]


@pytest.mark.usefixtures("in_english")
def test_run_on_a_policy_file_alone_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = command(capsys, "run", "-c", str(VALID_POLICY))
    assert code == 2
    assert any("is a policy file" in line for line in err), err

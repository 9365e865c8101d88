"""The state directory is private: 0700, and every file in it 0600, whatever the umask the daemon was started under.

Under systemd the unit's `UMask=0077` would hide a fault here; started by hand (or by a supervisor) under the usual
umask 022, SQLite's `-wal` and `-shm` and the lock file came out 0644: the journal's readings and the outboxes' alerts
readable by every user of the server (issue 12).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import policy_text
from tests.shell.township import eventually


def modes(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()}


def test_every_file_of_the_state_directory_is_private_under_umask_022(tmp_path: Path) -> None:
    (tmp_path / "township.toml").write_text(policy_text(), encoding="utf-8")
    state = tmp_path / "state"
    config = tmp_path / "quotad.toml"
    config.write_text(
        f'policy = "township.toml"\nstate_dir = "{state}"\n[clock]\nstart = 2010-10-19T08:00:00+08:00\n',
        encoding="utf-8",
    )
    state.mkdir(mode=0o755)  # left by an older quotad, or made by hand: tightened too
    (state / "daemon.lock").touch(mode=0o644)
    os.chmod(state / "daemon.lock", 0o644)
    log = (tmp_path / "daemon.log").open("ab")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("QUOTAD_", "NOTIFY_", "WATCHDOG_"))}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "quotad", "run", "-c", str(config)],
        stdout=log, stderr=log, env=environ, umask=0o022,
    )  # fmt: skip
    try:
        eventually(lambda: "quotad serving" in (tmp_path / "daemon.log").read_text(encoding="utf-8"), "serving")
        time.sleep(0.5)  # a few ticks: whatever the daemon writes, it has written
        running = modes(state)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        log.close()
    assert {"quotad.db", "quotad.db-wal", "quotad.db-shm", "daemon.lock", "clock.json"} <= set(running), running
    assert {name: mode for name, mode in running.items() if mode != 0o600} == {}, {
        name: oct(mode) for name, mode in running.items()
    }
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert {name: mode for name, mode in modes(state).items() if mode != 0o600} == {}  # and after it stopped

"""`quotad schedule` reads the standing orders from the daemon's state, and says when it has none to read.

The state is made the way the daemon makes it: the recorded day of the example township journaled reading by
reading. That day issues three cutoff orders (the paper mill on the seven's day, a workshop on its rest day,
Shengda over its limit), each from 2010-10-20 to the end of the control period.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from quotad.commands.replay import read_readings
from quotad.config.load import load
from quotad.shell.journal import Journal
from quotad.shell.store import Store
from tests.locales import english

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"
DAY = CONFIG / "recorded" / "2010-10-20.jsonl"


def quotad(*args: str) -> subprocess.CompletedProcess[str]:
    """The command, in English (what these tests assert)."""
    return subprocess.run(
        [sys.executable, "-m", "quotad", *args], capture_output=True, text=True, env=english(), check=False
    )


def _daemon_file(tmp_path: Path) -> Path:
    config = tmp_path / "quotad.toml"
    config.write_text(f'policy = "{CONFIG / "township.toml"}"\nstate_dir = "{tmp_path / "state"}"\n', encoding="utf-8")
    return config


@pytest.fixture(scope="module")
def journaled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A daemon file whose state holds the recorded day, journaled as the daemon does."""
    tmp_path = tmp_path_factory.mktemp("schedule")
    config = _daemon_file(tmp_path)
    loaded = load(config)
    assert loaded.daemon is not None
    store = Store(loaded.daemon.state_dir)
    journal = Journal(store, loaded.policy, None, False)
    for _n, reading in read_readings(DAY, sys.stderr):
        journal.record_reading(reading)
    assert sorted(journal.engine.orders) == ["rongsheng-paper", "shengda", "w-003"]
    store.close()
    return config


def _rows(stdout: str) -> dict[str, str]:
    return {line[:10]: line for line in stdout.splitlines() if line[:4] == "2010" or line[:4] == "2011"}


def _cut_off(row: str) -> str:
    """The 一停到底 column of a row (cells are apart by two spaces or more)."""
    return re.split(r"\s{2,}", row)[7]


def test_schedule_shows_the_firms_the_journal_cut_off(journaled: Path) -> None:
    result = quotad("schedule", "-c", str(journaled), "--from", "2010-10-19", "--days", "4")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    rows = _rows(result.stdout)
    assert _cut_off(rows["2010-10-19"]) == "—"  # the orders start on the 20th
    for day in ("2010-10-20", "2010-10-21", "2010-10-22"):
        assert _cut_off(rows[day]) == "荣生公司造纸厂、盛达机电公司、王氏木器作坊", day
    # Shengda is cut off: no longer named as the seven's firm that runs on their off day
    assert "盛达机电公司除外" not in rows["2010-10-21"]
    as_json = quotad("schedule", "-c", str(journaled), "--from", "2010-10-21", "--days", "1", "--json")
    listed = json.loads(as_json.stdout)
    assert listed[0]["cut_off_firms"] == ["rongsheng-paper", "shengda", "w-003"]
    assert listed[0]["exempt_running"] == []


def test_orders_end_with_the_control_period(journaled: Path) -> None:
    rows = _rows(quotad("schedule", "-c", str(journaled), "--from", "2010-12-31", "--days", "2").stdout)
    assert _cut_off(rows["2010-12-31"]) == "荣生公司造纸厂、盛达机电公司、王氏木器作坊"
    assert _cut_off(rows["2011-01-01"]) == "—"


def test_a_lifted_order_is_no_longer_shown(journaled: Path, tmp_path: Path) -> None:
    # a copy of the state, so the other tests keep theirs
    config = _daemon_file(tmp_path)
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "state" / "quotad.db").write_bytes((journaled.parent / "state" / "quotad.db").read_bytes())
    lifted = quotad("order", "lift", "shengda", "--reason", "县里批准复产", "-c", str(config))
    assert lifted.returncode == 0, lifted.stderr
    row = _rows(quotad("schedule", "-c", str(config), "--from", "2010-10-21", "--days", "1").stdout)["2010-10-21"]
    assert _cut_off(row) == "荣生公司造纸厂、王氏木器作坊"
    assert "盛达机电公司除外，按日限额 4200 kWh 运行" in row  # runs again, under its limit


def test_without_state_it_says_so_and_creates_nothing(tmp_path: Path) -> None:
    config = _daemon_file(tmp_path)
    result = quotad("schedule", "-c", str(config), "--from", "2010-10-21", "--days", "1")
    assert result.returncode == 0
    assert f"no daemon state in {tmp_path / 'state'} yet" in result.stderr
    assert not (tmp_path / "state").exists()
    row = _rows(result.stdout)["2010-10-21"]
    assert "七家企业（盛达机电公司除外，按日限额 4200 kWh 运行）" in row


def test_a_policy_file_alone_says_it_cannot_show_orders() -> None:
    result = quotad("schedule", "-c", str(CONFIG / "township.toml"), "--from", "2010-10-21", "--days", "1")
    assert result.returncode == 0
    assert "firms cut off are not shown" in result.stderr

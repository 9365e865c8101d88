"""The daemon's morning report (SPEC "Reports"), lived by a real `quotad run`: once the township's event time passes
`[reports] daily_at`, yesterday's daily report appears in state_dir/reports as html, xlsx and pdf, journaled once;
a restart later the same morning writes nothing again.

Kept cheap: no broker, no database, no meters to read (every meter on MQTT, and no `[mqtt]`: none is read). The
state directory is seeded with the recorded day through the journal, as a daemon would have journaled it, plus one
reading at 08:01 the next morning: the event time the daemon then holds is past 08:00.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

from quotad.config.load import load
from tests.shell.feedtown import all_on_mqtt, journal_of, seed_recorded_day
from tests.shell.township import Township, eventually

FILES = ("daily-2010-10-20.html", "daily-2010-10-20.xlsx", "daily-2010-10-20.pdf")


def _seed(directory: Path, state: Path) -> Path:
    policy_path = all_on_mqtt(directory)
    config = directory / "quotad.toml"
    config.write_text(
        f'policy = "township.toml"\nstate_dir = "{state}"\n[clock]\nstart = 2010-10-21T08:02:00+08:00\nspeed = 1\n',
        encoding="utf-8",
    )
    seed_recorded_day(state, load(policy_path).policy, dt.time(8, 1))
    return config


def test_yesterdays_report_is_written_once_and_not_again_after_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    town = Township(tmp_path, _seed(tmp_path, state))
    reports = state / "reports"
    try:
        town.start_daemon()
        eventually(lambda: all((reports / f).is_file() for f in FILES), "the three files of the morning report", 60)
        eventually(lambda: len(journal_of(state, "report")) == 1, "the report journaled", 10)
        assert sorted(p.name for p in reports.iterdir()) == sorted(FILES)  # no partial file left behind
        html = (reports / FILES[0]).read_text(encoding="utf-8")
        assert "××镇节电调控工作日报" in html
        assert "51,168.4" in html  # the recorded day's total: the report is of the journal's readings
        assert (reports / FILES[2]).read_bytes().startswith(b"%PDF")
        written = {f: (reports / f).stat().st_mtime_ns for f in FILES}
        assert town.stop_daemon() == 0

        town.start_daemon()
        eventually(lambda: "quotad serving" in town.log().split("quotad stopped", 1)[1], "the restart", 30)
        time.sleep(3.0)  # several ticks past daily_at: each would start the report were it not journaled
        assert town.daemon is not None
        assert town.daemon.poll() is None
        assert {f: (reports / f).stat().st_mtime_ns for f in FILES} == written
        assert sorted(p.name for p in reports.iterdir()) == sorted(FILES)
        assert town.stop_daemon() == 0
        assert len(journal_of(state, "report")) == 1
        assert len(re.findall(r"the daily report of 2010-10-20 written", town.log())) == 1
    finally:
        town.close()

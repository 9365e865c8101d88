"""`quotad demo` (the README's main command): it runs the township live, reports, and leaves nothing running."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_runs_a_day_and_stops_everything() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "quotad", "demo", "--days", "1", "--speed", "2400"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    assert "[违规] 荣生公司造纸厂 2010-10-20 为错时供电停电日" in out  # an alert, in Chinese, as it arrived
    # the township's day against its cap, saying that it counts the firms' meters (the example has no feeder meter)
    assert re.search(r"\] 全镇企业用电 [\d.]+ kWh / 日上限 54611 kWh", out)
    # tomorrow's rota as the firms are told it at 18:00, Shengda named apart from the seven that are off
    assert "[通知] 明日 2010-10-21（周四）错时供电安排：运行 造纸厂；停电 七家企业" in out
    assert "Stopped. Everything is in" in out
    directory = re.search(r"Everything is in (\S+) ", out)
    assert directory is not None
    running = subprocess.run(["pgrep", "-af", directory[1]], capture_output=True, text=True, check=False).stdout
    assert running.strip() == ""  # mosquitto, influxd, the simulator and the daemon are gone

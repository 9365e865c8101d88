"""`quotad demo` (the README's main command): it runs the township live, reports, and leaves nothing running."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_runs_two_days_and_stops_everything() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "quotad", "demo", "--days", "2", "--speed", "2400"],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    assert "[违规] 荣生公司造纸厂 2010-10-20 为错时供电停电日" in out  # an alert, in Chinese, as it arrived
    # the township's day against its cap, saying that it counts the firms' meters (the example has no feeder meter)
    assert re.search(r"\] 全镇企业用电 [\d.]+ kWh / 日上限 54611 kWh", out)
    # tomorrow's rota as the firms are told it at 18:00, Shengda named apart from the seven that are off
    assert "[通知] 明日 2010-10-21（周四）错时供电安排：运行 造纸厂；停电 七家企业" in out
    # the enforcement loop: the paper mill's order pending (a minute's use past its standby), issued once beyond its
    # meter's accuracy, notified when its cutoff notice reached the mill's channel (the demo's receiver prints it),
    # then the 供电所 (played by the demo) cuts its supply
    paper = [line.strip() for line in out.splitlines() if line.strip().startswith("[停电令] 荣生公司造纸厂")]
    assert paper[:4] == [
        "[停电令] 荣生公司造纸厂：待核实（quotad（规则））",
        "[停电令] 荣生公司造纸厂：已下达（quotad（规则））",
        "[停电令] 荣生公司造纸厂：已通知（quotad：停电通知书已送达渠道 demo-hook）",
        "[停电令] 荣生公司造纸厂：已停电（供电所）",
    ], out
    assert "[渠道 demo-hook] 停电通知书 · 荣生公司造纸厂：荣生公司造纸厂：\n      违规事项：错时供电停电日用电。" in out
    assert (
        "[渠道 demo-hook] 明日供电安排 · 盛达机电公司：盛达机电公司：10月21日（周四）本组停电，本企业免轮停照常生产"
        in out
    )
    assert "荣生公司造纸厂 本控制期违规、违令累计 1 次，启动约谈问责第 1 步：联系领导约谈（联系领导：李副镇长）" in out
    # each morning's list names the firms that misbehaved: on 10-21, yesterday's paper mill and workshop
    morning = out[out.index("[今日督查清单 2010-10-21]") :]
    assert "1. 华宇塑料厂：今日（2010-10-21）为错时供电停电日" in morning
    assert "荣生公司造纸厂：昨日（2010-10-20）为错时供电停电日" in morning
    # 10-21 is the mill's day to run, but its supply is cut: it draws its lights only, no breach of its order
    assert "荣生公司造纸厂 在停电令期间" not in out
    assert "Stopped. Everything is in" in out
    # every meter of the three kinds was read: Modbus gateways, DL/T 645 behind DTUs (one shared with Modbus RTU), MQTT
    assert "Meters that reported, by kind (InfluxDB meter_reading): Modbus 12/12, DL/T 645 6/6, MQTT 8/8" in out
    directory = re.search(r"Everything is in (\S+) ", out)
    assert directory is not None
    running = subprocess.run(["pgrep", "-af", directory[1]], capture_output=True, text=True, check=False).stdout
    assert running.strip() == ""  # mosquitto, influxd, the simulator and the daemon are gone

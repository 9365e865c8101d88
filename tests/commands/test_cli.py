"""The commands as an operator runs them: exit codes, outputs, and that replay touches nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.locales import english

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
DAY = CONFIG / "recorded" / "2010-10-20.jsonl"


def quotad(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command, in English (what these tests assert), in `env` (default: this process's environment)."""
    return subprocess.run(
        [sys.executable, "-m", "quotad", *args], capture_output=True, text=True, cwd=cwd, env=english(env), check=False
    )


@pytest.mark.parametrize("name", ["quotad.toml", "township.toml"])
def test_shipped_config_is_valid(name: str) -> None:
    result = quotad("check-config", "-c", str(CONFIG / name))
    assert result.returncode == 0, result.stdout
    summary, *figures = result.stdout.splitlines()
    assert "8 large firms, 12 general firms, 6 workshops, 26 meters" in summary
    assert "control 2010-10-01..2010-12-31" in summary
    # the figures an operator must eyeball: the cap of each phase (from cap_from), the limits, the quotas
    assert figures[:4] == [
        "  daily cap 2010-10-19..2010-11-10 (首期): 54,611 kWh",
        "  daily cap 2010-11-11..2010-12-31 (第二期): 50,000 kWh",
        "  load cap: 3,200 kW (800 kWh in a 15-minute interval)",
        "  daily limit shengda (盛达机电公司): 4,200 kWh",
    ]
    assert (
        "  monthly quota g-001 (明辉服装厂): 12,000 kWh (baseline 15,000 kWh less 20%); opening 2010-10: 6,200 kWh "
        "used before quotad's first reading"
    ) in figures
    assert "  monthly quota g-004 (宏达印刷厂): 7,200 kWh" in figures
    assert len(figures) == 4 + 12  # and one monthly quota per general firm
    # the example has no feeder meters (the plan names none): said once, as a warning, which --strict refuses
    assert result.stderr.splitlines() == [
        f"warning: {CONFIG / 'township.toml'}:19: township.feeder_meters: empty: the township's total, and its daily "
        "cap, count the firms' meters only, not the residents and shops (list the township's feeder meters here if "
        "it has them)"
    ]
    strict = quotad("check-config", "--strict", "-c", str(CONFIG / name))
    assert strict.returncode == 2
    assert strict.stdout.splitlines() == result.stderr.splitlines()


def test_shipped_plan_is_the_townships() -> None:
    text = (CONFIG / "township.toml").read_text(encoding="utf-8")
    for fact in (
        "daily_cap_kwh = 54611",
        "荣生公司造纸厂",
        "盛达机电公司",
        "daily_limit_kwh = 4200",
        "cap_from = 2010-10-19",
    ):
        assert fact in text
    assert "EXAMPLES" in text  # invented names are marked as examples
    hosts = {line.split("=")[1].strip() for line in text.splitlines() if line.startswith("host")}
    assert hosts == {'"127.0.0.1"'}  # the shipped gateways are the simulator's, on loopback


def test_schedule_table_names_groups_and_workshops() -> None:
    result = quotad("schedule", "-c", str(CONFIG / "quotad.toml"), "--from", "2010-10-19", "--days", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "错时供电安排" in lines[0]
    assert len(lines) == 3 + 3  # title, header, rule, three days
    row_20 = next(line for line in lines if line.startswith("2010-10-20"))
    assert "周三" in row_20
    assert "七家企业" in row_20  # running on the 20th
    assert "造纸厂" in row_20  # off
    assert "09:00-17:00" in row_20  # Wednesday: residents' experience day
    assert "王氏木器作坊" in row_20  # rests on Wednesdays


def test_schedule_json() -> None:
    result = quotad("schedule", "-c", str(CONFIG / "township.toml"), "--from", "2010-10-24", "--days", "3", "--json")
    days = json.loads(result.stdout)
    assert [d["day"] for d in days] == ["2010-10-24", "2010-10-25", "2010-10-26"]
    # the example's swap: the 25th (the mill's day) runs the seven, the 26th (theirs) the mill
    assert [d["running_groups"] for d in days] == [["seven"], ["seven"], ["paper"]]
    assert [d["off_groups"] for d in days] == [["paper"], ["paper"], ["seven"]]
    assert days[0]["cap_kwh"] == 54611
    assert days[0]["phase"] == "首期"


def test_schedule_rejects_bad_days() -> None:
    assert quotad("schedule", "-c", str(CONFIG / "township.toml"), "--days", "0").returncode == 2


def test_replay_of_the_shipped_day(tmp_path: Path) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    first = quotad("replay", "-c", str(CONFIG / "quotad.toml"), str(DAY), cwd=tmp_path)
    second = quotad("replay", "-c", str(CONFIG / "quotad.toml"), str(DAY), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout  # byte-identical
    assert first.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # replay creates nothing
    alerts = [json.loads(line) for line in first.stdout.splitlines()]
    rules = {(a["rule"], a["firm"]) for a in alerts}
    assert ("rota_off_day", "rongsheng-paper") in rules
    assert ("rest_day", "w-003") in rules
    assert ("firm_daily_limit", "shengda") in rules
    assert ("township_cap", None) in rules
    assert ("meter_anomaly", "g-006") in rules
    assert ("meter_offline", "w-005") in rules
    assert len({a["id"] for a in alerts}) == len(alerts)
    assert [a["ts"] for a in alerts] == sorted(a["ts"] for a in alerts)


def test_replay_text_format() -> None:
    result = quotad("replay", "-c", str(CONFIG / "township.toml"), str(DAY), "--format", "text")
    assert "[违规] 荣生公司造纸厂 2010-10-20 为错时供电停电日" in result.stdout


def test_replay_csv_and_malformed_lines(tmp_path: Path) -> None:
    readings = tmp_path / "r.csv"
    readings.write_text(
        "meter,ts,energy_kwh\n"
        "sd-main,2010-10-20T00:00:00+08:00,100\n"
        "sd-main,not-a-time,101\n"
        "nope,2010-10-20T01:00:00+08:00,1\n"
        "sd-main,1287590400,4500\n",  # epoch seconds: 2010-10-21T00:00:00+08:00
        encoding="utf-8",
    )
    result = quotad("replay", "-c", str(CONFIG / "township.toml"), str(readings))
    assert result.returncode == 0
    assert f"{readings}:3: skipped: ts: not ISO 8601 or epoch seconds" in result.stderr
    assert f"{readings}:4: skipped: unknown meter 'nope'" in result.stderr
    ids = [json.loads(line)["id"] for line in result.stdout.splitlines()]
    assert "xx-town/shengda/firm_daily_limit/2010-10-20/1.0" in ids


def test_replay_missing_file_is_bad_usage() -> None:
    result = quotad("replay", "-c", str(CONFIG / "township.toml"), "/nonexistent/readings.jsonl")
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_bad_config_exits_2_for_every_command(tmp_path: Path) -> None:
    bad = tmp_path / "t.toml"
    bad.write_text(
        (CONFIG / "township.toml").read_text(encoding="utf-8").replace("daily_cap_kwh = 54611", "daily_cap_kwh = -1")
    )
    for args in (["check-config"], ["schedule"], ["replay", str(DAY)]):
        result = quotad(args[0], "-c", str(bad), *args[1:])
        assert result.returncode == 2
        assert f"{bad}:" in result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr


def test_feed_is_deterministic_for_a_seed() -> None:
    args = ["feed", "-c", str(CONFIG / "township.toml"), "--from", "2010-10-20", "--step", "3600"]
    one, two, other = quotad(*args), quotad(*args), quotad(*args, "--seed", "2")
    assert one.returncode == 0
    assert one.stdout == two.stdout
    assert one.stdout != other.stdout
    lines = one.stdout.splitlines()
    assert len(lines) == 26 * 25 - 1  # 26 meters at 00:00 and every hour to midnight; w-005 is silent at 10:00
    assert json.loads(lines[0])["ts"] == "2010-10-20T00:00:00+08:00"


def test_recorded_day_is_the_feed() -> None:
    """The shipped recorded day is exactly what `quotad feed` produces (it can be regenerated)."""
    result = quotad("feed", "-c", str(CONFIG / "township.toml"), "--from", "2010-10-20", "--step", "300")
    assert result.stdout == DAY.read_text(encoding="utf-8")


def test_env_override_of_the_policy(tmp_path: Path) -> None:
    env = {**os.environ, "QUOTAD_TOWNSHIP__DAILY_CAP_KWH": "1000"}
    result = quotad("replay", "-c", str(CONFIG / "township.toml"), str(DAY), env=env)
    ids = [json.loads(line)["id"] for line in result.stdout.splitlines()]
    assert "xx-town/township/township_cap/2010-10-20/1.0" in ids


def test_order_lift_of_an_unknown_firm_is_bad_usage(tmp_path: Path) -> None:
    config = tmp_path / "quotad.toml"
    (tmp_path / "township.toml").write_text((CONFIG / "township.toml").read_text(encoding="utf-8"), encoding="utf-8")
    config.write_text(f'policy = "township.toml"\nstate_dir = "{tmp_path}/state"\n', encoding="utf-8")
    result = quotad("order", "lift", "no-such-firm", "--reason", "x", "-c", str(config))
    assert result.returncode == 2
    assert "unknown firm 'no-such-firm'" in result.stderr
    stopped = quotad("order", "lift", "shengda", "--reason", "x", "-c", str(config))
    assert stopped.returncode == 2  # SPEC: a command on a missing order is bad usage
    assert "shengda has no cutoff order" in stopped.stderr

"""What a township's operator reads with LANG=zh_CN.UTF-8: check-config, schedule and the CLI in Chinese, with the
`file:line: field.path: ` prefixes, the `warning: ` marker and the exit codes of the English. This machine has no
zh_CN locale generated: gettext needs only the variable."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.locales import chinese, english

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"
BROKEN = ROOT / "tests" / "config" / "broken"
WARNED = ROOT / "tests" / "config" / "warned"
CJK = re.compile(r"[\u4e00-\u9fff]")
ENGLISH_PROSE = re.compile(r"\b[A-Za-z]{2,} [A-Za-z]{2,} [A-Za-z]{2,}\b")  # three English words in a row
# `file:line: ` or `$VARIABLE: ` or `file: `, then the field path when there is one (TOML keys, ASCII)
PREFIX = re.compile(r"^(warning: )?(\$\w+|[^:]+)(:\d+)?: ([A-Za-z0-9_.\[\]$]+: )?")


def quotad(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quotad", *map(str, args)],
        capture_output=True, text=True, encoding="utf-8", env=env, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip


def _show(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"


def _split(line: str) -> tuple[str, str]:
    match = PREFIX.match(line)
    assert match is not None, line
    return match[0], line[match.end() :]


@pytest.mark.parametrize(
    "path",
    [BROKEN / name for name in ("six_faults.toml", "wrong_type.toml", "toml_syntax.toml", "daemon/quotad.toml")],
    ids=lambda p: p.relative_to(BROKEN).as_posix(),
)
def test_check_config_in_chinese_keeps_the_prefixes_and_the_exit_code(path: Path) -> None:
    en = quotad("check-config", "-c", path, env=english())
    zh = quotad("check-config", "-c", path, env=chinese())
    assert en.returncode == zh.returncode == 2, _show(en) + _show(zh)
    en_lines, zh_lines = en.stdout.splitlines(), zh.stdout.splitlines()
    assert Counter(_split(line)[0] for line in zh_lines) == Counter(_split(line)[0] for line in en_lines), _show(zh)
    for line in zh_lines:
        message = _split(line)[1]
        assert CJK.search(message), line
        assert not ENGLISH_PROSE.search(message), line
        assert message not in en.stdout, line
    assert en.stderr == f"{len(en_lines)} problem(s) found\n", _show(en)
    assert zh.stderr == f"共发现 {len(zh_lines)} 个问题\n", _show(zh)


def test_six_faults_as_the_operator_reads_them() -> None:
    path = BROKEN / "six_faults.toml"
    result = quotad("check-config", "-c", path, env=chinese())
    assert result.stdout.splitlines() == [
        f"{path}:11: township.timezone: 未知的时区 'Asia/Shangai'（应为 IANA 时区名，如 'Asia/Shanghai'）",
        f"{path}:28: control.phases[1].start: 阶段 '第二期' 与 control.phases[0] 的日期重叠",
        f"{path}:44: rota.overrides[0].date: 调整日期 2011-01-05 不在管控期 2010-10-01..2010-12-31 之内",
        f"{path}:51: firms[0].group: 未知的分组 'papr'（已定义的分组：paper, seven）",
        f"{path}:60: firms[2]: 一般企业须填写 baseline_kwh（基期月用电量）或 monthly_quota_kwh（月度配额）",
        f"{path}:80: meters[1].firm: 未知的企业 'shenda'",
    ], _show(result)


@pytest.mark.parametrize(
    ("variables", "language"),
    [
        ({"LANG": "zh_CN.UTF-8"}, "zh"),
        ({"LANG": "zh_CN"}, "zh"),
        ({"LANG": "C.UTF-8", "LC_MESSAGES": "zh_CN.UTF-8"}, "zh"),
        ({"LANG": "C.UTF-8", "LC_ALL": "zh_CN.UTF-8"}, "zh"),
        ({"LANG": "C.UTF-8", "LANGUAGE": "zh_CN:en"}, "zh"),
        ({"LANG": "zh_CN.UTF-8", "LC_ALL": "C.UTF-8"}, "en"),  # LC_ALL before LANG
        ({"LANG": "zh_CN.UTF-8", "LANGUAGE": "en"}, "en"),  # LANGUAGE before all
        ({"LANG": "zh_TW.UTF-8"}, "en"),  # no catalog for it: the English
        ({"LANG": "C"}, "en"),
        ({}, "en"),
    ],
)
def test_the_language_comes_from_the_environment_as_gettext_reads_it(variables: dict[str, str], language: str) -> None:
    base = {k: v for k, v in english().items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    result = quotad("check-config", "-c", "/nonexistent/quotad.toml", env={**base, **variables})
    assert result.returncode == 2, _show(result)
    said = {"zh": "/nonexistent/quotad.toml: 无法读取文件：[Errno 2] 文件或目录不存在: '/nonexistent/quotad.toml'",
            "en": "/nonexistent/quotad.toml: cannot read the file: [Errno 2] No such file or directory: "
                  "'/nonexistent/quotad.toml'"}  # fmt: skip
    assert result.stdout.splitlines() == [said[language]], _show(result)


def test_a_warning_in_chinese_keeps_its_marker() -> None:
    path = WARNED / "daily_cap_in_wan_du.toml"
    result = quotad("check-config", "-c", path, env=chinese())
    assert result.returncode == 0, _show(result)
    assert result.stderr.splitlines() == [
        f"warning: {path}:7: township.daily_cap_kwh: 日上限 5.4611 kWh 低于 100 kWh：如果本意是 5.4611 万度"
        "（1 万度 = 10,000 kWh），应写 54,611"
    ], _show(result)
    assert result.stdout.splitlines()[:3] == [
        f"{path}: 检查通过：1 个乡镇（t-town），大型企业 2 家，一般企业 1 家，作坊 1 家，电表 3 块（Modbus 1 块，"
        "MQTT 2 块）；管控期 2010-10-01..2010-12-31",
        "  日上限 2010-10-19..2010-11-10（首期）：5.4611 kWh",
        "  日上限 2010-11-11..2010-12-31：5.4611 kWh",
    ], _show(result)
    strict = quotad("check-config", "--strict", "-c", path, env=chinese())
    assert strict.returncode == 2, _show(strict)
    assert strict.stdout.splitlines() == result.stderr.splitlines()
    assert strict.stderr == "共发现 1 个问题（使用 --strict 时，警告也算问题）\n", _show(strict)


def test_the_summary_of_the_example_in_chinese() -> None:
    result = quotad("check-config", "-c", CONFIG / "quotad.toml", env=chinese())
    assert result.returncode == 0, _show(result)
    summary, *figures = result.stdout.splitlines()
    assert summary == (
        f"{CONFIG / 'quotad.toml'} + {CONFIG / 'township.toml'}: 检查通过：1 个乡镇（xx-town），大型企业 8 家，"
        "一般企业 12 家，作坊 6 家，电表 26 块（Modbus 12 块，DL/T 645 6 块，MQTT 8 块）；管控期 2010-10-01..2010-12-31"
    )
    assert figures[:4] == [
        "  日上限 2010-10-19..2010-11-10（首期）：54,611 kWh",
        "  日上限 2010-11-11..2010-12-31（第二期）：50,000 kWh",
        "  负荷上限：3,200 kW（每 15 分钟 800 kWh）",
        "  日限额 shengda（盛达机电公司）：4,200 kWh",
    ]
    assert (
        "  月度配额 g-001（明辉服装厂）：12,000 kWh（基期用电量 15,000 kWh 压减 20%）；2010-10 期初用电：quotad "
        "首次读数前已用 6,200 kWh"
    ) in figures
    assert result.stderr.startswith(f"warning: {CONFIG / 'township.toml'}:19: township.feeder_meters: 为空：")


def test_schedule_says_in_chinese_what_it_cannot_show(tmp_path: Path) -> None:
    alone = quotad("schedule", "-c", CONFIG / "township.toml", "--from", "2010-10-21", "--days", "1", env=chinese())
    assert alone.returncode == 0, _show(alone)
    assert alone.stderr == (
        "quotad schedule: 单独的方案文件没有指定状态目录：表中不显示被一停到底的企业（请用 -c quotad.toml）\n"
    )
    daemon = tmp_path / "quotad.toml"
    daemon.write_text(f'policy = "{CONFIG / "township.toml"}"\nstate_dir = "{tmp_path / "state"}"\n', encoding="utf-8")
    fresh = quotad("schedule", "-c", daemon, "--from", "2010-10-21", "--days", "1", env=chinese())
    assert fresh.returncode == 0, _show(fresh)
    state = tmp_path / "state"
    assert fresh.stderr == f"quotad schedule: {state} 中还没有守护进程的状态：表中不会显示任何被一停到底的企业\n"


def test_usage_errors_in_chinese(tmp_path: Path) -> None:
    township = CONFIG / "township.toml"
    days = quotad("schedule", "-c", township, "--days", "0", env=chinese())
    assert (days.returncode, days.stderr) == (2, "quotad schedule: --days 至少为 1\n"), _show(days)
    feed = quotad("feed", "-c", township, "--from", "2010-10-20", "--step", "0", env=chinese())
    assert (feed.returncode, feed.stderr) == (2, "quotad feed: --days 和 --step 都至少为 1\n"), _show(feed)
    replay = quotad("replay", "-c", township, tmp_path / "none.jsonl", env=chinese())
    assert (replay.returncode, replay.stderr) == (2, f"quotad replay: 文件不存在：{tmp_path / 'none.jsonl'}\n")
    alone = quotad("order", "lift", "shengda", "--reason", "复核", "-c", township, env=chinese())
    assert alone.returncode == 2, _show(alone)
    assert alone.stderr == "quotad: 此命令需要守护进程配置文件（-c quotad.toml）：停电令保存在其 state_dir 中\n"
    daemon = tmp_path / "quotad.toml"
    daemon.write_text(f'policy = "{township}"\nstate_dir = "{tmp_path / "state"}"\n', encoding="utf-8")
    unknown = quotad("order", "lift", "no-such-firm", "--reason", "复核", "-c", daemon, env=chinese())
    assert (unknown.returncode, unknown.stderr) == (2, "quotad: 未知的企业 'no-such-firm'\n"), _show(unknown)
    none = quotad("order", "lift", "shengda", "--reason", "复核", "-c", daemon, env=chinese())
    assert (none.returncode, none.stderr) == (2, "quotad: shengda 没有停电令\n"), _show(none)


def test_help_in_chinese() -> None:
    result = quotad("check-config", "--help", env=chinese())
    assert result.returncode == 0, _show(result)
    assert "检查守护进程配置文件和方案文件，列出全部问题" in result.stdout
    assert "把警告（疑似笔误的值）也当作错误" in result.stdout
    assert "validate the daemon file" in quotad("check-config", "--help", env=english()).stdout


_EVERY_PROBLEM = """
import json, random, sys
from pathlib import Path
from quotad.config.load import load
from quotad.core.errors import ConfigError
from tests.config.test_generated_broken import CASES, SHIPPED, mutate
from tests.test_i18n import PYDANTIC_CASES, _error
from quotad.config.foreign import pydantic_message

paths = [Path(p) for p in sys.argv[2:]]
for seed in CASES:
    paths.append(Path(sys.argv[1]) / f"{seed}.toml")
    paths[-1].write_text(mutate(SHIPPED, random.Random(seed)), encoding="utf-8")
messages = []
for path in paths:
    try:
        load(path, {}, strict=True)
    except ConfigError as exc:
        messages += [p.message for p in exc.problems]
messages += [pydantic_message(_error(field, value)) for field, value, _kind in PYDANTIC_CASES]
print(json.dumps(messages, ensure_ascii=False))
"""


def test_every_problem_of_the_broken_files_and_the_generated_ones_is_in_chinese(tmp_path: Path) -> None:
    """Each broken and warned file, the 210 generated broken policies (--strict, so their slips too), and each
    pydantic error quotad words: not a sentence of English left."""
    files = [*BROKEN.glob("*.toml"), *BROKEN.glob("*/quotad.toml"), *WARNED.glob("*.toml")]
    result = subprocess.run(
        [sys.executable, "-c", _EVERY_PROBLEM, str(tmp_path), *map(str, files)],
        capture_output=True, text=True, encoding="utf-8", env=chinese(), cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, _show(result)
    messages = json.loads(result.stdout)
    assert len(messages) > 400
    english_left = sorted({m for m in messages if not CJK.search(m) or ENGLISH_PROSE.search(m)})
    assert english_left == []

"""The daily report (日报) of the recorded day, made as a township leader gets it: from the readings file with
`--replay`, and from a daemon's journal of the same readings; as html, pdf (printed by the real chromium, read back
by poppler's pdftotext/pdftoppm) and xlsx (read back by openpyxl). One pdf is printed for the module."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pytest

from quotad.cli import main
from quotad.commands.replay import read_readings, replay
from quotad.config.load import load
from quotad.core.reports.daily import DailyReport, daily_report
from quotad.reports.feed import from_journal, from_readings
from quotad.reports.pdf import html_to_pdf
from quotad.shell.journal import Journal
from quotad.shell.store import Store

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
DAY = CONFIG / "recorded" / "2010-10-20.jsonl"
DATE = "2010-10-20"
POLICY = load(CONFIG / "township.toml").policy
DAEMON = 'policy = "{policy}"\nstate_dir = "{state}"\n'


@dataclass
class Made:
    folder: Path
    html: str
    pdf: Path
    xlsx: Path
    report: DailyReport


def quotad(*args: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = main([str(a) for a in args])
    finally:
        sys.stdout, sys.stderr = old
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    folder = tmp_path_factory.mktemp("report")
    code, html, err = quotad("report", "daily", "--date", DATE, "-c", CONFIG / "quotad.toml", "--replay", DAY)
    assert code == 0, err
    pdf, xlsx = folder / "daily.pdf", folder / "daily.xlsx"
    html_to_pdf(html, pdf)
    code, _out, err = quotad("report", "daily", "--date", DATE, "-c", CONFIG / "quotad.toml", "--replay", DAY,
                             "--format", "xlsx", "-o", xlsx)  # fmt: skip
    assert code == 0, err
    assert xlsx.name in err  # says where it wrote
    engine, data = from_readings(POLICY, DAY)
    return Made(folder, html, pdf, xlsx, daily_report(engine, data, __import__("datetime").date(2010, 10, 20)))


def replayed() -> list[dict[str, object]]:
    out = io.StringIO()
    replay(POLICY, DAY, out, io.StringIO())
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_its_figures_are_those_replay_raised(made: Made) -> None:
    alerts = replayed()
    assert made.report.alerts_total == len(alerts) == 16
    by_rule = {row.rule: row.total for row in made.report.by_rule}
    assert by_rule == Counter(a["rule"] for a in alerts)
    severities = ("notice", "warning", "violation", "breach")
    assert {(row.rule, s): n for row in made.report.by_rule for s, n in zip(severities, row.counts, strict=True)
            if n} == Counter((a["rule"], a["severity"]) for a in alerts)  # fmt: skip
    # the day's total is the one the township alerts spoke of, and the firms' sum
    capped = [a for a in alerts if a["rule"] == "township_cap"]
    assert max(float(a["consumed_kwh"]) for a in capped) <= made.report.consumed_kwh  # type: ignore[arg-type]
    assert sum(f.kwh for f in made.report.firms) == pytest.approx(made.report.consumed_kwh, abs=0.01)
    assert sum(k.kwh for k in made.report.kinds) == pytest.approx(made.report.consumed_kwh, abs=0.01)
    assert made.report.cap_kwh == 54611
    assert made.report.complete
    assert len(made.report.curve) == 97
    assert made.report.curve[-1][1] == pytest.approx(made.report.consumed_kwh)
    assert made.report.received_share == pytest.approx(100 * (26 * 288 - 6) / (26 * 288))  # w-005 missed 6
    # and the html says them
    assert "51,168.4" in made.html
    assert "54,611" in made.html
    assert re.search(r"<th>合计</th>(<th></th>)+<th class=\"n\">16</th>", made.html)


def test_the_pdf_holds_the_township_the_cap_and_every_firm(made: Made) -> None:
    text = subprocess.run(["pdftotext", "-layout", made.pdf, "-"], capture_output=True, text=True, check=True).stdout
    flat = re.sub(r"\s+", "", text)
    assert "××镇节电调控工作日报" in flat
    assert "54,611" in flat
    assert "51,168.4" in flat
    missing = [f.name for f in POLICY.firms if re.sub(r"\s+", "", f.name) not in flat]
    assert not missing, f"firms' names not in the pdf's text: {missing}"


def test_the_pdf_pages_render_with_every_glyph(made: Made) -> None:
    """pdftoppm renders every page; and no Chinese character fell to a missing-glyph box: every one of the html's
    Chinese characters is in the pdf's text. The check is honest: a character no font has (Tangut, below) is printed
    by chromium as a box, and pdftotext then does not give it back."""
    info = subprocess.run(["pdfinfo", made.pdf], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info)[1])  # type: ignore[index]
    assert 3 <= pages <= 8
    subprocess.run(["pdftoppm", "-r", "40", "-png", made.pdf, made.folder / "page"], check=True)
    pngs = sorted(made.folder.glob("page-*.png"))
    assert len(pngs) == pages
    assert all(p.stat().st_size > 2000 for p in pngs)
    text = subprocess.run(["pdftotext", made.pdf, "-"], capture_output=True, text=True, check=True).stdout
    shown = re.sub(r"<[^>]+>", "", made.html.split("<body>", 1)[1])
    wanted = {c for c in shown if "\u4e00" <= c <= "\u9fff"}
    assert len(wanted) > 200
    assert not wanted - set(text)
    tofu = made.folder / "tofu.pdf"
    html_to_pdf('<html><meta charset="utf-8"><body>荣生\U00017000公司</body></html>', tofu)
    said = subprocess.run(["pdftotext", tofu, "-"], capture_output=True, text=True, check=True).stdout
    assert "荣生" in said
    assert "\U00017000" not in said


def test_the_xlsx_totals_equal_the_html(made: Made) -> None:
    book = openpyxl.load_workbook(made.xlsx)
    kinds = {row[0]: row for row in book["分类用电"].iter_rows(min_row=2, values_only=True)}
    total = kinds["合计"][2]
    assert f"{total:,.1f}" in made.html
    assert total == round(made.report.consumed_kwh, 1)
    summary = dict(book["概况"].iter_rows(min_row=2, values_only=True))
    assert summary["全镇企业当日用电（kWh）"] == total
    assert summary["日上限（kWh）"] == 54611
    firms = {row[1]: row for row in book["各企业"].iter_rows(min_row=2, values_only=True)}
    for firm in made.report.firms:
        assert f"<td>{firm.name}</td>" in made.html
        assert f"{firms[firm.firm][4]:,.1f}" in made.html
    rules = {row[0]: row[-1] for row in book["告警统计"].iter_rows(min_row=2, values_only=True)}
    assert rules["合计"] == 16 == sum(v for k, v in rules.items() if k != "合计")


def test_the_report_from_the_state_is_the_report_from_replay(made: Made, tmp_path: Path) -> None:
    state = tmp_path / "state"
    journal = Journal(Store(state), POLICY, "quotad", True)
    for _n, reading in read_readings(DAY, sys.stderr):
        journal.record_reading(reading)
    journal.store.close()
    store = Store.read_only(state)
    assert store is not None
    try:
        engine, data = from_journal(store, POLICY)
    finally:
        store.close()
    assert daily_report(engine, data, made.report.day) == made.report
    config = tmp_path / "quotad.toml"
    config.write_text(DAEMON.format(policy=CONFIG / "township.toml", state=state), encoding="utf-8")
    code, html, err = quotad("report", "daily", "--date", DATE, "-c", config)
    assert code == 0, err
    footer = re.compile(r"生成依据：[^）]*）")
    assert footer.sub("", html) == footer.sub("", made.html)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["daily", "--date", "2010-09-30"], "outside the control period"),
        (["phase", "三期"], "unknown phase '三期'"),
        (["firm", "no-such-firm", "--month", "2010-10"], "unknown firm 'no-such-firm'"),
        (["firm", "shengda", "--month", "2011-01"], "outside the control period"),
        (["daily", "--date", DATE, "--replay", "/no/such/readings.jsonl"], "no such file"),
        (["daily", "--date", DATE, "--replay", str(CONFIG)], "no such file"),
    ],
)
def test_bad_input_exits_2_and_says_why(args: list[str], said: str) -> None:
    replaying = [] if "--replay" in args else ["--replay", str(DAY)]
    code, out, err = quotad("report", *args, *replaying, "-c", CONFIG / "quotad.toml")
    assert code == 2
    assert said in err
    assert not out

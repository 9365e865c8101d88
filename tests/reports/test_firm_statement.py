"""A firm's monthly statement (对账单) over the recorded day, made as the township hands it to the firm (`quotad report
firm shengda --month 2010-10 --replay`): Shengda (盛达机电公司) drew past its daily limit that day, its pending order
was issued, and it reached the first escalation step. Its day is the daily report's, its alerts those `replay` raised;
the pdf (printed once for the module) reads back, the xlsx holds the html's totals; and the statements and the phase
report made from a daemon's journal of the same readings are those made with --replay."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pytest

from quotad.commands.replay import read_readings
from quotad.core.reports.daily import DailyReport, daily_report
from quotad.core.reports.statement import FirmStatement, firm_statement
from quotad.reports.feed import from_readings
from quotad.reports.pdf import html_to_pdf
from quotad.shell.journal import Journal
from quotad.shell.store import Store
from tests.reports.test_daily_report import CONFIG, DAEMON, DAY, POLICY, quotad, replayed

REPLAY = ("-c", CONFIG / "quotad.toml", "--replay", DAY)
DATE = dt.date(2010, 10, 20)


@dataclass
class Made:
    folder: Path
    html: str
    pdf: Path
    xlsx: Path
    report: FirmStatement
    general: FirmStatement
    daily: DailyReport


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    folder = tmp_path_factory.mktemp("statement")
    code, html, err = quotad("report", "firm", "shengda", "--month", "2010-10", *REPLAY)
    assert code == 0, err
    pdf, xlsx = folder / "firm.pdf", folder / "firm.xlsx"
    html_to_pdf(html, pdf)
    code, _out, err = quotad("report", "firm", "shengda", "--month", "2010-10", *REPLAY, "--format", "xlsx", "-o", xlsx)
    assert code == 0, err
    engine, data = from_readings(POLICY, DAY)
    return Made(folder, html, pdf, xlsx, firm_statement(engine, data, "shengda", 2010, 10),
                firm_statement(engine, data, "g-001", 2010, 10), daily_report(engine, data, DATE))  # fmt: skip


def test_its_day_is_the_daily_reports_and_its_alerts_those_replay_raised(made: Made) -> None:
    r = made.report
    row = next(f for f in made.daily.firms if f.firm == "shengda")
    assert [d.day.day for d in r.days] == list(range(1, 32))
    [day] = [d for d in r.days if d.read]
    assert day.day == DATE
    assert day.kwh == row.kwh == r.total_kwh
    assert (day.limit_name, day.limit_kwh, day.over) == ("日限额", 4200, True)  # the order's day: the limit it broke
    assert day.arrangement == "运行（当日停电令）"
    assert [d.arrangement for d in r.days[20:]] == ["一停到底"] * 11  # cut off to the end (一停到底)
    assert all(d.limit_kwh == 50 and not d.runs for d in r.days[20:])
    assert (r.days_over_limit, r.run_days, r.off_days) == (1, 1, 0)
    alerts = [a for a in replayed() if a["firm"] == "shengda"]
    assert [a.message for a in r.alerts] == [a["message"] for a in alerts]
    assert len(alerts) == day.alerts == 5
    [order] = r.orders
    assert order.alert_id == "xx-town/shengda/firm_daily_limit/2010-10-20/1.0"
    assert [h[0] for h in order.history] == ["待核实", "已下达"]
    assert order.state == "已下达"
    assert order.history[0][3] == alerts[2]["message"]  # a rule's change said by its alert
    assert r.escalation is not None
    assert "联系领导约谈" in r.escalation
    for said in ("盛达机电公司用电对账单", "2010年10月", "4,515.3", "日限额 4,200 kWh", "待核实", "已下达", "王副镇长"):
        assert said in made.html, said


def test_a_general_firms_month_is_held_against_its_quota(made: Made) -> None:
    g = made.general
    row = next(f for f in made.daily.firms if f.firm == "g-001")
    [day] = [d for d in g.days if d.read]
    assert day.kwh == row.kwh
    assert (g.quota_kwh, g.opening_kwh) == (12000, 6200)
    assert g.month_kwh == day.month_kwh == row.kwh_against == pytest.approx(6200 + row.kwh)  # as the daily report
    assert day.limit_name == "日均配额"
    assert day.limit_kwh == pytest.approx(12000 / 31)
    assert g.margin_kwh == pytest.approx(12000 - 6200 - row.kwh)
    assert not g.orders
    assert not g.alerts


def test_the_pdf_holds_the_firm_its_days_and_its_order(made: Made) -> None:
    text = subprocess.run(["pdftotext", "-layout", made.pdf, "-"], capture_output=True, text=True, check=True).stdout
    flat = re.sub(r"\s+", "", text)
    for said in ("盛达机电公司用电对账单", "××镇", "4,515.3", "4,200.0", "10月31日", "待核实", "已下达", "企业确认"):
        assert said in flat, said
    info = subprocess.run(["pdfinfo", made.pdf], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info)[1])  # type: ignore[index]
    assert 2 <= pages <= 5
    subprocess.run(["pdftoppm", "-r", "40", "-png", made.pdf, made.folder / "page"], check=True)
    assert len(list(made.folder.glob("page-*.png"))) == pages
    shown = re.sub(r"<[^>]+>", "", made.html.split("<body>", 1)[1])
    wanted = {c for c in shown if "\u4e00" <= c <= "\u9fff"}
    plain = subprocess.run(["pdftotext", made.pdf, "-"], capture_output=True, text=True, check=True).stdout
    assert not wanted - set(plain)  # no character fell to a missing-glyph box


def test_the_xlsx_totals_equal_the_html(made: Made) -> None:
    book = openpyxl.load_workbook(made.xlsx)
    days = {row[0]: row for row in book["逐日明细"].iter_rows(min_row=2, values_only=True)}
    assert len(days) == 32
    total = days["合计"]
    assert total[4] == round(made.report.total_kwh, 1) == days["2010-10-20"][4]
    assert f"{total[4]:,.1f}" in made.html
    assert total[10] == 5 == len(list(book["告警"].iter_rows(min_row=2)))
    summary = dict(book["概况"].iter_rows(min_row=2, values_only=True))
    assert summary["本月用电合计（kWh）"] == total[4]
    assert summary["超日限额天数"] == 1
    history = [row[5] for row in book["停电令"].iter_rows(min_row=2, values_only=True)]
    assert history == ["待核实", "已下达"]


def test_the_reports_from_the_state_are_those_from_replay(made: Made, tmp_path: Path) -> None:
    state = tmp_path / "state"
    journal = Journal(Store(state), POLICY, "quotad", True)
    for _n, reading in read_readings(DAY, sys.stderr):
        journal.record_reading(reading)
    journal.store.close()
    config = tmp_path / "quotad.toml"
    config.write_text(DAEMON.format(policy=CONFIG / "township.toml", state=state), encoding="utf-8")
    footer = re.compile(r"生成依据：[^）]*）")
    for args in (["firm", "shengda", "--month", "2010-10"], ["firm", "g-001", "--month", "2010-10"], ["phase", "首期"]):
        code, from_state, err = quotad("report", *args, "-c", config)
        assert code == 0, err
        code, from_replay, err = quotad("report", *args, *REPLAY)
        assert code == 0, err
        assert footer.sub("", from_state) == footer.sub("", from_replay), args


def test_its_default_file_is_named_after_the_firm_and_month(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = quotad("report", "firm", "w-003", "--month", "2010-10", *REPLAY, "--format", "xlsx")
    assert code == 0, err
    assert not out
    assert (tmp_path / "firm-w-003-2010-10.xlsx").is_file()
    assert "firm-w-003-2010-10.xlsx" in err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["firm", "no-such-firm", "--month", "2010-10"], "unknown firm 'no-such-firm'"),
        (["firm", "shengda", "--month", "2010-13"], "expected a month as YYYY-MM"),
        (["firm", "shengda", "--month", "2010/10"], "expected a month as YYYY-MM"),
        (["firm", "shengda", "--month", "2010-9"], "expected a month as YYYY-MM"),
        (["firm", "shengda", "--month", "2010-09"], "outside the control period"),
        (["firm", "shengda", "--month", "2011-01"], "outside the control period"),
    ],
)
def test_bad_input_exits_2_and_says_why(args: list[str], said: str) -> None:
    code, out, err = quotad("report", *args, *REPLAY)
    assert code == 2
    assert said in err
    assert not out

"""The phase report (首期) over the recorded day, made as a township leader gets it (`quotad report phase 首期
--replay`): its day is the daily report's day, its alerts are those `replay` raised, its totals hold against the plan;
the pdf (printed once for the module by the real chromium) reads back with every firm, the xlsx with the html's
totals."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pytest

from quotad.core.reports.daily import DailyReport, daily_report
from quotad.core.reports.phase import PhaseReport, phase_report
from quotad.reports.feed import from_readings
from quotad.reports.pdf import html_to_pdf
from tests.reports.test_daily_report import CONFIG, DAY, POLICY, quotad, replayed

PHASE = "首期"
REPLAY = ("-c", CONFIG / "quotad.toml", "--replay", DAY)


@dataclass
class Made:
    folder: Path
    html: str
    pdf: Path
    xlsx: Path
    report: PhaseReport
    daily: DailyReport


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    folder = tmp_path_factory.mktemp("phase")
    code, html, err = quotad("report", "phase", PHASE, *REPLAY)
    assert code == 0, err
    pdf, xlsx = folder / "phase.pdf", folder / "phase.xlsx"
    html_to_pdf(html, pdf)
    code, _out, err = quotad("report", "phase", PHASE, *REPLAY, "--format", "xlsx", "-o", xlsx)
    assert code == 0, err
    engine, data = from_readings(POLICY, DAY)
    phase = next(p for p in POLICY.control.phases if p.name == PHASE)
    return Made(
        folder, html, pdf, xlsx, phase_report(engine, data, phase), daily_report(engine, data, dt.date(2010, 10, 20))
    )


def test_its_day_is_the_daily_reports_and_its_alerts_those_replay_raised(made: Made) -> None:
    r, daily = made.report, made.daily
    assert (r.start, r.end, r.phase_days) == (dt.date(2010, 10, 1), dt.date(2010, 11, 10), 41)
    assert (r.first, r.last) == (dt.date(2010, 10, 20), dt.date(2010, 10, 20))  # the readings' only day
    assert not r.complete
    [day] = r.days
    assert (day.consumed_kwh, day.cap_kwh, day.cap_pct, day.margin_kwh) == (
        daily.consumed_kwh, daily.cap_kwh, daily.cap_pct, daily.margin_kwh)  # fmt: skip
    assert (day.peak_quarter_kwh, day.peak_quarter_at, day.received_share) == (
        daily.peak_quarter_kwh, daily.peak_quarter_at, daily.received_share)  # fmt: skip
    alerts = replayed()
    assert r.alerts_total == day.alerts == len(alerts) == 16
    assert {row.rule: row.total for row in r.by_rule} == Counter(a["rule"] for a in alerts)
    assert day.violations == sum(1 for a in alerts if a["severity"] in ("violation", "breach"))
    # the totals against the plan: one capped day, under its cap
    assert r.consumed_kwh == daily.consumed_kwh
    assert (r.cap_kwh, r.capped_days, r.over_days) == (54611, 1, ())
    assert r.margin_kwh == pytest.approx(54611 - daily.consumed_kwh)
    assert sum(k.kwh for k in r.kinds) == pytest.approx(r.consumed_kwh, abs=0.01)
    by_firm = {f.firm: f for f in daily.firms}
    for firm in r.firms:
        assert firm.kwh == by_firm[firm.firm].kwh
        assert firm.alerts == sum(1 for a in alerts if a["firm"] == firm.firm)
    shengda = next(f for f in r.firms if f.firm == "shengda")
    assert (shengda.daily_limit_kwh, shengda.days_over_limit, shengda.order_state) == (4200, 1, "已下达")
    g001 = next(f for f in r.firms if f.firm == "g-001")
    [october] = g001.months
    assert october.used_kwh == pytest.approx(6200 + g001.kwh)  # the opening counts against the quota
    assert october.quota_kwh == 12000
    # the orders the rules made that day, as they stand at the day's end
    cut = {a["firm"]: a["order_state"] for a in alerts if a["action"] == "cutoff"}
    names = {f.id: f.name for f in POLICY.firms}
    assert {o.firm_name for o in r.orders} == {names[f] for f in cut}
    assert r.orders_by_state == (("已下达", 3),)
    assert len(r.escalations) == sum(1 for a in alerts if a["rule"] == "escalation") == 3
    assert all(e.ts.startswith("2010-10-20 ") for e in r.escalations)  # dated: a phase has many days
    assert (r.offline, r.anomalies) == (1, 1)
    assert r.received_share == daily.received_share
    # and the html says them
    for said in ("××镇节电调控首期工作报告", "51,168.4", "54,611", "93.7%", "没有一天超过日上限", "已下达 3 件"):
        assert said in made.html, said
    assert "2010-10-01 至 2010-10-20 前一日尚无电表读数" in made.html


def test_the_pdf_holds_the_township_the_phase_and_every_firm(made: Made) -> None:
    text = subprocess.run(["pdftotext", "-layout", made.pdf, "-"], capture_output=True, text=True, check=True).stdout
    flat = re.sub(r"\s+", "", text)
    for said in ("××镇节电调控首期工作报告", "2010-10-01至2010-11-10", "51,168.4", "54,611"):
        assert said in flat, said
    missing = [f.name for f in POLICY.firms if re.sub(r"\s+", "", f.name) not in flat]
    assert not missing, f"firms' names not in the pdf's text: {missing}"
    info = subprocess.run(["pdfinfo", made.pdf], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info)[1])  # type: ignore[index]
    assert 2 <= pages <= 6
    subprocess.run(["pdftoppm", "-r", "40", "-png", made.pdf, made.folder / "page"], check=True)
    assert len(list(made.folder.glob("page-*.png"))) == pages
    shown = re.sub(r"<[^>]+>", "", made.html.split("<body>", 1)[1])
    wanted = {c for c in shown if "\u4e00" <= c <= "\u9fff"}
    plain = subprocess.run(["pdftotext", made.pdf, "-"], capture_output=True, text=True, check=True).stdout
    assert not wanted - set(plain)  # no character fell to a missing-glyph box


def test_the_xlsx_totals_equal_the_html(made: Made) -> None:
    book = openpyxl.load_workbook(made.xlsx)
    days = {row[0]: row for row in book["逐日用电"].iter_rows(min_row=2, values_only=True)}
    assert set(days) == {"2010-10-20", "合计"}
    total = days["合计"]
    assert total[3] == round(made.report.consumed_kwh, 1) == days["2010-10-20"][3]
    assert f"{total[3]:,.1f}" in made.html
    assert total[4] == 54611
    assert total[9] == 16
    summary = dict(book["概况"].iter_rows(min_row=2, values_only=True))
    assert summary["全镇企业用电合计（kWh）"] == total[3]
    assert summary["超上限天数"] == 0
    firms = {row[1]: row for row in book["各企业"].iter_rows(min_row=2, values_only=True)}
    for firm in made.report.firms:
        assert f"{firms[firm.firm][3]:,.1f}" in made.html
    assert round(sum(row[3] for row in firms.values()), 1) == pytest.approx(total[3], abs=0.1)
    quotas = {row[1]: row for row in book["月度配额"].iter_rows(min_row=2, values_only=True)}
    assert quotas["g-001"][3:5] == (6572.8, 12000)
    rules = {row[0]: row[-1] for row in book["告警统计"].iter_rows(min_row=2, values_only=True)}
    assert rules["合计"] == 16 == sum(v for k, v in rules.items() if k != "合计")
    assert [row[0] for row in book["停电令"].iter_rows(min_row=2, values_only=True)] == [
        o.firm_name for o in made.report.orders
    ]


def test_a_phase_without_readings_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, html, err = quotad("report", "phase", "第二期", *REPLAY)
    assert code == 0, err
    assert "本期尚无电表读数" in html
    monkeypatch.chdir(tmp_path)  # pdf and xlsx go, by default, to phase-<name>.<ext> here
    code, out, err = quotad("report", "phase", "第二期", *REPLAY, "--format", "xlsx")
    assert code == 0, err
    assert not out
    assert (tmp_path / "phase-第二期.xlsx").is_file()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["phase", "三期", *REPLAY], "unknown phase '三期'"),
        (["phase", "", *REPLAY], "unknown phase ''"),
        (["phase", PHASE, "-c", CONFIG / "quotad.toml", "--commands", DAY], "--commands goes with --replay"),
        (["phase", PHASE, "-c", CONFIG / "quotad.toml", "--replay", "/no/such.jsonl"], "no such file"),
    ],
)
def test_bad_input_exits_2_and_says_why(args: list[str | Path], said: str) -> None:
    code, out, err = quotad("report", *args)
    assert code == 2
    assert said in err
    assert not out

"""The reports as html: Jinja2 templates (package data, autoescaped) with the charts inline as SVG, so that the page
prints to pdf as it shows, with no JavaScript and nothing fetched."""

from __future__ import annotations

import datetime as dt
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from quotad.core.alerts import SEVERITY_NAMES
from quotad.core.reports.daily import SEVERITIES, DailyReport
from quotad.core.reports.phase import PhaseReport
from quotad.core.reports.statement import FirmStatement
from quotad.reports import charts

__all__ = ["RESULTS", "environment", "kwh", "pct", "render_daily", "render_firm", "render_phase"]

RESULTS = {"ok": "合格", "violation": "违规", "rectify": "限期整改"}


def kwh(value: float | None) -> str:
    """kWh as the report prints it: thousands separated, one decimal."""
    return "—" if value is None else f"{value:,.1f}"


def kwh0(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


_ENV: Environment | None = None


def environment() -> Environment:
    global _ENV
    if _ENV is None:
        env = Environment(
            loader=PackageLoader("quotad.reports", "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(kwh=kwh, kwh0=kwh0, pct=pct)
        _ENV = env
    return _ENV


def _common(township: str, source: str) -> dict[str, Any]:
    return {
        "township": township,
        "source": source,
        "results": RESULTS,
        "severities": [SEVERITY_NAMES[s] for s in SEVERITIES],
    }


def _by_kind(firms: tuple[Any, ...]) -> list[tuple[str, list[Any]]]:
    """The firms (rows with a `kind`) under their kind, in the policy's order."""
    groups: dict[str, list[Any]] = {}
    for firm in firms:
        groups.setdefault(firm.kind, []).append(firm)
    return list(groups.items())


def render_daily(report: DailyReport, source: str) -> str:
    title = f"{report.township}节电调控工作日报（{report.day}）"
    svg = charts.day_curve(report.curve, report.projection, report.cap_kwh, f"{report.day} 全镇累计用电")
    return (
        environment()
        .get_template("daily.html")
        .render(
            title=title,
            report=report,
            curve_svg=svg,
            firm_groups=_by_kind(report.firms),
            **_common(report.township, source),
        )
    )


def render_phase(report: PhaseReport, source: str) -> str:
    title = f"{report.township}节电调控{report.name}工作报告（{report.start} 至 {report.end}）"
    by_day = {d.day: d for d in report.days}
    bars = []
    if report.first is not None:
        day = report.start
        while day <= report.end:
            row = by_day.get(day)
            value = row.consumed_kwh if row is not None and row.readings else None
            bars.append((f"{day.month}/{day.day}", value, row.cap_kwh if row is not None else None))
            day += dt.timedelta(days=1)
    svg = charts.day_bars(bars, f"{report.name}逐日全镇用电（{report.start} 至 {report.end}）")
    return (
        environment()
        .get_template("phase.html")
        .render(
            title=title,
            report=report,
            bars_svg=svg,
            firm_groups=_by_kind(report.firms),
            **_common(report.township, source),
        )
    )


def render_firm(report: FirmStatement, source: str) -> str:
    year, month = report.month.split("-")
    title = f"{report.name}用电对账单（{year}年{int(month)}月）"
    if report.quota_kwh is not None:  # a general firm is held to its month: its running total against the quota
        bars = [(f"{d.day.day}", d.month_kwh, report.quota_kwh if d.arrangement != "不在管控期" else None)
                for d in report.days]  # fmt: skip
        heading = f"{year}年{int(month)}月累计用电（含首次读数前已用）"
        note = "红线：月度配额；红色柱：超过配额"
    else:
        bars = [(f"{d.day.day}", d.kwh, d.limit_kwh if d.limit_name in ("日限额", "保安用电") else None)
                for d in report.days]  # fmt: skip
        heading, note = f"{year}年{int(month)}月逐日用电", "红线：当日限额或停产日保安用电；红色柱：超过"
    svg = charts.day_bars(bars, heading, note)
    return (
        environment()
        .get_template("firm.html")
        .render(title=title, report=report, bars_svg=svg, **_common(report.township, source))
    )

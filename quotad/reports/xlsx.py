"""The reports as xlsx (openpyxl): one sheet per part, numbers as numbers (kWh to one decimal, as the html shows),
so a county office can sum and sort them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from openpyxl import Workbook  # type: ignore[import-untyped]
from openpyxl.styles import Font, PatternFill  # type: ignore[import-untyped]
from openpyxl.worksheet.worksheet import Worksheet  # type: ignore[import-untyped]

from quotad.core.alerts import SEVERITY_NAMES
from quotad.core.reports.daily import SEVERITIES, AlertRow, DailyReport, RuleRow
from quotad.core.reports.phase import PhaseReport
from quotad.core.reports.statement import FirmStatement

__all__ = ["daily_xlsx", "firm_xlsx", "phase_xlsx", "r1", "sheet"]

_HEAD = Font(bold=True)
_FILL = PatternFill("solid", fgColor="EEF2F7")


def r1(value: float | None) -> float | None:
    """kWh and % as the report shows them: one decimal."""
    return None if value is None else round(value, 1)


def sheet(book: Workbook, title: str, header: Sequence[str], rows: Iterable[Sequence[Any]],
          widths: Sequence[int] = ()) -> Worksheet:  # fmt: skip
    ws = book.create_sheet(title)
    ws.append(list(header))
    for cell in ws[1]:
        cell.font, cell.fill = _HEAD, _FILL
    for row in rows:
        ws.append(list(row))
    for n, width in enumerate(widths):
        ws.column_dimensions[chr(ord("A") + n)].width = width
    ws.freeze_panes = "A2"
    return ws


def _alerts(book: Workbook, title: str, rows: Iterable[AlertRow]) -> None:
    sheet(book, title, ["时间", "规则", "级别", "内容"], ([a.ts, a.rule, a.severity, a.message] for a in rows),
          (16, 18, 8, 100))  # fmt: skip


def daily_xlsx(r: DailyReport, path: Path) -> None:
    book = Workbook()
    book.remove(book.active)
    summary: list[list[Any]] = [
        ["乡镇", r.township], ["日期", f"{r.day}（{r.weekday}）"], ["阶段", r.phase or "—"],
        ["全镇企业当日用电（kWh）", r1(r.consumed_kwh)], ["日上限（kWh）", r.cap_kwh],
        ["占上限（%）", r1(r.cap_pct)], ["尚余（负数为超出，kWh）", r1(r.margin_kwh)],
        ["最大 15 分钟用电（kWh）", r1(r.peak_quarter_kwh)], ["最大 15 分钟起始", r.peak_quarter_at],
        ["数据截至", r.as_of], ["告警合计", r.alerts_total], ["读数到达率（%）", r1(r.received_share)],
        *([k, v] for k, v in r.schedule.items()),
    ]  # fmt: skip
    sheet(book, "概况", ["项目", "数值"], summary, (28, 60))
    sheet(book, "累计曲线", ["时刻（分钟）", "累计用电（kWh）"], ([m, r1(v)] for m, v in r.curve), (14, 18))
    sheet(book, "当时推算", ["时刻（分钟）", "推算全天用电（kWh）"], ([m, r1(v)] for m, v in r.projection), (14, 20))
    kinds = [[k.name, k.firms, r1(k.kwh), r1(k.share)] for k in r.kinds]
    kinds.append(["合计", sum(k.firms for k in r.kinds), r1(sum(k.kwh for k in r.kinds)), None])
    sheet(book, "分类用电", ["类别", "企业数", "用电（kWh）", "占全镇（%）"], kinds, (20, 10, 14, 12))
    sheet(book, "各企业", ["企业", "编号", "类别", "当日安排", "当日用电（kWh）", "对照指标", "对照用电（kWh）",
                        "指标（kWh）", "占指标（%）", "状态"],
          ([f.name, f.firm, f.kind, f.today, r1(f.kwh), f.limit_name if f.limit_kwh is not None else None,
            r1(f.kwh_against), r1(f.limit_kwh), r1(f.used_pct), f.state_name] for f in r.firms),
          (18, 18, 16, 10, 14, 18, 14, 12, 12, 12))  # fmt: skip
    sheet(book, "停电令变动", ["时间", "企业", "事由", "变为", "经办", "说明", "告警编号"],
          ([c.at, c.firm_name, c.rule, c.state, c.by, c.reason, c.alert_id] for c in r.order_changes),
          (8, 16, 18, 8, 10, 60, 50))  # fmt: skip
    sheet(book, "停电令状态", ["状态", "件数"], r.orders_by_state, (12, 8))
    _alerts(book, "违令用电", r.breaches)
    sheet(book, "督查清单", ["企业", "原因"],
          ([e["firm_name"], "；".join(e["reasons"])] for e in r.inspection_list), (18, 100))  # fmt: skip
    sheet(book, "现场检查", ["时间", "企业", "督查人员", "结果", "发现"],
          ([v["at"], v["firm_name"], v["by"], v["result"], v["finding"]] for v in r.visits),
          (20, 18, 10, 8, 60))  # fmt: skip
    _alerts(book, "约谈问责", r.escalations)
    _rules(book, r.by_rule, r.alerts_total)
    _alerts(book, "告警明细", r.alerts)
    sheet(book, "数据质量", ["电表", "所属", "实收读数", "应收读数", "到达率（%）"],
          ([m.meter, m.owner, m.received, m.expected, r1(m.share)] for m in r.meters),
          (22, 18, 10, 10, 12))  # fmt: skip
    book.save(path)


def _rules(book: Workbook, by_rule: tuple[RuleRow, ...], total: int) -> None:
    rules = [[row.name, *row.counts, row.total] for row in by_rule]
    rules.append(["合计", *(sum(row.counts[i] for row in by_rule) for i in range(len(SEVERITIES))), total])
    sheet(book, "告警统计", ["规则", *(SEVERITY_NAMES[s] for s in SEVERITIES), "合计"], rules, (18, 8, 8, 8, 8, 8))


_PHASE_DAYS = ["日期", "星期", "运行组", "用电（kWh）", "日上限（kWh）", "占上限（%）", "尚余（kWh）",
               "最大15分钟（kWh）", "最大15分钟起", "告警", "违规", "停电令", "违令", "现场检查",
               "读数到达率（%）", "数据截至"]  # fmt: skip


def phase_xlsx(r: PhaseReport, path: Path) -> None:
    book = Workbook()
    book.remove(book.active)
    summary: list[list[Any]] = [
        ["乡镇", r.township], ["阶段", r.name], ["起止", f"{r.start} 至 {r.end}"], ["阶段天数", r.phase_days],
        ["统计起止", f"{r.first} 至 {r.last}" if r.first else "尚无读数"], ["统计天数", len(r.days)],
        ["数据截至", r.as_of], ["全镇企业用电合计（kWh）", r1(r.consumed_kwh)], ["日均用电（kWh）", r1(r.mean_kwh)],
        ["执行日上限天数", r.capped_days], ["日上限合计（kWh）", r.cap_kwh], ["占上限（%）", r1(r.cap_pct)],
        ["尚余（负数为超出，kWh）", r1(r.margin_kwh)], ["超上限天数", len(r.over_days)],
        ["超上限日期", "、".join(str(d) for d in r.over_days) or "无"], ["停电令件数", len(r.orders)],
        ["违令用电次数", len(r.breaches)], ["告警合计", r.alerts_total], ["读数到达率（%）", r1(r.received_share)],
        ["电表无读数次数", r.offline], ["读数异常次数", r.anomalies],
    ]  # fmt: skip
    sheet(book, "概况", ["项目", "数值"], summary, (26, 60))
    days = [[str(d.day), d.weekday, d.running, r1(d.consumed_kwh) if d.readings else None, d.cap_kwh, r1(d.cap_pct),
             r1(d.margin_kwh), r1(d.peak_quarter_kwh), d.peak_quarter_at, d.alerts, d.violations, d.orders_made,
             d.breaches, d.visits, r1(d.received_share), d.as_of] for d in r.days]  # fmt: skip
    days.append(["合计", None, None, r1(r.consumed_kwh), r.cap_kwh, r1(r.cap_pct), r1(r.margin_kwh), None, None,
                 r.alerts_total, sum(d.violations for d in r.days), sum(d.orders_made for d in r.days),
                 len(r.breaches), r.visits, r1(r.received_share), None])  # fmt: skip
    sheet(book, "逐日用电", _PHASE_DAYS, days, (12, 6, 12, 14, 12, 10, 12, 14, 10, 6, 6, 8, 6, 8, 12, 18))
    kinds = [[k.name, k.firms, r1(k.kwh), r1(k.share)] for k in r.kinds]
    kinds.append(["合计", sum(k.firms for k in r.kinds), r1(sum(k.kwh for k in r.kinds)), None])
    sheet(book, "分类用电", ["类别", "企业数", "用电（kWh）", "占全镇（%）"], kinds, (20, 10, 14, 12))
    sheet(book, "各企业", ["企业", "编号", "类别", "本期用电（kWh）", "最高日用电（kWh）", "最高日", "运行天数",
                        "停产天数", "停产日超保安用电天数", "日限额（kWh）", "超日限额天数", "告警", "违规", "停电令"],
          ([f.name, f.firm, f.kind, r1(f.kwh), r1(f.peak_kwh), str(f.peak_day) if f.peak_day else None, f.run_days,
            f.off_days, f.off_over, f.daily_limit_kwh, f.days_over_limit, f.alerts, f.violations, f.order_state]
           for f in r.firms), (18, 16, 16, 14, 14, 12, 8, 8, 12, 12, 10, 6, 6, 8))  # fmt: skip
    sheet(book, "月度配额", ["企业", "编号", "月份", "本月累计（kWh）", "月度配额（kWh）", "占配额（%）"],
          ([f.name, f.firm, m.month, r1(m.used_kwh), r1(m.quota_kwh), r1(m.pct)] for f in r.firms for m in f.months),
          (18, 10, 10, 14, 14, 12))  # fmt: skip
    sheet(book, "停电令", ["企业", "事由", "起", "止", "现状", "最近办理时间", "经办", "告警编号"],
          ([o.firm_name, o.rule, o.from_day, o.until, o.state, o.last_at, o.last_by, o.alert_id] for o in r.orders),
          (16, 18, 12, 12, 8, 18, 10, 50))  # fmt: skip
    _alerts(book, "违令用电", r.breaches)
    _alerts(book, "约谈问责", r.escalations)
    _rules(book, r.by_rule, r.alerts_total)
    sheet(book, "数据质量", ["电表", "所属", "实收读数（计入）", "应收读数", "到达率（%）"],
          ([m.meter, m.owner, m.received, m.expected, r1(m.share)] for m in r.meters),
          (22, 18, 14, 10, 12))  # fmt: skip
    book.save(path)


def firm_xlsx(r: FirmStatement, path: Path) -> None:
    book = Workbook()
    book.remove(book.active)
    summary: list[list[Any]] = [
        ["企业", r.name], ["编号", r.firm], ["类别", r.kind], ["错时供电组", r.group], ["联系领导", r.liaison],
        ["月份", r.month], ["指标", r.limit_text], ["数据截至", r.as_of], ["本月用电合计（kWh）", r1(r.total_kwh)],
        ["月度配额（kWh）", r1(r.quota_kwh)], ["首次读数前已用（kWh）", r1(r.opening_kwh)],
        ["本月累计（kWh）", r1(r.month_kwh)], ["占配额（%）", r1(r.quota_pct)], ["尚余配额（kWh）", r1(r.margin_kwh)],
        ["超日限额天数", r.days_over_limit], ["获准运行天数", r.run_days], ["停电日天数", r.off_days],
        ["休息日天数", r.rest_days], ["停产日超保安用电天数", r.off_over], ["告警", len(r.alerts)],
        ["约谈问责", r.escalation],
    ]  # fmt: skip
    sheet(book, "概况", ["项目", "数值"], summary, (22, 70))
    days = [[str(d.day), d.weekday, d.arrangement, "是" if d.runs else "否", r1(d.kwh), d.limit_name or None,
             r1(d.limit_kwh), r1(d.pct), r1(d.month_kwh), "是" if d.over else None, d.alerts]
            for d in r.days]  # fmt: skip
    days.append(["合计", None, None, None, r1(r.total_kwh), None, None, None, r1(r.month_kwh), None, len(r.alerts)])
    sheet(book, "逐日明细", ["日期", "星期", "当日安排", "获准运行", "用电（kWh）", "对照指标", "指标（kWh）",
                         "占指标（%）", "本月累计（kWh）", "超过", "告警"], days,
          (12, 6, 20, 8, 12, 12, 12, 10, 14, 6, 6))  # fmt: skip
    sheet(book, "停电令", ["告警编号", "事由", "起", "止", "现状", "办理", "时间", "经办", "说明"],
          ([o.alert_id, o.rule, o.from_day, o.until, o.state, *change] for o in r.orders for change in o.history),
          (50, 16, 12, 12, 8, 8, 18, 10, 60))  # fmt: skip
    _alerts(book, "告警", r.alerts)
    sheet(book, "现场检查", ["时间", "督查人员", "结果", "发现"],
          ([v["at"], v["by"], v["result"], v["finding"]] for v in r.visits), (20, 10, 8, 60))  # fmt: skip
    sheet(book, "约谈", ["时间", "约谈人", "记录"], ([t["at"], t["by"], t["note"]] for t in r.talks), (20, 10, 60))
    book.save(path)

"""The Chinese text of each alert, written as a township office writes it, for inspectors reading it on a phone.

One function per rule. The words are the plan's: 错时供电停电日 (a group's off day), 保安用电 (what a firm may
draw on a day it must be off), 一停到底, 能源紧缺体验日. quotad decides; people carry out: a cutoff message says
what should happen and who acts. Every message states the real figures: a reading that crosses several levels at
once gives each level's alert with the same real use and percentage, so none reads as if the firm stood lower.
Energy to 0.1 kWh; a meter's own readings to 0.01 kWh, as its display shows them; months as 2010年10月; times
of day as 09:55.
"""

from __future__ import annotations

from quotad.core.alerts import ShedEntry, limit_text

__all__ = [
    "anomaly_message",
    "breach_message",
    "cap_message",
    "daily_limit_message",
    "duration_text",
    "load_message",
    "month_text",
    "monthly_message",
    "off_groups_text",
    "offline_message",
    "projection_message",
    "standby_message",
]

_LINES = {"notice": "提示线", "warning": "警戒线"}


def month_text(period: str) -> str:
    """'2010-10' -> '2010年10月'."""
    year, month = period.split("-")
    return f"{int(year)}年{int(month)}月"


def duration_text(seconds: float) -> str:
    """900 -> '15 分钟', 5400 -> '1 小时 30 分钟', 90 -> '90 秒'."""
    whole = round(seconds)
    if whole % 60:
        return f"{limit_text(seconds)} 秒"
    hours, minutes = divmod(whole // 60, 60)
    if not hours:
        return f"{minutes} 分钟"
    return f"{hours} 小时" + (f" {minutes} 分钟" if minutes else "")


def _share(consumed: float, limit: float) -> str:
    """The real use as a share of the limit, to 0.1% (a use at or above a level never shows below it)."""
    return f"{consumed / limit * 100:.1f}%"


def _reached(consumed: float, limit: float, what: str, level: float, severity: str) -> str:
    """'已达日限额 4200 kWh 的 90.2%（90% 警戒线）'."""
    line = f"{round(level * 100)}% {_LINES[severity]}"
    return f"已达{what} {limit_text(limit)} kWh 的 {_share(consumed, limit)}（{line}）"


def _used(consumed: float, limit: float) -> str:
    """A use over `limit`, to 0.1 kWh, or to the Wh when 0.1 kWh would hide the excess (never '50.0 超过 50')."""
    return f"{consumed:.1f}" if round(consumed, 1) > limit else f"{consumed:.3f}"


def _over(consumed: float, limit: float, what: str) -> str:
    """'超过日限额 4200 kWh（超出 100.0 kWh）'; a limit that 0.1 kWh would round (a pro-rated quota) to the Wh."""
    shown = limit_text(limit) if round(limit, 1) == round(limit, 3) else f"{limit:.3f}"
    return f"超过{what} {shown} kWh（超出 {_used(consumed - limit, 0)} kWh）"


def _cutoff(from_day: str, until: str) -> str:
    return f"，应自 {from_day} 起停止供电至 {until}（一停到底），请督查核实并通知供电所执行"


def cutoff_clause(from_day: str, until: str) -> str:
    """The clause of a violation's message that orders the cutoff (replaced by `pending_clause` when pending)."""
    return _cutoff(from_day, until)


def pending_clause(from_day: str, until: str, accuracy_pct: float, margin_kwh: float | None) -> str:
    """The clause of a violation whose order is pending (待核实): within the meters' accuracy (`margin_kwh`), or
    every order awaiting an inspector (`margin_kwh` None)."""
    if margin_kwh is not None:
        return (
            f"，超出部分在电表精度（±{_plain(accuracy_pct)}%，即 {_plain(margin_kwh)} kWh）以内，"
            f"停电令（自 {from_day} 起至 {until}）待督查到现场核实后确认或撤销"
        )
    return f"，停电令（自 {from_day} 起至 {until}，一停到底）待督查核实后下达"


def _plain(value: float) -> str:
    """A figure to the Wh, without trailing zeros: 0.05, 1, 42.09."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def beyond_accuracy_message(
    firm: str, period: str, consumed: float, limit: float, what: str, accuracy_pct: float, margin: float,
    from_day: str, until: str,
) -> str:  # fmt: skip
    """A pending order issued: the use it was made on has gone beyond the meters' accuracy."""
    return (
        f"{firm} {period} 用电 {_used(consumed, limit + margin)} kWh，超过{what} {limit_text(limit)} kWh 已超出电表精度"
        f"（±{_plain(accuracy_pct)}%，即 {_plain(margin)} kWh），待核实的停电令转为下达" + _cutoff(from_day, until)
    )


def escalation_message(firm: str, count: int, number: int, step: str, liaison: str | None) -> str:
    """'纸厂 本控制期违规、违令累计 2 次，启动约谈问责第 2 步：镇纪委书记约谈（联系领导：李副镇长）'."""
    who = f"（联系领导：{liaison}）" if liaison else ""
    return f"{firm} 本控制期违规、违令累计 {count} 次，启动约谈问责第 {number} 步：{step}{who}"


def _scope(whole: bool) -> str:
    """What the township's total covers: its feeder meters (the whole township), or only the firms' meters."""
    return "全镇用电" if whole else "全镇企业用电"


def _shed(shed: tuple[ShedEntry, ...]) -> str:
    if not shed:
        return ""
    names = "、".join(f"{s.firm_name}（近一小时 {s.trailing_hour_kwh:.1f} kWh）" for s in shed)
    return f"；建议优先联系压减：{names}"


def cap_message(
    town: str, day: str, consumed: float, cap: float, level: float, severity: str, shed: tuple[ShedEntry, ...],
    whole: bool,
) -> str:  # fmt: skip
    if severity == "violation":
        return (
            f"{town} {day} {_scope(whole)} {_used(consumed, cap)} kWh，" + _over(consumed, cap, "日上限") + _shed(shed)
        )
    head = f"{town} {day} {_scope(whole)} {consumed:.1f} kWh，"
    return head + _reached(consumed, cap, "日上限", level, severity) + _shed(shed)


def projection_message(
    town: str, day: str, consumed: float, projected: float, cap: float, shed: tuple[ShedEntry, ...], whole: bool
) -> str:
    return (
        f"{town} {day} {_scope(whole)}已达 {consumed:.1f} kWh，按近一小时用电推算全天将达 {projected:.1f} kWh，"
        f"超过日上限 {limit_text(cap)} kWh" + _shed(shed)
    )


def load_message(
    town: str, day: str, span: str, consumed: float, load_cap_kw: float, level: float, severity: str,
    shed: tuple[ShedEntry, ...], whole: bool,
) -> str:  # fmt: skip
    limit = load_cap_kw / 4
    what = f"负荷上限 {limit_text(load_cap_kw)} kW 对应的 15 分钟电量"
    if severity == "violation":
        head = f"{town} {day} {span} {_scope(whole)} {_used(consumed, limit)} kWh，"
        return head + _over(consumed, limit, what) + _shed(shed)
    head = f"{town} {day} {span} {_scope(whole)} {consumed:.1f} kWh，"
    return head + _reached(consumed, limit, what, level, severity) + _shed(shed)


def standby_message(firm: str, day: str, consumed: float, standby: float, why: str, until: str) -> str:
    """rota_off_day (why = 错时供电停电日) and rest_day (why = 申报休息日)."""
    used = _used(consumed, standby)
    return f"{firm} {day} 为{why}，用电 {used} kWh，超过保安用电 {limit_text(standby)} kWh" + _cutoff(day, until)


def daily_limit_message(
    firm: str, day: str, consumed: float, limit: float, level: float, severity: str, until: str | None
) -> str:
    if until is not None:
        return (
            f"{firm} {day} 用电 {_used(consumed, limit)} kWh，" + _over(consumed, limit, "日限额") + _cutoff(day, until)
        )
    head = f"{firm} {day} 用电 {consumed:.1f} kWh，"
    return head + _reached(consumed, limit, "日限额", level, severity)


def monthly_message(
    firm: str, month: str, consumed: float, quota: float, level: float, severity: str, cutoff: tuple[str, str] | None
) -> str:
    """`cutoff`: (from day, until) of the order a violation makes."""
    if cutoff is not None:
        head = f"{firm} {month_text(month)}累计用电 {_used(consumed, quota)} kWh，"
        return head + _over(consumed, quota, "月度配额") + _cutoff(*cutoff)
    head = f"{firm} {month_text(month)}累计用电 {consumed:.1f} kWh，"
    return head + _reached(consumed, quota, "月度配额", level, severity)


def breach_message(firm: str, from_day: str, until: str, day: str, consumed: float, standby: float) -> str:
    return (
        f"{firm} 在停电令期间（{from_day} 起至 {until}）{day} 仍用电 {_used(consumed, standby)} kWh，"
        f"超过保安用电 {limit_text(standby)} kWh，请督查立即到现场核查"
    )


def offline_message(meter: str, owner: str, seconds: float, last: str | None) -> str:
    """`last`: when the meter's last reading was taken, as people write it ('09:55', or '2010-10-19 23:55'
    when that was another day); None when it never reported."""
    if last is None:
        return f"{owner} 电表 {meter} 自开始监测起未上报读数（已超过 {duration_text(seconds)}），请核查电表和通信"
    return f"{owner} 电表 {meter} 已超过 {duration_text(seconds)}无读数（最后读数 {last}），请核查电表和通信"


def anomaly_message(
    meter: str, owner: str, kind: str, previous: float, new: float, multiplier: float, kw: float,
    max_kw: float | None,
) -> str:  # fmt: skip
    """`previous`, `new`: the meter's own readings (kWh, before its multiplier), as its display shows them."""
    readings = f"{previous:.2f} → {new:.2f} kWh"
    if multiplier != 1:
        readings += f"（倍率 {limit_text(multiplier)}，折合 {previous * multiplier:.1f} → {new * multiplier:.1f} kWh）"
    if kind == "decrease":
        detail = f"读数下降：{readings}，疑似换表或清零，请核实"
    else:
        limit = limit_text(max_kw) if max_kw is not None else "?"
        power = f"{kw:.1f}" if max_kw is None or round(kw, 1) > max_kw else f"{kw:.3f}"  # never '100.0 > 100'
        detail = f"读数跳变：{readings}，相当于平均功率 {power} kW，超过该表上限 {limit} kW，请核实"
    return f"{owner} 电表 {meter} {detail}；这一段不计电量，以新读数为起点继续计量"


def off_groups_text(off_groups: list[str], exempt: list[tuple[str, float | None]]) -> str:
    """The groups off on a day, with the firms of those groups that run all the same (rota_exempt) named apart:
    '七家企业（盛达机电公司除外，按日限额 4200 kWh 运行）'. `exempt`: (name, daily limit or None)."""
    text = "、".join(off_groups) or "无"
    if exempt:
        parts = [
            f"{name}除外，按日限额 {limit_text(limit)} kWh 运行" if limit is not None else f"{name}除外，照常运行"
            for name, limit in exempt
        ]
        text += f"（{'；'.join(parts)}）"
    return text

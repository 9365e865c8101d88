"""The Chinese text of each alert, for inspectors reading it on a phone. One function per rule."""

from __future__ import annotations

from quotad.alerts import ShedEntry, limit_text

__all__ = [
    "anomaly_message",
    "breach_message",
    "cap_message",
    "daily_limit_message",
    "load_message",
    "monthly_message",
    "offline_message",
    "projection_message",
    "standby_message",
]

_CUTOFF = "，停电至 {until}（一停到底）"


def _pct(level: float) -> str:
    return f"{round(level * 100)}%"


def _shed(shed: tuple[ShedEntry, ...]) -> str:
    if not shed:
        return ""
    names = "、".join(f"{s.firm_name}（近一小时 {s.trailing_hour_kwh:.1f} kWh）" for s in shed)
    return f"；建议优先压减：{names}"


def cap_message(town: str, day: str, consumed: float, cap: float, level: float, shed: tuple[ShedEntry, ...]) -> str:
    if level >= 1.0:
        text = f"{town} {day} 全镇用电 {consumed:.1f} kWh，已超过日上限 {limit_text(cap)} kWh"
    else:
        text = f"{town} {day} 全镇用电 {consumed:.1f} kWh，已达日上限 {limit_text(cap)} kWh 的 {_pct(level)}"
    return text + _shed(shed)


def projection_message(
    town: str, day: str, consumed: float, projected: float, cap: float, shed: tuple[ShedEntry, ...]
) -> str:
    return (
        f"{town} {day} 按近一小时用电推算全天将达 {projected:.1f} kWh，超过日上限 {limit_text(cap)} kWh"
        f"（已用 {consumed:.1f} kWh）" + _shed(shed)
    )


def load_message(
    town: str, day: str, span: str, consumed: float, load_cap_kw: float, level: float, shed: tuple[ShedEntry, ...]
) -> str:
    limit = f"负荷上限 {limit_text(load_cap_kw)} kW（每15分钟 {limit_text(load_cap_kw / 4)} kWh）"
    if level >= 1.0:
        text = f"{town} {day} {span} 时段用电 {consumed:.1f} kWh，已超过{limit}"
    else:
        text = f"{town} {day} {span} 时段用电 {consumed:.1f} kWh，已达{limit}的 {_pct(level)}"
    return text + _shed(shed)


def standby_message(firm: str, day: str, consumed: float, standby: float, why: str, until: str) -> str:
    """rota_off_day (why = 错时供电停产日) and rest_day (why = 申报休息日)."""
    return f"{firm} {day} 为{why}，用电 {consumed:.1f} kWh，超过待机电量 {limit_text(standby)} kWh" + _CUTOFF.format(
        until=until
    )


def daily_limit_message(firm: str, day: str, consumed: float, limit: float, level: float, until: str | None) -> str:
    if until is not None:
        return f"{firm} {day} 用电 {consumed:.1f} kWh，超过日限额 {limit_text(limit)} kWh" + _CUTOFF.format(until=until)
    return f"{firm} {day} 用电 {consumed:.1f} kWh，已达日限额 {limit_text(limit)} kWh 的 {_pct(level)}"


def monthly_message(firm: str, month: str, consumed: float, quota: float, level: float, until: str | None) -> str:
    head = f"{firm} {month} 月累计用电 {consumed:.1f} kWh，"
    if until is not None:
        return head + f"超过月度配额 {limit_text(quota)} kWh" + _CUTOFF.format(until=until)
    return head + f"已达月度配额 {limit_text(quota)} kWh 的 {_pct(level)}"


def breach_message(firm: str, from_day: str, until: str, day: str, consumed: float, standby: float) -> str:
    return (
        f"{firm} 停电令期间（{from_day} 至 {until}）{day} 仍用电 {consumed:.1f} kWh，"
        f"超过待机电量 {limit_text(standby)} kWh"
    )


def offline_message(meter: str, owner: str, seconds: float, last: str | None) -> str:
    since = f"最后读数时间 {last}" if last else "从未上报读数"
    return f"电表 {meter}（{owner}）已超过 {limit_text(seconds)} 秒无读数，{since}"


def anomaly_message(
    meter: str, owner: str, kind: str, previous: float, new: float, kw: float, max_kw: float | None
) -> str:
    if kind == "decrease":
        detail = f"读数下降：{previous:.1f} → {new:.1f} kWh"
    else:
        limit = limit_text(max_kw) if max_kw is not None else "?"
        detail = f"读数跳变：{previous:.1f} → {new:.1f} kWh，折合 {kw:.1f} kW，超过上限 {limit} kW"
    return f"电表 {meter}（{owner}）{detail}，本段不计电量，以新读数为基数"

"""The words of the notices that go out on the channels (`quotad.core.notices`): the cutoff notice (停电通知书),
the notice that supply is restored (恢复供电通知), each firm's rota for tomorrow with its allowance left.

The plan's words, literal like `quotad.core.messages`: 错时供电, 一停到底, 保安用电, 日限额, 月度配额. Energy to
0.1 kWh (limits without a trailing `.0`, `limit_text`); a meter's own readings to 0.01 kWh, as its display shows
them. A firm's rota notice is short enough for a phone's lock screen (`ROTA_MAX` characters for a firm name of up
to `NAME_MAX`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

from quotad.core.alerts import RULE_NAMES, kwh, limit_text
from quotad.core.engine import Engine
from quotad.core.messages import month_text
from quotad.core.orders import Order
from quotad.core.policy import Firm
from quotad.schedule.calendar import Micros

__all__ = [
    "NAME_MAX",
    "ROTA_MAX",
    "Allowance",
    "allowance",
    "cutoff_text",
    "day_text",
    "lifted_text",
    "rota_text",
]

ROTA_MAX: Final = 120  # characters: a phone's lock screen
NAME_MAX: Final = 10  # a firm's name up to this long keeps the rota notice within ROTA_MAX
_WEEKDAYS_ZH: Final = "一二三四五六日"
_METERS_SHOWN: Final = 3  # meters named in a cutoff notice's evidence (the rest counted)
# what a rule's limit is called (a day the firm must be off leaves it only its standby, 保安用电)
_LIMIT_WORDS: Final = {
    "firm_daily_limit": "日限额",
    "monthly_quota": "月度配额",
    "rota_off_day": "保安用电",
    "rest_day": "保安用电",
}


def day_text(day: dt.date) -> str:
    """2010-10-21 -> '10月21日（周四）'."""
    return f"{day.month}月{day.day}日（周{_WEEKDAYS_ZH[day.weekday()]}）"


def _kwh(value: float) -> str:
    """A use to 0.1 kWh, or to the Wh when 0.1 kWh would show nothing (an excess of 0.04 kWh is not '0.0')."""
    return f"{value:.1f}" if round(value, 1) != 0 or value == 0 else f"{value:.3f}"


def _standby(engine: Engine, firm: Firm | None) -> float:
    if firm is not None and firm.standby_kwh is not None:
        return firm.standby_kwh
    return engine.policy.township.standby_kwh


# -- the cutoff notice (停电通知书) -----------------------------------------------------------------


def cutoff_text(engine: Engine, order: Order) -> str:
    """The 停电通知书 of `order`: the firm, the rule, the evidence (the use against the limit, the meters'
    readings), from and until, and who executes (供电所)."""
    rule = RULE_NAMES.get(order.rule, order.rule)
    standby = limit_text(_standby(engine, engine.firms.get(order.firm)))
    lines = [
        f"{order.firm_name}：",
        f"违规事项：{rule}。{_evidence(order.rule, order.evidence)}",
        f"依据乡镇节电调控方案，自 {order.from_day} 起停止供电至 {order.until}（一停到底），由供电所执行；"
        f"停电期间仅限保安用电每日 {standby} kWh。",
    ]
    meters = _meters(order.evidence)
    if meters and "beyond_accuracy_kwh" in order.evidence:  # the readings are those of its first crossing
        meters = meters.replace("电表读数：", "首次越限时电表读数：", 1)
    if meters:
        lines.insert(2, meters)
    lines.append(f"（停电令 {order.alert_id}）")
    return "\n".join(lines)


def _evidence(rule: str, evidence: dict[str, Any]) -> str:
    """The arithmetic behind the order: the use against the limit (the figure that issued it: beyond the meters'
    accuracy, for a pending order issued so), or what an inspector found on site."""
    if rule == "manual_order":
        used = evidence.get("consumed_kwh")
        day = f"；{evidence['day']} 用电 {_kwh(used)} kWh" if used is not None and "day" in evidence else ""
        return f"督查现场发现：{evidence.get('reason', '')}（{evidence.get('found_by', '')}）{day}。"
    consumed = evidence.get("beyond_accuracy_kwh", evidence.get("consumed_kwh"))
    limit = evidence.get("limit_kwh")
    if consumed is None or limit is None:
        return ""
    what = _LIMIT_WORDS.get(rule, "限额")
    if "month" in evidence:
        opening = evidence.get("opening_kwh")
        before = f"（含月初已用 {_kwh(opening)} kWh）" if opening else ""
        head = f"{month_text(evidence['month'])}累计用电 {_kwh(consumed)} kWh{before}"
    else:
        head = f"{evidence.get('day', '')} 用电 {_kwh(consumed)} kWh"
    beyond = "，已超出电表计量误差范围" if "beyond_accuracy_kwh" in evidence else ""
    return f"{head}，超过{what} {limit_text(limit)} kWh（超出 {_kwh(consumed - limit)} kWh{beyond}）。"


def _meters(evidence: dict[str, Any]) -> str:
    """'电表读数：x-m 10-20 00:00 0.00 → 12:00 150.00 kWh（当日 150.0 kWh）' for up to `_METERS_SHOWN` meters."""
    meters = evidence.get("meters") or []
    parts = []
    for m in meters[:_METERS_SHOWN]:
        first, last = m.get("first_ts") or "", m.get("last_ts") or ""
        parts.append(
            f"{m['meter']} {first[5:16].replace('T', ' ')} {m['first_counter_kwh']:.2f} → "
            f"{last[11:16]} {m['last_counter_kwh']:.2f} kWh（当日 {_kwh(m['day_kwh'])} kWh）"
        )
    if not parts:
        return ""
    more = f"等 {len(meters)} 块电表" if len(meters) > _METERS_SHOWN else ""
    return "电表读数：" + "；".join(parts) + more + "。"


def lifted_text(order: Order) -> str:
    """恢复供电通知: the order lifted, by whom and why; the 供电所 restores the supply."""
    rule = RULE_NAMES.get(order.rule, order.rule)
    change = order.last
    why = ""
    if change is not None:
        when = change.at[:16].replace("T", " ")
        why = f"解除原因：{change.reason}（{change.by}，{when}）。"
    return (
        f"{order.firm_name}：自 {order.from_day} 起的停电令（{rule}）已解除，请供电所恢复供电。{why}"
        f"（停电令 {order.alert_id}）"
    )


# -- a firm's rota for tomorrow, with its allowance ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Allowance:
    """A firm's figures at a moment, in kWh as the firm status reports them (`quotad.core.views`): the day's use
    and its daily limit (None: it has none), and for a general firm inside the control period the month's use
    and its monthly quota (None otherwise)."""

    day: dt.date
    day_used_kwh: float
    day_limit_kwh: float | None
    month_used_kwh: float | None
    month_quota_kwh: float | None


def allowance(engine: Engine, firm: Firm, t: Micros) -> Allowance:
    """`firm`'s allowance at event time `t`, from the figures the firm status is made of (the ledger's day and
    month, the daily limit, the rules' monthly quota)."""
    day = engine.calendar.day_of(t)
    used = kwh(engine.ledger.firm_day_wh(firm.id, day))
    limit = round(firm.daily_limit_kwh, 3) if firm.daily_limit_kwh is not None else None
    if firm.kind != "general" or day not in engine.plan.control:
        return Allowance(day, used, limit, None, None)
    quota = round(float(engine.rules.month_quota(firm, day.year, day.month)[0]), 3)
    month = kwh(engine.ledger.firm_month_wh(firm.id, (day.year, day.month)))
    return Allowance(day, used, limit, month, quota)


def _left(what: str, when: str, limit: float, used: float) -> str:
    """'日限额 4200 kWh，今日已用 3800.5，余 399.5' (or '超 12.0' past it)."""
    rest = f"余 {_kwh(limit - used)}" if used <= limit else f"超 {_kwh(used - limit)}"
    return f"{what} {limit_text(limit)} kWh，{when}已用 {_kwh(used)}，{rest}"


def _tomorrow(engine: Engine, firm: Firm, tomorrow: dt.date) -> str:
    """Whether `firm` runs on `tomorrow`, in the plan's words (as the firm status says why it may not)."""
    plan = engine.plan
    order = engine.orders.get(firm.id)
    if firm.id in engine.cut_off(tomorrow) and order is not None:
        if order.state == "pending":
            return "停电令待核实，不得生产"
        return f"一停到底，停电至 {order.until}"
    standby = limit_text(_standby(engine, firm))
    if plan.group_off(firm, tomorrow):
        return f"错时供电停电，保安用电限 {standby} kWh"
    if plan.rest_day(firm, tomorrow):
        return f"申报休息日，保安用电限 {standby} kWh"
    if firm.rota_exempt and firm.group in plan.off_groups(tomorrow):
        return "本组停电，本企业免轮停照常生产"
    return "照常生产" if tomorrow in plan.control else "照常生产（不在调控期内）"


def rota_text(engine: Engine, firm: Firm, tomorrow: dt.date, t: Micros) -> str:
    """`firm`'s own notice of `tomorrow`: does it run, and its allowance left today and this month at `t`."""
    figures = allowance(engine, firm, t)
    parts = [f"{firm.name}：{day_text(tomorrow)}{_tomorrow(engine, firm, tomorrow)}。"]
    if firm.id in engine.cut_off(tomorrow):  # its limits do not apply: it may draw its standby, no more
        return "".join(parts) + f"停电期间仅限保安用电每日 {limit_text(_standby(engine, firm))} kWh。"
    left = []
    if figures.day_limit_kwh is not None:
        left.append(_left("日限额", "今日", figures.day_limit_kwh, figures.day_used_kwh))
    if figures.month_quota_kwh is not None and figures.month_used_kwh is not None:
        left.append(_left("月度配额", "本月", figures.month_quota_kwh, figures.month_used_kwh))
    if not left:
        left.append(f"今日已用 {_kwh(figures.day_used_kwh)} kWh")
    return "".join(parts) + "；".join(left) + "。"

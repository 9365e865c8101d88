"""Retained statuses, today's schedule and the notices, as pure functions of the engine and a moment.

Topics (SPEC "MQTT topics"): `P/T/status/township`, `P/T/status/firms/<firm>`, `P/T/schedule/today`,
`P/T/notices`; and, where SPEC is silent, `P/T/status/daemon`: the daemon's own state (its outboxes). A firm's
`state` is `cutoff` under a standing order, else the highest level it reached today (daily limit) or this month
(monthly quota): `warning`, `notice`, or `ok`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

from quotad.core.alerts import alert_id, kwh
from quotad.core.engine import Engine
from quotad.core.messages import off_groups_text
from quotad.core.outputs import Message, topic
from quotad.core.policy import Firm, Policy
from quotad.core.windows import HOUR_US
from quotad.schedule.calendar import Micros
from quotad.schedule.rota import DaySchedule

__all__ = [
    "daemon_status",
    "event_now",
    "firm_status_messages",
    "firm_status_topic",
    "off_text",
    "residents_notice",
    "residents_text",
    "rota_notice",
    "status_messages",
    "systemd_status",
    "township_status_messages",
]

_WEEKDAYS_ZH = "一二三四五六日"  # 周一 .. 周日


def _json(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def event_now(engine: Engine, clock: Micros) -> Micros:
    """The township's now (SPEC "Time and energy"): the latest reading the engine accepted; before the first one,
    `clock` (the daemon's). What the statuses and systemd's STATUS= speak of: a simulated clock run ahead, or meters
    fed a recorded day, must not show a day the readings are not about."""
    return engine.now if engine.now is not None else clock


def systemd_status(engine: Engine, now: Micros) -> str:
    """systemd's STATUS= at `now`: the day's consumption against its cap."""
    day = engine.calendar.day_of(now)
    return f"{day}: {engine.ledger.township_day_wh(day) / 1000:.0f} of {engine.plan.control.cap_kwh(day):.0f} kWh"


def status_messages(engine: Engine, prefix: str, now: Micros) -> list[Message]:
    """Every retained status at `now`: the township, each firm, today's schedule."""
    township, schedule = township_status_messages(engine, prefix, now)
    return [township, *firm_status_messages(engine, prefix, now, engine.policy.firms), schedule]


def township_status_messages(engine: Engine, prefix: str, now: Micros) -> tuple[Message, Message]:
    """The township's retained status and today's schedule at `now`."""
    cal, town = engine.calendar, engine.policy.township
    day = cal.day_of(now)
    updated = cal.local(now).isoformat(timespec="seconds")
    consumed = engine.ledger.township_day_wh(day)
    _lo, hi = cal.bounds(day)
    trailing = engine.trailing.township_wh(min(now, engine.now or now))
    projected = consumed + trailing * max(0, hi - now) / HOUR_US
    capped = engine.plan.control.capped(day)
    township = Message(
        topic(prefix, town.id, "status", "township"),
        _json(
            {
                "day": day.isoformat(),
                "consumed_kwh": kwh(consumed),
                "cap_kwh": engine.plan.control.cap_kwh(day) if capped else None,
                "projected_kwh": kwh(projected) if capped else None,
                "updated": updated,
            }
        ),
        retain=True,
    )
    schedule = engine.plan.day(day, engine.cut_off(day))
    today = Message(
        topic(prefix, town.id, "schedule", "today"),
        _json(
            {
                "day": day.isoformat(),
                "running_groups": list(schedule.running_groups),
                "off_groups": list(schedule.off_groups),
                "cut_off_firms": list(schedule.cut_off_firms),
            }
        ),
        retain=True,
    )
    return township, today


def firm_status_topic(prefix: str, township: str, firm: str) -> str:
    return topic(prefix, township, "status", "firms", firm)


def firm_status_messages(engine: Engine, prefix: str, now: Micros, firms: Iterable[Firm]) -> list[Message]:
    """The retained statuses of `firms` at `now`."""
    cal, town = engine.calendar, engine.policy.township
    day = cal.day_of(now)
    updated = cal.local(now).isoformat(timespec="seconds")
    cut = engine.cut_off(day)
    return [
        Message(
            firm_status_topic(prefix, town.id, firm.id),
            _json({**_firm_status(engine, firm, day, cut), "updated": updated}),
            retain=True,
        )
        for firm in firms
    ]


def daemon_status(prefix: str, township: str, outboxes: dict[str, dict[str, Any]], updated: str) -> Message:
    """`P/T/status/daemon`, retained (with an `[influx]` section or channels): the InfluxDB outbox, `{"influx":
    {"state" ("ok", "unavailable", "not authorized"), "pending_mb", "max_mb", "max_age_h", "dropped_points",
    "dropped_readings", "last_dropped"}}` (what gave way to the bound since the state directory began, and when
    last), and each notice channel's queue, `"channel:<name>": {"state" ("ok" or its last answer), "pending",
    "delivered"}`."""
    body = {"outbox": outboxes, "updated": updated}
    return Message(topic(prefix, township, "status", "daemon"), _json(body), retain=True)


def _firm_status(engine: Engine, firm: Firm, day: dt.date, cut: set[str]) -> dict[str, Any]:
    plan, town = engine.plan, engine.policy.township.id
    consumed = engine.ledger.firm_day_wh(firm.id, day)
    reason = None
    if firm.id in cut:
        reason = f"一停到底：停止供电至 {engine.orders[firm.id].until}"
    elif plan.group_off(firm, day):
        reason = "错时供电：本组今日停电"
    elif plan.rest_day(firm, day):
        reason = "申报休息日"
    limit = firm.daily_limit_kwh
    state = "cutoff" if firm.id in cut else "ok"
    if state == "ok":
        for name in ("warning", "notice"):
            if _reached(engine, firm, day, name, town):
                state = name
                break
    if limit is None and firm.kind == "general" and day in plan.control:
        limit = float(engine.rules.month_quota(firm, day.year, day.month)[0])
        consumed = engine.ledger.firm_month_wh(firm.id, (day.year, day.month))
    return {
        "day": day.isoformat(),
        "allowed_today": reason is None,
        "reason": reason,
        "consumed_kwh": kwh(consumed),
        "limit_kwh": round(limit, 3) if limit is not None else None,
        "state": state,
    }


def _reached(engine: Engine, firm: Firm, day: dt.date, severity: str, town: str) -> bool:
    level = engine.policy.township.warning_at if severity == "warning" else engine.policy.township.notice_at
    daily = alert_id(town, firm.id, "firm_daily_limit", day.isoformat(), level, None)
    monthly = alert_id(town, firm.id, "monthly_quota", f"{day.year:04d}-{day.month:02d}", level, None)
    return daily in engine.raised or monthly in engine.raised


def rota_notice(engine: Engine, prefix: str, tomorrow: dt.date) -> Message:
    """Tomorrow's staggered-supply rota, announced the evening before."""
    groups = {g.id: g.name for g in engine.policy.groups}
    firms = {f.id: f.name for f in engine.policy.firms}
    schedule = engine.plan.day(tomorrow, engine.cut_off(tomorrow))
    weekday = _WEEKDAYS_ZH[tomorrow.weekday()]
    text = (
        f"明日 {tomorrow}（周{weekday}）错时供电安排：运行 {_names(schedule.running_groups, groups)}；"
        f"停电 {off_text(engine.policy, schedule)}；休息的作坊 {_names(schedule.resting_workshops, firms)}；"
        f"一停到底停止供电的企业 {_names(schedule.cut_off_firms, firms)}"
    )
    body = {"kind": "rota", "day": tomorrow.isoformat(), "running_groups": list(schedule.running_groups),
            "off_groups": list(schedule.off_groups), "exempt_running": list(schedule.exempt_running),
            "resting_workshops": list(schedule.resting_workshops), "cut_off_firms": list(schedule.cut_off_firms),
            "message": text}  # fmt: skip
    return Message(topic(prefix, engine.policy.township.id, "notices"), _json(body))


def _names(ids: tuple[str, ...], known: dict[str, str]) -> str:
    return "、".join(known.get(i, i) for i in ids) or "无"


def off_text(policy: Policy, schedule: DaySchedule) -> str:
    """The day's off groups, naming apart their firms that run all the same under a limit (rota_exempt)."""
    groups = {g.id: g.name for g in policy.groups}
    firms = {f.id: f for f in policy.firms}
    exempt = [(firms[f].name, firms[f].daily_limit_kwh) for f in schedule.exempt_running]
    return off_groups_text([groups.get(g, g) for g in schedule.off_groups], exempt)


def residents_notice(engine: Engine, prefix: str, day: dt.date, hours: str, when: str) -> Message:
    """The residents' energy-shortage experience day, announced the day before (`when` = 'eve') and that morning."""
    text = residents_text(day, hours, when)
    body = {"kind": "residents", "day": day.isoformat(), "hours": hours, "message": text}
    return Message(topic(prefix, engine.policy.township.id, "notices"), _json(body))


def residents_text(day: dt.date, hours: str, when: str) -> str:
    """The words of the residents' experience-day announcement (on MQTT and on the residents' channels)."""
    lead = "明日" if when == "eve" else "今日"
    return f"{lead}（{day}，周{_WEEKDAYS_ZH[day.weekday()]}）{hours} 为能源紧缺体验日，请居民节约用电、合理安排"

"""`quotad status`'s text: the retained topics under `P/T/`, read as what quotad publishes there, in Chinese; what is
retained but is not what quotad publishes (not JSON, not its shape, a topic quotad has no use for) is flagged, never
shown as genuine."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import TypeVar

from quotad.config.load import Loaded
from quotad.core.alerts import RULE_NAMES
from quotad.core.orders import STATE_NAMES
from quotad.core.payloads import FirmStatus, OrderView, Schedule, TownshipStatus, Unreadable, read, safe
from quotad.core.policy import Meter
from quotad.core.sources import SOURCE_LABELS
from quotad.core.tables import render
from quotad.core.views import off_text
from quotad.schedule.rota import Plan

__all__ = ["meters_read", "status_text"]

_STATES = {"ok": "正常", "notice": "提示", "warning": "警告", "cutoff": "停止供电"}
_DAEMON = {"online": "运行中", "offline": "已停止"}
P = TypeVar("P", TownshipStatus, FirmStatus, Schedule, OrderView)


def _kwh(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


class _Retained:
    """The retained messages under `base`, read as what quotad publishes there; what is not is noted, not shown."""

    def __init__(self, base: str, messages: Mapping[str, bytes | str]) -> None:
        self.base = base
        self.raw = {t: (p.encode() if isinstance(p, str) else p) for t, p in messages.items()}
        self.unreadable: list[str] = []

    def get(self, model: type[P], *parts: str) -> P | None:
        where = "/".join((self.base, *parts))
        raw = self.raw.get(where)
        if not raw:
            return None  # nothing retained there (an empty message clears it)
        try:
            return read(model, raw)
        except Unreadable as exc:
            self.flag(where, exc.reason)
            return None

    def flag(self, where: str, reason: str) -> None:
        self.unreadable.append(f"无法解析 {safe(where)}：{reason}，已忽略")


def status_text(loaded: Loaded, base: str, messages: Mapping[str, bytes | str]) -> str:
    """All in Chinese, figures to 0.1 kWh; a firm's figure stands in the column of its period (a general firm's
    quota is the month's, every other limit the day's). What is retained but is not what quotad publishes there
    (not JSON, not its shape, a topic quotad has no use for) is listed at the end, never shown as genuine."""
    policy = loaded.policy
    names = {f.id: f.name for f in policy.firms}
    retained = _Retained(base, messages)
    lines = [f"{policy.township.name}（{policy.township.id}） quotad：{_daemon_state(retained)}"]
    scope = "全镇用电" if policy.township.feeder_meters else "全镇企业用电"
    town = retained.get(TownshipStatus, "status", "township")
    if town is not None:
        cap = town.cap_kwh
        against = f"，日上限 {cap:g} kWh，按近一小时推算全天约 {_kwh(town.projected_kwh)} kWh" if cap else ""
        updated = safe(town.updated[11:16])
        lines.append(f"{town.day} {scope} {_kwh(town.consumed_kwh)} kWh{against}（{updated} 更新）")
    schedule = retained.get(Schedule, "schedule", "today")
    if schedule is not None:
        today = Plan(policy).day(schedule.day, schedule.cut_off_firms)
        running = "、".join(g.name for g in policy.groups if g.id in today.running_groups) or "—"
        lines.append(f"今日运行：{running}；停电：{off_text(policy, today)}")
    rows = []
    for firm in policy.firms:
        status = retained.get(FirmStatus, "status", "firms", firm.id)
        if status is None:
            continue
        allowed = "可以" if status.allowed_today else f"不可（{safe(str(status.reason))}）"
        used, limit = _kwh(status.consumed_kwh), _kwh(status.limit_kwh)
        monthly = firm.kind == "general" and firm.daily_limit_kwh is None
        figures = ["—", "—", used, limit] if monthly else [used, limit, "—", "—"]
        rows.append([firm.name, *figures, _STATES[status.state], allowed])
    if rows:
        header = ["企业", "今日用电 kWh", "日限额 kWh", "本月累计 kWh", "月配额 kWh", "状态", "今日可否用电"]
        lines.append(render(header, rows))
    lines.append("停电令：" + ("；".join(_orders(retained, names)) or "无"))
    lines += _outbox_lines(retained, policy.township.tz)
    _unknown_topics(retained, set(names))
    if retained.unreadable:
        lines += ["以下保留消息不是 quotad 发布的内容，未予显示（可能是伪造的，请检查代理服务器的 ACL）：",
                  *(f"  {line}" for line in retained.unreadable)]  # fmt: skip
    return "\n".join(lines)


def _daemon_state(retained: _Retained) -> str:
    raw = retained.raw.get(f"{retained.base}/daemon")
    if not raw:
        return "未知"
    text = raw.decode("utf-8", errors="replace")
    if text in _DAEMON:
        return _DAEMON[text]
    if text.startswith("degraded: "):  # the daemon's own word for a state directory that refuses writes
        return f"降级运行（{safe(text.removeprefix('degraded: '))}）"
    retained.flag(f"{retained.base}/daemon", "不是 online 或 offline")
    return "未知"


def _orders(retained: _Retained, names: dict[str, str]) -> list[str]:
    """The standing orders, one text each; an order on another firm's topic, or on a firm the policy does not
    have, is flagged instead."""
    standing = []
    head = f"{retained.base}/orders/"
    for where in sorted(t for t in retained.raw if t.startswith(head) and retained.raw[t]):
        firm = where.removeprefix(head)
        if firm not in names:
            retained.flag(where, "本镇的政策文件中没有这家企业")
            continue
        order = retained.get(OrderView, "orders", firm)
        if order is None:
            continue
        if order.firm != firm:
            retained.flag(where, f"内容是企业 {safe(order.firm)} 的停电令，与主题不符")
            continue
        rule = RULE_NAMES.get(order.rule, safe(order.rule))
        state = STATE_NAMES[order.state]
        standing.append(f"{names[firm]} {state} 自 {order.from_day} 起至 {order.until}（{rule}）")
    return standing


def _unknown_topics(retained: _Retained, firms: set[str]) -> None:
    """Topics quotad does not publish, found where the command looked (status/#): said, not shown."""
    base = retained.base
    known = {f"{base}/daemon", f"{base}/status/township", f"{base}/status/daemon", f"{base}/schedule/today"}
    known |= {f"{base}/status/firms/{firm}" for firm in firms}
    for where in sorted(retained.raw):
        if where not in known and not where.startswith(f"{base}/orders/") and retained.raw[where]:
            retained.flag(where, "quotad 不发布这个主题")


_SINK_STATES = {"ok": "正常", "unavailable": "无法连接", "not authorized": "拒绝了 quotad 的用户名或密码（未授权）"}


def _outbox_lines(retained: _Retained, tz: dt.tzinfo) -> list[str]:
    """The daemon's outboxes (`status/daemon`): InfluxDB's (the database's state, what waits against the bound and
    what gave way to it) and each notice channel's queue. Nothing when the daemon publishes no such status (no
    `[influx]`, no channels); a payload of another shape is flagged."""
    where = f"{retained.base}/status/daemon"
    raw = retained.raw.get(where)
    if not raw:
        return []
    try:
        outbox = json.loads(raw.decode("utf-8")).get("outbox")
    except (ValueError, AttributeError, RecursionError):
        outbox = None
    influx = outbox.get("influx", {}) if isinstance(outbox, dict) else None
    if not isinstance(outbox, dict) or not isinstance(influx, dict):
        retained.flag(where, "不是 quotad 的状态消息")
        return []
    lines = [_influx_line(influx, tz)] if influx else []
    for key, queue in sorted(outbox.items()):
        if key.startswith("channel:") and isinstance(queue, dict):
            state = "正常" if queue.get("state") == "ok" else f"暂未送达，渠道答复：{queue.get('state')}"
            lines.append(f"通知渠道 {key.removeprefix('channel:')}：{state}；待发送 {_num(queue.get('pending'))} 条，"
                         f"已送达 {_num(queue.get('delivered'))} 条（本次运行）")  # fmt: skip
    return lines


def _influx_line(influx: dict[str, object], tz: dt.tzinfo) -> str:
    state = _SINK_STATES.get(str(influx.get("state")), str(influx.get("state")))
    pending = influx.get("pending_mb")
    text = (
        f"InfluxDB 写入：{state}；待写入 {_kwh(pending if isinstance(pending, int | float) else None)} MB"
        f"（上限 {_num(influx.get('max_mb'))} MB、{_num(influx.get('max_age_h'))} 小时）"
    )
    dropped = influx.get("dropped_points")
    if isinstance(dropped, int) and dropped > 0:
        text += (
            f"；超出上限，已丢弃最早的遥测数据 {dropped} 条（其中电表读数 {_num(influx.get('dropped_readings'))} 条，"
            f"最近一次 {_when(influx.get('last_dropped'), tz)}），告警和停电令从不丢弃"
        )
    return text


def _num(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "—"


def _when(value: object, tz: dt.tzinfo) -> str:
    try:
        return dt.datetime.fromisoformat(str(value)).astimezone(tz).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return "—"


def meters_read(meters: Sequence[Meter], read: Collection[str]) -> str:
    """Of each kind of meter the policy has, how many are among `read`: `Modbus 12/12, DL/T 645 6/6, MQTT 8/8`."""
    kinds = Counter(type(m.source).LABEL for m in meters)
    got = Counter(type(m.source).LABEL for m in meters if m.id in read)
    return ", ".join(f"{label} {got[label]}/{kinds[label]}" for label in SOURCE_LABELS if kinds[label])

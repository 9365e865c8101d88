"""Inspectors' commands over MQTT: `quotad alerts --follow` and `quotad status` (from the retained topics)."""

from __future__ import annotations

import datetime as dt
import json
import queue
import secrets
import signal
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, TextIO, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from quotad.config.daemon import MqttSettings
from quotad.config.load import Loaded
from quotad.core.alerts import RULE_NAMES, SEVERITY_NAMES
from quotad.core.errors import QuotadError
from quotad.core.i18n import _
from quotad.core.outputs import topic
from quotad.core.payloads import AlertView, FirmStatus, OrderView, Schedule, TownshipStatus, Unreadable, read, safe
from quotad.core.tables import render
from quotad.core.views import off_text
from quotad.schedule.rota import Plan
from quotad.shell.sinks import mqtt_client

__all__ = ["follow_alerts", "format_alert", "show_status"]

_FOLLOW_SESSION_S = 3600  # how long the broker queues alerts for a follower whose connection is down
_SESSION_LOST = (
    ": it had lost this follower's session (restarted without persistence?), so alerts published while the"
    " connection was down may be missing here; they are in the journal and InfluxDB"
)


def _settings(loaded: Loaded) -> MqttSettings:
    if loaded.daemon is None or loaded.daemon.mqtt is None:
        msg = "this command reads the broker of the daemon file's [mqtt] section: give -c quotad.toml"
        raise QuotadError(msg)
    return loaded.daemon.mqtt


def format_alert(alert: dict[str, Any]) -> str:
    when = safe(str(alert.get("ts", ""))[:16].replace("T", " "))
    severity = SEVERITY_NAMES.get(str(alert.get("severity")), safe(str(alert.get("severity"))))
    return f"{when} [{severity}] {safe(str(alert.get('message', '')))}"


class _Refused:
    """The broker's refusal of the connection (a CONNACK with a failure code), put in the inbox for the reader.
    `final`: a refusal that trying again cannot cure (the credentials, the client's rights)."""

    def __init__(self, where: str, settings: MqttSettings, reason: Any) -> None:
        code = getattr(reason, "value", 0)
        self.final = code in _REFUSED_LOGIN
        if code in _REFUSED_LOGIN:
            self.text = _(
                "the MQTT broker {where} refused the login of user {user} ({reason}): a wrong user name or password, "
                "or a user the broker does not know; check [mqtt] username and password_file"
            ).format(where=where, user=repr(settings.username) if settings.username else _("(none)"), reason=reason)
        else:
            message = _("the MQTT broker {where} refused the connection ({reason})")
            self.text = message.format(where=where, reason=reason)


# CONNACK reason codes (MQTT 5; paho maps 3.1.1's 4 and 5 to 0x86 and 0x87): bad user name or password, not
# authorized (mosquitto's answer to a wrong password), banned, bad authentication method
_REFUSED_LOGIN = frozenset({0x86, 0x87, 0x8A, 0x8C})
_Inbox = queue.Queue[mqtt.MQTTMessage | _Refused]


def _subscribe(
    settings: MqttSettings, topics: list[str], suffix: str, *, durable: bool = False, err: TextIO | None = None
) -> tuple[mqtt.Client, _Inbox]:
    """Subscribe to `topics` (QoS 1). `durable`: an MQTT 5 session the broker keeps for `_FOLLOW_SESSION_S` while
    the connection is down, so a broker restart or a network cut loses no alert; the loss of that session (a
    broker restarted without persistence) is said on `err`. A refused connection comes in the inbox as `_Refused`."""
    inbox: _Inbox = queue.Queue()
    client_id = f"{settings.client_id}-{suffix}-{secrets.token_hex(4)}"  # new: no one else's session to resume
    client = mqtt_client(settings, client_id, clean=True, v5=durable)
    where = f"{settings.host}:{settings.port}"
    state = {"connected": 0, "down": False}

    def on_connect(c: mqtt.Client, userdata: object, flags: Any, reason: Any, props: object) -> None:
        if getattr(reason, "is_failure", False):
            refused = _Refused(where, settings, reason)
            if not refused.final:
                _say(err, refused.text)
            inbox.put(refused)
            return
        if state["connected"] and err is not None:
            kept = bool(getattr(flags, "session_present", False))
            _say(err, f"MQTT broker {where} is back" + ("" if kept else _SESSION_LOST))
        state["connected"] += 1
        state["down"] = False
        for t in topics:
            if durable:  # MQTT 5: a message published retained keeps its flag, live too (quotad retains no alert)
                c.subscribe(t, options=SubscribeOptions(qos=1, retainAsPublished=True))
            else:
                c.subscribe(t, qos=1)

    def on_disconnect(c: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        if state["connected"] and not state["down"]:
            _say(err, f"MQTT broker {where} lost ({reason}); reconnecting")
        state["down"] = True

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = lambda c, userdata, message: inbox.put(message)
    try:
        if durable:
            client.reconnect_delay_set(min_delay=1, max_delay=5)
            session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            session.SessionExpiryInterval = _FOLLOW_SESSION_S
            # clean_start=False from the first connection (the id is new): mosquitto 2.0 saves no session begun
            # with clean_start=True in its persistence file, so such a session would not survive its restart
            client.connect(
                settings.host, settings.port, keepalive=settings.keepalive_s, clean_start=False, properties=session
            )
        else:
            client.connect(settings.host, settings.port, keepalive=settings.keepalive_s)
    except OSError as exc:
        msg = f"cannot reach the MQTT broker {where}: {exc}"
        raise QuotadError(msg) from None
    client.loop_start()
    return client, inbox


def _say(err: TextIO | None, text: str) -> None:
    if err is not None:
        err.write(text + "\n")
        err.flush()


def _end_session(client: mqtt.Client) -> None:
    """Disconnect and tell the broker to drop the session now rather than keep it for its expiry."""
    ending = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
    ending.SessionExpiryInterval = 0
    client.on_disconnect = None
    client.disconnect(properties=ending)
    client.loop_stop()


def follow_alerts(
    loaded: Loaded, severity: str | None, firm: str | None, as_json: bool, out: TextIO = sys.stdout,
    limit: int | None = None, timeout_s: float | None = None, err: TextIO = sys.stderr,
) -> int:  # fmt: skip
    """Print alerts as they arrive (each id once) until interrupted, `limit` alerts, or `timeout_s` of silence.
    The broker keeps the follower's session while the connection is down: an alert published meanwhile comes
    when it is back (the broker's restart included, when it persists sessions as mosquitto does by default
    with `persistence true`). Connection news goes to `err`, never among the alerts."""
    settings = _settings(loaded)
    wanted = topic(settings.topic_prefix, loaded.policy.township.id, "alerts", severity or "+", firm or "+")
    client, inbox = _subscribe(settings, [wanted], "alerts", durable=True, err=err)
    seen: set[str] = set()
    # `kill` (SIGTERM, as from a supervisor) ends the follower as Ctrl-C does: its session ended, exit 0, rather
    # than the broker queueing alerts for a follower that is gone for the next hour
    main = threading.current_thread() is threading.main_thread()
    on_term = signal.signal(signal.SIGTERM, _interrupt) if main else None
    flagged: set[tuple[str, bytes]] = set()
    try:
        while limit is None or len(seen) < limit:
            try:
                message = inbox.get(timeout=timeout_s)
            except queue.Empty:
                break
            if isinstance(message, _Refused):
                if message.final:
                    raise QuotadError(message.text)
                continue
            alert = _alert(message, flagged, err)
            if alert is None or alert.id in seen:
                continue  # delivery is at least once: each id is shown once
            seen.add(alert.id)
            text = (
                json.dumps(json.loads(message.payload), ensure_ascii=False)
                if as_json
                else format_alert(alert.model_dump())
            )
            out.write(text + "\n")
            out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        _end_session(client)
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _alert(message: mqtt.MQTTMessage, flagged: set[tuple[str, bytes]], err: TextIO) -> AlertView | None:
    """The alert `message` carries, or None: a retained one (quotad never retains an alert: someone else left it
    there) and one that is not an alert are said on `err` (each retained one once) and not shown."""
    where, payload = safe(message.topic), bytes(message.payload)
    if message.retain:
        if (message.topic, payload) not in flagged:
            flagged.add((message.topic, payload))
            _say(err, f"忽略 {where} 上保留的告警：quotad 从不保留告警，这条不是 quotad 发布的（可能是伪造的）")
        return None
    try:
        return read(AlertView, payload)
    except Unreadable as exc:
        _say(err, f"无法解析 {where} 上的告警：{exc.reason}（已忽略）")
        return None


def show_status(loaded: Loaded, out: TextIO = sys.stdout, wait_s: float = 1.5) -> int:
    """Today's schedule, the township against its cap, each firm, the standing orders: the retained topics."""
    settings = _settings(loaded)
    base = topic(settings.topic_prefix, loaded.policy.township.id)
    client, inbox = _subscribe(
        settings, [f"{base}/status/#", f"{base}/schedule/today", f"{base}/orders/#", f"{base}/daemon"], "status"
    )
    retained: dict[str, bytes] = {}
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline:
            try:
                message = inbox.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(message, _Refused):
                raise QuotadError(message.text)
            retained[message.topic] = bytes(message.payload)
    finally:
        client.disconnect()  # first: paho's thread then ends at once, not at its next second's wake
        client.loop_stop()
    if not retained:
        msg = (
            f"nothing retained under {base}/: is the daemon running and publishing to {settings.host}:{settings.port}?"
        )
        raise QuotadError(msg)
    out.write(_status_text(loaded, base, retained) + "\n")
    return 0


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


def _status_text(loaded: Loaded, base: str, messages: Mapping[str, bytes | str]) -> str:
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
        standing.append(f"{names[firm]} 自 {order.from_day} 起至 {order.until}（{rule}）")
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
    """The daemon's InfluxDB outbox (`status/daemon`): the database's state, what waits against the bound and what
    gave way to it. Nothing when the daemon publishes no such status (no `[influx]`); a payload of another shape
    is flagged."""
    where = f"{retained.base}/status/daemon"
    raw = retained.raw.get(where)
    if not raw:
        return []
    try:
        influx = json.loads(raw.decode("utf-8")).get("outbox", {}).get("influx")
    except (ValueError, AttributeError, RecursionError):
        retained.flag(where, "不是 quotad 的状态消息")
        return []
    if not isinstance(influx, dict):
        retained.flag(where, "不是 quotad 的状态消息")
        return []
    state = _SINK_STATES.get(str(influx.get("state")), str(influx.get("state")))
    text = (
        f"InfluxDB 写入：{state}；待写入 {_kwh(influx.get('pending_mb'))} MB"
        f"（上限 {_num(influx.get('max_mb'))} MB、{_num(influx.get('max_age_h'))} 小时）"
    )
    dropped = influx.get("dropped_points")
    if isinstance(dropped, int) and dropped > 0:
        text += (
            f"；超出上限，已丢弃最早的遥测数据 {dropped} 条（其中电表读数 {_num(influx.get('dropped_readings'))} 条，"
            f"最近一次 {_when(influx.get('last_dropped'), tz)}），告警和停电令从不丢弃"
        )
    return [text]


def _num(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "—"


def _when(value: object, tz: dt.tzinfo) -> str:
    try:
        return dt.datetime.fromisoformat(str(value)).astimezone(tz).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return "—"

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
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from quotad.alerts import RULE_NAMES, SEVERITY_NAMES
from quotad.config.daemon import MqttSettings
from quotad.config.load import Loaded
from quotad.errors import QuotadError
from quotad.outputs import topic
from quotad.schedule.rota import Plan
from quotad.sinks import mqtt_client
from quotad.status import off_text
from quotad.tables import render

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
    when = str(alert.get("ts", ""))[:16].replace("T", " ")
    severity = SEVERITY_NAMES.get(str(alert.get("severity")), str(alert.get("severity")))
    return f"{when} [{severity}] {alert.get('message', '')}"


def _subscribe(
    settings: MqttSettings, topics: list[str], suffix: str, *, durable: bool = False, err: TextIO | None = None
) -> tuple[mqtt.Client, queue.Queue[mqtt.MQTTMessage]]:
    """Subscribe to `topics` (QoS 1). `durable`: an MQTT 5 session the broker keeps for `_FOLLOW_SESSION_S` while
    the connection is down, so a broker restart or a network cut loses no alert; the loss of that session (a
    broker restarted without persistence) is said on `err`."""
    inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    client_id = f"{settings.client_id}-{suffix}-{secrets.token_hex(4)}"  # new: no one else's session to resume
    client = mqtt_client(settings, client_id, clean=True, v5=durable)
    where = f"{settings.host}:{settings.port}"
    state = {"connected": 0, "down": False}

    def on_connect(c: mqtt.Client, userdata: object, flags: Any, reason: Any, props: object) -> None:
        if getattr(reason, "is_failure", False):
            _say(err, f"MQTT broker {where} refused the connection: {reason}")
            return
        if state["connected"] and err is not None:
            kept = bool(getattr(flags, "session_present", False))
            _say(err, f"MQTT broker {where} is back" + ("" if kept else _SESSION_LOST))
        state["connected"] += 1
        state["down"] = False
        for t in topics:
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
    try:
        while limit is None or len(seen) < limit:
            try:
                message = inbox.get(timeout=timeout_s)
            except queue.Empty:
                break
            try:
                alert = json.loads(message.payload)
            except (ValueError, UnicodeDecodeError):
                continue
            if not isinstance(alert, dict) or alert.get("id") in seen:
                continue  # delivery is at least once: each id is shown once
            seen.add(str(alert.get("id")))
            out.write((json.dumps(alert, ensure_ascii=False) if as_json else format_alert(alert)) + "\n")
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


def show_status(loaded: Loaded, out: TextIO = sys.stdout, wait_s: float = 1.5) -> int:
    """Today's schedule, the township against its cap, each firm, the standing orders: the retained topics."""
    settings = _settings(loaded)
    base = topic(settings.topic_prefix, loaded.policy.township.id)
    client, inbox = _subscribe(
        settings, [f"{base}/status/#", f"{base}/schedule/today", f"{base}/orders/#", f"{base}/daemon"], "status"
    )
    retained: dict[str, str] = {}
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            message = inbox.get(timeout=0.1)
        except queue.Empty:
            continue
        retained[message.topic] = message.payload.decode(errors="replace")
    client.loop_stop()
    client.disconnect()
    if not retained:
        msg = (
            f"nothing retained under {base}/: is the daemon running and publishing to {settings.host}:{settings.port}?"
        )
        raise QuotadError(msg)
    out.write(_status_text(loaded, base, retained) + "\n")
    return 0


_STATES = {"ok": "正常", "notice": "提示", "warning": "警告", "cutoff": "停止供电"}
_DAEMON = {"online": "运行中", "offline": "已停止"}


def _kwh(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "—"


def _status_text(loaded: Loaded, base: str, retained: dict[str, str]) -> str:
    """All in Chinese, figures to 0.1 kWh; a firm's figure stands in the column of its period (a general firm's
    quota is the month's, every other limit the day's)."""
    policy = loaded.policy
    names = {f.id: f.name for f in policy.firms}
    daemon = retained.get(f"{base}/daemon")
    lines = [f"{policy.township.name}（{policy.township.id}） quotad：{_DAEMON.get(daemon or '', '未知')}"]
    scope = "全镇用电" if policy.township.feeder_meters else "全镇企业用电"
    town = json.loads(retained.get(f"{base}/status/township", "{}") or "{}")
    if town:
        cap = town.get("cap_kwh")
        against = f"，日上限 {cap:g} kWh，按近一小时推算全天约 {_kwh(town.get('projected_kwh'))} kWh" if cap else ""
        updated = str(town.get("updated", ""))[11:16]
        lines.append(f"{town.get('day')} {scope} {_kwh(town.get('consumed_kwh'))} kWh{against}（{updated} 更新）")
    schedule = json.loads(retained.get(f"{base}/schedule/today", "{}") or "{}")
    if schedule:
        day = dt.date.fromisoformat(str(schedule.get("day")))
        cut = tuple(schedule.get("cut_off_firms", []))
        today = Plan(policy).day(day, cut)
        running = "、".join(g.name for g in policy.groups if g.id in today.running_groups) or "—"
        lines.append(f"今日运行：{running}；停电：{off_text(policy, today)}")
    rows = []
    for firm in policy.firms:
        status = json.loads(retained.get(f"{base}/status/firms/{firm.id}", "{}") or "{}")
        if not status:
            continue
        allowed = "可以" if status.get("allowed_today") else f"不可（{status.get('reason')}）"
        used, limit = _kwh(status.get("consumed_kwh")), _kwh(status.get("limit_kwh"))
        monthly = firm.kind == "general" and firm.daily_limit_kwh is None
        figures = ["—", "—", used, limit] if monthly else [used, limit, "—", "—"]
        state = _STATES.get(str(status.get("state")), str(status.get("state")))
        rows.append([firm.name, *figures, state, allowed])
    if rows:
        header = ["企业", "今日用电 kWh", "日限额 kWh", "本月累计 kWh", "月配额 kWh", "状态", "今日可否用电"]
        lines.append(render(header, rows))
    orders = [json.loads(v) for k, v in sorted(retained.items()) if k.startswith(f"{base}/orders/") and v]
    standing = "；".join(
        f"{names.get(o['firm'], o['firm'])} 自 {o['from']} 起至 {o['until']}（{RULE_NAMES.get(o['rule'], o['rule'])}）"
        for o in orders
    )
    lines.append("停电令：" + (standing or "无"))
    lines += _outbox_lines(retained.get(f"{base}/status/daemon"), policy.township.tz)
    return "\n".join(lines)


_SINK_STATES = {"ok": "正常", "unavailable": "无法连接", "not authorized": "拒绝了 quotad 的用户名或密码（未授权）"}


def _outbox_lines(payload: str | None, tz: dt.tzinfo) -> list[str]:
    """The daemon's InfluxDB outbox (`status/daemon`): the database's state, what waits against the bound and what
    gave way to it. Nothing when the daemon publishes no such status (no `[influx]`)."""
    try:
        influx = json.loads(payload or "{}").get("outbox", {}).get("influx")
    except (ValueError, AttributeError):
        return [f"quotad 状态：无法解析 {payload!r}"]
    if not isinstance(influx, dict):
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

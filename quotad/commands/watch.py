"""Inspectors' commands over MQTT: `quotad alerts --follow` and `quotad status` (from the retained topics)."""

from __future__ import annotations

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
from paho.mqtt.subscribeoptions import SubscribeOptions

from quotad.commands.status_text import status_text
from quotad.config.daemon import MqttSettings
from quotad.config.load import Loaded
from quotad.core.alerts import SEVERITY_NAMES
from quotad.core.errors import QuotadError
from quotad.core.i18n import _
from quotad.core.outputs import topic
from quotad.core.payloads import AlertView, Unreadable, read, safe
from quotad.shell.mqtt import Driver, client_id, mqtt_client
from quotad.shell.pacing import Backoff

__all__ = ["follow_alerts", "format_alert", "show_status", "status_text"]

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
) -> tuple[Driver, _Inbox]:
    """Subscribe to `topics` (QoS 1), on a driver of its own thread (quotad.shell.mqtt). `durable`: an MQTT 5 session
    the broker keeps for `_FOLLOW_SESSION_S` while the connection is down, so a broker restart or a network cut loses
    no alert; the loss of that session (a broker restarted without persistence) is said on `err`. A refused
    connection comes in the inbox as `_Refused`; a broker that cannot be reached at first is a QuotadError."""
    inbox: _Inbox = queue.Queue()
    unique = client_id(settings, f"{suffix}-{secrets.token_hex(4)}")  # new: no one else's session to resume
    client = mqtt_client(settings, unique, clean=True, v5=durable)
    where = f"{settings.host}:{settings.port}"
    state = {"connected": 0, "down": False}
    first: queue.Queue[Exception | None] = queue.Queue()  # how the first attempt ended

    def on_connect(c: mqtt.Client, userdata: object, flags: Any, reason: Any, props: object) -> None:
        first.put(None)
        if getattr(reason, "is_failure", False):
            refused = _Refused(where, settings, reason)
            if not refused.final:
                _say(err, refused.text)
            inbox.put(refused)
            return
        driver.connected()
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
    # a follower tries again soon (the broker's restart is minutes at most); the status, once
    driver = Driver(client, f"mqtt-{suffix}", unreachable=first.put, backoff=Backoff(1.0, 5.0))
    if durable:
        session = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        session.SessionExpiryInterval = _FOLLOW_SESSION_S
        # clean_start=False from the first connection (the id is new): mosquitto 2.0 saves no session begun with
        # clean_start=True in its persistence file, so such a session would not survive its restart
        client.connect_async(
            settings.host, settings.port, keepalive=settings.keepalive_s, clean_start=False, properties=session
        )
    else:
        client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
    driver.start()
    try:
        failure = first.get(timeout=30.0)
    except queue.Empty:
        failure = TimeoutError("no answer within 30 s")
    if failure is not None:
        driver.stop()
        msg = f"cannot reach the MQTT broker {where}: {failure}"
        raise QuotadError(msg)
    return driver, inbox


def _say(err: TextIO | None, text: str) -> None:
    if err is not None:
        err.write(text + "\n")
        err.flush()


def _end_session(driver: Driver) -> None:
    """Disconnect and tell the broker to drop the session now rather than keep it for its expiry."""
    ending = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
    ending.SessionExpiryInterval = 0
    driver.client.on_disconnect = None
    driver.stop(properties=ending)


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
    driver, inbox = _subscribe(settings, [wanted], "alerts", durable=True, err=err)
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
        _end_session(driver)
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
    driver, inbox = _subscribe(
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
        driver.stop()
    if not retained:
        msg = (
            f"nothing retained under {base}/: is the daemon running and publishing to {settings.host}:{settings.port}?"
        )
        raise QuotadError(msg)
    out.write(status_text(loaded, base, retained) + "\n")
    return 0

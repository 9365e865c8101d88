"""What the daemon tells the world, as pure functions: MQTT messages and InfluxDB line protocol.

MQTT (SPEC "MQTT topics"): alerts on `P/T/alerts/<severity>/<firm|township>`, standing orders retained on
`P/T/orders/<firm>` (an empty retained message once lifted). InfluxDB (SPEC "InfluxDB series"): one line
per point, timestamps in nanoseconds; a null value is left out (InfluxDB has no null fields).
`meter_reading.energy_kwh` is the counter after the meter's multiplier: the energy a dashboard sums.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from quotad.core.alerts import Alert, Order
from quotad.schedule.calendar import Micros

__all__ = [
    "EnergyPoints",
    "Message",
    "alert_line",
    "alert_message",
    "escalation_message",
    "inspection_line",
    "inspection_message",
    "line",
    "order_line",
    "order_message",
    "topic",
]

FIVE_MINUTES: Micros = 300_000_000


@dataclass(frozen=True)
class Message:
    topic: str
    payload: str  # UTF-8 JSON, or "" to clear a retained topic
    retain: bool = False

    def to_json(self) -> str:
        return json.dumps({"topic": self.topic, "payload": self.payload, "retain": self.retain}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Message:
        data = json.loads(text)
        return cls(str(data["topic"]), str(data["payload"]), bool(data["retain"]))


def topic(prefix: str, township: str, *parts: str) -> str:
    return "/".join((prefix, township, *parts))


def alert_message(prefix: str, alert: Alert) -> Message:
    return Message(topic(prefix, alert.township, "alerts", alert.severity, alert.subject), alert.to_json())


def order_message(prefix: str, township: str, order: Order, *, ended: bool = False) -> Message:
    """The retained order, with its state and history; an empty retained message once it no longer stands (lifted,
    dismissed, or `ended`: past `until`)."""
    target = topic(prefix, township, "orders", order.firm)
    if not order.open or ended:
        return Message(target, "", retain=True)
    return Message(target, json.dumps(order.payload(), ensure_ascii=False, separators=(",", ":")), retain=True)


# -- line protocol ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _escape_key(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _field(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, object], t: Micros) -> str:
    """One point; fields that are None (or not finite) are left out, tags sorted as InfluxDB prefers."""
    kept = {k: v for k, v in fields.items() if v is not None and not (isinstance(v, float) and not math.isfinite(v))}
    if not kept:
        msg = f"a {measurement} point needs at least one field"
        raise ValueError(msg)
    field_text = ",".join(f"{_escape_key(k)}={_field(v)}" for k, v in kept.items())
    return f"{_series(measurement, tuple(sorted(tags.items())))} {field_text} {t * 1000}"


def meter_reading_line(
    township: str, firm: str, meter: str, energy_kwh: float, power_kw: float | None, t: Micros
) -> str:
    """The `meter_reading` point: what `line` gives for these tags and fields, built without its generality (it
    is written for every reading)."""
    if not math.isfinite(energy_kwh):
        return line("meter_reading", {"township": township, "firm": firm, "meter": meter},
                    {"energy_kwh": energy_kwh, "power_kw": power_kw}, t)  # fmt: skip
    head = _reading_head(township, firm, meter)
    if power_kw is None or not math.isfinite(power_kw):
        return f"{head}{energy_kwh!r} {t * 1000}"
    return f"{head}{energy_kwh!r},power_kw={power_kw!r} {t * 1000}"


@functools.lru_cache(maxsize=16384)
def _reading_head(township: str, firm: str, meter: str) -> str:
    return _series("meter_reading", (("firm", firm), ("meter", meter), ("township", township))) + " energy_kwh="


@functools.lru_cache(maxsize=8192)
def _series(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """The measurement and its tags, escaped (a few per meter and firm: computed once each)."""
    head = measurement.replace(",", "\\,").replace(" ", "\\ ")
    return head + "".join(f",{_escape_key(k)}={_escape_key(v)}" for k, v in tags if v != "")


def alert_line(alert: Alert) -> str:
    tags = {"township": alert.township, "firm": alert.subject, "rule": alert.rule, "severity": alert.severity}
    if alert.meter is not None:
        tags["meter"] = alert.meter
    fields = {
        "id": alert.id,
        "level": alert.level,
        "consumed_kwh": alert.consumed_kwh,
        "limit_kwh": alert.limit_kwh,
        "projected_kwh": alert.projected_kwh,
        "action": alert.action,
        "cutoff_until": alert.cutoff_until,
        "message": alert.message,
    }
    return line("quota_alert", tags, fields, alert.t)


def order_line(township: str, order: Order, t: Micros, *, ended: bool = False) -> str:
    """A `cutoff_order` point at a change of the order's state (`ended`: past its `until`), at event time `t` plus a
    microsecond per change before it: changes made at one event time (a command given while no reading came) are
    points of their own, in order, where one would overwrite the other."""
    last = order.last
    lifted = order.state == "lifted"
    reason: str | None = None
    by: str | None = None
    state = order.state
    if ended:
        reason, by, state = "ended", "quotad", "ended"
    elif last is not None:
        reason, by = last.reason, last.by
    fields = {"alert_id": order.alert_id, "until": order.until, "lifted": lifted, "reason": reason, "state": state,
              "by": by}  # fmt: skip
    at = t + max(0, len(order.history) - 1) + (1 if ended else 0)
    return line("cutoff_order", {"township": township, "firm": order.firm}, fields, at)


def inspection_message(prefix: str, township: str, visit: Mapping[str, object]) -> Message:
    """A recorded inspection visit, on `P/T/inspections/<firm>` (not retained: a record, not a state)."""
    body = json.dumps(visit, ensure_ascii=False, separators=(",", ":"))
    return Message(topic(prefix, township, "inspections", str(visit["firm"])), body)


def inspection_line(township: str, visit: Mapping[str, object], t: Micros) -> str:
    tags = {"township": township, "firm": str(visit["firm"]), "inspector": str(visit["by"])}
    fields = {"result": visit["result"], "finding": visit["finding"], "order_alert_id": visit.get("order_alert_id")}
    return line("inspection", tags, fields, t)


def escalation_message(prefix: str, township: str, firm: str, payload: Mapping[str, object]) -> Message:
    """A firm's escalation step, retained (SPEC: `{"firm", "count", "step", "since", "talks"}`)."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Message(topic(prefix, township, "escalations", firm), body, retain=True)


@dataclass
class EnergyPoints:
    """`firm_energy` and `township_energy` points: at least every 5 minutes of event time per subject that has
    new readings (deterministic in the reading stream, so a restart or a replay writes the same points)."""

    township: str
    last: dict[str, Micros] = field(default_factory=dict)

    def due(self, subject: str, t: Micros) -> bool:
        previous = self.last.get(subject)
        if previous is not None and t - previous < FIVE_MINUTES and t >= previous:
            return False
        self.last[subject] = t
        return True

    def firm(self, firm: str, t: Micros, day_kwh: float, month_kwh: float, limit_kwh: float | None) -> str:
        fields = {"day_kwh": day_kwh, "month_kwh": month_kwh, "limit_kwh": limit_kwh}
        return line("firm_energy", {"township": self.township, "firm": firm}, fields, t)

    def total(self, t: Micros, day_kwh: float, cap_kwh: float, projected_kwh: float | None) -> str:
        fields = {"day_kwh": day_kwh, "cap_kwh": cap_kwh, "projected_kwh": projected_kwh}
        return line("township_energy", {"township": self.township}, fields, t)

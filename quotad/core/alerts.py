"""Alerts and cutoff orders: the payloads of SPEC, field for field, with their Chinese messages.

Energy in payloads is kWh rounded to the Wh (3 decimals); in messages, to 0.1 kWh. Limits print without
a trailing `.0`. Payload key order is fixed, so the same alert always serialises to the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from quotad.core.orders import Order, cut_off_on

__all__ = [
    "RULE_NAMES",
    "SEVERITY_NAMES",
    "Alert",
    "Order",
    "ShedEntry",
    "alert_id",
    "cut_off_on",
    "kwh",
    "limit_text",
]

SEVERITY_NAMES = {"notice": "提示", "warning": "警告", "violation": "违规", "breach": "违令"}
RULE_NAMES = {
    "township_cap": "全镇日用电上限",
    "township_cap_projection": "全镇日用电推算",
    "township_load": "全镇负荷上限",
    "rota_off_day": "错时供电停电日用电",
    "firm_daily_limit": "超日限额",
    "monthly_quota": "超月度配额",
    "rest_day": "休息日用电",
    "cutoff_breach": "停电令期间用电",
    "meter_offline": "电表无读数",
    "meter_anomaly": "电表读数异常",
    "escalation": "约谈升级",
    "manual_order": "督查下达",
}


def kwh(wh: float) -> float:
    """Wh to kWh as it appears in payloads (Wh resolution)."""
    return round(wh / 1000.0, 3) + 0.0  # + 0.0 turns -0.0 into 0.0


def limit_text(value: float) -> str:
    """4200.0 -> '4200', 5032.258 -> '5032.3'."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def alert_id(township: str, subject: str, rule: str, period: str, level: float | None, meter: str | None) -> str:
    parts = [township, subject, rule, period]
    if level is not None:
        parts.append(repr(float(level)))
    if meter is not None:
        parts.append(meter)
    return "/".join(parts)


@dataclass(frozen=True, slots=True)
class ShedEntry:
    firm: str
    firm_name: str
    trailing_hour_kwh: float


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    ts: str  # event time of the triggering reading, township-local ISO 8601
    t: int  # the same, epoch microseconds
    township: str
    firm: str | None
    firm_name: str | None
    rule: str
    severity: str
    level: float | None
    period: str
    consumed_kwh: float | None
    limit_kwh: float | None
    projected_kwh: float | None
    action: str
    cutoff_until: str | None
    message: str
    meter: str | None = None
    shed: tuple[ShedEntry, ...] | None = None
    order_state: str | None = None  # the state of the order this alert made (pending or issued)

    @property
    def subject(self) -> str:
        return self.firm if self.firm is not None else "township"

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "ts": self.ts,
            "township": self.township,
            "firm": self.firm,
            "firm_name": self.firm_name,
            "rule": self.rule,
            "severity": self.severity,
            "level": self.level,
            "period": self.period,
            "consumed_kwh": self.consumed_kwh,
            "limit_kwh": self.limit_kwh,
            "projected_kwh": self.projected_kwh,
            "action": self.action,
            "cutoff_until": self.cutoff_until,
            "message": self.message,
        }
        if self.meter is not None:
            out["meter"] = self.meter
        if self.order_state is not None:
            out["order_state"] = self.order_state
        if self.shed is not None:
            out["shed"] = [
                {"firm": s.firm, "firm_name": s.firm_name, "trailing_hour_kwh": s.trailing_hour_kwh} for s in self.shed
            ]
        return out

    def to_json(self) -> str:
        return json.dumps(self.payload(), ensure_ascii=False, separators=(",", ":"))

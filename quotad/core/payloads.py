"""What the inspectors' commands read back from the broker, checked before it is shown: anyone who may publish under
quotad's prefix (or who could, before the broker had an ACL) may have left a retained message there, and it stays
until someone clears it. A payload is read into the shape quotad publishes (SPEC "MQTT topics") or refused with the
reason, in the inspectors' Chinese; text from the broker is shown with its control characters escaped, so that a
forged message cannot drive the terminal (clear it, move the cursor, recolour it).
"""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "AlertView",
    "FirmStatus",
    "OrderView",
    "Schedule",
    "TownshipStatus",
    "Unreadable",
    "read",
    "safe",
]

_Kwh = Annotated[float, Field(allow_inf_nan=False)]
_Id = Annotated[str, Field(min_length=1, max_length=200)]


class _Payload(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class TownshipStatus(_Payload):
    day: dt.date
    consumed_kwh: _Kwh
    cap_kwh: _Kwh | None = None
    projected_kwh: _Kwh | None = None
    updated: str = ""


class FirmStatus(_Payload):
    day: dt.date
    allowed_today: bool
    reason: str | None = None
    consumed_kwh: _Kwh
    limit_kwh: _Kwh | None = None
    state: Literal["ok", "notice", "warning", "cutoff"]


class Schedule(_Payload):
    day: dt.date
    cut_off_firms: tuple[_Id, ...] = ()


class OrderView(_Payload):
    firm: _Id
    rule: str
    from_day: dt.date = Field(alias="from")
    until: dt.date
    state: Literal["pending", "issued", "notified", "executed"] = "issued"  # absent before orders had states


class AlertView(_Payload):
    id: _Id
    ts: str = ""
    severity: Literal["notice", "warning", "violation", "breach"]
    message: str


class Unreadable(Exception):
    """A payload that is not what quotad publishes there; `reason` says why, in Chinese."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


P = TypeVar("P", bound=_Payload)
_KINDS = {"[": "列表", '"': "字符串", "n": " null", "t": " true", "f": " false"}


def read(model: type[P], raw: bytes) -> P:
    """`raw` as `model`, or Unreadable with the reason."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        reason = "不是 UTF-8 文本"
        raise Unreadable(reason) from None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise Unreadable(_why(exc, text)) from None


def _why(exc: ValidationError, text: str) -> str:
    error = exc.errors(include_url=False)[0]
    kind, loc = error["type"], ".".join(str(part) for part in error["loc"])
    if kind == "json_invalid":
        return "不是 JSON"
    if kind == "model_type":
        first = text.lstrip()[:1]
        return f"不是 JSON 对象（而是{_KINDS.get(first, '数字')}）"
    if kind == "missing":
        return f"缺少字段 {loc}"
    shown = json.dumps(error.get("input"), ensure_ascii=False, default=str)
    return f"字段 {loc} 的值不对：{safe(shown if len(shown) <= 60 else shown[:60] + '…')}"


def safe(text: str) -> str:
    """`text` with its control and format characters (ESC, CR, newline, a right-to-left override, ...) written as
    escapes: one line, shown as it is."""
    return "".join(_escaped(c) if unicodedata.category(c)[0] == "C" or c in "\u2028\u2029" else c for c in text)


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"

"""The policy file: the township's plan as frozen pydantic models.

Each model checks what it can see by itself (field validators); `quotad.config.crosscheck` checks what
needs the whole file (references, dates against the control period, the workshops' weeks). Nothing is
rewritten silently: a value that would have no effect is an error, not a default.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from quotad.core.i18n import _
from quotad.core.sources import Dlt645Source, MeterSource, ModbusSource, MqttSource, WiredSource, tagged

__all__ = [
    "WEEKDAYS",
    "Contact",
    "Control",
    "Enforcement",
    "Escalation",
    "Firm",
    "Group",
    "Meter",
    "ModbusSource",
    "MqttSource",
    "Opening",
    "Phase",
    "Policy",
    "Residents",
    "Rota",
    "RotaOverride",
    "Township",
    "Weekday",
]

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Ids appear in MQTT topics, InfluxDB tags and alert ids (joined with "/"): keep them to safe characters.
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
Id = Annotated[str, Field(pattern=_ID_RE.pattern)]
# Numbers and booleans are strict: "4200" (a string) is an error, never silently read as 4200.
PositiveKwh = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
NonNegativeKwh = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
Fraction = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False, strict=True)]
Bool = Annotated[bool, Field(strict=True)]
_HOURS_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Township(_Model):
    id: Id
    name: str = Field(min_length=1)
    timezone: str = "Asia/Shanghai"
    daily_cap_kwh: PositiveKwh
    cap_from: dt.date | None = None
    feeder_meters: tuple[Id, ...] = ()
    notice_at: Fraction = 0.8
    warning_at: Fraction = 0.9
    standby_kwh: NonNegativeKwh = 50.0
    load_cap_kw: PositiveKwh | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            msg = _("unknown timezone {value!r} (an IANA name such as 'Asia/Shanghai')").format(value=value)
            raise ValueError(msg) from exc
        return value

    @field_validator("warning_at")
    @classmethod
    def _levels_ordered(cls, value: float, info: ValidationInfo) -> float:
        notice = info.data.get("notice_at")
        if notice is not None and not notice < value:
            msg = _("notice_at ({notice}) must be below warning_at ({warning})").format(notice=notice, warning=value)
            raise ValueError(msg)
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class Phase(_Model):
    name: str = Field(min_length=1)
    start: dt.date
    end: dt.date
    daily_cap_kwh: PositiveKwh | None = None


class Control(_Model):
    start: dt.date
    end: dt.date
    phases: tuple[Phase, ...] = ()


class Group(_Model):
    id: Id
    name: str = Field(min_length=1)


class RotaOverride(_Model):
    date: dt.date
    runs: tuple[Id, ...]


class Rota(_Model):
    start: dt.date
    order: tuple[Id | tuple[Id, ...], ...] = Field(min_length=1)
    overrides: tuple[RotaOverride, ...] = ()


class Opening(_Model):
    """A general firm's month-to-date use before quotad's first reading of that month (the utility's meter book)."""

    month: str
    kwh: NonNegativeKwh

    @field_validator("month")
    @classmethod
    def _a_month(cls, value: str) -> str:
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
            msg = _("expected a month as 'YYYY-MM' (e.g. '2010-10'), got {value!r}").format(value=value)
            raise ValueError(msg)
        return value

    @property
    def year_month(self) -> tuple[int, int]:
        year, month = self.month.split("-")
        return int(year), int(month)


def no_repeats(value: tuple[object, ...]) -> tuple[object, ...]:
    """`value` if no item is listed twice; else the repeated ones, said."""
    repeated = sorted({str(v) for v in value if value.count(v) > 1})
    if repeated:
        msg = _("listed more than once: {values}").format(values=", ".join(repeated))
        raise ValueError(msg)
    return value


class Contact(_Model):
    """Someone at a firm who is told its rota, allowance and notices (SPEC "Notices and channels")."""

    name: str = Field(min_length=1)
    phone: str | None = None
    channel: str | None = None


class Firm(_Model):
    id: Id
    name: str = Field(min_length=1)
    kind: Literal["large", "general", "workshop"]
    group: Id | None = None
    rota_exempt: Bool = False
    daily_limit_kwh: PositiveKwh | None = None
    baseline_kwh: PositiveKwh | None = None
    monthly_quota_kwh: PositiveKwh | None = None
    reduction: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False, strict=True)] | None = None
    rest_days: tuple[Weekday, ...] = ()
    rest_dates: tuple[dt.date, ...] = ()
    standby_kwh: NonNegativeKwh | None = None
    opening: tuple[Opening, ...] = ()
    contacts: tuple[Contact, ...] = ()
    liaison: str | None = Field(default=None, min_length=1)  # the cadre responsible for the firm (联系领导)

    @field_validator("rest_days", "rest_dates")
    @classmethod
    def _no_repeats(cls, value: tuple[object, ...]) -> tuple[object, ...]:
        return no_repeats(value)

    @field_validator("opening")
    @classmethod
    def _opening_general(cls, value: tuple[Opening, ...], info: ValidationInfo) -> tuple[Opening, ...]:
        if value and info.data.get("kind") not in (None, "general"):
            msg = _("opening applies only to firms of kind 'general' (a month-to-date against their monthly quota)")
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> Firm:
        problems = []
        if self.kind != "general":
            given = [f for f in ("baseline_kwh", "monthly_quota_kwh", "reduction") if getattr(self, f) is not None]
            if given:
                problems.append(_("{keys} apply only to firms of kind 'general'").format(keys=", ".join(given)))
        if self.kind != "workshop" and (self.rest_days or self.rest_dates):
            problems.append(_("rest_days and rest_dates apply only to firms of kind 'workshop'"))
        if self.rota_exempt and self.group is None:
            problems.append(_("rota_exempt needs a group (a firm without a group is never off)"))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def effective_reduction(self) -> float:
        return 0.20 if self.reduction is None else self.reduction


class Meter(_Model):
    id: Id
    firm: Id | None = None
    # the CT x PT ratio: a 110 kV line's 1100 x a 2000/5 A CT is 440,000; past a million, a slip (and a counter
    # times it must stay a number the ledger can count in Wh)
    multiplier: Annotated[float, Field(gt=0, le=1_000_000, allow_inf_nan=False, strict=True)] = 1.0
    offline_after_s: Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)] = 900.0
    max_kw: PositiveKwh | None = None
    # the meter's accuracy class (%): a violation within it makes a pending order (SPEC "Orders")
    accuracy_pct: Annotated[float, Field(gt=0, le=10, allow_inf_nan=False, strict=True)] = 1.0
    source: MeterSource  # written as [meters.modbus], [meters.dlt645] or [meters.mqtt]: see quotad.core.sources

    @model_validator(mode="before")
    @classmethod
    def _tagged(cls, data: Any) -> Any:
        return tagged(data)

    @property
    def modbus(self) -> ModbusSource | None:
        return self.source if isinstance(self.source, ModbusSource) else None

    @property
    def dlt645(self) -> Dlt645Source | None:
        return self.source if isinstance(self.source, Dlt645Source) else None

    @property
    def wired(self) -> WiredSource | None:
        """The source of a meter read over a line quotad owns (Modbus or DL/T 645), else None."""
        return self.source if isinstance(self.source, ModbusSource | Dlt645Source) else None

    @property
    def mqtt(self) -> MqttSource | None:
        return self.source if isinstance(self.source, MqttSource) else None


class Residents(_Model):
    """The residents' energy-shortage experience days (能源紧缺体验日): a weekday, single dates, or both; and the
    channels their announcements go to (the township's WeChat group, the broadcast system's SMS gateway)."""

    experience_weekday: Weekday | None = None
    experience_dates: tuple[dt.date, ...] = ()
    experience_hours: str = "09:00-17:00"
    channels: tuple[Id, ...] = ()

    @field_validator("experience_dates", "channels")
    @classmethod
    def _no_repeats(cls, value: tuple[object, ...]) -> tuple[object, ...]:
        return no_repeats(value)

    @model_validator(mode="after")
    def _some_day(self) -> Residents:
        if self.experience_weekday is None and not self.experience_dates:
            msg = _("[residents] needs experience_weekday or experience_dates (or both)")
            raise ValueError(msg)
        return self

    @field_validator("experience_hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        match = _HOURS_RE.match(value)
        if not match or (match[1], match[2]) >= (match[3], match[4]):
            msg = _("expected 'HH:MM-HH:MM' with the start before the end, got {value!r}").format(value=value)
            raise ValueError(msg)
        return value


class Escalation(_Model):
    """A step a firm reaches by its count of violations and breaches (约谈, 问责)."""

    after: Annotated[int, Field(ge=1, strict=True)]
    step: str = Field(min_length=1)


class Enforcement(_Model):
    confirm: Literal["auto", "inspector"] = "auto"
    escalation: tuple[Escalation, ...] = ()
    inspection_sample: Annotated[int, Field(ge=0, le=100, strict=True)] = 2
    supply_station: Id | None = None  # the 供电所's channel: it executes cutoffs and restores supply

    @field_validator("escalation")
    @classmethod
    def _ascending(cls, value: tuple[Escalation, ...]) -> tuple[Escalation, ...]:
        afters = [step.after for step in value]
        if afters != sorted(set(afters)):
            msg = _("escalation steps must be listed by `after`, each count once (got {afters})").format(afters=afters)
            raise ValueError(msg)
        return value


_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class Reports(_Model):
    """`[reports]`: when the daemon writes yesterday's daily report (local event time), and the channels it goes to
    (issue 16 sends it)."""

    daily_at: str = "08:00"
    to: tuple[Id, ...] = ()

    @field_validator("daily_at")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM_RE.match(value):
            msg = _("expected a local time 'HH:MM', got {value!r}").format(value=value)
            raise ValueError(msg)
        return value


class Policy(_Model):
    township: Township
    control: Control
    groups: tuple[Group, ...] = ()
    rota: Rota | None = None
    firms: tuple[Firm, ...] = ()
    meters: tuple[Meter, ...] = ()
    residents: Residents | None = None
    enforcement: Enforcement = Enforcement()
    reports: Reports = Reports()

    @property
    def cap_from(self) -> dt.date:
        return self.township.cap_from or self.control.start

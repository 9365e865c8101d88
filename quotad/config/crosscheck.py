"""Checks of the policy file that need more than one table: references, dates, the workshops' weeks.

Each section is validated on its own first, so one broken firm does not hide a bad reference in another:
the operator sees every problem of the file in one run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from quotad.core.i18n import _
from quotad.core.policy import WEEKDAYS, Control, Firm, Group, Meter, Policy, Residents, Rota, Township
from quotad.core.sources import Dlt645Serial, Dlt645Source, ModbusSerial, WiredSource

__all__ = ["DEFAULT_PREFIX", "Finding", "cross_check", "parts", "workshop_short_weeks"]

DEFAULT_PREFIX = "quotad"  # [mqtt] topic_prefix when the daemon file gives none (or none is at hand)
Path = tuple[str | int, ...]
Finding = tuple[Path, str]
M = TypeVar("M", bound=BaseModel)


def _part(model: type[M], raw: Any) -> M | None:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def _items(model: type[M], raw: Any) -> list[tuple[int, M]]:
    if not isinstance(raw, list):
        return []
    return [(i, item) for i, r in enumerate(raw) if (item := _part(model, r)) is not None]


def parts(
    raw: Mapping[str, Any], policy: Policy | None = None
) -> tuple[Township | None, Control | None, list[tuple[int, Firm]]]:
    """The township, the control period and the firms (with their index), each as far as it is valid on its own;
    from `policy` when the document is valid as a whole."""
    if policy is not None:
        return policy.township, policy.control, list(enumerate(policy.firms))
    return _part(Township, raw.get("township")), _part(Control, raw.get("control")), _items(Firm, raw.get("firms"))


def cross_check(raw: Mapping[str, Any], policy: Policy | None = None, prefix: str = DEFAULT_PREFIX) -> list[Finding]:
    """Every cross-table problem of a parsed policy document, each with the path it belongs to. `policy`: the
    document already validated as a whole, when it was valid (its tables need not be validated again); `prefix`:
    the daemon's `[mqtt] topic_prefix`, under which MQTT meters naming no topic are read."""
    township: Township | None
    control: Control | None
    groups: list[tuple[int, Group]]
    firms: list[tuple[int, Firm]]
    meters: list[tuple[int, Meter]]
    if policy is not None:
        township, control, rota, residents = policy.township, policy.control, policy.rota, policy.residents
        groups, firms = list(enumerate(policy.groups)), list(enumerate(policy.firms))
        meters = list(enumerate(policy.meters))
    else:
        township = _part(Township, raw.get("township"))
        control = _part(Control, raw.get("control"))
        rota = _part(Rota, raw.get("rota")) if "rota" in raw else None
        residents = _part(Residents, raw.get("residents")) if "residents" in raw else None
        groups = _items(Group, raw.get("groups"))
        firms = _items(Firm, raw.get("firms"))
        meters = _items(Meter, raw.get("meters"))
    found: list[Finding] = []
    found += _duplicates("groups", groups)
    found += _duplicates("firms", firms)
    found += _duplicates("meters", meters)
    # References are checked against every id written in the file, even in a table that failed validation:
    # that table's own problem is reported once, not again by everything that names it.
    group_ids = _raw_ids(raw.get("groups"))
    found += _firm_refs(firms, group_ids)
    found += _meter_refs(meters, _raw_ids(raw.get("firms")), township, raw.get("meters"))
    found += _gateway_settings(meters)
    found += _shared_topics(meters, prefix, township)
    if rota is not None:
        found += _rota_refs(rota, group_ids, bool(raw.get("groups")))
    if control is not None:
        found += _openings(control, firms)
        found += _control(control)
        if control.start <= control.end:
            found += _dates_in_control(control, township, rota, firms)
            found += _experience_dates(control, residents)
            found += _workshop_weeks(control, firms)
    return found


def _raw_ids(raw: Any) -> set[str]:
    if not isinstance(raw, list):
        return set()
    return {item["id"] for item in raw if isinstance(item, dict) and isinstance(item.get("id"), str)}


def _duplicates(section: str, items: Sequence[tuple[int, Group | Firm | Meter]]) -> Iterator[Finding]:
    first: dict[str, int] = {}
    for i, item in items:
        if item.id in first:
            message = _("duplicate id {id!r} (first used by {section}[{first}])")
            yield (section, i, "id"), message.format(id=item.id, section=section, first=first[item.id])
        else:
            first[item.id] = i


def _firm_refs(firms: list[tuple[int, Firm]], group_ids: set[str]) -> Iterator[Finding]:
    for i, firm in firms:
        if firm.group is not None and firm.group not in group_ids:
            yield ("firms", i, "group"), _unknown_group(firm.group, group_ids)
        if firm.kind == "general" and firm.baseline_kwh is None and firm.monthly_quota_kwh is None:
            yield ("firms", i), _("a general firm needs baseline_kwh (the baseline month's use) or monthly_quota_kwh")


def _meter_refs(
    meters: list[tuple[int, Meter]], firm_ids: set[str], township: Township | None, raw_meters: Any
) -> Iterator[Finding]:
    feeders = set(township.feeder_meters) if township else set()
    written = raw_meters if isinstance(raw_meters, list) else []
    firm_of = {m["id"]: m.get("firm") for m in written if isinstance(m, dict) and isinstance(m.get("id"), str)}
    for i, meter in meters:
        if meter.firm is not None and meter.firm not in firm_ids:
            yield ("meters", i, "firm"), _("unknown firm {firm!r}").format(firm=meter.firm)
        if meter.firm is None and township is not None and meter.id not in feeders:
            yield ("meters", i), _("a meter without firm must be listed in township.feeder_meters")
    for k, feeder in enumerate(township.feeder_meters if township else ()):
        if feeder not in firm_of:
            yield ("township", "feeder_meters", k), _("unknown meter {meter!r}").format(meter=feeder)
        elif firm_of[feeder] is not None:
            message = _("meter {meter!r} belongs to firm {firm!r}").format(meter=feeder, firm=firm_of[feeder])
            yield ("township", "feeder_meters", k), message


def _shared_topics(meters: list[tuple[int, Meter]], prefix: str, township: Township | None) -> Iterator[Finding]:
    """Two MQTT meters on one topic: a message there could be either's reading (SPEC: a configuration error). A
    meter that names no topic is read on its default one, under the daemon's `prefix`: another meter may name it."""
    first: dict[str, tuple[int, str]] = {}
    for i, meter in meters:
        if meter.mqtt is None or (meter.mqtt.topic is None and township is None):
            continue
        topic = meter.mqtt.topic_for(prefix, township.id if township else "", meter.id)
        if topic in first:
            index, other = first[topic]
            message = _("the topic of meters[{index}] ({meter!r}) too: two meters cannot share a topic")
            yield ("meters", i, "mqtt", "topic"), message.format(index=index, meter=other)
        else:
            first[topic] = (i, meter.id)


def _gateway_settings(meters: list[tuple[int, Meter]]) -> Iterator[Finding]:
    """Meters on one serial port, or behind one TCP gateway (host and port), share one connection whatever their
    protocol: each of the line's settings is the first meter's that has it, and a meter that disagrees would need the
    port opened a second time. A gateway carrying DL/T 645 is transparent: its Modbus meters speak RTU (framer)."""
    first: dict[tuple[tuple[str, ...], str], tuple[int, str, object]] = {}
    protocols: dict[tuple[str, ...], dict[str, tuple[int, str]]] = {}
    for i, meter in meters:
        source = meter.wired
        if source is None:
            continue
        table = source.TABLE
        for name in source.LINE_SETTINGS:
            j, owner, theirs = first.setdefault((source.line, name), (i, meter.id, getattr(source, name)))
            if getattr(source, name) != theirs:
                yield ("meters", i, table, name), _line_conflict(source, name, theirs, j, owner)
        protocol = "dlt645" if isinstance(source, Dlt645Source) else getattr(source, "framer", "rtu")
        seen = protocols.setdefault(source.line, {})
        seen.setdefault(protocol, (i, meter.id))
        clash = {"dlt645": "tcp", "tcp": "dlt645"}.get(protocol)
        if clash in seen:
            j, owner = seen[clash]
            message = _(
                "gateway {port} carries DL/T 645 and Modbus TCP (meters[{index}], {meter}): a DTU passes the RS-485 "
                'bytes through, so its Modbus meters need framer = "rtu"'
            )
            port = ":".join(source.line[1:])
            yield ("meters", i, table, "host"), message.format(port=port, index=j, meter=owner)


def _line_conflict(source: WiredSource, key: str, value: object, index: int, meter: str) -> str:
    if isinstance(source, ModbusSerial | Dlt645Serial):
        message = _(
            "serial port {port} is set to {key} {value!r} by meters[{index}] ({meter}): the meters on one port "
            "share its settings"
        )
        return message.format(port=source.serial, key=key, value=value, index=index, meter=meter)
    message = _(
        "gateway {port} is read with {key} {value!r} by meters[{index}] ({meter}): the meters behind one gateway "
        "share it"
    )
    return message.format(port=":".join(source.line[1:]), key=key, value=value, index=index, meter=meter)


def _rota_refs(rota: Rota, group_ids: set[str], have_groups: bool) -> Iterator[Finding]:
    if not have_groups:
        yield ("rota",), _("a rota needs [[groups]]")
        return
    seen: set[str] = set()
    for k, entry in enumerate(rota.order):
        for gid in (entry,) if isinstance(entry, str) else entry:
            seen.add(gid)
            if gid not in group_ids:
                yield ("rota", "order", k), _unknown_group(gid, group_ids)
    never = sorted(group_ids - seen)
    if never:
        yield ("rota", "order"), _("group(s) {groups} never run in the rota's cycle").format(groups=", ".join(never))
    dates: dict[dt.date, int] = {}
    for j, override in enumerate(rota.overrides):
        if override.date in dates:
            message = _("{date} is already overridden (overrides[{index}])")
            yield ("rota", "overrides", j, "date"), message.format(date=override.date, index=dates[override.date])
        dates.setdefault(override.date, j)
        for k, gid in enumerate(override.runs):
            if gid not in group_ids:
                yield ("rota", "overrides", j, "runs", k), _("unknown group {group!r}").format(group=gid)


def _control(control: Control) -> Iterator[Finding]:
    if control.end < control.start:
        message = _("the control period ends ({end}) before it starts ({start})")
        yield ("control", "end"), message.format(end=control.end, start=control.start)
        return
    previous: tuple[int, dt.date] | None = None
    for i, phase in sorted(enumerate(control.phases), key=lambda p: (p[1].start, p[0])):
        if phase.end < phase.start:
            message = _("phase ends ({end}) before it starts ({start})").format(end=phase.end, start=phase.start)
            yield ("control", "phases", i, "end"), message
            continue
        what = _("phase {name!r}").format(name=phase.name)
        if phase.start < control.start:
            yield ("control", "phases", i, "start"), _outside(what, control)
        if phase.end > control.end:
            yield ("control", "phases", i, "end"), _outside(what, control)
        if previous is not None and phase.start <= previous[1]:
            message = _("phase {name!r} overlaps control.phases[{index}]").format(name=phase.name, index=previous[0])
            yield ("control", "phases", i, "start"), message
        if previous is None or phase.end > previous[1]:
            previous = (i, phase.end)


def _outside(what: str, control: Control) -> str:
    # TRANSLATORS: {what} is "phase {name!r}", "cap_from {date}", "override date {date}", "rest date {date}" or
    # "experience date {date}"
    message = _("{what} lies outside the control period {start}..{end}")
    return message.format(what=what, start=control.start, end=control.end)


def _dates_in_control(
    control: Control, township: Township | None, rota: Rota | None, firms: list[tuple[int, Firm]]
) -> Iterator[Finding]:
    def outside(day: dt.date) -> bool:
        return not control.start <= day <= control.end

    if township is not None and township.cap_from is not None and outside(township.cap_from):
        yield ("township", "cap_from"), _outside(_("cap_from {date}").format(date=township.cap_from), control)
    if rota is not None:
        # rota.start anchors the cycle: before [control] it is a cycle already running; after control.end no
        # control day would follow it. Before it every group runs, so an override dated earlier changes nothing.
        if rota.start > control.end:
            message = _("the rota starts on {start}, after the control period ends on {end}")
            yield ("rota", "start"), message.format(start=rota.start, end=control.end)
        for j, override in enumerate(rota.overrides):
            if outside(override.date):
                what = _("override date {date}").format(date=override.date)
                yield ("rota", "overrides", j, "date"), _outside(what, control)
            elif override.date < rota.start:
                message = _(
                    "override date {date} lies before the rota's start {start}: every group runs until the rota "
                    "starts, so the override would have no effect"
                )
                yield ("rota", "overrides", j, "date"), message.format(date=override.date, start=rota.start)
    for i, firm in firms:
        for k, day in enumerate(firm.rest_dates):
            if outside(day):
                yield ("firms", i, "rest_dates", k), _outside(_("rest date {date}").format(date=day), control)


def _experience_dates(control: Control, residents: Residents | None) -> Iterator[Finding]:
    for k, day in enumerate(residents.experience_dates if residents is not None else ()):
        if not control.start <= day <= control.end:
            what = _("experience date {date}").format(date=day)
            yield ("residents", "experience_dates", k), _outside(what, control)


def _openings(control: Control, firms: list[tuple[int, Firm]]) -> Iterator[Finding]:
    """Each opening is for a month the control period covers, once (any other would have no effect)."""
    first, last = (control.start.year, control.start.month), (control.end.year, control.end.month)
    for i, firm in firms:
        seen: set[str] = set()
        for k, opening in enumerate(firm.opening):
            where = ("firms", i, "opening", k, "month")
            if not first <= opening.year_month <= last:
                message = _("month {month} lies outside the control period {start}..{end}")
                yield (
                    where,
                    message.format(month=opening.month, start=f"{control.start:%Y-%m}", end=f"{control.end:%Y-%m}"),
                )
            elif opening.month in seen:
                yield where, _("month {month} has an opening already").format(month=opening.month)
            seen.add(opening.month)


def workshop_short_weeks(firm: Firm, control: Control) -> list[tuple[dt.date, int]]:
    """(Monday, rest days) of each calendar week wholly inside the control period with fewer than two."""
    rest_weekdays = {WEEKDAYS.index(d) for d in firm.rest_days}
    rest_dates = set(firm.rest_dates)
    monday = control.start + dt.timedelta(days=(7 - control.start.weekday()) % 7)
    short = []
    while monday + dt.timedelta(days=6) <= control.end:
        week = [monday + dt.timedelta(days=k) for k in range(7)]
        count = sum(1 for day in week if day.weekday() in rest_weekdays or day in rest_dates)
        if count < 2:
            short.append((monday, count))
        monday += dt.timedelta(days=7)
    return short


def _workshop_weeks(control: Control, firms: list[tuple[int, Firm]]) -> Iterator[Finding]:
    for i, firm in firms:
        if firm.kind != "workshop":
            continue
        short = workshop_short_weeks(firm, control)
        if short:
            monday, count = short[0]
            if len(short) > 1:
                message = _(
                    "a workshop needs at least two rest days a week: the week of {monday} has {count} (and {more} more "
                    "week(s))"
                )
            else:
                message = _("a workshop needs at least two rest days a week: the week of {monday} has {count}")
            yield ("firms", i, "rest_days"), message.format(monday=monday, count=count, more=len(short) - 1)


def _unknown_group(group: str, known: set[str]) -> str:
    names = ", ".join(sorted(known)) or _("none defined")
    return _("unknown group {group!r} (groups: {names})").format(group=group, names=names)

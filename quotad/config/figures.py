"""The figures an operator must eyeball: echoed by `check-config`, and warned about when they look like a slip.

A slip is a value that is valid but unlikely to be what the operator meant (SPEC, "The policy file"):

- a cap, limit or monthly quota below 100 kWh: 万度 (10,000 kWh) typed for kWh, 5.4611 for 54,611;
- a firm's daily limit at or below its standby (its own `standby_kwh`, else the township's): the firm would break
  its limit on standby power alone;
- no feeder meters: the township's total, and so its cap, then counts the firms' meters only.

Like the cross-checks, each table is judged on its own, so a slip is found even when another table is broken.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from quotad.config.crosscheck import Finding, parts
from quotad.core.i18n import _
from quotad.core.policy import Control, Firm, Policy, Township

__all__ = ["SLIP_BELOW_KWH", "echo", "kwh", "monthly_quota", "slips"]

SLIP_BELOW_KWH = 100.0


def kwh(value: float) -> str:
    """A figure as an operator reads it: thousands separated, no trailing zeros (54,611; 5.4611; 12,000)."""
    return f"{round(value, 4):,.4f}".rstrip("0").rstrip(".")


def monthly_quota(firm: Firm) -> float | None:
    """A general firm's monthly quota as the rules take it: `monthly_quota_kwh`, else the baseline less the
    reduction (before any pro-rating of a month the control period covers in part)."""
    if firm.monthly_quota_kwh is not None:
        return firm.monthly_quota_kwh
    if firm.baseline_kwh is not None:
        return firm.baseline_kwh * (1 - firm.effective_reduction)
    return None


def slips(raw: Mapping[str, Any], policy: Policy | None = None) -> list[Finding]:
    """Every value of the policy that looks like a slip, with the path it belongs to. `policy`: the document
    already validated as a whole, when it was valid."""
    township, control, firms = parts(raw, policy)
    found: list[Finding] = []
    if township is not None:
        found += _township(township, raw.get("township"))
    if control is not None:
        for i, phase in enumerate(control.phases):
            if phase.daily_cap_kwh is not None and phase.daily_cap_kwh < SLIP_BELOW_KWH:
                found.append(
                    (("control", "phases", i, "daily_cap_kwh"), _unit_slip(_("a daily cap"), phase.daily_cap_kwh))
                )
    for i, firm in firms:
        found += _firm(i, firm, township)
    return found


def _unit_slip(what: str, value: float) -> str:
    # TRANSLATORS: {what} is "a daily cap", "a daily limit", "a monthly quota" or "a baseline", translated apart
    message = _("{what} of {value} kWh is below {floor} kWh: if it was meant in 万度 (10,000 kWh), write {kwh}")
    return message.format(what=what, value=kwh(value), floor=kwh(SLIP_BELOW_KWH), kwh=kwh(value * 10_000))


def _township(township: Township, raw: Any) -> Iterator[Finding]:
    if township.daily_cap_kwh < SLIP_BELOW_KWH:
        yield ("township", "daily_cap_kwh"), _unit_slip(_("a daily cap"), township.daily_cap_kwh)
    if not township.feeder_meters:
        if isinstance(raw, dict) and "feeder_meters" in raw:
            message = _(
                "empty: the township's total, and its daily cap, count the firms' meters only, not the residents "
                "and shops (list the township's feeder meters here if it has them)"
            )
        else:
            message = _(
                "not given: the township's total, and its daily cap, count the firms' meters only, not the "
                "residents and shops (list the township's feeder meters here if it has them)"
            )
        yield ("township", "feeder_meters"), message


def _firm(i: int, firm: Firm, township: Township | None) -> Iterator[Finding]:
    limit = firm.daily_limit_kwh
    if limit is not None:
        if limit < SLIP_BELOW_KWH:
            yield ("firms", i, "daily_limit_kwh"), _unit_slip(_("a daily limit"), limit)
        own = firm.standby_kwh is not None
        standby = firm.standby_kwh if firm.standby_kwh is not None else (township.standby_kwh if township else None)
        if standby is not None and limit <= standby:
            message = _(
                "a daily limit of {limit} kWh is not above the firm's standby of {standby} kWh ({key}): it would "
                "break its limit on standby power alone"
            )
            key = _("its standby_kwh") if own else "township.standby_kwh"
            yield ("firms", i, "daily_limit_kwh"), message.format(limit=kwh(limit), standby=kwh(standby), key=key)
    if firm.kind != "general":
        return
    quota = monthly_quota(firm)
    if quota is None or quota >= SLIP_BELOW_KWH:
        return
    if firm.monthly_quota_kwh is not None:
        yield ("firms", i, "monthly_quota_kwh"), _unit_slip(_("a monthly quota"), quota)
    elif firm.baseline_kwh is not None and firm.baseline_kwh < SLIP_BELOW_KWH:
        yield ("firms", i, "baseline_kwh"), _unit_slip(_("a baseline"), firm.baseline_kwh)
    else:
        message = _(
            "the baseline {baseline} kWh less {reduction:.0%} gives a monthly quota of {quota} kWh, below {floor} kWh"
        )
        yield (
            ("firms", i, "reduction" if firm.reduction is not None else "baseline_kwh"),
            message.format(
                baseline=kwh(firm.baseline_kwh or 0.0),
                reduction=firm.effective_reduction,
                quota=kwh(quota),
                floor=kwh(SLIP_BELOW_KWH),
            ),
        )


def echo(policy: Policy) -> list[str]:
    """The caps per phase, the load cap, each daily limit and each monthly quota, one line each."""
    lines = []
    for start, end, phase, cap in _cap_spans(policy.township, policy.control, policy.cap_from):
        if phase:
            line = _("daily cap {start}..{end} ({phase}): {cap} kWh").format(
                start=start, end=end, phase=phase, cap=kwh(cap)
            )
        else:
            line = _("daily cap {start}..{end}: {cap} kWh").format(start=start, end=end, cap=kwh(cap))
        lines.append(line)
    if policy.township.load_cap_kw is not None:
        load = policy.township.load_cap_kw
        message = _("load cap: {load} kW ({energy} kWh in a 15-minute interval)")
        lines.append(message.format(load=kwh(load), energy=kwh(load / 4)))
    for firm in policy.firms:
        if firm.daily_limit_kwh is not None:
            message = _("daily limit {firm} ({name}): {limit} kWh")
            lines.append(message.format(firm=firm.id, name=firm.name, limit=kwh(firm.daily_limit_kwh)))
    lines += [_quota_line(firm) for firm in policy.firms if firm.kind == "general" and monthly_quota(firm) is not None]
    return lines


def _quota_line(firm: Firm) -> str:
    """A general firm's monthly quota, how it comes from the baseline, and its openings."""
    quota = monthly_quota(firm) or 0.0
    values = {"firm": firm.id, "name": firm.name, "quota": kwh(quota)}
    if firm.monthly_quota_kwh is None and firm.baseline_kwh is not None:
        message = _("monthly quota {firm} ({name}): {quota} kWh (baseline {baseline} kWh less {reduction:.0%})")
        line = message.format(**values, baseline=kwh(firm.baseline_kwh), reduction=firm.effective_reduction)
    else:
        line = _("monthly quota {firm} ({name}): {quota} kWh").format(**values)
    for o in firm.opening:
        line += _("; opening {month}: {kwh} kWh used before quotad's first reading").format(
            month=o.month, kwh=kwh(o.kwh)
        )
    return line


def _cap_spans(
    township: Township, control: Control, cap_from: dt.date
) -> list[tuple[dt.date, dt.date, str | None, float]]:
    """(first day, last day, phase name, cap) of each run of capped days with the same phase and cap."""
    spans: list[tuple[dt.date, dt.date, str | None, float]] = []
    day = max(cap_from, control.start)
    while day <= control.end:
        phase = next((p for p in control.phases if p.start <= day <= p.end), None)
        name = phase.name if phase else None
        cap = phase.daily_cap_kwh if phase and phase.daily_cap_kwh is not None else township.daily_cap_kwh
        if spans and spans[-1][2:] == (name, cap) and spans[-1][1] == day - dt.timedelta(days=1):
            spans[-1] = (spans[-1][0], day, name, cap)
        else:
            spans.append((day, day, name, cap))
        day += dt.timedelta(days=1)
    return spans

"""Today's inspection list (今日督查清单, SPEC "Inspections and escalation"): whom the inspectors visit on `day`, and
why, as a pure function of the engine's state. Replay and the live daemon, holding the same state, list the same.

Each firm appears once, with all its reasons, most serious first. The kinds of reason, most serious first:

1. it drew above its standby (`standby_kwh`) on a day it must be off: its group's off day (rota) or a declared rest
   day, yesterday or today, on control days; unless that day's drawing breached the order standing over it (2). Under
   an order not yet breachable (pending, or issued that day), drawing on an off day is still listed here: it is what
   the inspector comes to see;
2. under an order, it breached it: `cutoff_breach` raised for yesterday or today;
3. its order is pending (待核实) and stands today: the inspector verifies the violation;
4. it reached `warning_at` of a limit: its daily limit, by yesterday's or today's use (control days); its monthly
   quota, by the month to date of yesterday's month and today's (on the 1st, the month just ended still counts);
5. one of its meters is offline now, or raised `meter_offline` or `meter_anomaly` yesterday or today (possible
   tampering). Feeder meters belong to no firm and are left out;
6. drawn at random (抽查): `sample` firms of the policy not listed for reasons 1-5, on control days only (outside
   the control period there is no quota to spot-check).

Firms are ranked by their most serious reason, then the more reasons first, then by firm id.

The draw, for an auditor: for each candidate firm, take the text `<township id>/<day, YYYY-MM-DD>/<firm id>`, e.g.
`xx-town/2010-10-21/g-003`, encode it as UTF-8 and take its SHA-256 as 64 lowercase hex digits; the candidates
with the `sample` smallest digests (compared as text) are drawn. Nothing else enters: not the firms' order in the
policy, not the time the list was computed. A drawn firm's evidence gives its text and digest; recompute one with
`printf %s xx-town/2010-10-21/g-003 | sha256sum`.

Evidence is one dict per reason, in the same order, `{"kind": ..., figures}`: energy in kWh rounded to the Wh
(0.001), days as YYYY-MM-DD, months as YYYY-MM.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from quotad.core.alerts import RULE_NAMES, alert_id, kwh, limit_text
from quotad.core.engine import Engine
from quotad.core.ledger import MeterLedger
from quotad.core.messages import month_text
from quotad.core.policy import Firm
from quotad.core.rules.steps import levels, over_wh

__all__ = ["Entry", "draw", "draw_key", "inspection_list", "list_lines", "list_payload"]

# The kinds of reason, most serious first (see the module's docstring)
STANDBY, BREACH, PENDING, LIMIT, METER, SAMPLE = range(1, 7)
_TAMPERING = "，可能有人动过电表，请现场查看"

Found = tuple[int, str, dict[str, Any]]  # (kind, the sentence, its evidence)


@dataclass(frozen=True, slots=True)
class Entry:
    firm: str
    firm_name: str
    reasons: tuple[str, ...]  # Chinese sentences, as an inspector reads them on a phone, most serious first
    evidence: tuple[dict[str, Any], ...]  # one per reason, in the same order: {"kind": code, figures}

    def payload(self) -> dict[str, Any]:
        return {
            "firm": self.firm,
            "firm_name": self.firm_name,
            "reasons": list(self.reasons),
            "evidence": [dict(e) for e in self.evidence],
        }


def draw_key(township: str, day: dt.date, firm: str) -> tuple[str, str]:
    """The text a firm is drawn by on `day`, and its SHA-256 (hex): the lower, the sooner drawn."""
    text = f"{township}/{day.isoformat()}/{firm}"
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()


def draw(township: str, day: dt.date, firms: Iterable[str], sample: int) -> tuple[str, ...]:
    """The `sample` firms among `firms` with the smallest digests (`draw_key`), smallest first: all of them when
    there are fewer. The same for the same township, day and set of firms, in whatever order they come."""
    if sample < 0:
        msg = f"a sample is a number of firms, not {sample}"
        raise ValueError(msg)
    ranked = sorted((draw_key(township, day, firm)[1], firm) for firm in set(firms))
    return tuple(firm for _digest, firm in ranked[:sample])


def inspection_list(engine: Engine, day: dt.date, sample: int) -> tuple[Entry, ...]:
    """The inspection list of `day` from the engine's state (see the module's docstring), ranked."""
    policy, town = engine.policy, engine.policy.township.id
    days = (day - dt.timedelta(days=1), day)
    meters: dict[str, list[MeterLedger]] = {}
    for m in engine.ledger.meters.values():
        if m.firm is not None:  # a feeder meter is no firm's
            meters.setdefault(m.firm, []).append(m)
    found: dict[str, list[Found]] = {}
    for firm in policy.firms:
        reasons = [
            *_standby(engine, firm, days),
            *_breaches(engine, firm, days),
            *_pending(engine, firm, day),
            *_daily_limit(engine, firm, days),
            *_monthly_quota(engine, firm, days),
            *_meters(engine, firm.id, meters.get(firm.id, ()), days),
        ]
        if reasons:
            found[firm.id] = sorted(reasons, key=lambda r: r[0])  # stable: a kind's reasons keep their order
    if day in engine.plan.control:
        for firm_id in draw(town, day, (f.id for f in policy.firms if f.id not in found), sample):
            text, digest = draw_key(town, day, firm_id)
            evidence = {"kind": "random_sample", "key": text, "sha256": digest}
            found[firm_id] = [(SAMPLE, "随机抽查（按乡镇、日期、企业编号的 SHA-256 摘要抽取，可复核）", evidence)]
    names = {f.id: f.name for f in policy.firms}
    ranked = sorted(found.items(), key=lambda item: (item[1][0][0], -len(item[1]), item[0]))
    return tuple(
        Entry(firm_id, names[firm_id], tuple(r[1] for r in reasons), tuple(r[2] for r in reasons))
        for firm_id, reasons in ranked
    )


def list_payload(township: str, day: dt.date, entries: Iterable[Entry], *, computed: str) -> dict[str, Any]:
    """The retained `P/T/inspections/today`: `{"township", "day", "computed" (the event time it was computed at,
    ISO 8601), "entries": [Entry.payload(), ...]}`, ranked."""
    return {
        "township": township,
        "day": day.isoformat(),
        "computed": computed,
        "entries": [entry.payload() for entry in entries],
    }


def list_lines(entries: Iterable[Entry]) -> list[str]:
    """The list as `quotad inspections today` prints it: each firm's rank and name, then its reasons."""
    lines: list[str] = []
    for rank, entry in enumerate(entries, 1):
        lines.append(f"{rank}. {entry.firm_name}（{entry.firm}）")
        lines += [f"   - {reason}" for reason in entry.reasons]
    return lines or ["今日督查清单为空：没有需要核查的企业"]


# -- the reasons, one function per kind ------------------------------------------------------------


def _when(d: dt.date, days: tuple[dt.date, dt.date]) -> str:
    return f"{'今日' if d == days[1] else '昨日'}（{d.isoformat()}）"


def _used(wh: int, limit_kwh: float) -> str:
    """A use to 0.1 kWh, or to the Wh when 0.1 kWh would hide that it is over `limit_kwh` (never '50.0 超过 50')."""
    return f"{wh / 1000:.1f}" if round(wh / 1000, 1) > limit_kwh else f"{wh / 1000:.3f}"


def _standby_kwh(engine: Engine, firm: Firm) -> float:
    return engine.policy.township.standby_kwh if firm.standby_kwh is None else firm.standby_kwh


def _standby(engine: Engine, firm: Firm, days: tuple[dt.date, dt.date]) -> Iterator[Found]:
    plan, standby, town = engine.plan, _standby_kwh(engine, firm), engine.policy.township.id
    for d in days:
        if d not in plan.control:
            continue
        if plan.group_off(firm, d):
            kind, why = "rota_off_day", "错时供电停电日"
        elif plan.rest_day(firm, d):
            kind, why = "rest_day", "申报休息日"
        else:
            continue
        wh = engine.ledger.firm_day_wh(firm.id, d)
        if (
            wh < over_wh(standby)
            or alert_id(town, firm.id, "cutoff_breach", d.isoformat(), None, None) in engine.raised
        ):
            continue  # under, or a breach of the order that stood over it: listed as such (`_breaches`)
        text = f"{_when(d, days)}为{why}，用电 {_used(wh, standby)} kWh，超过保安用电 {limit_text(standby)} kWh"
        yield STANDBY, text, {"kind": kind, "day": d.isoformat(), "consumed_kwh": kwh(wh),
                             "standby_kwh": round(standby, 3)}  # fmt: skip


def _breaches(engine: Engine, firm: Firm, days: tuple[dt.date, dt.date]) -> Iterator[Found]:
    standby, order = _standby_kwh(engine, firm), engine.orders.get(firm.id)
    for d in days:
        aid = alert_id(engine.policy.township.id, firm.id, "cutoff_breach", d.isoformat(), None, None)
        if aid not in engine.raised:
            continue
        wh = engine.ledger.firm_day_wh(firm.id, d)
        span = f"（{order.from_day} 起至 {order.until}）" if order is not None else ""
        text = (
            f"停电令期间{span}{_when(d, days)}仍用电 {_used(wh, standby)} kWh，超过保安用电 {limit_text(standby)} kWh"
            "（违令）"
        )
        evidence = {"kind": "cutoff_breach", "alert_id": aid, "day": d.isoformat(), "consumed_kwh": kwh(wh),
                    "standby_kwh": round(standby, 3), "order": order.alert_id if order else None}  # fmt: skip
        yield BREACH, text, evidence


def _pending(engine: Engine, firm: Firm, day: dt.date) -> Iterator[Found]:
    order = engine.orders.get(firm.id)
    if order is None or order.state != "pending" or not order.stands(day):
        return
    figures = {key: order.evidence.get(key) for key in ("consumed_kwh", "limit_kwh", "excess_kwh", "margin_kwh")}
    consumed, limit, excess, margin = figures.values()
    said = ""
    if consumed is not None and limit is not None:  # the use at the moment the rule made the order
        said = f"：判定时用电 {consumed} kWh，限额 {limit_text(limit)} kWh"
        if excess is not None and margin is not None and excess <= margin:
            said += f"，超出 {excess} kWh，在电表精度（±{limit_text(margin)} kWh）以内"
    text = (
        f"停电令待核实（{RULE_NAMES.get(order.rule, order.rule)}，{order.from_day} 起）{said}，请到现场核实后确认或撤销"
    )
    evidence = {"kind": "order_pending", "alert_id": order.alert_id, "rule": order.rule, "from": order.from_day,
                "until": order.until, **figures}  # fmt: skip
    yield PENDING, text, evidence


def _reached(wh: int, limit: float, what: str) -> str:
    share = f"{wh / limit / 10:.1f}%"
    if wh > limit * 1000:
        return f"超过{what} {limit_text(limit)} kWh（{share}）"
    return f"已达{what} {limit_text(limit)} kWh 的 {share}"


def _daily_limit(engine: Engine, firm: Firm, days: tuple[dt.date, dt.date]) -> Iterator[Found]:
    limit = firm.daily_limit_kwh
    if limit is None:
        return
    warning = levels((engine.policy.township.warning_at,), limit)[0].wh
    for d in days:
        wh = engine.ledger.firm_day_wh(firm.id, d)
        if d in engine.plan.control and wh >= warning:
            text = f"{_when(d, days)}用电 {wh / 1000:.1f} kWh，{_reached(wh, limit, '日限额')}"
            yield LIMIT, text, {"kind": "firm_daily_limit", "day": d.isoformat(), "consumed_kwh": kwh(wh),
                                "limit_kwh": round(limit, 3)}  # fmt: skip


def _monthly_quota(engine: Engine, firm: Firm, days: tuple[dt.date, dt.date]) -> Iterator[Found]:
    if firm.kind != "general":
        return
    months = dict.fromkeys((d.year, d.month) for d in days if d in engine.plan.control)
    for year, month in months:
        quota, walk = engine.rules.month_quota(firm, year, month)
        wh = engine.ledger.firm_month_wh(firm.id, (year, month))
        warning = next(level.wh for level in walk if level.severity == "warning")
        if quota > 0 and wh >= warning:
            period, limit = f"{year:04d}-{month:02d}", round(float(quota), 3)
            text = f"{month_text(period)}累计用电 {wh / 1000:.1f} kWh，{_reached(wh, limit, '月度配额')}"
            yield LIMIT, text, {"kind": "monthly_quota", "month": period, "consumed_kwh": kwh(wh), "limit_kwh": limit}


def _meters(engine: Engine, firm: str, meters: Iterable[MeterLedger], days: tuple[dt.date, dt.date]) -> Iterator[Found]:
    town, raised = engine.policy.township.id, engine.raised
    for m in meters:
        last = engine.calendar.isoformat(m.last_t) if m.last_t is not None else None
        silent = [d for d in days if alert_id(town, firm, "meter_offline", d.isoformat(), None, m.id) in raised]
        if m.offline_alerted or silent:
            if m.offline_alerted:
                seen = "从未上报" if m.last_t is None else f"最后读数 {engine.calendar.local(m.last_t):%Y-%m-%d %H:%M}"
                text = f"电表 {m.id} 现在无读数（{seen}）"
            else:
                text = f"电表 {m.id} {'、'.join(_when(d, days) for d in silent)}曾无读数，已恢复"
            evidence = {"kind": "meter_offline", "meter": m.id, "now": m.offline_alerted, "last_ts": last,
                        "days": [d.isoformat() for d in silent]}  # fmt: skip
            yield METER, text + _TAMPERING, evidence
        for d in days:
            base = alert_id(town, firm, "meter_anomaly", d.isoformat(), None, m.id)
            count = 0
            while (base if count == 0 else f"{base}/{count + 1}") in raised:
                count += 1
            if count:
                text = f"电表 {m.id} {_when(d, days)}读数异常 {count} 次（读数下降或跳变）" + _TAMPERING
                yield METER, text, {"kind": "meter_anomaly", "meter": m.id, "day": d.isoformat(), "count": count}

"""The engine's journal: every accepted reading and operator action, in order, with what it produced.

`record_reading` turns one ingest into an event (the reading, the ids it raised, the orders it issued) plus its
outbox rows, appended in one transaction. `restore` rebuilds the engine after a restart from the latest
snapshot and the events after it. Because the core is deterministic, replaying a reading raises the same
alerts it raised live; those are not sent again. Each event also carries what it raised and ordered, and
that record wins: a policy changed between two runs never un-raises an alert or drops an order.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from typing import Any

from quotad.core.alerts import Alert, Order
from quotad.core.enforcement import counts
from quotad.core.engine import Engine
from quotad.core.errors import ReadingError, StoreError
from quotad.core.inspections import inspection_list, list_payload
from quotad.core.notices import Notice, reading_notices, report_notices
from quotad.core.outputs import (
    EnergyPoints,
    Message,
    alert_line,
    alert_message,
    meter_reading_line,
    order_line,
    order_message,
    topic,
)
from quotad.core.policy import Policy
from quotad.core.readings import Reading
from quotad.core.state import EngineState, order_from_json, order_to_json
from quotad.core.windows import HOUR_US
from quotad.schedule.calendar import to_micros
from quotad.shell import actions, snapshots
from quotad.shell.outbox import notice_rows
from quotad.shell.store import TELEMETRY, Store

__all__ = ["Journal", "order_from_json", "order_to_json", "policy_fingerprint"]

log = logging.getLogger(__name__)
SNAPSHOT_EVERY = 20_000  # events between snapshots


def policy_fingerprint(policy: Policy) -> str:
    return hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:16]


def _reading_body(reading: Reading, alerts: Sequence[Alert], orders: Sequence[Order]) -> str:
    """The JSON text of a reading event, written directly (what json.dumps of {"reading": [meter, t, kWh, kW],
    "raised": [...], "orders": [...]} gives, with "alerts": [payloads] when it raised any, the register `quotad
    alerts --since` reads; a reading's numbers are finite, so repr is their JSON)."""
    power = "null" if reading.power_kw is None else repr(reading.power_kw)
    head = f'{{"reading":[{_json_text(reading.meter)},{reading.t},{reading.energy_kwh!r},{power}]'
    if not alerts and not orders:
        return head + ',"raised":[],"orders":[]}'
    rest = json.dumps([a.id for a in alerts], ensure_ascii=False, separators=(",", ":"))
    made = json.dumps([order_to_json(o) for o in orders], ensure_ascii=False, separators=(",", ":"))
    if not alerts:
        return f'{head},"raised":{rest},"orders":{made}}}'
    payloads = json.dumps([a.payload() for a in alerts], ensure_ascii=False, separators=(",", ":"))
    return f'{head},"raised":{rest},"orders":{made},"alerts":{payloads}}}'


@functools.lru_cache(maxsize=16384)
def _json_text(meter: str) -> str:
    """A meter's id as JSON (a few thousand ids, each written with every reading of its meter: made once each)."""
    return json.dumps(meter, ensure_ascii=False)


class Journal:
    """The engine of one township, kept durable in `store`. `auto_snapshot`: snapshot every SNAPSHOT_EVERY events
    as they are recorded (the daemon turns it off: it takes its snapshots off the hot path)."""

    def __init__(
        self, store: Store, policy: Policy, prefix: str | None, influx: bool, state: EngineState | None = None
    ) -> None:
        self.store, self.policy, self.prefix, self.influx = store, policy, prefix, influx
        self.channels: frozenset[str] = frozenset()  # the daemon file's channels: notices are queued for these
        self.engine = Engine(policy, state)
        self.points = EnergyPoints(policy.township.id)
        self.last_event = 0
        self.meter_firm = {m.id: m.firm for m in policy.meters}
        self.auto_snapshot = True
        self._multipliers_settled = False
        self._fingerprint: str | None = None
        self._next_list: int | None = None  # event time at which the next day's inspection list is due (07:00)

    def reloaded(self, policy: Policy) -> Journal:
        """This journal under `policy` (SPEC, "Reload"): the engine's state carried over, nothing replayed; the
        meters' multipliers that changed are journaled (from now on). The caller snapshots it (the point from which
        a restart replays under the new policy)."""
        state = self.engine.state()
        journal = Journal(self.store, policy, self.prefix, self.influx, state)  # one engine built, not two
        journal.points = EnergyPoints(policy.township.id, dict(self.points.last))
        journal.last_event, journal.auto_snapshot, journal.channels = self.last_event, self.auto_snapshot, self.channels
        snapshots.dropped(state, policy)
        journal._settle_multipliers_now()
        return journal

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = policy_fingerprint(self.policy)
        return self._fingerprint

    # -- live ----------------------------------------------------------------------------------

    def record_reading(self, reading: Reading) -> list[Alert]:
        """Ingest `reading` and make it durable with everything it produced; [] if it was not newer."""
        if not self._multipliers_settled:
            self.settle_multipliers()
        if self._next_list is None or reading.t >= self._next_list:
            self._inspection_list_due(reading.t)
        engine = self.engine
        meter = engine.ledger.meters.get(reading.meter)
        before = meter.last_t if meter is not None else None
        orders_before = dict(engine.orders) if engine.orders else None  # (none: the common case, nothing to copy)
        alerts = engine.ingest(reading)
        meter = engine.ledger.meters[reading.meter]
        if meter.last_t == before:
            return []  # a duplicate or an older reading: nothing happened
        new_orders = [o for f, o in engine.orders.items() if orders_before is None or orders_before.get(f) is not o]
        self.last_event = self.store.append("reading", _reading_body(reading, alerts, new_orders),
                                            self._outbox(reading, alerts, new_orders))  # fmt: skip
        self._maybe_snapshot()
        return alerts

    def settle_multipliers(self) -> dict[str, float]:
        """Journal the policy's meter multipliers (CT x PT ratios) that differ from those in force, effective from
        now; returns them. The first call on a new journal records them all, so that a replay under a later policy
        counts every reading at the ratio that was in force when it was read."""
        self._multipliers_settled = True
        ledger = self.engine.ledger
        wanted = {m.id: m.multiplier for m in self.policy.meters}
        if not self.store.has_event("multipliers"):
            changed = wanted
        else:
            changed = {meter: value for meter, value in wanted.items() if ledger.meters[meter].multiplier != value}
            for meter, value in changed.items():
                log.warning(
                    "meter %s: multiplier %g -> %g; its counter's rises count at the new ratio from now on",
                    meter, ledger.meters[meter].multiplier, value,
                )  # fmt: skip
        if changed:  # journaled first: a write refused leaves the engine as the journal has it
            self.last_event = self.store.append("multipliers", {"multipliers": changed})
            for meter, value in changed.items():
                ledger.set_multiplier(meter, value)
        return changed

    def record_rejected(self, reading: Reading, why: str) -> None:
        """Journal a reading that was refused (impossible values, a clock far ahead, one the core failed on): the
        record of what a broken or hostile meter sent. Replaying it does nothing."""
        values = [v if v is None or math.isfinite(v) else repr(v) for v in (reading.energy_kwh, reading.power_kw)]
        self.last_event = self.store.append("rejected", {"reading": [reading.meter, reading.t, *values], "why": why})

    def record_command(self, command: dict[str, Any]) -> dict[str, Any]:
        """Carry out and journal a person's command (see `quotad.shell.actions`), once per its id; its outcome."""
        return actions.perform(self, command)

    def _inspection_list_due(self, t: int) -> None:
        """Today's inspection list, once a reading reaches 07:00 local event time of its day (before it is counted:
        the list is of what was known at 07:00, the same in a replay and live), once a day."""
        cal = self.engine.calendar
        day = cal.day_of(t)
        seven = to_micros(dt.datetime.combine(day, dt.time(7), cal.tz))
        if t < seven:
            self._next_list = seven
            return
        self.record_inspection_list(day, t)
        self._next_list = to_micros(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(7), cal.tz))

    def list_of(self, day: dt.date, t: int) -> dict[str, Any]:
        """The inspection list of `day` as the engine stands (SPEC "Inspections"), as published."""
        engine = self.engine
        entries = inspection_list(engine, day, self.policy.enforcement.inspection_sample)
        return list_payload(self.policy.township.id, day, entries, computed=engine.calendar.isoformat(t))

    def record_inspection_list(self, day: dt.date, t: int) -> bool:
        """Journal and publish (retained `P/T/inspections/today`) the list of `day`, once; False if it was already."""
        if self.store.get(f"inspections:{day}") is not None:
            return False
        payload = self.list_of(day, t)
        outbox = []
        if self.prefix is not None:
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
            message = Message(topic(self.prefix, self.policy.township.id, "inspections", "today"), body, retain=True)
            outbox.append(("mqtt", "inspections", message.to_json()))
        return self._once(f"inspections:{day}", "inspections", payload, outbox)

    def noticed(self, key: str) -> bool:
        """Whether the notice `key` was sent (by this run or an earlier one)."""
        return self.store.get(f"notice:{key}") is not None

    def record_notice(self, key: str, message: Message | None, notices: Sequence[Notice] = ()) -> bool:
        """Send a notice once, on MQTT and to the channels of `notices`: False if `key` was already sent."""
        outbox = [("mqtt", "notice", message.to_json())] if message is not None and self.prefix is not None else []
        return self._once(f"notice:{key}", "notice", {"key": key}, outbox + notice_rows(self.channels, notices))

    def record_report(self, day: dt.date, files: list[str]) -> bool:
        """Journal that the daily report of `day` was written (`files`, under state_dir/reports), once; it goes to
        the channels of `[reports] to` with the day's figure."""
        total, cap = self.engine.ledger.township_day_wh(day) / 1000, self.engine.plan.control.cap_kwh(day)
        summary = f"全镇 {day} 用电 {total:,.1f} kWh，上限 {cap:,.0f} kWh（{total / cap:.1%}）" if cap else ""
        rows = notice_rows(self.channels, report_notices(self.policy, day, files, summary))
        return self._once(
            f"report:daily:{day}", "report", {"kind": "daily", "day": day.isoformat(), "files": files}, rows
        )

    def record_order_ends(self, day: dt.date) -> list[Order]:
        """Orders whose `until` is before `day` have ended (一停到底 runs to the end of the control period, and no
        further): each one's retained topic is cleared and a `cutoff_order` point says so, once. Returns them."""
        ended = []
        for order in self.engine.orders.values():
            if not order.open or order.stands(day):
                continue
            outbox: list[tuple[str, str, str]] = []
            if self.prefix is not None:
                outbox.append(
                    ("mqtt", "order", order_message(self.prefix, self.policy.township.id, order, ended=True).to_json())
                )
            if self.influx:
                outbox.append(
                    (
                        "influx",
                        "cutoff_order",
                        order_line(self.policy.township.id, order, self.engine.now or 0, ended=True),
                    )
                )
            if self._once(
                f"order-ended:{order.alert_id}", "order_end", {"firm": order.firm, "alert_id": order.alert_id}, outbox
            ):
                ended.append(order)
        return ended

    def _once(self, key: str, kind: str, body: dict[str, Any], outbox: list[tuple[str, str, str]]) -> bool:
        """Append the event and mark `key` done in one transaction: False if `key` was done already (by this run or
        an earlier one), so that a crash at any moment neither loses the event nor makes it twice."""
        with self.store.batch():
            if self.store.get(key) is not None:
                return False
            self.last_event = self.store.append(kind, body, outbox)
            self.store.put(key, "sent")
        return True

    def _outbox(self, reading: Reading, alerts: Sequence[Alert], orders: Sequence[Order]) -> list[tuple[str, str, str]]:
        if not alerts and not orders:  # most readings: their telemetry alone
            return [self._telemetry(reading)] if self.influx else []
        township = self.policy.township.id
        rows: list[tuple[str, str, str]] = []
        if self.prefix is not None:
            rows += [("mqtt", "alert", alert_message(self.prefix, a).to_json()) for a in alerts]
            rows += [("mqtt", "order", order_message(self.prefix, township, o).to_json()) for o in orders]
            counted = dict.fromkeys(a.firm for a in alerts if counts(a))
            for firm in counted:
                assert firm is not None
                rows += actions.escalation_rows(self, firm)
        if self.channels:
            rows += notice_rows(self.channels, reading_notices(self.engine, alerts, orders))
        if self.influx:  # a row of the alerts' and orders' points, which never give way, and one of telemetry
            kept = [alert_line(a) for a in alerts] + [order_line(township, o, reading.t) for o in orders]
            if kept:
                rows.append(("influx", "points", "\n".join(kept)))
            rows.append(self._telemetry(reading))
        return rows

    def _telemetry(self, reading: Reading) -> tuple[str, str, str]:
        """The InfluxDB row of the reading's point and the energy points due with it."""
        energy = self._energy_lines(reading)
        text = self._reading_line(reading)
        return ("influx", TELEMETRY, "\n".join([text, *energy]) if energy else text)

    def _reading_line(self, reading: Reading) -> str:
        meter = self.engine.ledger.meters[reading.meter]
        power = reading.power_kw * meter.factor / 1000 if reading.power_kw is not None else None
        return meter_reading_line(self.policy.township.id, meter.firm or "township", reading.meter,
                                  meter.last_wh / 1000, power, reading.t)  # fmt: skip

    def _energy_lines(self, reading: Reading) -> list[str]:
        engine, t = self.engine, reading.t
        rows: list[str] = []
        firm = self.meter_firm.get(reading.meter)
        firm_due = firm is not None and self.points.due(firm, t)
        township_due = self.points.due("township", t)
        if not firm_due and not township_due:
            return rows  # most readings: no point due (one every 5 minutes of event time per subject)
        day = engine.calendar.day_of(t)
        if firm_due:
            assert firm is not None
            day_wh = engine.ledger.firm_day_wh(firm, day)
            month_wh = engine.ledger.firm_month_wh(firm, (day.year, day.month))
            point = self.points.firm(firm, t, day_wh / 1000, month_wh / 1000, self._limit(firm, day))
            rows.append(point)
        if township_due:
            total = engine.ledger.township_day_wh(day) / 1000
            _lo, end = engine.calendar.bounds(day)
            projected = total + engine.trailing.township_wh(t) / 1000 * max(0, end - t) / HOUR_US
            point = self.points.total(t, total, engine.plan.control.cap_kwh(day), projected)
            rows.append(point)
        return rows

    def _limit(self, firm_id: str, day: Any) -> float | None:
        firm = self.engine.firms[firm_id]
        if firm.daily_limit_kwh is not None:
            return firm.daily_limit_kwh
        if firm.kind == "general" and day in self.engine.plan.control:
            return float(self.engine.rules.month_quota(firm, day.year, day.month)[0])
        return None

    # -- after a restart -----------------------------------------------------------------------

    def restore(self) -> int:
        """Rebuild the engine from the latest snapshot and the events after it; returns events replayed."""
        start = self._load_snapshot()
        replayed = 0
        for event in self.store.events(after=start):
            self._replay(event.kind, event.body)
            self.last_event = event.seq
            replayed += 1
        self._settle_multipliers_now()
        return replayed

    def _settle_multipliers_now(self) -> None:
        try:
            self.settle_multipliers()
        except StoreError:  # a full disk: the first reading's batch journals them (and is tried again until it can)
            self._multipliers_settled = False

    def replay_event(self, kind: str, body: dict[str, Any]) -> None:
        """Apply one journaled event to the engine, as a restart does (a report reads the journal so)."""
        self._replay(kind, body)

    def _replay(self, kind: str, body: dict[str, Any]) -> None:
        engine = self.engine
        if kind == "reading":
            meter, t, energy, power = body["reading"]
            if meter in engine.ledger.meters:
                with contextlib.suppress(ReadingError):  # refused now by a bound added since: its record stands
                    engine.ingest(Reading(meter, t, energy, power))
            engine.raised.update(body["raised"])  # what was raised stays raised
            for data in body["orders"]:
                order = order_from_json(data)
                if engine.orders.get(order.firm) != order:
                    engine.orders[order.firm] = order
                    engine.forget_firm(order.firm)
            firm = self.meter_firm.get(meter)
            if firm is not None:  # the same subjects as the live path, so the points after a restart match
                self.points.due(firm, t)
            self.points.due("township", t)
        elif kind == "multipliers":
            for meter, value in body["multipliers"].items():
                if meter in engine.ledger.meters:
                    engine.ledger.set_multiplier(meter, value)
        elif kind in actions.KINDS or kind == "lift":
            actions.replay(self, kind, body)

    def _load_snapshot(self) -> int:
        """Load the newest readable snapshot; the event it covers through (0: none, replay from the start)."""
        loaded = snapshots.load(self.store.snapshots(), self.policy, self.fingerprint)
        if loaded is not None:
            self.engine, self.points = loaded.engine, loaded.points
            return loaded.event
        compacted = self.store.compacted_through()
        if compacted:
            log.error(
                "no state snapshot could be read, and the journal's readings up to event %d that raised nothing were "
                "compacted away: the engine is rebuilt from what is left; alerts raised and orders are kept, but "
                "today's totals miss those readings' energy until the next counter of each meter", compacted,
            )  # fmt: skip
        elif self.store.has_snapshots():
            log.warning("no state snapshot could be read: rebuilding from the journal")
        return 0

    def _maybe_snapshot(self) -> None:
        if self.auto_snapshot and self.last_event % SNAPSHOT_EVERY == 0:
            self.snapshot()

    def capture(self) -> snapshots.Captured:
        """The state now, as a value (cheap: a copy, no encoding); `save` it once encoded, anywhere."""
        points = dict(self.points.last)
        return snapshots.Captured(self.last_event, self.engine.state(), points, self.fingerprint)

    def save(self, captured: snapshots.Captured, blob: bytes) -> None:
        self.store.save_snapshot(captured.event, snapshots.FORMAT, blob)

    def snapshot(self) -> None:
        """Snapshot the state now, all in this thread."""
        captured = self.capture()
        self.save(captured, captured.encode())

    def compact(self) -> int:
        """Delete the reading events that the older of the two snapshots kept covers and that raised and ordered
        nothing (the register stays: readings that raised or ordered, lifts, notices...). Returns how many."""
        kept = [event for event, version in self.store.snapshot_events() if version == snapshots.FORMAT]
        return self.store.compact(kept[1]) if len(kept) >= 2 else 0

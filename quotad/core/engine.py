"""The enforcement core of one township: readings in, alerts and cutoff orders out.

Pure and synchronous: no clock, no IO. The township's "now" is the latest event time accepted. `replay`
and the live daemon both feed `Engine.ingest`, so a recorded day gives the alerts of living it.

Within one reading, alerts come in this order: the meter's anomaly; for each day the energy landed on,
oldest first, the firm's rules then the township's cap; the 15-minute load rule; the projection;
meters that went offline, by deadline then id.
"""

from __future__ import annotations

import datetime as dt
import heapq

from quotad.core import messages
from quotad.core.alerts import Alert, Order, ShedEntry, alert_id, cut_off_on, kwh
from quotad.core.enforcement import Escalated, escalate
from quotad.core.ledger import Applied, Ledger, MeterLedger, Total
from quotad.core.policy import Firm, Policy
from quotad.core.readings import Reading
from quotad.core.rules import Context, Rules
from quotad.core.rules.steps import DAY, MONTH, PROJECTED, QUARTER, fire
from quotad.core.rules.thresholds import Thresholds, Window
from quotad.core.state import EngineState, export, restore
from quotad.core.windows import HOUR_US, LoadIntervals, TrailingHour
from quotad.schedule.calendar import Calendar, Micros
from quotad.schedule.rota import Plan

__all__ = ["Engine"]

_SHED_MAX = 5
_NEVER: Micros = -1  # deadline entries of meters that never reported
_UNSET: Window = (0, 0, 0.0)  # a day whose projection window is not derived yet


class Engine:
    """The township's engine under `policy`; from `state` (`quotad.core.state`, taken under this policy or
    another) when given, else from nothing."""

    def __init__(self, policy: Policy, state: EngineState | None = None) -> None:
        self.policy = policy
        self.calendar = Calendar(policy.township.timezone)
        self.plan = Plan(policy)
        self.ledger = Ledger(policy, self.calendar)
        self.trailing = TrailingHour()
        self.load = LoadIntervals()
        self.raised: set[str] = set()
        self.orders: dict[str, Order] = {}
        self.escalations: dict[str, Escalated] = {}  # by firm: its count of violations and breaches, its talks
        self.now: Micros | None = None
        self.first_seen: Micros | None = None
        # One entry per watched meter: (deadline, meter, the reading it was computed from, or -1 before any).
        # An entry is re-armed from the meter's newer reading when it comes due: no heap work per reading.
        # A meter reported offline has none until a reading ends its silence.
        self._deadlines: list[tuple[Micros, str, Micros]] = []
        self._shed: tuple[ShedEntry, ...] | None = None
        self._load_cap = policy.township.load_cap_kw is not None
        self.ctx = Context(policy, self.plan, self.calendar, self)
        self.rules = Rules(self.ctx)
        self.firms = self.ctx.firms
        # Derived, not state: per subject, the Wh below which none of its rules can fire (from the rules' own steps)
        self.thresholds = Thresholds(self.rules)
        if state is not None:
            restore(self, state)

    def state(self) -> EngineState:
        """What readings made, as a value (`quotad.core.state`): `Engine(policy, engine.state())` goes on alike."""
        return export(self)

    @property
    def deadlines(self) -> list[tuple[Micros, str, Micros]]:
        """The offline deadlines, a heap (the state's; see `__init__`)."""
        return self._deadlines

    # -- the one entry point -------------------------------------------------------------------

    def ingest(self, reading: Reading) -> list[Alert]:
        """Account `reading` and return the alerts it raises (raises ReadingError for an unknown meter)."""
        applied = self.ledger.apply(reading)
        if applied is None:
            return []
        m, t0, t, wh, days, anomaly = applied
        now = self.now
        if now is None:
            self._first_reading(t)
            now = t
        late = t < now  # another meter's clock is ahead: no projection (it is about now)
        stale = late and self._late_silence(m, t, now)
        if not late:
            self.now = now = t
            if m.offline_alerted:  # its silence is over: watch it again
                m.offline_alerted = False
                heapq.heappush(self._deadlines, (t + m.offline_us, m.id, t))
        self._shed = None
        if wh:
            assert t0 is not None
            alerts = self._energy(m, t0, t, wh, days, now)
        else:
            alerts = self._anomaly(applied) if anomaly is not None else []
        if not late:
            projected = self._projection(now, m.day or self.calendar.day_of(now))
            if projected:
                alerts += projected
        if self._deadlines[0][0] < now:
            alerts += self._offline(now)
        if stale and not m.offline_alerted:
            alerts += self._went_offline(m, now, t)
        if alerts:
            counted = escalate(self, alerts)
            if counted:
                alerts += counted
        return alerts

    def _late_silence(self, m: MeterLedger, t: Micros, now: Micros) -> bool:
        """For a reading older than now: True when it is already too old to end its meter's silence (a clock far
        behind: the meter is offline now, not later)."""
        if m.offline_alerted:
            if now - t <= m.offline_us:
                m.offline_alerted = False  # its silence is over: watch it again
                heapq.heappush(self._deadlines, (t + m.offline_us, m.id, t))
            return False
        return now - t > m.offline_us

    def _energy(
        self, m: MeterLedger, t0: Micros, t: Micros, wh: int, days: tuple[tuple[dt.date, int], ...], now: Micros
    ) -> list[Alert]:
        """The rules of the days that `wh`, counted over (t0, t], landed on, then the 15-minute load."""
        self.trailing.add((t0, t, wh, m.firm, m.township), now)
        alerts: list[Alert] = []
        ledger, rules, firm_id = self.ledger, self.rules, m.firm
        for day, part in days:
            if not part:
                continue
            if day is m.day:  # the common case: the meter's day at hand, whose totals it holds
                firm_day, month, township = m.firm_day, m.firm_month, m.township_day
            else:
                firm_day = ledger.firm_day_total(firm_id, day) if firm_id is not None else None
                month = ledger.firm_month_total(firm_id, day) if firm_id is not None else None
                township = ledger.township_day_total(day) if m.township else None
            # each total's mark: below it no rule can fire (see `Thresholds`); the rules run only when one is reached
            if firm_day is not None and (
                firm_day.wh >= firm_day.mark or (month is not None and month.wh >= month.mark)
            ):
                assert firm_id is not None
                alerts += self._firm(self.firms[firm_id], day, t, firm_day, month)
            if township is not None and township.wh >= township.mark:
                alerts += fire(self.ctx, rules.township(day), {DAY: township.wh}, t)
                self.thresholds.township(day, township)
        if m.township:  # kept with or without a load cap: the console draws the township's day from them
            load = self.load
            quarters = load.add(t0, t, wh)
            if not self._load_cap:
                return alerts
            if len(quarters) == 1:  # the common case, checked here: one interval, of the day at hand
                start, cal = quarters[0], self.calendar
                if cal.lo <= start < cal.hi:
                    quiet_load = self.thresholds.interval.get(cal.day)
                    if quiet_load is not None and load.wh[start] < quiet_load:
                        return alerts
            alerts += self._load(quarters, t)
        return alerts

    def _firm(self, firm: Firm, day: dt.date, t: Micros, firm_day: Total, month: Total | None) -> list[Alert]:
        """The rules of `firm`'s `day`, after energy was added to that day."""
        order = self.orders.get(firm.id)
        values = {DAY: firm_day.wh, MONTH: month.wh if month is not None else 0}
        alerts = fire(self.ctx, self.rules.firm(firm, day), values, t)
        if self.orders.get(firm.id) is not order:  # a new order changes every day's steps
            self.forget_firm(firm.id)
        self.thresholds.firm(firm, day, firm_day, month)
        return alerts

    def _load(self, quarters: list[Micros], t: Micros) -> list[Alert]:
        wh, cal, alerts, marks = self.load.wh, self.calendar, [], self.thresholds
        for start in quarters:
            day = cal.day if cal.lo <= start < cal.hi else cal.day_of(start)
            quiet = marks.interval.get(day)
            value = wh.get(start, 0)  # a long interval may reach quarters already pruned
            if quiet is None or value >= quiet:
                alerts += fire(self.ctx, self.rules.interval(day, start), {QUARTER: value}, t)
                marks.quarters(day, start)
        return alerts

    def _projection(self, now: Micros, day: dt.date) -> list[Alert]:
        """Cheap tests first (the day's threshold, an upper bound of the rate); the exact rate only when it may
        fire. `day` is now's day (that of the reading that made it now)."""
        marks = self.thresholds
        window = marks.projection.get(day, _UNSET)
        if window is _UNSET:
            window = marks.window(day)
        if window is None or now < window[0]:
            return []
        total = self.ledger.township_day.get(day)
        consumed = total.wh if total is not None else 0
        trailing, end = self.trailing, window[1]
        if consumed + trailing.township_wh_bound * (end - now) / HOUR_US < window[2]:
            return []
        hours_left = (end - now) / HOUR_US
        if consumed + trailing.township_wh_bound * hours_left < window[2]:
            return []
        projected = consumed + trailing.township_wh(now) * hours_left
        alerts = fire(self.ctx, self.rules.projection(day, now), {PROJECTED: projected}, now)
        if alerts:
            marks.window(day)
        return alerts

    # -- meter rules ---------------------------------------------------------------------------

    def _owner(self, m: MeterLedger) -> str:
        firm = self.firms.get(m.firm) if m.firm is not None else None
        return firm.name if firm else f"{self.policy.township.name}总表"

    def _anomaly(self, applied: Applied) -> list[Alert]:
        """A meter may raise several anomalies a day: the first has the plain id, the n-th (n >= 2) ends in /n."""
        m, anomaly = applied.meter, applied.anomaly
        assert anomaly is not None
        firm = self.firms.get(m.firm) if m.firm is not None else None
        period = self.calendar.day_of(applied.t1).isoformat()
        base = alert_id(self.policy.township.id, m.firm or "township", "meter_anomaly", period, None, m.id)
        n, suffix = 1, ""
        while base + suffix in self.raised:
            n += 1
            suffix = f"/{n}"
        alert = self.ctx.emit(
            base + suffix, applied.t1, "meter_anomaly", "warning", period,
            firm=firm, meter=m.id, consumed_kwh=None, limit_kwh=None, projected_kwh=None, action="none",
            cutoff_until=None,
            message=messages.anomaly_message(
                m.id, self._owner(m), anomaly.kind, anomaly.previous_counter, anomaly.new_counter,
                anomaly.multiplier, anomaly.kw, m.max_kw,
            ),
        )  # fmt: skip
        return [alert] if alert else []

    def _first_reading(self, t: Micros) -> None:
        self.first_seen = t
        for m in self.ledger.meters.values():
            heapq.heappush(self._deadlines, (t + m.offline_us, m.id, _NEVER))

    def _offline(self, now: Micros) -> list[Alert]:
        alerts = []
        heap = self._deadlines
        while heap and heap[0][0] < now:
            _deadline, meter_id, last = heap[0]
            m = self.ledger.meters[meter_id]
            if m.last_t is not None and m.last_t != last:  # it reported since: re-arm from that reading
                heapq.heapreplace(heap, (m.last_t + m.offline_us, meter_id, m.last_t))
                continue
            heapq.heappop(heap)  # silent: no entry until its silence ends (see `ingest`)
            if not m.offline_alerted:
                alerts += self._went_offline(m, now, last)
        return alerts

    def _went_offline(self, m: MeterLedger, now: Micros, last: Micros) -> list[Alert]:
        m.offline_alerted = True
        firm = self.firms.get(m.firm) if m.firm is not None else None
        last_text = None
        if last != _NEVER:
            when = self.calendar.local(last)
            same_day = when.date() == self.calendar.local(now).date()
            last_text = f"{when:%H:%M}" if same_day else f"{when:%Y-%m-%d %H:%M}"
        period = self.calendar.day_of(now).isoformat()
        alert = self.ctx.emit(
            self.ctx.id(m.firm or "township", "meter_offline", period, None, m.id), now, "meter_offline", "warning",
            period,
            firm=firm, meter=m.id, consumed_kwh=None, limit_kwh=None, projected_kwh=None, action="none",
            cutoff_until=None,
            message=messages.offline_message(m.id, self._owner(m), m.offline_us / 1_000_000, last_text),
        )  # fmt: skip
        return [alert] if alert is not None else []

    # -- shed, orders, views -------------------------------------------------------------------

    def forget_firm(self, firm_id: str) -> None:
        """Evaluate `firm`'s rules again at its next reading of any day (its orders changed its thresholds)."""
        self.thresholds.forget_firm(self.ledger, firm_id)

    def shed_for(self, day: dt.date) -> tuple[ShedEntry, ...]:
        """`shed` of a township alert about `day`: () when `day` is over (whom to call now is not a question
        about a finished day); computed once per reading."""
        now = self.now
        assert now is not None
        if day < self.calendar.day_of(now):
            return ()
        if self._shed is None:
            self._shed = self.shed(now)
        return self._shed

    def cut_off(self, day: dt.date) -> set[str]:
        """The firms cut off on `day`: under an open order (pending included) from its first day to its `until`."""
        return cut_off_on(self.orders.values(), day)

    def shed(self, now: Micros) -> tuple[ShedEntry, ...]:
        """Up to five firms allowed to run today, not rota-exempt, largest trailing-hour use first."""
        today = self.calendar.day_of(now)
        cut = self.cut_off(today)
        ranked = []
        for firm_id, wh in self.trailing.firms_wh(now).items():
            firm = self.firms[firm_id]
            if wh > 0 and not firm.rota_exempt and self.plan.allowed_to_run(firm, today, cut):
                ranked.append((-wh, firm_id))
        ranked.sort()
        return tuple(ShedEntry(f, self.firms[f].name, kwh(-neg)) for neg, f in ranked[:_SHED_MAX])

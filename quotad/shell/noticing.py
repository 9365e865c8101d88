"""The daemon's notices (SPEC "Notices and channels"), mixed into it: tomorrow's rota at `notices.tomorrow_at` and
the residents' experience days, each once, on MQTT (`P/T/notices`) and to the channels; a courier per channel
(`quotad.shell.delivery`) started with the sinks; a cutoff notice delivered to its firm marking the order notified
(已通知), in the transaction that takes it off its queue."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from quotad.core.errors import QuotadError, StoreError
from quotad.core.notices import Notice, residents_notices, rota_notices
from quotad.core.views import event_now, residents_notice, rota_notice
from quotad.shell.delivery import Courier

if TYPE_CHECKING:
    from quotad.config.daemon import DaemonSettings
    from quotad.shell.journal import Journal
    from quotad.shell.store import Store

__all__ = ["Noticing", "notified_command"]

log = logging.getLogger("quotad.shell.daemon")


class Noticing:
    """Mixed into the daemon, which owns the attributes below."""

    journal: Journal
    store: Store
    settings: DaemonSettings
    prefix: str | None
    wakes: dict[str, asyncio.Event]
    _tasks: list[asyncio.Task[None]]
    couriers: dict[str, Courier]

    if TYPE_CHECKING:

        def _commanded(self, body: dict[str, Any], outcome: dict[str, Any], seq: int) -> None: ...

    def _start_couriers(self) -> None:
        """A courier for each of the daemon file's channels; notices queued for a channel it no longer has are
        kept (and said), delivered once it is configured again."""
        for channel in self.settings.channels:
            courier = Courier(channel, self.store, self.settings.state_dir / "reports", done=self._delivered)
            self.couriers[channel.name] = courier
            self.wakes[courier.sink] = courier.wake
            courier.wake.set()
            self._tasks.append(asyncio.create_task(courier.run(), name=f"channel {channel.name}"))
        for name, waiting in self.store.channel_backlogs().items():
            if name not in self.couriers:
                log.warning("%d notice(s) wait for channel %s, which the daemon file no longer has: kept until it "
                            "has again", waiting, name)  # fmt: skip

    def _delivered(self, notice: Notice, acknowledge: Callable[[], None]) -> None:
        """Off its queue; a cutoff notice delivered to its firm's channel marks the order notified, in the same
        transaction (so that a crash between the two neither sends it again nor leaves the order issued)."""
        command = notified_command(self.journal, notice)
        if command is None:
            acknowledge()
            return
        try:
            with self.store.batch():
                acknowledge()
                outcome = self.journal.record_command(command)
                seq = self.journal.last_event
        except StoreError:
            raise  # nothing of it written: tried again (`durably`)
        except QuotadError as exc:
            log.warning("notice %s delivered; order of %s not marked notified: %s", notice.id, notice.firm, exc)
            acknowledge()
            return
        self._commanded(command, outcome, seq)

    def _notices(self, now: int, day: dt.date) -> None:
        """Tomorrow's rota once `notices.tomorrow_at` has passed (local event time), the residents' experience day
        the evening before and at 07:00: each once."""
        journal, prefix = self.journal, self.prefix
        if prefix is None and not journal.channels:
            return
        engine = journal.engine
        local = engine.calendar.local(now)
        tomorrow = day + dt.timedelta(days=1)
        if local.strftime("%H:%M") >= self.settings.notices.tomorrow_at and tomorrow in engine.plan.control:
            if not journal.noticed(f"rota:{tomorrow}"):
                message = rota_notice(engine, prefix, tomorrow) if prefix else None
                journal.record_notice(
                    f"rota:{tomorrow}", message, rota_notices(engine, tomorrow, event_now(engine, now))
                )
            self._residents(tomorrow, "eve")
        if local.hour >= 7:
            self._residents(day, "morning")
        for name, wake in self.wakes.items():
            if name == "mqtt" or name.startswith("channel:"):
                wake.set()

    def _residents(self, day: dt.date, when: str) -> None:
        journal, prefix = self.journal, self.prefix
        engine = journal.engine
        hours = engine.plan.residents_hours(day)
        key = f"residents:{day}:{when}"
        if not hours or journal.noticed(key):
            return
        message = residents_notice(engine, prefix, day, hours, when) if prefix else None
        journal.record_notice(key, message, residents_notices(engine, day, hours, when))


def notified_command(journal: Journal, notice: Notice) -> dict[str, Any] | None:
    """The command that marks an order notified because its cutoff notice reached the firm's channel; None unless
    that order still stands issued (notified by hand, executed, lifted meanwhile: nothing to mark)."""
    if notice.kind != "cutoff" or not notice.to_firm or notice.firm is None:
        return None
    order = journal.engine.orders.get(notice.firm)
    if order is None or order.alert_id != notice.alert_id or order.state != "issued":
        return None
    at = dt.datetime.now(journal.policy.township.tz).isoformat(timespec="seconds")
    reason = f"停电通知书已送达渠道 {notice.channel}"
    return {"kind": "order", "action": "notified", "firm": notice.firm, "by": "quotad", "reason": reason, "at": at,
            "id": f"notified:{notice.id}"}  # fmt: skip

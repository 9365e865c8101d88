"""Notices delivered on their channels (SPEC "Notices and channels"): one courier per channel, each with its own
queue in the durable outbox (sink `channel:<name>`).

- In order, one at a time, never lost: a notice leaves its queue only once the channel said it was delivered; a
  failure keeps it first in line and it is tried again with bounded backoff (1 s doubling to 30 s; a minute after
  the channel's rate-limit reply or a refusal such as a wrong key, which only the operator can fix: the notices wait
  for them, and `quotad notify test` says what the channel answers).
- Never twice for one id: the queue is acknowledged before the next send (and while the state directory refuses the
  write, nothing else is sent); the id is the webhook's `Idempotency-Key` and the email's Message-ID, so that a
  notice in flight when the daemon is killed, sent again at the next start, is recognised by a receiver that keeps
  its keys. The robots (企业微信, 钉钉) have no such key: that one notice may reach their group twice.
- Within the channel's rate limit: at most `per_minute` sends in any minute (企业微信 and 钉钉 robots take 20).
- A dead channel holds back nothing else: each courier is its own task, each send runs on a thread of its own (not
  the loop's shared executor, which the InfluxDB sink writes with), and the MQTT and InfluxDB sinks have their own
  queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path

from quotad.config.channels import Channel, EmailChannel
from quotad.core.notices import Notice
from quotad.shell.channels import Attachment, Message, Outcome, send
from quotad.shell.outbox import channel_sink
from quotad.shell.pacing import Backoff
from quotad.shell.sinks import durably
from quotad.shell.store import Store

__all__ = ["Courier"]

log = logging.getLogger(__name__)
RATE_CODES = frozenset({"45009", "130101", "429"})  # "too many, later": 企业微信, 钉钉, HTTP
REFUSED_WAIT_S = 60.0

Done = Callable[[Notice, Callable[[], None]], None]


class Courier:
    """Delivers the queue of one channel. `done(notice, acknowledge)` is called once a notice is delivered and
    must call `acknowledge` (the daemon does so in the transaction that records what the delivery means: a cutoff
    notice delivered to its firm marks the order notified)."""

    def __init__(
        self,
        channel: Channel,
        store: Store,
        reports: Path,
        *,
        done: Done | None = None,
        window_s: float = 60.0,
        sender: Callable[[Channel, Message], Outcome] = send,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel, self.store, self.reports = channel, store, reports
        self.sink = channel_sink(channel.name)
        self.done: Done = done or (lambda _notice, acknowledge: acknowledge())
        self.per_window, self.window_s = channel.per_minute, window_s
        self.sender, self.sleep, self.clock = sender, sleep, clock
        self.wake = asyncio.Event()
        self.sent: deque[float] = deque()  # when the last sends were made (the rate limit's window)
        self.backoff = Backoff(1.0, 30.0)
        self.trouble: Outcome | None = None  # the failure said, until the channel delivers again
        self.delivered = 0

    async def run(self) -> None:
        while True:
            items = self.store.pending(self.sink, limit=1)
            if not items:
                self.wake.clear()
                await self.wake.wait()
                continue
            item = items[0]
            notice = Notice.from_json(item.body)
            await self._room()
            message = self._message(notice)
            self.sent.append(self.clock())
            try:
                outcome = await self._sent(message)
            except Exception as exc:  # the channel's files unreadable since the start, a sender's own fault: kept
                outcome = Outcome(False, False, type(exc).__name__, str(exc))  # and said, as the channel's refusal
            if not outcome.delivered:
                await self.sleep(self._failed(notice, outcome))
                continue
            if self.trouble is not None:
                log.info("channel %s delivers again (%s)", self.channel.name, outcome)
                self.trouble = None
            self.backoff.reset()
            acknowledge = partial(self.store.acknowledge, self.sink, [item.seq])
            await durably(partial(self.done, notice, acknowledge))
            self.delivered += 1

    async def _sent(self, message: Message) -> Outcome:
        """Send on a thread of this courier's own (a daemon thread: a send hung until its timeout never holds back
        the shared executor the InfluxDB sink writes with, nor another channel, nor the daemon's exit)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()

        def settle(outcome: Outcome | None, error: BaseException | None) -> None:
            if future.done():
                return  # the courier was cancelled meanwhile
            if error is not None:
                future.set_exception(error)
            else:
                assert outcome is not None
                future.set_result(outcome)

        def work() -> None:
            outcome: Outcome | None = None
            error: BaseException | None = None
            try:
                outcome = self.sender(self.channel, message)
            except Exception as exc:  # a sender's own fault: raised in the courier, where it is logged
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits for it
                loop.call_soon_threadsafe(settle, outcome, error)

        threading.Thread(target=work, name=f"channel {self.channel.name}", daemon=True).start()
        return await future

    async def _room(self) -> None:
        """Wait until one more send stays within `per_window` sends in any `window_s`."""
        while len(self.sent) >= self.per_window:
            wait = self.sent[0] + self.window_s - self.clock()
            if wait <= 0:
                self.sent.popleft()
                continue
            await self.sleep(wait)

    def _failed(self, notice: Notice, outcome: Outcome) -> float:
        """Say the failure once per outage (and again when the channel answers otherwise); how long to wait."""
        name = self.channel.name
        if self.trouble is None or (self.trouble.code, self.trouble.retry) != (outcome.code, outcome.retry):
            waiting = self.store.backlog(self.sink)
            if outcome.retry:
                log.warning("channel %s: %s; %d notice(s) wait, %s first, tried again with backoff",
                            name, outcome, waiting, notice.id)  # fmt: skip
            else:
                log.error(
                    "channel %s refused %s: %s; %d notice(s) wait and are tried again every minute: check the channel "
                    "(quotad notify test --channel %s)", name, notice.id, outcome, waiting, name,
                )  # fmt: skip
        self.trouble = outcome
        if outcome.code in RATE_CODES or not outcome.retry:
            return REFUSED_WAIT_S
        return self.backoff.next()

    def _message(self, notice: Notice) -> Message:
        attachments: list[Attachment] = []
        if isinstance(self.channel, EmailChannel):
            for name in notice.files:
                try:
                    attachments.append(Attachment(name, (self.reports / Path(name).name).read_bytes()))
                except OSError as exc:
                    log.warning("notice %s: attachment %s left out: %s", notice.id, name, exc)
        return Message(notice.id, notice.kind, notice.title, notice.text, tuple(attachments), _extra(notice))


def _extra(notice: Notice) -> tuple[tuple[str, object], ...]:
    """A webhook's JSON gets what a receiver keys on: the firm, the order, the files."""
    extra: Sequence[tuple[str, object]] = [("firm", notice.firm), ("alert_id", notice.alert_id)]
    if notice.files:
        extra = [*extra, ("files", list(notice.files))]
    return tuple((key, value) for key, value in extra if value is not None)

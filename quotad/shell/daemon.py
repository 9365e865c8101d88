"""`quotad run`: the daemon. Meters in, the same core as `replay`, alerts and points out, nothing lost.

One asyncio loop. The sources (built from the policy by `quotad.meters.registry`: the Modbus poller, the MQTT
meters) put readings in the inbox; the ingest loop (`quotad.shell.ingest`) hands each to the journal (engine +
durable log + outboxes, one transaction); the sinks deliver the outboxes; apscheduler's
asyncio scheduler runs the timed work on a one-second tick (day rollover, notices, statuses, operators'
requests, the systemd watchdog) and snapshots. SIGHUP reloads the policy (a broken one is refused and the
running one kept); SIGTERM stops cleanly: the outboxes flushed as far as the peers allow, `offline` said.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import faulthandler
import gc
import logging
import os
import signal
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from quotad.config.load import Loaded, load
from quotad.core.engine import Engine
from quotad.core.errors import ConfigError, QuotadError, StoreError
from quotad.core.outputs import Message, topic
from quotad.core.policy import Policy
from quotad.core.views import event_now, systemd_status
from quotad.meters.registry import build_sources
from quotad.meters.source import Context, Source
from quotad.schedule.calendar import to_micros
from quotad.shell.authority import own_retained
from quotad.shell.clock import Clock, shared_anchor
from quotad.shell.commanding import Commanding
from quotad.shell.delivery import Courier
from quotad.shell.inbox import Inbox
from quotad.shell.ingest import Ingesting, retry_backoff
from quotad.shell.journal import Journal
from quotad.shell.memory import settle_memory
from quotad.shell.morning import MorningReport
from quotad.shell.noticing import Noticing
from quotad.shell.notify import notify, watchdog_interval_s
from quotad.shell.pacing import Tally
from quotad.shell.sinks import InfluxSink, MqttSink
from quotad.shell.snapshots import Snapshotter
from quotad.shell.statuses import Publishing
from quotad.shell.store import DaemonLock, Store

if TYPE_CHECKING:
    from quotad.web.app import Console

__all__ = ["Daemon", "DaemonLock"]

log = logging.getLogger(__name__)


class Daemon(Ingesting, Publishing, Commanding, Noticing):
    def __init__(self, loaded: Loaded, config_path: Path) -> None:
        if loaded.daemon is None:
            msg = f"{config_path} is a policy file: `quotad run` needs the daemon file that names it"
            raise QuotadError(msg)
        self.loaded, self.config_path, self.settings = loaded, config_path, loaded.daemon
        for warning in loaded.warnings:
            log.warning("%s", warning)
        try:
            self.store = Store(self.settings.state_dir)
        except (OSError, sqlite3.Error) as exc:
            msg = f"cannot open the state in {self.settings.state_dir}: {exc}"
            raise QuotadError(msg) from exc
        self.lock = DaemonLock(self.settings.state_dir)
        if not self.lock.acquire():
            msg = f"another quotad runs on {self.settings.state_dir} (it holds {self.lock.path})"
            raise QuotadError(msg)
        self.clock = self._clock()
        mqtt = self.settings.mqtt
        self.prefix = mqtt.topic_prefix if mqtt else None
        self.journal = self._journal(loaded.policy)
        self.snapshots = Snapshotter(lambda: self.journal, lambda: self.trouble is None)
        self.inbox: Inbox | None = None  # made by `run`, on its loop
        self.rejected: Tally[str] = Tally()  # readings refused, per meter
        self.sources: list[Source] = []  # made by `run`, on its loop
        self.where: dict[str, str] = {}  # where each meter is read, for the log lines that name it
        # A write the state directory refused (a full disk): set until a write succeeds again; meanwhile readings
        # stay unacknowledged, the writes are tried again with backoff, and the daemon says why it is degraded.
        self.trouble: StoreError | None = None
        self._retry_at, self._retry, self._commits_then = 0.0, retry_backoff(), 0
        self._said_ready = False
        self._settles = 0
        self._status_sent: dict[str, tuple[str, float]] = {}
        self._dirty: set[str] = {firm.id for firm in loaded.policy.firms}  # every status built at the first tick
        self._resend: deque[tuple[float, str]] = deque()
        self._day: dt.date | None = None
        self._stop = asyncio.Event()
        self.exit_code = 0
        self._reload = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.morning = MorningReport(self.settings.state_dir, config_path)
        self.mqtt_sink: MqttSink | None = None
        self.influx_sink: InfluxSink | None = None
        self.wakes = {"mqtt": asyncio.Event(), "influx": asyncio.Event()}  # and one per channel's courier
        self.couriers: dict[str, Courier] = {}
        self.console: Console | None = None  # `[web]`: started by `run`, on its loop

    def _journal(self, policy: Policy) -> Journal:
        journal = Journal(self.store, policy, self.prefix, self.settings.influx is not None)
        journal.channels = frozenset(channel.name for channel in self.settings.channels)
        journal.auto_snapshot = False  # the daemon snapshots off the ingest path (`Snapshotter`)
        return journal

    def _clock(self) -> Clock:
        configured = self.settings.clock
        if configured is None:
            return Clock()
        start = to_micros(configured.start)
        return Clock(start, configured.speed, shared_anchor(self.settings.state_dir / "clock.json", start))

    # -- life cycle ----------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.inbox = Inbox()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)
        # The brokers are joined while the journal is restored (the sink's paho thread; the meter source's first
        # connect on a worker thread, its CONNACK read once the loop runs); the tasks that use the engine start
        # after the restore. Meanwhile readings wait in the inbox (the meter source holds back when it is full).
        self._start_sinks()
        self._start_sources(self.inbox)
        started = time.monotonic()
        replayed = self.journal.restore()
        log.info("state restored from %s: %d journal events replayed in %.2f s",
                 self.store.path, replayed, time.monotonic() - started)  # fmt: skip
        self.snapshots.covered = self.journal.last_event - replayed
        settle_memory()
        scheduler = AsyncIOScheduler()
        scheduler.add_job(self._tick, "interval", seconds=1, max_instances=1, coalesce=True, id="tick")
        scheduler.add_job(self._snapshot_tick, "interval", minutes=5, max_instances=1, coalesce=True, id="snapshot")
        scheduler.start()
        self._tasks.append(asyncio.create_task(self._ingest(), name="ingest"))
        # READY=1 once the meters are subscribed; meanwhile enforcement runs and a stop is heard at once
        self._tasks.append(asyncio.create_task(self._ready(), name="ready"))
        self._tasks.append(asyncio.create_task(self._own_retained(), name="retained"))
        await self._start_console()
        while not self._stop.is_set():
            waiters = [asyncio.create_task(self._stop.wait()), asyncio.create_task(self._reload.wait())]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
            if self._reload.is_set() and not self._stop.is_set():
                self._reload.clear()
                # read and validated on a worker thread (0.3 s for 10,000 meters): meanwhile the loop ingests and
                # pings the watchdog; only the swap of engines is on the loop
                loaded = await asyncio.to_thread(self._read_policy)
                if loaded is not None and not self._stop.is_set() and self.reload(loaded):
                    self.snapshots.start()  # the point from which a restart replays under the new policy
        scheduler.shutdown(wait=False)
        await self._shutdown()
        return self.exit_code

    async def _ready(self) -> None:
        await asyncio.gather(*(source.ready(30.0) for source in self.sources))
        if self.mqtt_sink is not None and self.prefix is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.mqtt_sink.connected.wait(), 10.0)
        self._said_ready = True
        self._say_state()
        notify("READY=1")
        log.info("quotad serving %s: %d meters", self.journal.policy.township.id, len(self.journal.policy.meters))

    async def _own_retained(self) -> None:
        """What is retained under the prefix made what the journal says, once connected (quotad.shell.authority)."""
        if self.mqtt_sink is not None and self.settings.mqtt is not None and self.prefix is not None:

            def now() -> tuple[Engine, dt.date]:
                return self.journal.engine, self.journal.engine.calendar.day_of(self.clock.now())

            if await own_retained(self.mqtt_sink, self.settings.mqtt, self.prefix, now):
                self._statuses_afresh()  # and the statuses published afresh at the next tick

    def _start_sinks(self) -> None:
        if self.settings.mqtt is not None and self.prefix is not None:
            self.mqtt_sink = MqttSink(self.settings.mqtt, self.store, self._topic("daemon"))
            self.mqtt_sink.start()
            self._tasks.append(asyncio.create_task(self.mqtt_sink.deliver(self.wakes["mqtt"]), name="mqtt sink"))
        if self.settings.influx is not None:
            self.influx_sink = InfluxSink(self.settings.influx, self.store)
            self._tasks.append(asyncio.create_task(self.influx_sink.deliver(self.wakes["influx"]), name="influx sink"))
        self._start_couriers()
        for wake in self.wakes.values():
            wake.set()

    def _start_sources(self, inbox: Inbox) -> None:
        """The policy's meters read by the sources its meters' kinds name (quotad.meters.registry), on this loop."""
        policy, loop = self.journal.policy, asyncio.get_running_loop()
        self.sources = build_sources(policy.meters, Context(policy, self.settings.mqtt, self.clock, inbox))
        for source in self.sources:
            self.where.update(source.where)
            self._tasks += source.start(loop)

    async def _shutdown(self) -> None:
        notify("STOPPING=1")
        faulthandler.dump_traceback_later(15, exit=False)  # a stop that hangs says where, in the journal
        if self.console is not None:
            await self.console.stop()
        log.info("stopping: no more readings; flushing the outboxes for up to 3 s")
        if self.inbox is not None:
            self.inbox.closed = True  # what is read from now on stays unacknowledged: the broker keeps it
        for source in self.sources:
            source.stop()
            log.info("stopping: source %s", source.status())
        await self._drain(3.0)
        if self.snapshots.task is not None:  # one under way is superseded by the last one, below
            self._tasks.append(self.snapshots.task)
        if self.morning.task is not None:  # the morning's report: its child is killed, written again next time
            self._tasks.append(self.morning.task)
        for task in self._tasks:
            task.cancel()
        _done, pending = await asyncio.wait(self._tasks, timeout=5.0) if self._tasks else (set(), set())
        if pending:  # seen under heavy load (a library swallowing the cancellation): name it, go on
            log.warning(
                "stopping: %s did not end within 5 s of being cancelled", ", ".join(t.get_name() for t in pending)
            )
        backlog = {sink: self.store.backlog(sink) for sink in ("mqtt", "influx")}
        if any(backlog.values()):
            log.info("stopping: %s left in the outboxes, delivered at the next start", backlog)
        self.snapshots.now()
        if self.mqtt_sink is not None:
            await self.mqtt_sink.stop()
        self.store.close()
        self.lock.release()
        faulthandler.cancel_dump_traceback_later()
        log.info("quotad stopped")

    async def _drain(self, limit_s: float) -> None:
        """Give the ingest loop and the sinks up to `limit_s` to empty the queue and the outboxes."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            reachable = []  # an outbox whose peer is down cannot drain now: it waits for the next start
            if self.mqtt_sink is not None and self.mqtt_sink.connected.is_set():
                reachable.append("mqtt")
            if self.influx_sink is not None and not self.influx_sink.down:
                reachable.append("influx")
            if not len(self.inbox or ()) + sum(self.store.backlog(sink) for sink in reachable):
                return
            await asyncio.sleep(0.05)

    # -- a state directory that refuses writes (the batches and their faults: quotad.shell.ingest) ---------------

    def _rebuild(self) -> None:
        """The engine as the journal has it: the latest snapshot and the events after it."""
        journal = self._journal(self.journal.policy)
        journal.restore()
        self.journal = journal

    async def _snapshot_tick(self) -> None:
        self.snapshots.start()
        self._settles += 1
        settle_memory(full=self._settles % 12 == 0)  # what lived 5 minutes settled; hourly, all looked at again

    def _trouble_text(self) -> str:
        """What the daemon topic and systemd's STATUS= say while writes are refused."""
        assert self.trouble is not None
        if self.trouble.full:
            return f"磁盘已满，读数暂不入账 (disk full: {self.settings.state_dir})"
        return f"状态目录无法写入，读数暂不入账 ({self.trouble})"

    def _say_state(self) -> None:
        """The retained daemon topic: `online`, or `degraded: ...` while writes are refused (once ready)."""
        if not self._said_ready or self.mqtt_sink is None or self.prefix is None:
            return
        payload = "online" if self.trouble is None else f"degraded: {self._trouble_text()}"
        self.mqtt_sink.say(Message(self._topic("daemon"), payload, retain=True))

    # -- the tick ------------------------------------------------------------------------------

    async def _tick(self) -> None:
        if self._stop.is_set():
            return  # stopping: the store is about to close
        now = self.clock.now()
        engine = self.journal.engine
        day = engine.calendar.day_of(now)
        if self.trouble is None or time.monotonic() >= self._retry_at:
            try:
                self._journaled_work(now, day)
            except StoreError as exc:
                self._refused(exc)
            else:
                if self.trouble is not None and self.store.commits > self._commits_then:
                    self._written()
        try:
            await self._statuses(now)
        except asyncio.CancelledError:
            if self._stop.is_set():  # the loop ends under a tick waiting for the broker's acknowledgements: it
                return  # ends with it (apscheduler would log the cancellation as the job's traceback)
            raise
        engine = self.journal.engine
        status = systemd_status(engine, event_now(engine, now))
        if self.rejected:
            refused, meters = self.rejected.total, len(self.rejected)
            status += f"; readings refused: {refused} from {meters} meter(s), see the log"
        if self.trouble is not None:
            status = f"DEGRADED, {self._trouble_text()}; {status}"
        notify(f"WATCHDOG=1\nSTATUS={status}")

    def _journaled_work(self, now: int, day: dt.date) -> None:
        """The tick's writes: the day's rollover, the notices, the operators' requests."""
        if day != self._day:
            for order in self.journal.record_order_ends(day):
                log.info("the cutoff order of %s ended on %s", order.firm, order.until)
                self.wakes["influx"].set()
            if self._day is not None:
                log.info("a new day: %s", day)
            self._day = day  # once its writes are done: a refused one is tried again at the next tick
            self._statuses_afresh()  # publish everything afresh
        self._notices(now, day)
        self.morning.due(self.journal, event_now(self.journal.engine, now))
        self._requests()

    # -- reload --------------------------------------------------------------------------------

    def _read_policy(self) -> Loaded | None:
        """The edited files, validated through the one path (`quotad.config.load`); None, with the problems
        logged, when they are refused. Touches nothing of the daemon's: it may run on a worker thread."""
        try:
            return load(self.config_path)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused: %s", problem)
            log.error("the running policy is kept")
            return None

    def reload(self, loaded: Loaded | None = None) -> bool:
        """SIGHUP: take the edited policy if it is valid (`loaded`, or read now); otherwise log why and keep the
        running one. The engine's state carries over (SPEC, "Reload"): the new engine is built from it, nothing is
        replayed. True when taken (the caller then snapshots: a restart replays under the new policy only what
        follows)."""
        if loaded is None and (loaded := self._read_policy()) is None:
            return False
        for warning in loaded.warnings:  # a slip is the operator's to judge: the policy is taken, and they are told
            log.warning("%s", warning)
        started = time.monotonic()
        self.journal = self.journal.reloaded(loaded.policy)
        gc.unfreeze()  # the old engine is garbage now: collected as usual, then the new one settled
        with contextlib.suppress(RuntimeError):  # no loop: a reload outside the daemon's run (tests)
            asyncio.get_running_loop().call_later(10.0, settle_memory)
        self._statuses_afresh()
        log.info("policy reloaded from %s", loaded.policy_path)
        log.info("reload: the state of %d meters carried over in %.3f s", len(loaded.policy.meters),
                 time.monotonic() - started)  # fmt: skip
        if _how_read(loaded) != _how_read(self.loaded):  # multipliers, limits, firms take effect at once
            log.warning("the meters changed: restart quotad for the new meters to be read")
        self.loaded = loaded
        return True

    def _topic(self, *parts: str) -> str:
        assert self.prefix is not None
        return topic(self.prefix, self.journal.policy.township.id, *parts)


def _how_read(loaded: Loaded) -> list[dict[str, object]]:
    """Which meters are read, and how: what the running sources were built from."""
    return [m.model_dump(include={"id", "source"}) for m in loaded.policy.meters]


def run(loaded: Loaded, config_path: Path) -> int:
    """Entry point of `quotad run`."""
    try:
        daemon = Daemon(loaded, config_path)
    except QuotadError as exc:
        log.error("%s", exc)
        return 1
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per job run is noise in the journal
    interval = watchdog_interval_s()
    if interval is not None:
        log.info("systemd watchdog: pinging every %.1f s at most", min(interval, 1.0))
    code = asyncio.run(daemon.run())
    _bounded_exit(code)
    return code


def _bounded_exit(code: int, limit_s: float = 10.0) -> None:
    """Everything is durable once the daemon stopped; if the interpreter's teardown (joining worker threads)
    then hangs, exit anyway rather than leave systemd to kill us."""

    def force() -> None:
        log.error("exiting took more than %.0f s (a worker thread did not end): exiting now", limit_s)
        faulthandler.dump_traceback()
        os._exit(code)

    timer = threading.Timer(limit_s, force)
    timer.daemon = True
    timer.start()

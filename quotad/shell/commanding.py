"""People's commands carried out by the running daemon, mixed into it: those the CLI files as requests
(`quotad.commands.orders`), picked up at each tick, and those given on the console (`quotad.web`), carried out at
once. Either way journaled once per command id (`quotad.shell.actions`), the sinks woken, the console told of the
alerts raised."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, cast

from quotad.core.errors import QuotadError, StoreError, UsageError

if TYPE_CHECKING:
    from quotad.config.daemon import DaemonSettings
    from quotad.shell.daemon import Daemon
    from quotad.shell.journal import Journal
    from quotad.shell.store import Store
    from quotad.web.app import Console

__all__ = ["Commanding"]

log = logging.getLogger("quotad.shell.daemon")  # the daemon's log lines, as they were


class Commanding:
    """Mixed into the daemon, which owns the attributes below."""

    journal: Journal
    store: Store
    settings: DaemonSettings
    wakes: dict[str, asyncio.Event]
    console: Console | None
    _dirty: set[str]

    async def _start_console(self) -> None:
        """The console, when `[web]` is set. One that cannot listen is said in the log and left out: enforcement
        goes on without it."""
        if self.settings.web is None:
            return
        from quotad.web.app import Console

        console = Console(cast("Daemon", self))  # mixed into the daemon: `self` is one
        try:
            await console.start()
        except OSError as exc:
            log.error("the console is not served: cannot listen on %s: %s", self.settings.web.listen, exc)
            await console.stop()
            return
        self.console = console

    def _requests(self) -> None:
        """People's commands filed while the daemon runs (`quotad.commands.orders`), carried out in order; each
        and its answer journaled together or not at all."""
        for request, body in self.store.open_requests():
            try:
                with self.store.batch():
                    outcome = self.journal.record_command(body)
                    self.store.finish_request(request, outcome)
                    seq = self.journal.last_event
            except (QuotadError, KeyError, TypeError) as exc:
                if isinstance(exc, StoreError):
                    raise  # the disk refused: the request stays open, tried again at the next tick
                text = str(exc.args[0]) if isinstance(exc, KeyError) else str(exc)
                self.store.finish_request(request, {"ok": False, "error": text, "usage": isinstance(exc, UsageError)})
                continue
            self._commanded(body, outcome, seq)

    def perform(self, body: dict[str, Any]) -> dict[str, Any]:
        """Carry out a person's command given on the console, as `_requests` does one filed by the CLI: journaled
        once per command id (`quotad.shell.actions`). Raises OrderError for an impossible change (nothing done),
        StoreError when the state directory refused the write (nothing done either)."""
        with self.store.batch():
            outcome = self.journal.record_command(body)
            seq = self.journal.last_event
        self._commanded(body, outcome, seq)
        return outcome

    def _commanded(self, body: dict[str, Any], outcome: dict[str, Any], seq: int) -> None:
        log.warning("%s", _said(body, outcome))
        self._dirty.add(str(body.get("firm")))  # its order, its state: its status built again
        for wake in self.wakes.values():
            wake.set()
        if self.console is not None:
            event = next(self.store.events(seq - 1), None)
            if event is not None and event.seq == seq and event.body.get("id") == body.get("id"):
                self.console.alerts(list(event.body.get("alerts") or ()))


def _said(body: dict[str, Any], outcome: dict[str, Any]) -> str:
    """A command carried out, for the log: who did what to which firm, and why."""
    what = body.get("action") or body.get("kind")
    why = body.get("reason") or body.get("note") or body.get("finding") or ""
    state = f" -> {outcome['state']}" if "state" in outcome else ""
    return f"{what} {body.get('firm')}{state} by {body.get('by')}: {why}"

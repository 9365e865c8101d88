"""People's commands on orders, talks and visits, whether the daemon runs or not (SPEC "The enforcement loop").

With the daemon stopped, the command holds the daemon lock, rebuilds the engine from the journal, carries the
command out and journals it with its outbox rows: the daemon delivers them when it starts. With the daemon running,
the command files a request in the state database and waits for the daemon to carry it out the same way
(`quotad.shell.actions`). Either way it happens once: the command carries an id, journaled with it.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import time
import uuid
from typing import Any

from quotad.config.load import Loaded
from quotad.core.errors import QuotadError, UsageError
from quotad.core.i18n import _
from quotad.core.orders import OrderError
from quotad.shell.journal import Journal
from quotad.shell.store import DaemonLock, Store

__all__ = ["carry_out", "command", "default_by"]


def default_by() -> str:
    """Who gives a command when `--by` is not given: the Unix user (the one behind sudo)."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def command(loaded: Loaded, kind: str, firm: str, by: str | None, **fields: Any) -> dict[str, Any]:
    """A command for `quotad.shell.actions`, checked as far as the policy can tell; raises UsageError."""
    if firm not in {f.id for f in loaded.policy.firms}:
        raise UsageError(_("unknown firm {firm!r}").format(firm=firm))
    for name in ("reason", "note"):
        if name in fields and not str(fields[name]).strip():
            raise UsageError(_("--{name} must say why").format(name=name))
    at = dt.datetime.now(loaded.policy.township.tz).isoformat(timespec="seconds")
    who = (by or "").strip() or default_by()
    return {"kind": kind, "firm": firm, "by": who, "at": at, "id": uuid.uuid4().hex, **fields}


def carry_out(loaded: Loaded, body: dict[str, Any], wait_s: float = 15.0) -> tuple[dict[str, Any], bool]:
    """Carry out `body` (from `command`); (its outcome, whether the running daemon carried it out). Raises
    OrderError (exit 2) for an impossible change, QuotadError for a daemon that did not answer."""
    settings = loaded.daemon
    if settings is None:
        msg = _("this command needs the daemon file (-c quotad.toml): the orders live in its state_dir")
        raise UsageError(msg)
    store = Store(settings.state_dir)
    lock = DaemonLock(settings.state_dir)
    try:
        if lock.acquire():
            try:
                return _offline(store, loaded, body), False
            finally:
                lock.release()
        return _online(store, body, wait_s), True
    finally:
        store.close()


def _offline(store: Store, loaded: Loaded, body: dict[str, Any]) -> dict[str, Any]:
    mqtt = loaded.daemon.mqtt if loaded.daemon else None
    influx = bool(loaded.daemon and loaded.daemon.influx)
    journal = Journal(store, loaded.policy, mqtt.topic_prefix if mqtt else None, influx)
    if loaded.daemon is not None:  # notices queued for the channels wait there for the daemon
        journal.channels = frozenset(channel.name for channel in loaded.daemon.channels)
    journal.restore()
    return journal.record_command(body)


def _online(store: Store, body: dict[str, Any], wait_s: float) -> dict[str, Any]:
    request = store.request(body)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        outcome = store.outcome(request)
        if outcome is not None:
            if not outcome.get("ok"):
                error = str(outcome.get("error"))
                raise OrderError(error) if outcome.get("usage") else QuotadError(error)
            return outcome
        time.sleep(0.1)
    msg = _(
        "the running daemon did not answer within {seconds:.0f} s; the request stays filed and will be carried out"
    ).format(seconds=wait_s)
    raise QuotadError(msg)

"""`quotad order lift FIRM --reason TEXT`, whether the daemon runs or not. Lifting is recorded, never silent.

With the daemon stopped, the command holds the daemon lock, rebuilds the engine from the journal, lifts the
order and journals the lift with its outbox rows (the cleared retained order, a `cutoff_order` point with
`lifted`): the daemon delivers them when it starts. With the daemon running, the command files a request
in the state database and waits for the daemon to carry it out the same way.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import time

from quotad.config.load import Loaded
from quotad.core.errors import QuotadError, UsageError
from quotad.core.i18n import _
from quotad.shell.journal import Journal
from quotad.shell.store import DaemonLock, Store

__all__ = ["lift"]


def lift(loaded: Loaded, firm: str, reason: str, wait_s: float = 15.0) -> str:
    """Lift `firm`'s standing order; returns what happened, in a sentence. Raises QuotadError."""
    settings = loaded.daemon
    if settings is None:
        msg = _("order lift needs the daemon file (-c quotad.toml): the orders live in its state_dir")
        raise UsageError(msg)
    if not reason.strip():
        msg = _("--reason must say why the order is lifted")
        raise UsageError(msg)
    if firm not in {f.id for f in loaded.policy.firms}:
        msg = _("unknown firm {firm!r}").format(firm=firm)
        raise UsageError(msg)
    store = Store(settings.state_dir)
    by = os.environ.get("SUDO_USER") or getpass.getuser()
    at = dt.datetime.now(loaded.policy.township.tz).isoformat(timespec="seconds")
    lock = DaemonLock(settings.state_dir)
    try:
        if lock.acquire():
            try:
                return _lift_offline(store, loaded, firm, by, reason, at)
            finally:
                lock.release()
        return _lift_online(store, firm, by, reason, at, wait_s)
    finally:
        store.close()


def _lift_offline(store: Store, loaded: Loaded, firm: str, by: str, reason: str, at: str) -> str:
    mqtt = loaded.daemon.mqtt if loaded.daemon else None
    journal = Journal(
        store, loaded.policy, mqtt.topic_prefix if mqtt else None, bool(loaded.daemon and loaded.daemon.influx)
    )
    journal.restore()
    try:
        order = journal.record_lift(firm, by, reason, at)
    except KeyError:
        msg = _("no standing cutoff order for {firm!r}").format(firm=firm)
        raise QuotadError(msg) from None
    message = _("lifted the order of {firm} ({alert_id}); the daemon publishes it when it next runs")
    return message.format(firm=firm, alert_id=order.alert_id)


def _lift_online(store: Store, firm: str, by: str, reason: str, at: str, wait_s: float) -> str:
    request = store.request({"kind": "lift", "firm": firm, "by": by, "reason": reason, "at": at})
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        outcome = store.outcome(request)
        if outcome is not None:
            if not outcome.get("ok"):
                raise QuotadError(str(outcome.get("error")))
            message = _("lifted the order of {firm} ({alert_id}) through the running daemon")
            return message.format(firm=firm, alert_id=outcome.get("alert_id"))
        time.sleep(0.1)
    msg = _(
        "the running daemon did not answer within {seconds:.0f} s; the request stays filed and will be carried out"
    ).format(seconds=wait_s)
    raise QuotadError(msg)

"""The commands of the enforcement loop (SPEC "Commands"): `order ...`, `orders`, `alerts --since`, `talks add`.

Commands that change something go through `quotad.commands.orders` (the daemon running or stopped); those that read
the register open the state database read-only, beside a running daemon or after it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from quotad.commands.orders import carry_out, command
from quotad.config.foreign import os_error
from quotad.config.load import Loaded
from quotad.core.errors import QuotadError, UsageError
from quotad.core.i18n import N_, _
from quotad.core.orders import STATE_NAMES, Order

__all__ = [
    "ORDER_ACTIONS",
    "add_order_parsers",
    "add_talks_parser",
    "alerts_since",
    "firm_text",
    "open_register",
    "orders",
    "run_order",
    "talks",
]

# action -> (its help, whether --reason is required, the reason recorded when none is given)
ORDER_ACTIONS: dict[str, tuple[str, bool, str]] = {
    "confirm": (
        N_("confirm a pending order: the inspector found the violation (待核实 -> 已下达)"),
        False,
        "督查核实属实",
    ),
    "dismiss": (
        N_("dismiss a pending order: the inspector found no violation (待核实 -> 已撤销)"),
        True,
        "",
    ),
    "notified": (
        N_("the cutoff notice reached the firm, by hand (已下达 -> 已通知)"),
        False,
        "停电通知书已送达",
    ),
    "executed": (
        N_("the power supply station cut the supply off (-> 已停电)"),
        False,
        "供电所已执行停电",
    ),
    "lift": (
        N_("lift a standing cutoff order (recorded: who, when, why)"),
        True,
        "",
    ),
    "issue": (
        N_("issue an order by hand: a violation found on site, a refusal (拒不执行)"),
        True,
        "",
    ),
}


def add_order_parsers(order_sub: Any, config_option: Callable[[argparse.ArgumentParser], None]) -> None:
    for action, (help_text, required, _default) in ORDER_ACTIONS.items():
        p = order_sub.add_parser(action, help=_(help_text), description=_(help_text))
        p.add_argument("firm", help=_("the firm's id"))
        p.add_argument("--reason", required=required, help=_("why (kept in the order's history)"))
        p.add_argument("--by", help=_("who (default: the Unix user)"))
        config_option(p)


def add_talks_parser(sub: Any, config_option: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("talks", help=_("talks (约谈) held with firms"), description=_("talks (约谈) held with firms"))
    talks_sub = p.add_subparsers(dest="talks_command", required=True, metavar="ACTION")
    p = talks_sub.add_parser("add", help=_("record a talk (约谈) held with a firm"))
    p.add_argument("firm", help=_("the firm's id"))
    p.add_argument("--by", required=True, help=_("who held the talk"))
    p.add_argument("--note", required=True, help=_("what was said and agreed"))
    config_option(p)


def run_order(loaded: Loaded, action: str, firm: str, reason: str | None, by: str | None, out: TextIO) -> int:
    _help, required, default = ORDER_ACTIONS[action]
    if reason is None or (not reason.strip() and not required):
        reason = default
    if action == "issue":
        body = command(loaded, "issue", firm, by, reason=reason)
    else:
        body = command(loaded, "order", firm, by, action=action, reason=reason)
    outcome, online = carry_out(loaded, body)
    state = STATE_NAMES.get(outcome["state"], outcome["state"])
    if online:
        text = _("the order of {firm} ({alert_id}) is now {state}, through the running daemon")
    else:
        text = _("the order of {firm} ({alert_id}) is now {state}; the daemon publishes it when it next runs")
    print(text.format(firm=firm_text(loaded, firm), alert_id=outcome["alert_id"], state=state), file=out)
    return 0


def firm_text(loaded: Loaded, firm: str) -> str:
    """'盛达机电公司（shengda）': how a command names a firm back to the operator."""
    name = next((f.name for f in loaded.policy.firms if f.id == firm), firm)
    return f"{name}（{firm}）"


def talks(loaded: Loaded, firm: str, by: str, note: str, out: TextIO) -> int:
    outcome, _online = carry_out(loaded, command(loaded, "talk", firm, by, note=note))
    text = _("talk with {firm} recorded ({count} so far)")
    print(text.format(firm=firm_text(loaded, firm), count=outcome["talks"]), file=out)
    return 0


@contextmanager
def open_register(loaded: Loaded) -> Iterator[Any]:
    """The state database, read-only; UsageError when there is none to read."""
    from quotad.shell.store import Store

    if loaded.daemon is None:
        raise UsageError(_("this command needs the daemon file (-c quotad.toml): the register lives in its state_dir"))
    try:
        store = Store.read_only(loaded.daemon.state_dir)
    except OSError as exc:
        raise QuotadError(os_error(exc)) from None
    if store is None:
        raise QuotadError(_("no daemon state in {state_dir} yet").format(state_dir=loaded.daemon.state_dir))
    try:
        yield store
    finally:
        store.close()


def orders(loaded: Loaded, firm: str | None, every: bool, as_json: bool, out: TextIO) -> int:
    """The register of orders: each order as it stands now, with each change (who, when, why). Without --all, only
    the orders that stand (pending, issued, notified, executed, not ended)."""
    from quotad.shell.register import order_history

    if firm is not None and firm not in {f.id for f in loaded.policy.firms}:
        raise UsageError(_("unknown firm {firm!r}").format(firm=firm))
    with open_register(loaded) as store:
        latest: dict[str, Order] = {}
        for order in order_history(store):
            latest[order.alert_id] = order
        ended = store.ended_orders()
    shown = [o for o in latest.values() if (firm is None or o.firm == firm) and (every or _stands(o, ended))]
    if as_json:
        for order in shown:
            print(json.dumps(order.payload(), ensure_ascii=False), file=out)
        return 0
    if not shown:
        print(_("no orders") if every else _("no standing orders (--all lists the others)"), file=out)
        return 0
    for order in shown:
        state = STATE_NAMES.get(order.state, order.state)
        print(
            f"{order.firm_name}（{order.firm}）  {state}  {order.from_day} 至 {order.until}  {order.alert_id}", file=out
        )
        for change in order.history:
            when = change.at[:16].replace("T", " ")
            print(f"  {when}  {STATE_NAMES.get(change.state, change.state)}  {change.by}：{change.reason}", file=out)
    return 0


def _stands(order: Order, ended: set[str]) -> bool:
    """Open, and not ended by the daemon (which ends an order on its clock's day after `until`)."""
    return order.open and order.alert_id not in ended


def alerts_since(loaded: Loaded, since: dt.date, until: dt.date | None, firm: str | None, severity: str | None,
                 as_json: bool, out: TextIO) -> int:  # fmt: skip
    """Past alerts from the journal (no broker), in the order raised, whose event-time day is in [since, until]."""
    from quotad.commands.watch import format_alert

    last = until or dt.date.max
    if last < since:
        raise UsageError(_("--until ({until}) is before --since ({since})").format(until=until, since=since))
    shown = 0
    with open_register(loaded) as store:
        for payload in store.alert_payloads():
            day = dt.date.fromisoformat(str(payload.get("ts", ""))[:10] or "0001-01-01")
            if not since <= day <= last:
                continue
            if (firm and (payload.get("firm") or "township") != firm) or (
                severity and payload.get("severity") != severity
            ):
                continue
            out.write((json.dumps(payload, ensure_ascii=False) if as_json else format_alert(payload)) + "\n")
            shown += 1
    if not shown:
        print(_("no alerts from {since} to {until}").format(since=since, until=until or "now"), file=sys.stderr)
    return 0

"""Cutoff orders (停电令) and their life (SPEC "Orders"): states, history, the transitions people make.

An order is made `pending` (待核实) or `issued` (已下达) by a rule, or `issued` by hand; people then confirm or
dismiss a pending one, mark it notified (已通知) and executed (已停电: the 供电所 confirms the supply is off), or
lift it (已解除). Each change is kept in the order's history: its state, when (wall-clock time, as people give it;
a rule's own change carries the reading's event time), by whom, and why. `transition` is the one place that says
which change may follow which; an impossible one raises `OrderError`, in the operator's words.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Final

from quotad.core.errors import UsageError
from quotad.core.i18n import N_, _

__all__ = [
    "ACTIONS",
    "OPEN",
    "PROMOTED",
    "STATE_NAMES",
    "Change",
    "Order",
    "OrderError",
    "cut_off_on",
    "transition",
]

STATE_NAMES: Final = {
    "pending": "待核实",
    "issued": "已下达",
    "notified": "已通知",
    "executed": "已停电",
    "dismissed": "已撤销",
    "lifted": "已解除",
}
_STATE_WORDS: Final = {
    "pending": N_("pending (待核实)"),
    "issued": N_("issued (已下达)"),
    "notified": N_("notified (已通知)"),
    "executed": N_("executed (已停电)"),
    "dismissed": N_("dismissed (已撤销)"),
    "lifted": N_("lifted (已解除)"),
}
PROMOTED: Final = "/issued"  # ends the id of the alert that issues a pending order gone beyond the meters' accuracy
OPEN: Final = frozenset({"pending", "issued", "notified", "executed"})  # states in which an order stands
# command -> (the states it may follow, the state it reaches)
ACTIONS: Final[dict[str, tuple[frozenset[str], str]]] = {
    "confirm": (frozenset({"pending"}), "issued"),
    "dismiss": (frozenset({"pending"}), "dismissed"),
    "notified": (frozenset({"issued"}), "notified"),
    "executed": (frozenset({"issued", "notified"}), "executed"),
    "lift": (frozenset({"issued", "notified", "executed"}), "lifted"),
}
_HINTS: Final = {
    ("lift", "pending"): N_("a pending order is confirmed (order confirm) or dismissed (order dismiss)"),
    ("notified", "pending"): N_("confirm it first (order confirm)"),
    ("executed", "pending"): N_("confirm it first (order confirm)"),
    ("confirm", "issued"): N_("it is issued already"),
    ("dismiss", "issued"): N_("an issued order is lifted (order lift), not dismissed"),
    ("dismiss", "notified"): N_("an issued order is lifted (order lift), not dismissed"),
    ("dismiss", "executed"): N_("an issued order is lifted (order lift), not dismissed"),
}


class OrderError(UsageError):
    """A command on an order that cannot be carried out: no order, or a change its state does not allow."""


@dataclass(frozen=True, slots=True)
class Change:
    state: str
    at: str  # ISO 8601
    by: str
    reason: str

    def payload(self) -> dict[str, str]:
        return {"state": self.state, "at": self.at, "by": self.by, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Order:
    """A cutoff order (一停到底): from the violation's day to the end of the control period, unless lifted,
    dismissed or ended. `breach_from`: the first day drawing above standby is a `cutoff_breach` (the day after
    the order was issued; None while pending)."""

    firm: str
    firm_name: str
    alert_id: str
    rule: str
    issued: str  # event time of the reading that triggered it (of the command, for one made by hand)
    from_day: str
    until: str
    evidence: dict[str, Any] = field(default_factory=dict)
    state: str = "issued"
    history: tuple[Change, ...] = ()
    breach_from: str | None = None

    @property
    def open(self) -> bool:
        return self.state in OPEN

    def stands(self, day: dt.date) -> bool:
        """In force on `day`: open, and `day` not past `until` (an order that has ended silences nothing)."""
        return self.state in OPEN and day.isoformat() <= self.until

    def breach_counts(self, period: str) -> bool:
        """Whether drawing above standby on the day `period` (ISO) breaches this order."""
        return self.breach_from is not None and self.state in OPEN and self.breach_from <= period

    @property
    def last(self) -> Change | None:
        return self.history[-1] if self.history else None

    def payload(self) -> dict[str, Any]:
        return {
            "firm": self.firm,
            "firm_name": self.firm_name,
            "alert_id": self.alert_id,
            "rule": self.rule,
            "issued": self.issued,
            "from": self.from_day,
            "until": self.until,
            "evidence": self.evidence,
            "state": self.state,
            "history": [change.payload() for change in self.history],
        }


def transition(order: Order | None, action: str, firm: str, change: Change, day: dt.date) -> Order:
    """`order` after `action` (a key of ACTIONS) given as `change`, on the event-time `day`; raises OrderError
    when there is no order or its state does not allow the action."""
    if order is None:
        raise OrderError(_("{firm} has no cutoff order").format(firm=firm))
    allowed, reached = ACTIONS[action]
    if order.state not in allowed or (order.state in OPEN and not order.stands(day)):
        state = _("ended") if order.open and not order.stands(day) else _(_STATE_WORDS[order.state])
        hint = _HINTS.get((action, order.state))
        message = _("the order of {firm} ({alert_id}) is {state}: it cannot be {done}").format(
            firm=firm, alert_id=order.alert_id, state=state, done=_(_DONE[action])
        )
        raise OrderError(_("{message} ({hint})").format(message=message, hint=_(hint)) if hint else message)
    breach_from = order.breach_from
    if reached == "issued" and breach_from is None:
        breach_from = (day + dt.timedelta(days=1)).isoformat()
    return replace(
        order, state=reached, history=(*order.history, replace(change, state=reached)), breach_from=breach_from
    )


_DONE: Final = {
    "confirm": N_("confirmed"),
    "dismiss": N_("dismissed"),
    "notified": N_("marked notified"),
    "executed": N_("marked executed"),
    "lift": N_("lifted"),
}


def cut_off_on(orders: Iterable[Order], day: dt.date) -> set[str]:
    """The firms cut off on `day`: under an open order from its first day to its `until`."""
    iso = day.isoformat()
    return {order.firm for order in orders if order.stands(day) and order.from_day <= iso}

"""People's commands on orders, as the tests give them (`quotad.core.enforcement`, `quotad.shell.actions`)."""

from __future__ import annotations

import uuid
from typing import Any

from quotad.core.enforcement import command
from quotad.core.engine import Engine
from quotad.core.orders import Change, Order


def ending(order: Order) -> str:
    """The command that ends `order` as people would: dismiss a pending one, lift an issued one."""
    return "dismiss" if order.state == "pending" else "lift"


def end(
    engine: Engine, firm: str, by: str = "operator", reason: str = "复核", at: str = "2010-10-20T00:00:00+08:00"
) -> Order:
    """End `firm`'s standing order on the engine (dismissed when pending, else lifted)."""
    return command(engine, ending(engine.orders[firm]), firm, Change("", at, by, reason))


def order_command(action: str, firm: str, by: str = "operator", reason: str = "复核",
                  at: str = "2010-10-21T09:00:00+08:00") -> dict[str, Any]:  # fmt: skip
    """A journaled command (`Journal.record_command`) on `firm`'s order."""
    return {"kind": "order", "action": action, "firm": firm, "by": by, "reason": reason, "at": at,
            "id": uuid.uuid4().hex}  # fmt: skip

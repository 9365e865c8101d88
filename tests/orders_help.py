"""People's commands on orders, as the tests give them (`quotad.core.enforcement`, `quotad.shell.actions`)."""

from __future__ import annotations

import uuid
from typing import Any

from quotad.core.enforcement import command
from quotad.core.engine import Engine
from quotad.core.orders import Change, Order
from quotad.shell.journal import Journal


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


def people(journal: Journal, batch: int) -> None:
    """What people do after `batch` of a journaled feed (the crash tests): every fifth batch, the next step of the
    first order that has one (confirm a pending order, mark an issued one notified, a notified one executed), else
    a talk; at batch 30 an order by hand. Chosen from the engine's state, with an id of the batch: a run that
    journals the feed again from the start after a crash gives each command once, the same as the first time."""
    if batch % 5:
        return
    at, by = "2010-10-20T12:00:00+08:00", "督查"
    command: dict[str, Any] = {"at": at, "by": by, "id": f"batch-{batch}"}
    orders = journal.engine.orders
    if batch == 30 and not (orders.get("g-001") and orders["g-001"].open):
        command.update(kind="issue", firm="g-001", reason=f"batch {batch}: 现场发现违规")
    else:
        for state, action in (("pending", "confirm"), ("issued", "notified"), ("notified", "executed")):
            firms = sorted(firm for firm, order in orders.items() if order.state == state)
            if firms:
                command.update(kind="order", action=action, firm=firms[0], reason=f"batch {batch}")
                break
        else:
            command.update(kind="talk", firm="shengda", note=f"batch {batch}")
    journal.record_command(command)

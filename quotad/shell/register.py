"""The register of orders as the journal records it, read without rebuilding the engine: what `quotad orders`,
`schedule` and the console read beside a running daemon."""

from __future__ import annotations

from dataclasses import replace

from quotad.core.alerts import Order
from quotad.core.orders import Change
from quotad.core.state import order_from_json
from quotad.shell.store import Store

__all__ = ["order_history", "recorded_orders"]


def recorded_orders(store: Store) -> dict[str, Order]:
    """Each firm's latest order as the journal records it (lifted and dismissed ones included), without rebuilding
    the engine: what `schedule` and `orders` read beside a running daemon."""
    return {order.firm: order for order in order_history(store)}


def order_history(store: Store) -> list[Order]:
    """Every order the journal records, as each change left it, in the order of the changes (the register)."""
    history: list[Order] = []
    latest: dict[str, Order] = {}
    for event in store.order_events():
        if event.kind == "reading":
            made = [order_from_json(data) for data in event.body["orders"]]
        elif event.kind == "lift":  # journaled by a quotad before orders had states
            standing = latest.get(event.body["firm"])
            if standing is None or not standing.open:
                continue
            change = Change("lifted", event.body["at"], event.body["by"], event.body["reason"])
            made = [replace(standing, state="lifted", history=(*standing.history, change))]
        else:
            made = [order_from_json(event.body["order"])] if event.body.get("order") else []
        for order in made:
            latest[order.firm] = order
            history.append(order)
    return history

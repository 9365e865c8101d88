"""The daemon is the authority on what is retained under its prefix (`P/T/`), where inspectors look.

A retained message stays on the broker until someone replaces it. One left there by someone else (a forged 停电令,
sent before the broker had an ACL, or by a user the ACL lets write), or by an older quotad (an order since lifted
while the broker was away, a firm since removed from the policy), would be read as the truth by every inspector for
as long as the broker keeps it. So at each start, once connected, the daemon reads what is retained under `P/T/#`
(a short-lived clean session of its own) and makes it what its journal says:

- `orders/<firm>`: the standing order's payload for a firm under an order (re-published when the retained one
  differs or is missing), cleared for every other topic under `orders/` (a firm without an order, a firm the policy
  does not have, a deeper topic);
- `status/firms/<firm>` of a firm the policy does not have, `status/` topics quotad does not publish, alerts and
  notices (quotad never retains either): cleared;
- `status/township`, `status/firms/<firm>`, `status/daemon`, `schedule/today` and `daemon` are re-published by the
  daemon anyway;
  `meters/` is the meters' own (a meter may retain its last reading) and other topics are no business of quotad's:
  left alone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from quotad.config.daemon import MqttSettings
from quotad.core.engine import Engine
from quotad.core.outputs import Message, order_message, topic
from quotad.shell.mqtt import Driver, client_id, mqtt_client
from quotad.shell.sinks import MqttSink

__all__ = ["corrections", "own_retained", "retained_under"]

log = logging.getLogger(__name__)
_LOGGED = 20  # corrections named one by one in the log; the rest are counted


def corrections(engine: Engine, prefix: str, day: dt.date, found: Mapping[str, bytes]) -> list[Message]:
    """What to publish (retained) so that what is retained under the prefix, `found` (topic -> payload), is what the
    engine says on `day`: each standing order as it is, nothing quotad would not have left there."""
    township = engine.policy.township.id
    base = topic(prefix, township) + "/"
    wanted = {}
    for order in engine.orders.values():
        if order.stands(day):
            message = order_message(prefix, township, order)
            wanted[message.topic] = message
    out = [message for where, message in wanted.items() if found.get(where) != message.payload.encode()]
    firms = {firm.id for firm in engine.policy.firms}
    for where, payload in sorted(found.items()):
        if payload and where not in wanted and where.startswith(base) and _not_ours(where.removeprefix(base), firms):
            out.append(Message(where, "", retain=True))
    return out


def _not_ours(rest: str, firms: set[str]) -> bool:
    """Whether quotad would never have left `P/T/<rest>` retained as it stands (an order topic not in `wanted`)."""
    kind, _, tail = rest.partition("/")
    if kind in ("orders", "alerts") or rest == "notices":
        return True
    if kind == "status":  # status/daemon: the daemon's own state (its outboxes), published with the statuses
        ours = tail in ("township", "daemon") or (tail.startswith("firms/") and tail.removeprefix("firms/") in firms)
        return not ours
    return False


async def retained_under(
    settings: MqttSettings, wanted: str, quiet_s: float = 0.5, limit_s: float = 5.0
) -> dict[str, bytes]:
    """The messages retained on the topic filter `wanted` (topic -> payload): a clean session subscribes, on the
    running loop, and what the broker sends for the subscription is taken until it has been quiet for `quiet_s`
    (bounded by `limit_s`)."""
    found: dict[str, bytes] = {}
    subscribed, failed = asyncio.Event(), asyncio.Event()
    last = [time.monotonic()]

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.retain:
            found[message.topic] = bytes(message.payload)
        last[0] = time.monotonic()

    def unreachable(exc: Exception) -> None:
        log.warning("cannot read what is retained under %s: %s", wanted, exc)
        failed.set()

    def on_connect(client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: object) -> None:
        if not reason.is_failure:
            driver.connected()
            client.subscribe(wanted, 0)

    client = mqtt_client(settings, client_id(settings, "retained"), clean=True)
    client.on_connect = on_connect
    client.on_subscribe = lambda c, userdata, mid, codes, props: subscribed.set()
    client.on_message = on_message
    driver = Driver(client, "mqtt-retained", unreachable=unreachable)
    client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s)
    driver.start(asyncio.get_running_loop())
    deadline = time.monotonic() + limit_s
    try:
        waiters = [asyncio.create_task(subscribed.wait()), asyncio.create_task(failed.wait())]
        await asyncio.wait(waiters, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        if subscribed.is_set():
            last[0] = time.monotonic()
            while time.monotonic() < deadline and time.monotonic() - last[0] < quiet_s:
                await asyncio.sleep(0.05)
        elif not failed.is_set():
            log.warning("cannot read what is retained under %s: no subscription within %.0f s", wanted, limit_s)
    finally:
        driver.stop()
        await driver.closed(1.0)
    return dict(found)


async def own_retained(
    sink: MqttSink, settings: MqttSettings, prefix: str, now: Callable[[], tuple[Engine, dt.date]]
) -> int:
    """Once `sink` is connected, make what is retained under `P/T/` what the engine says (`now()`: the engine and the
    day, taken when the corrections are published, so that they are the latest); returns how many were published."""
    await sink.connected.wait()
    engine, _day = now()
    wanted = topic(prefix, engine.policy.township.id, "#")
    found = await retained_under(settings, wanted)
    engine, day = now()
    fixes = corrections(engine, prefix, day, found)
    for message in fixes:  # on the loop's thread, as the outbox's: what the journal says later is published later
        sink.publish_now(message)
    for message in fixes[:_LOGGED]:
        what = "cleared" if not message.payload else "re-published as the journal has it"
        log.warning("retained %s %s: what the broker kept there was not what quotad says", message.topic, what)
    if len(fixes) > _LOGGED:
        log.warning("and %d more retained topics under %s set right", len(fixes) - _LOGGED, wanted.removesuffix("#"))
    return len(fixes)

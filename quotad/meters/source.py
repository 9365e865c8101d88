"""What every source of readings is to the daemon: the `Source` protocol, and the `Context` it is built from.

A source reads the meters of one kind (its config model's tag, `quotad.core.sources`) and delivers each reading to
the daemon's inbox (`Context.inbox.put(reading, ack)`: `ack`, when given, is called once the reading is durable).
The daemon knows no kind of source: `quotad.meters.registry` builds them from the validated policy, the daemon starts
them, waits until they are ready, asks where a meter is read (for its log lines), and stops them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from quotad.config.daemon import MqttSettings
from quotad.core.policy import Meter, Policy
from quotad.shell.clock import Clock
from quotad.shell.inbox import Inbox

__all__ = ["Context", "Factory", "Source"]


@dataclass(frozen=True)
class Context:
    """What a source is built with: the validated policy, the daemon's broker (`[mqtt]`, or None), its clock, and
    the inbox its readings go to."""

    policy: Policy
    mqtt: MqttSettings | None
    clock: Clock
    inbox: Inbox


class Source(Protocol):
    """Readings of some meters, delivered to the inbox of its `Context` from `start` until `stop`."""

    def start(self, loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[None]]:
        """Begin reading on `loop` (from its thread); the tasks it made, for the daemon to wait for at its end."""
        ...

    async def ready(self, timeout: float) -> bool:
        """Wait up to `timeout` s until readings can come (a broker's subscriptions made); whether they can."""
        ...

    def stop(self) -> None:
        """Stop reading: no more readings; what is in flight is dropped, unacknowledged (it is read again)."""
        ...

    def status(self) -> dict[str, Any]:
        """Counters and state, for the log."""
        ...

    @property
    def where(self) -> dict[str, str]:
        """Where each of its meters is read (meter id -> `Modbus 10.0.0.5:502 unit 3`, `MQTT topic ...`)."""
        ...


class Factory(Protocol):
    """Builds the source of `meters` (all of one kind's meters of the policy); None when it cannot read them (the
    configuration said why, as a warning)."""

    def __call__(self, meters: Sequence[Meter], context: Context, /) -> Source | None: ...

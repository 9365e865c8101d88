"""`quotad simulate`: the simulated township served until interrupted."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal

from quotad.config.load import Loaded
from quotad.core.feed import TownshipModel
from quotad.meters.simulator import Simulator
from quotad.schedule.calendar import Calendar, to_micros
from quotad.shell.clock import Clock, shared_anchor

__all__ = ["simulate", "simulation_clock"]

log = logging.getLogger(__name__)


def simulation_clock(loaded: Loaded, start: dt.datetime | None, speed: float | None) -> Clock:
    """The simulated clock of the daemon file's [clock] (shared through state_dir), or of the arguments."""
    policy, daemon = loaded.policy, loaded.daemon
    configured = daemon.clock if daemon else None
    if start is None:
        start = (
            configured.start
            if configured
            else dt.datetime.combine(policy.control.start, dt.time(0), policy.township.tz)
        )
    if start.tzinfo is None:
        start = start.replace(tzinfo=policy.township.tz)
    speed = speed if speed is not None else (configured.speed if configured else 1.0)
    t0 = to_micros(start)
    anchor = shared_anchor(daemon.state_dir / "clock.json", t0) if daemon and configured else None
    return Clock(t0, speed, anchor)


def simulate(loaded: Loaded, start: dt.datetime | None, speed: float | None, seed: int) -> int:
    clock = simulation_clock(loaded, start, speed)
    policy = loaded.policy
    model = TownshipModel(policy, Calendar(policy.township.timezone).day_of(clock.now()), seed)
    mqtt = loaded.daemon.mqtt if loaded.daemon else None
    simulator = Simulator(
        policy, clock, model,
        mqtt=mqtt,
        topic_prefix=mqtt.topic_prefix if mqtt else "quotad",
    )  # fmt: skip
    log.info(
        "simulating %s from %s at %gx",
        policy.township.id,
        Calendar(policy.township.timezone).isoformat(clock.now()),
        clock.speed,
    )
    return asyncio.run(_until_signal(simulator))


async def _until_signal(simulator: Simulator) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(simulator.run())
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        log.info("simulation stopped; %d Modbus requests served, %d MQTT readings published",
                 sum(simulator.function_codes.values()), simulator.published)  # fmt: skip
    return 0

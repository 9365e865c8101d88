"""The sources of readings, keyed by the tag of a meter's source in the policy (`quotad.core.sources`): the one table
a new kind of source adds its line to. Kinds that share a line owner share a factory (a Modbus TCP gateway, RTU over
TCP, a serial line, a DTU with DL/T 645 meters: one poller owns every port, whatever the protocols on it), and a
factory is called once, with all of its kinds' meters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

from quotad.core.policy import Meter
from quotad.core.sources import SourceKind
from quotad.meters.modbus import ModbusPoller
from quotad.meters.mqtt import MqttMeters
from quotad.meters.source import Context, Factory, Source

__all__ = ["REGISTRY", "build_sources"]

REGISTRY: dict[SourceKind, Factory] = {
    "modbus-tcp": ModbusPoller.from_config,
    "modbus-rtu-tcp": ModbusPoller.from_config,
    "modbus-serial": ModbusPoller.from_config,
    "dlt645-tcp": ModbusPoller.from_config,
    "dlt645-serial": ModbusPoller.from_config,
    "mqtt": MqttMeters.from_config,
}
assert set(REGISTRY) == set(get_args(SourceKind)), "every kind of source in the policy needs its factory here"


def build_sources(meters: Sequence[Meter], context: Context) -> list[Source]:
    """The sources reading `meters`: each factory called once with its kinds' meters, in the registry's order."""
    by_factory: dict[Factory, list[Meter]] = {}
    for factory in REGISTRY.values():
        by_factory.setdefault(factory, [])
    for meter in meters:
        by_factory[REGISTRY[meter.source.kind]].append(meter)
    built = (factory(chosen, context) for factory, chosen in by_factory.items() if chosen)
    return [source for source in built if source is not None]

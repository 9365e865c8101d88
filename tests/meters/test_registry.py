"""The registry of sources: every kind a policy can name has its factory, and the daemon's sources are built from it
alone (quotad.meters.registry)."""

from __future__ import annotations

import asyncio
import typing
from pathlib import Path

from quotad.config.daemon import MqttSettings
from quotad.config.load import load_policy
from quotad.core.sources import MeterSource, SourceKind
from quotad.meters.lines import StreamLink
from quotad.meters.modbus import ModbusPoller
from quotad.meters.mqtt import MqttMeters
from quotad.meters.registry import REGISTRY, build_sources
from quotad.meters.source import Context
from quotad.shell.clock import Clock
from quotad.shell.inbox import Inbox

ROOT = Path(__file__).resolve().parents[2]


def test_every_kind_of_the_config_union_has_a_factory() -> None:
    union = typing.get_args(typing.get_args(MeterSource)[0])
    tags = {member.model_fields["kind"].default for member in union}
    assert tags == set(typing.get_args(SourceKind)) == set(REGISTRY)


def test_the_shipped_township_is_read_by_one_poller_and_one_mqtt_source() -> None:
    policy = load_policy(ROOT / "config" / "township.toml", environ={})

    async def built() -> list[object]:
        context = Context(policy, MqttSettings(), Clock(), Inbox())
        return list(build_sources(policy.meters, context))

    sources = asyncio.run(built())
    assert [type(s) for s in sources] == [ModbusPoller, MqttMeters]
    where = {meter: text for s in sources for meter, text in s.where.items()}  # type: ignore[attr-defined]
    assert set(where) == {m.id for m in policy.meters}
    assert where["rs-main"].startswith("Modbus 127.0.0.1:")
    assert where["g-005-main"].startswith("MQTT topic ")
    assert where["w-001-main"] == "DL/T 645 127.0.0.1:15024 address 310000000001"
    poller = sources[0]
    assert isinstance(poller, ModbusPoller)
    # one owner per line: the DTU at 15023 carries Modbus RTU units and DL/T 645 meters, on one link
    shared = poller.gateways[("tcp", "127.0.0.1", "15023")]
    assert isinstance(shared.link, StreamLink)
    assert [m.label for m in shared.meters] == [*(f"unit {u}" for u in (1, 2, 3, 4)), *(
        f"address 31000000000{n}" for n in (4, 5, 6))]  # fmt: skip
    assert len(poller.gateways) == 4


def test_without_mqtt_settings_the_mqtt_meters_get_no_source() -> None:
    policy = load_policy(ROOT / "config" / "township.toml", environ={})

    async def built() -> list[object]:
        return list(build_sources(policy.meters, Context(policy, None, Clock(), Inbox())))

    assert [type(s) for s in asyncio.run(built())] == [ModbusPoller]

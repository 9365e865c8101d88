"""The MQTT meter source against a real mosquitto on a free loopback port: every format end to end, retained
and live messages, a broker restart mid-stream, a flood of malformed payloads, messages on unknown topics.

Every wait is bounded: `wait_until` polls with short sleeps and fails the test after a few seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest

from quotad.config.daemon import MqttSettings
from quotad.core.policy import Policy
from quotad.core.readings import Reading
from quotad.meters.formats import Format
from quotad.meters.mqtt import Ack, MeterTopic, MqttMeters, default_topic, meter_topics
from tests.brokers import Mosquitto, free_port
from tests.conftest import at

TZ = ZoneInfo("Asia/Shanghai")


def at_broker(broker: Mosquitto) -> MqttSettings:
    """The `[mqtt]` of a daemon using `broker`."""
    return MqttSettings(host=broker.host, port=broker.port)


ARRIVED = at("2010-10-20 08:00:30")
T_2010 = at("2010-10-20 08:00")
LOGGER = "quotad.meters.mqtt"
_ids = itertools.count()


def wait_until(condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class Collected:
    """Readings handed to `on_reading` (called on the source's loop thread)."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self._lock = threading.Lock()

    def __call__(self, reading: Reading) -> None:
        with self._lock:
            self.readings.append(reading)

    def snapshot(self) -> list[Reading]:
        with self._lock:
            return list(self.readings)

    def __len__(self) -> int:
        with self._lock:
            return len(self.readings)


class Publisher:
    """A plain paho client publishing as a meter would."""

    def __init__(self, broker: Mosquitto) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-pub-{next(_ids)}")
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect_async(*broker.address)
        self.client.loop_start()
        wait_until(self.client.is_connected, what="the publisher's connection")

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos > 0:
            info.wait_for_publish(timeout=5.0)
            assert info.is_published(), f"publishing to {topic} was not acknowledged"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as running:
        yield running


@pytest.fixture
def publisher(broker: Mosquitto) -> Iterator[Publisher]:
    pub = Publisher(broker)
    yield pub
    pub.close()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A topic prefix of this test's own: retained messages of one test never reach another."""
    return f"t{next(_ids)}-{request.node.name[:40]}".replace("[", "-").replace("]", "")


Factory = Callable[..., tuple[MqttMeters, Collected]]


@pytest.fixture
def source(broker: Mosquitto) -> Iterator[Factory]:
    """Builds, starts and (afterwards) stops MqttMeters sources on `broker` (or another)."""
    started: list[MqttMeters] = []

    def make(
        meters: list[MeterTopic], *, on: Mosquitto | None = None, wait: bool = True, **kwargs: object
    ) -> tuple[MqttMeters, Collected]:
        target = on or broker
        collected = Collected()
        meters_source = MqttMeters(
            meters,
            at_broker(target),
            TZ,
            collected,
            client_id=f"test-meters-{next(_ids)}",
            **kwargs,  # type: ignore[arg-type]
        )
        meters_source.start()
        started.append(meters_source)
        if wait:
            assert meters_source.wait_connected(5.0), "the source did not connect and subscribe within 5 s"
        return meters_source, collected

    yield make
    for meters_source in started:
        meters_source.stop()


def json_payload(seconds: int, kwh: float) -> str:
    return json.dumps({"ts": seconds, "energy_kwh": kwh})


# --- wiring -----------------------------------------------------------------------------------------------------


def test_default_topic_and_the_topics_of_a_policy() -> None:
    policy = Policy.model_validate(
        tomllib.loads("""
[township]
id = "xx-town"
name = "镇"
daily_cap_kwh = 1000
[control]
start = 2010-10-01
end = 2010-12-31
[[meters]]
id = "sd-main"
[meters.mqtt]
[[meters]]
id = "w1"
[meters.mqtt]
topic = "tele/w1/SENSOR"
format = "tasmota"
[[meters]]
id = "rs-main"
[meters.modbus]
host = "127.0.0.1"
template = "dtsu666"
""")
    )
    assert default_topic("quotad", "xx-town", "sd-main") == "quotad/xx-town/meters/sd-main"
    assert meter_topics(policy.meters, "quotad", "xx-town") == [
        ("sd-main", "quotad/xx-town/meters/sd-main", "json"),
        ("w1", "tele/w1/SENSOR", "tasmota"),
    ]


# Unusable or shared topics are the policy's problems, refused with file:line by quotad.config.load (the corpus:
# tests/config/broken/meter_topics_unusable.toml, meter_topic_is_anothers_default.toml, daemon_topic_clash/): the
# source takes the validated topics as given.


# --- end to end -------------------------------------------------------------------------------------------------


def test_each_format_end_to_end(source: Factory, publisher: Publisher, prefix: str) -> None:
    topics: dict[str, tuple[str, Format]] = {
        "j": (f"{prefix}/meters/j", "json"),
        "t": (f"tele/{prefix}-t/SENSOR", "tasmota"),
        "s2": (f"{prefix}/shellyplus1pm/status/switch:0", "shelly"),
        "s1": (f"shellies/{prefix}-s1/relay/0/energy", "shelly"),
        "n": (f"{prefix}/n", "number"),
    }
    meters_source, collected = source([(m, t, f) for m, (t, f) in topics.items()], now=lambda: ARRIVED)
    publisher.publish(topics["j"][0], '{"ts": "2010-10-20T08:00:00+08:00", "energy_kwh": 1234.5, "power_kw": 2}')
    publisher.publish(topics["t"][0], '{"Time":"2010-10-20T08:00:00","ENERGY":{"Total":3.705,"Power":5}}')
    publisher.publish(
        topics["s2"][0],
        '{"id":0,"source":"init","output":true,"apower":10.7,"voltage":120.7,"current":0.133,'
        '"aenergy":{"total":46791.262,"by_minute":[73.921,177.749,177.749],"minute_ts":1287532800},'
        '"temperature":{"tC":47.9,"tF":118.3}}',
    )
    publisher.publish(topics["s1"][0], "123000")
    publisher.publish(topics["n"][0], "42.5")
    wait_until(lambda: len(collected) == 5, what="five readings")
    got = {r.meter: r for r in collected.snapshot()}
    assert got["j"] == Reading("j", T_2010, 1234.5, 2.0)
    assert got["t"] == Reading("t", T_2010, 3.705, 0.005)
    assert got["s2"].t == ARRIVED  # stamped on arrival: minute_ts would date the counter up to a minute early
    assert got["s2"].energy_kwh == pytest.approx(46.791262)
    assert got["s2"].power_kw == pytest.approx(0.0107)
    assert got["s1"] == Reading("s1", ARRIVED, 123000 / 60000)
    assert got["n"] == Reading("n", ARRIVED, 42.5)
    assert meters_source.stats == {
        "connected": True, "connections": 1, "received": 5, "delivered": 5, "malformed": {}, "unknown": 0,
        "callback_errors": 0,
    }  # fmt: skip


def test_retained_reading_is_delivered_on_subscribe_then_live_ones(
    source: Factory, publisher: Publisher, prefix: str
) -> None:
    topic = f"{prefix}/meters/m"
    publisher.publish(topic, json_payload(1287532800, 10.0), retain=True)
    try:
        meters_source, collected = source([("m", topic, "json")])
        wait_until(lambda: len(collected) == 1, what="the retained reading")
        assert collected.snapshot() == [Reading("m", T_2010, 10.0)]
        for i in range(1, 51):
            publisher.publish(topic, json_payload(1287532800 + 60 * i, 10.0 + i))
        wait_until(lambda: len(collected) == 51, what="51 readings")
        assert [r.energy_kwh for r in collected.snapshot()] == [10.0 + i for i in range(51)]  # in order, once each
        assert meters_source.delivered == 51
    finally:
        publisher.publish(topic, b"", retain=True)  # clear the retained message


def test_a_handler_that_raises_is_counted_and_the_source_goes_on(
    broker: Mosquitto, publisher: Publisher, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    seen: list[Reading] = []

    def handler(reading: Reading) -> None:
        seen.append(reading)
        if reading.energy_kwh < 3:
            raise RuntimeError("the daemon's queue is closed")

    topic = f"{prefix}/meters/m"
    meters_source = MqttMeters([("m", topic, "json")], at_broker(broker), TZ, handler,
                               client_id=f"test-meters-{next(_ids)}")  # fmt: skip
    meters_source.start()
    try:
        assert meters_source.wait_connected(5.0)
        for kwh in (1.0, 2.0, 3.0):
            publisher.publish(topic, json_payload(1287532800 + int(kwh), kwh))
        wait_until(lambda: len(seen) == 3, what="three calls of the handler")
        wait_until(lambda: meters_source.delivered == 1, what="the third reading delivered")
        assert meters_source.callback_errors == 2
        assert meters_source.connected
        failures = [r for r in caplog.records if r.name == LOGGER and "handler failed" in r.getMessage()]
        assert len(failures) == 1  # the first is logged (with its traceback); the next at the 100th
    finally:
        meters_source.stop()


@pytest.mark.parametrize("manual", [True, False], ids=["acked-when-durable", "acked-by-paho"])
def test_a_reading_not_acknowledged_comes_again_after_the_source_dies(
    broker: Mosquitto, publisher: Publisher, prefix: str, manual: bool
) -> None:
    """The daemon acknowledges a reading only once the journal holds it: a reading still on its way to the
    journal when the process dies is sent again by the broker at the next start. With paho's own
    acknowledgement (the control case) the broker forgets it as soon as it is handed over."""
    topic, client_id = f"{prefix}/meters/m", f"test-meters-ack-{next(_ids)}"
    first: list[float] = []

    def durable_below_3(reading: Reading, ack: Ack) -> None:  # 3 and 4 "die" with the process
        first.append(reading.energy_kwh)
        if reading.energy_kwh < 3:
            ack()

    handler: dict[str, object] = (
        {"on_delivery": durable_below_3} if manual else {"on_reading": lambda r: first.append(r.energy_kwh)}
    )
    dying = MqttMeters([("m", topic, "json")], at_broker(broker), TZ, client_id=client_id, **handler)  # type: ignore[arg-type]
    dying.start()
    try:
        assert dying.wait_connected(5.0)
        for kwh in (1.0, 2.0, 3.0, 4.0):
            publisher.publish(topic, json_payload(1287532800 + int(kwh), kwh))
        wait_until(lambda: len(first) == 4, what="four readings")
    finally:
        dying.stop()
    again: list[float] = []
    restarted = MqttMeters([("m", topic, "json")], at_broker(broker), TZ, client_id=client_id,
                           on_delivery=lambda reading, ack: (again.append(reading.energy_kwh), ack()))  # fmt: skip
    restarted.start()
    try:
        assert restarted.wait_connected(5.0)
        publisher.publish(topic, json_payload(1287532800 + 5, 5.0))
        wait_until(lambda: 5.0 in again, what="the live reading after the restart")
    finally:
        restarted.stop()
    assert first == [1.0, 2.0, 3.0, 4.0]
    assert again == ([3.0, 4.0, 5.0] if manual else [5.0])


# --- faults -----------------------------------------------------------------------------------------------------

MALFORMED = [
    b"\xff\xfe\x00",
    b"not json",
    b'{"ts": 1287532800, "energy_kwh": NaN}',
    b'{"ts": 1287532800, "energy_kwh": -1}',
    b'{"ts": 1287532800, "energy_kwh": "12"}',
    b'{"ts": true, "energy_kwh": 1}',
    b'{"ts": "2010-10-20T08:00:00", "energy_kwh": 1}',
    b"[" * 30_000,
    b"",
    b"12.5",
]


def test_a_flood_of_malformed_payloads_is_counted_and_a_valid_reading_still_gets_through(
    source: Factory, publisher: Publisher, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    topic = f"{prefix}/meters/m"
    meters_source, collected = source([("m", topic, "json")])
    infos = [publisher.client.publish(topic, MALFORMED[i % len(MALFORMED)], qos=1) for i in range(2000)]
    publisher.publish(topic, json_payload(1287532800, 5.0))  # after the flood, on the same topic: arrives last
    for info in infos:
        info.wait_for_publish(timeout=5.0)
    wait_until(lambda: len(collected) == 1, timeout=10.0, what="the valid reading after the flood")
    assert collected.snapshot() == [Reading("m", T_2010, 5.0)]
    assert meters_source.malformed == {topic: 2000}
    assert meters_source.malformed_total == 2000
    assert meters_source.received == 2001
    assert meters_source.connected
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 21  # the 1st, then every 100th
    assert all(topic in w for w in warnings)
    assert "(1 so far" in warnings[0]
    assert "(2000 so far" in warnings[-1]


def test_messages_on_a_topic_of_no_meter_are_counted(source: Factory, publisher: Publisher, prefix: str) -> None:
    topic = f"{prefix}/meters/m"
    meters_source, collected = source([("m", topic, "json")])
    # Exact subscriptions never bring foreign topics; an extra subscription made on the source's client does.
    meters_source.client.subscribe(f"{prefix}/other/#", qos=1)
    deadline = time.monotonic() + 5.0
    while meters_source.unknown == 0 and time.monotonic() < deadline:
        publisher.publish(f"{prefix}/other/x", json_payload(1287532800, 1.0))
        time.sleep(0.05)
    assert meters_source.unknown >= 1
    publisher.publish(topic, json_payload(1287532800, 2.0))
    wait_until(lambda: len(collected) == 1, what="the meter's reading")
    assert collected.snapshot() == [Reading("m", T_2010, 2.0)]
    assert meters_source.malformed == {}


def test_broker_restart_mid_stream(source: Factory, caplog: pytest.LogCaptureFixture, prefix: str) -> None:
    """The source reconnects and resubscribes by itself; readings resume; none is handed on twice.

    The stream is published with QoS 0 so that the broker receives each message at most once: with QoS 1, a
    publisher whose PUBACK was lost in the restart sends the message again (at-least-once, legitimately), which
    would hide whether the source itself ever duplicates."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    topic = f"{prefix}/meters/m"
    with Mosquitto() as own:
        meters_source, collected = source([("m", topic, "json")], on=own)
        pub = Publisher(own)
        published = 0
        stop = threading.Event()

        def stream() -> None:
            nonlocal published
            while not stop.is_set():
                published += 1
                pub.client.publish(topic, json_payload(1287532800 + published, float(published)), qos=0)
                time.sleep(0.005)

        streamer = threading.Thread(target=stream, daemon=True)
        streamer.start()
        try:
            wait_until(lambda: len(collected) >= 50, what="50 readings before the restart")
            own.restart()
            wait_until(lambda: meters_source.connections == 2 and meters_source.connected, timeout=15.0,
                       what="the source to reconnect and resubscribe")  # fmt: skip
            wait_until(pub.client.is_connected, timeout=15.0, what="the publisher to reconnect")
            resumed_after = published
            wait_until(lambda: published >= resumed_after + 100, what="100 more published")
        finally:
            stop.set()
            streamer.join(5.0)
        last = published
        wait_until(lambda: bool(collected.snapshot()) and collected.snapshot()[-1].energy_kwh == float(last),
                   what="the last published reading")  # fmt: skip
        pub.close()
        meters_source.stop()  # before the broker goes: its loss is not part of this test
    calls = Counter(r.energy_kwh for r in collected.snapshot())
    assert max(calls.values()) == 1  # no message handed on twice
    assert all(calls[float(i)] == 1 for i in range(resumed_after + 1, last + 1))  # all after the reconnection
    assert meters_source.delivered == len(collected) == meters_source.received
    records = [r for r in caplog.records if r.name == LOGGER]
    lost = [r for r in records if r.levelno == logging.WARNING]
    back = [r for r in records if "is back" in r.getMessage()]
    assert len(lost) == 1, [r.getMessage() for r in lost]  # the outage logged once ...
    assert "lost" in lost[0].getMessage()
    assert len(back) == 1  # ... and the recovery once


def test_an_absent_broker_is_logged_once_and_joined_when_it_comes(
    source: Factory, caplog: pytest.LogCaptureFixture, prefix: str
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    port = free_port()
    late = Mosquitto(port=port)
    topic = f"{prefix}/meters/m"
    try:
        meters_source, collected = source([("m", topic, "json")], on=late, wait=False)
        assert not meters_source.wait_connected(2.5)  # two or three failed attempts (1 s, then 2 s apart)
        late.start()
        assert meters_source.wait_connected(10.0)
        pub = Publisher(late)
        pub.publish(topic, json_payload(1287532800, 1.0))
        wait_until(lambda: len(collected) == 1, what="a reading")
        pub.close()
        meters_source.stop()  # before the broker goes: its loss is not part of this test
    finally:
        late.close()
    records = [r for r in caplog.records if r.name == LOGGER]
    assert [r.getMessage() for r in records if r.levelno == logging.WARNING] == [
        f"cannot reach MQTT meter broker 127.0.0.1:{port} ([Errno 111] Connection refused); retrying"
    ]  # once, with the reason, however many attempts failed
    assert sum("is back" in r.getMessage() or "connected" in r.getMessage() for r in records) == 1


# --- on the daemon's loop, held back ----------------------------------------------------------------------------


def test_a_held_source_leaves_the_backlog_on_the_broker_and_loses_nothing(
    broker: Mosquitto, publisher: Publisher, prefix: str
) -> None:
    """While `hold` says so (the daemon's inbox is full) the source reads nothing more: at most `limit` readings
    wait unacknowledged in memory, the rest stay with the broker; acknowledged, every one arrives, in order."""
    topic, limit, total = f"{prefix}/meters/m", 20, 300
    waiting: list[tuple[float, Ack]] = []
    lock = threading.Lock()
    most = 0

    def deliver(reading: Reading, ack: Ack) -> None:
        nonlocal most
        with lock:
            waiting.append((reading.energy_kwh, ack))
            most = max(most, len(waiting))

    def hold() -> bool:
        with lock:
            return len(waiting) >= limit

    held = MqttMeters([("m", topic, "json")], at_broker(broker), TZ, on_delivery=deliver, hold=hold,
                      client_id=f"test-meters-held-{next(_ids)}")  # fmt: skip
    held.start()
    got: list[float] = []
    try:
        assert held.wait_connected(5.0)
        for n in range(total):
            publisher.publish(topic, json_payload(1287532800 + n, float(n)))
        wait_until(lambda: len(waiting) == limit, what="the inbox filled")
        time.sleep(0.3)
        with lock:
            assert len(waiting) == limit  # held: nothing more read while nothing is acknowledged
        deadline = time.monotonic() + 20
        while len(got) < total and time.monotonic() < deadline:
            with lock:
                batch, waiting[:] = list(waiting), []
            for kwh, ack in batch:
                got.append(kwh)
                ack()  # from this thread, as a test may: the source writes the PUBACKs on its loop
            time.sleep(0.01)
    finally:
        held.stop()
    assert got == [float(n) for n in range(total)]
    assert most <= limit
    assert held.received == total


def test_on_a_callers_loop_the_source_reads_and_acknowledges_on_that_loop(broker: Mosquitto, prefix: str) -> None:
    """The daemon runs the source on its own loop: readings arrive on the loop's thread, the acknowledgements
    written from there; a reading never acknowledged comes again to the next session."""
    topic, client_id = f"{prefix}/meters/m", f"test-meters-loop-{next(_ids)}"

    async def session(values: list[float], ack_below: float, publish: list[float]) -> list[int]:
        loop = asyncio.get_running_loop()
        threads: list[int] = []

        def deliver(reading: Reading, ack: Ack) -> None:
            threads.append(threading.get_ident())
            values.append(reading.energy_kwh)
            if reading.energy_kwh < ack_below:
                ack()

        source = MqttMeters([("m", topic, "json")], at_broker(broker), TZ, on_delivery=deliver,
                            client_id=client_id)  # fmt: skip
        source.start(loop)
        assert await asyncio.to_thread(source.wait_connected, 5.0)
        pub = await asyncio.to_thread(Publisher, broker)
        for kwh in publish:
            await asyncio.to_thread(pub.publish, topic, json_payload(1287532800 + int(kwh), kwh))
        deadline = loop.time() + 5
        while len(values) < len(publish) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(pub.close)
        source.stop()
        await asyncio.sleep(0.2)  # the DISCONNECT is written as the loop goes on
        return [t - threading.get_ident() for t in threads]

    first: list[float] = []
    offsets = asyncio.run(session(first, 3.0, [1.0, 2.0, 3.0]))
    assert first == [1.0, 2.0, 3.0]
    assert set(offsets) == {0}  # every reading on the loop's own thread
    again: list[float] = []
    asyncio.run(session(again, 99.0, [4.0]))
    assert again == [3.0, 4.0]  # 3 was never acknowledged: the broker kept it for the session

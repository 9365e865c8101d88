"""10,000 generated payloads per format through a real mosquitto into the MQTT meter source: binary, huge,
deeply nested, NaN and Infinity, negative and wrong-typed values, timestamps far in the past and future, and
valid readings among them; and 2,000 per format on topics of no meter beside them, which the source must never
see (it subscribes to its meters' topics only).

The source must not crash or stall, must deliver exactly the readings the parser accepts (in order, none from
the payloads built to be garbage), and must count every other message and log it (the first per topic, then
every 100th). The parser's own properties are proved by hypothesis in test_formats.py; this is the same kind of
input, at volume, through the broker, paho and the source's bookkeeping. Seeded: the same payloads every run.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from quotad.config.daemon import MqttSettings
from quotad.core.errors import ReadingError
from quotad.core.readings import Reading
from quotad.meters.formats import FORMATS, Format, parse_payload
from quotad.meters.mqtt import MqttMeters
from tests.brokers import Mosquitto
from tests.conftest import at

TZ = ZoneInfo("Asia/Shanghai")


def at_broker(broker: Mosquitto) -> MqttSettings:
    """The `[mqtt]` of a daemon using `broker`."""
    return MqttSettings(host=broker.host, port=broker.port)


ARRIVED = at("2010-10-20 08:00:30")
PER_FORMAT, UNKNOWN = 10_000, 2_000
LOGGER = "quotad.meters.mqtt"


def _valid(fmt: Format, n: int) -> bytes:
    kwh = 100.0 + n / 10
    seconds = 1287532800 + n
    if fmt == "json":
        return json.dumps({"ts": seconds, "energy_kwh": kwh, "power_kw": 1.5}).encode()
    if fmt == "tasmota":
        local = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds + 8 * 3600))
        return json.dumps({"Time": local, "ENERGY": {"Total": kwh, "Power": 1500}}).encode()
    if fmt == "shelly":
        return json.dumps({"aenergy": {"total": kwh * 1000, "minute_ts": seconds}, "apower": 1500}).encode()
    return str(kwh).encode()


def _wrap(fmt: Format, value: object, ts: object = 1287532800) -> bytes:
    """`value` where the format wants the energy counter (and `ts` where it wants a time), as JSON text."""
    if fmt == "json":
        body: object = {"ts": ts, "energy_kwh": value}
    elif fmt == "tasmota":
        body = {"Time": ts, "ENERGY": {"Total": value}}
    elif fmt == "shelly":
        body = {"aenergy": {"total": value, "minute_ts": ts}}
    else:
        body = value
    return json.dumps(body, allow_nan=True).encode()


def _garbage(fmt: Format, rng: random.Random) -> tuple[bytes, bool]:
    """A payload, and whether it is garbage by construction (no format may make a reading of it)."""
    kind = rng.randrange(10)
    if kind == 0:  # bytes that are not UTF-8
        return b"\xff\xfe" + rng.randbytes(rng.randrange(300)), True
    if kind == 1:  # arbitrary bytes
        return rng.randbytes(rng.randrange(300)), False
    if kind == 2:  # deep nesting (now and then a hundred thousand levels)
        depth = 100_000 if rng.random() < 0.005 else rng.choice([50, 1_000, 5_000])
        return (rng.choice(["[", '{"a":', '{"ENERGY":', '{"aenergy":']) * depth).encode(), True
    if kind == 3:  # NaN and infinities, bare or where the counter goes
        value = rng.choice([math.nan, math.inf, -math.inf])
        return (_wrap(fmt, value) if rng.random() < 0.7 else rng.choice([b"NaN", b"Infinity", b"-Infinity"])), True
    if kind == 4:  # negative counters
        return _wrap(fmt, -rng.uniform(0.001, 1e9)), True
    if kind == 5:  # wrong types where the counter goes ([1.0] is right for Tasmota: one counter per channel)
        value = rng.choice([True, None, "12.5", [], {}, [1.0], {"v": 1}])
        return _wrap(fmt, value), not (fmt == "tasmota" and value == [1.0])
    if kind == 6:  # a counter with a time far in the past or the future (or not a time)
        if fmt in ("json", "tasmota"):
            ts = rng.choice([-1, 1e308, 32503680000, "0001-01-01T00:00:00+08:00", "3000-01-01T08:00:00+08:00", "x"])
            return _wrap(fmt, 5.0, ts), True
        return _wrap(fmt, rng.choice([1e400, 10**400])), fmt == "number"
    if kind == 7:  # huge: a megabyte of text, or an enormous number
        return (b'{"energy_kwh": "' + b"9" * 1_000_000 + b'"}' if rng.random() < 0.003 else b"9" * 5_000), False
    if kind == 8:  # JSON of another shape
        return json.dumps({rng.choice(["ts", "Total", "aenergy", "x"]): rng.random()}).encode(), fmt != "number"
    return b"", True


def generate(fmt: Format, seed: int) -> list[tuple[bytes, bool]]:
    """PER_FORMAT payloads: one in ten a valid reading (counters rising), the rest generated garbage."""
    rng = random.Random(seed)
    out: list[tuple[bytes, bool]] = []
    for n in range(PER_FORMAT):
        out.append((_valid(fmt, n), False) if n % 10 == 0 else _garbage(fmt, rng))
    return out


def oracle(fmt: Format, payload: bytes, meter: str) -> Reading | None:
    try:
        return parse_payload(fmt, payload, meter, ARRIVED, TZ)
    except ReadingError:
        return None


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as running:
        yield running


def wait_until(condition: Callable[[], bool], what: Callable[[], str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what()}"
        time.sleep(0.05)


def test_ten_thousand_generated_payloads_per_format_through_the_broker(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    topics = {fmt: f"fuzz/meters/{fmt}" for fmt in FORMATS}
    readings: list[Reading] = []
    lock = threading.Lock()

    def collect(reading: Reading) -> None:
        with lock:
            readings.append(reading)

    source = MqttMeters([(f"m-{fmt}", topics[fmt], fmt) for fmt in FORMATS], at_broker(broker), TZ, collect,
                        client_id="fuzz-meters", now=lambda: ARRIVED)  # fmt: skip
    source.start()
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fuzz-publisher")
    publisher.max_inflight_messages_set(1000)
    publisher.connect(*broker.address)
    publisher.loop_start()
    expected: dict[Format, list[Reading]] = {}
    bad: dict[Format, int] = {}
    try:
        assert source.wait_connected(10.0)
        infos = []
        for k, fmt in enumerate(FORMATS):
            payloads = generate(fmt, seed=k)
            parsed = [oracle(fmt, payload, f"m-{fmt}") for payload, _ in payloads]
            assert all(r is None for r, (_, garbage) in zip(parsed, payloads, strict=True) if garbage)
            expected[fmt] = [r for r in parsed if r is not None]
            bad[fmt] = parsed.count(None)
            for n, (payload, _) in enumerate(payloads):
                infos.append(publisher.publish(topics[fmt], payload, qos=1))
                if n % 5 == 0:  # topics of no meter, in between
                    infos.append(publisher.publish(f"fuzz/meters/nobody-{n % 7}", payload, qos=1))
        for info in infos:
            info.wait_for_publish(60)
        total = PER_FORMAT * len(FORMATS)  # the source subscribes to its meters' topics only
        wait_until(lambda: source.stats["received"] == total, lambda: f"all {total} messages received: {source.stats}")
        time.sleep(0.5)  # anything more would have come by now
        stats = source.stats
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        source.stop()
    for fmt in FORMATS:
        assert len(expected[fmt]) >= PER_FORMAT // 10  # the valid ones, at least
        assert [r for r in readings if r.meter == f"m-{fmt}"] == expected[fmt]  # in order, none lost, none added
        assert stats["malformed"].get(topics[fmt], 0) == bad[fmt]
        warnings = [r for r in caplog.records if r.name == LOGGER and topics[fmt] in r.getMessage()]
        assert len(warnings) == 1 + bad[fmt] // 100  # the first, then every 100th, with the count
    assert stats["received"] == total  # nothing from the topics of no meter
    assert stats["callback_errors"] == 0
    assert stats["delivered"] == len(readings) == sum(len(v) for v in expected.values())
    assert stats["connected"] is True  # still there after all of it, without a reconnection
    assert stats["connections"] == 1

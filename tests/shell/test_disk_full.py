"""A full disk under the state directory: quotad stays up, says why, holds the readings, and loses nothing.

The state directory is a small tmpfs the test mounts and fills (a file taking every free byte), mid-burst, for a
moment and for most of a minute, once across a restart. Then the space comes back. What the daemon journaled,
published on MQTT and wrote to InfluxDB must equal what the core raises over the same feed uninterrupted: every
alert once, in order, every order, every reading. Real mosquitto and influxd; `quotad run` as a process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from quotad.core.engine import Engine
from quotad.core.errors import StoreError
from quotad.shell.journal import Journal
from quotad.shell.store import Store
from tests.brokers import Mosquitto
from tests.services import Influx1
from tests.shell.feedtown import (
    Publisher,
    all_on_mqtt,
    daemon_file,
    feed,
    fill,
    journal_of,
    journaled_readings,
    policy_of,
    replayed,
    small_disk,
)
from tests.shell.test_daemon_e2e import NotifySocket
from tests.shell.township import Collector, eventually

ROOT = Path(__file__).resolve().parents[2]
DAEMON_TOPIC = "quotad/xx-town/daemon"


def start(config: Path, log: Path, notify: NotifySocket | None = None) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("QUOTAD_", "NOTIFY_", "WATCHDOG_"))}
    if notify is not None:
        environ["NOTIFY_SOCKET"] = str(notify.path)
    return subprocess.Popen(
        [sys.executable, "-m", "quotad", "run", "-c", str(config)], stdout=log.open("ab"), stderr=subprocess.STDOUT,
        env=environ,
    )  # fmt: skip


def said(collector: Collector, prefix: str) -> bool:
    last = collector.last(DAEMON_TOPIC)
    return last is not None and last.startswith(prefix)


@pytest.fixture
def broker(tmp_path: Path) -> Mosquitto:
    (tmp_path / "mosquitto").mkdir()
    with Mosquitto(data_dir=tmp_path / "mosquitto") as running:
        yield running


@pytest.mark.parametrize("full_s", [0.0, 24.0], ids=["a-moment", "half-a-minute-and-a-restart"])
def test_a_full_disk_mid_burst_loses_and_repeats_nothing(tmp_path: Path, broker: Mosquitto, full_s: float) -> None:
    all_on_mqtt(tmp_path)
    with Influx1(tmp_path / "influx") as influx, small_disk(tmp_path / "disk", 48) as disk:
        state = disk / "state"
        config = daemon_file(tmp_path, state, broker, influx.url)
        policy = policy_of(config)
        readings = feed(policy)
        expected = replayed(policy, readings)
        assert any("/firm_daily_limit/" in i and i.endswith("/1.0") for i in expected)  # Shengda's cutoff is in it
        collector = Collector(broker, ["quotad/xx-town/#"])
        notify = NotifySocket(tmp_path / "notify.sock")
        log = tmp_path / "daemon.log"
        daemon = start(config, log, notify)
        publisher = None
        try:
            eventually(lambda: said(collector, "online"), "the daemon online")
            publisher = Publisher(broker, readings, rate=1500).start()
            eventually(lambda: publisher.sent > len(readings) // 3, "a third of the feed published")
            filler = fill(disk)
            eventually(lambda: said(collector, "degraded: 磁盘已满"), "the daemon topic saying the disk is full")
            eventually(lambda: any("STATUS=DEGRADED, 磁盘已满" in d for d in notify.received), "STATUS= saying so")
            status = subprocess.run(
                [sys.executable, "-m", "quotad", "status", "-c", str(config)],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert status.returncode == 0, status.stderr
            assert "quotad：降级运行（磁盘已满，读数暂不入账" in status.stdout, status.stdout
            if full_s:
                time.sleep(full_s / 2)
                assert daemon.poll() is None, "the daemon stopped on a full disk"
                # a restart on the full disk: it starts, says READY=1 and why it is degraded, and waits
                daemon.send_signal(signal.SIGTERM)
                assert daemon.wait(60) == 0
                before = len(notify.received)
                daemon = start(config, log, notify)
                eventually(lambda: any("READY=1" in d for d in notify.received[before:]), "READY=1 on a full disk")
                eventually(lambda: said(collector, "degraded: 磁盘已满"), "degraded again after the restart")
                time.sleep(full_s / 2)
                assert daemon.poll() is None
            filler.unlink()  # the space comes back: quotad resumes by itself
            eventually(lambda: said(collector, "online"), "online again once there is space", limit_s=90)
            publisher.join()
            eventually(lambda: len(journaled_readings(state)) == len(readings), "every reading journaled", 120)
            ids = [str(i) for body in journal_of(state, "reading") for i in body["raised"]]  # type: ignore[attr-defined]
            assert ids == expected  # every alert once, in the order an uninterrupted run raises them
            assert journaled_readings(state) == [(r.meter, r.t) for r in readings]
            eventually(lambda: len(collector.alerts()) >= len(expected), "every alert on MQTT", 60)
            on_mqtt = Counter(a["id"] for a in collector.alerts())
            assert set(on_mqtt) == set(expected)
            assert max(on_mqtt.values()) == 1  # none twice
            orders = {i.split("/")[1] for i in expected if i.endswith("/1.0") and "/firm_daily_limit/" in i}
            for firm in orders:
                assert collector.last(f"quotad/xx-town/orders/{firm}"), f"no retained order for {firm}"

            def stored() -> list[dict[str, object]]:
                return influx.query("SELECT id FROM quota_alert")

            eventually(lambda: len(stored()) >= len(expected), "every alert in InfluxDB", 60)
            assert sorted(str(p["id"]) for p in stored()) == sorted(expected)
            points = influx.query("SELECT count(energy_kwh) FROM meter_reading")
            assert points[0]["count"] == len(readings)
            assert any(d.startswith("WATCHDOG=1") for d in notify.received[-5:])
        finally:
            if publisher is not None and publisher.thread.is_alive():
                publisher.thread.join(30)
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(60)
            collector.close()
            notify.close()
        text = log.read_text(encoding="utf-8", errors="replace")
        assert "Traceback" not in text, text[-3000:]
        assert code == 0
        assert "the disk is full" in text
        assert "takes writes again: quotad resumes" in text


def test_a_refused_batch_commits_nothing_and_the_engine_is_rebuilt_as_the_journal_has_it(tmp_path: Path) -> None:
    """The fault that once lost a cutoff: a batch the disk refuses leaves no trace, the engine that applied it is
    replaced by one rebuilt from the journal (so a snapshot can never be ahead of the journal), and the same batch
    journaled once there is space again gives what an uninterrupted run gives."""
    policy = policy_of(ROOT / "config" / "township.toml")
    readings = feed(policy, days=2)
    straight = Engine(policy)
    expected = [[a.id for a in straight.ingest(r)] for r in readings]
    with small_disk(tmp_path / "disk", 8) as disk:
        store = Store(disk / "state")
        journal = Journal(store, policy, "quotad", influx=True)
        journal.restore()
        with store.batch():
            for reading in readings[:500]:
                journal.record_reading(reading)
        committed = store.last_event()
        filler = fill(disk)

        def the_rest() -> None:
            with store.batch():
                for reading in readings[500:]:
                    journal.record_reading(reading)

        with pytest.raises(StoreError) as refused:
            the_rest()
        assert refused.value.full
        assert "the disk is full" in str(refused.value)
        assert store.last_event() == committed  # nothing of the batch
        assert journal.engine.orders  # the engine that applied it holds the cutoffs the journal does not have
        rebuilt = Journal(store, policy, "quotad", influx=True)
        rebuilt.restore()
        assert rebuilt.last_event == committed
        assert not rebuilt.engine.orders
        with pytest.raises(StoreError):
            rebuilt.snapshot()  # nothing can be written meanwhile, not even a snapshot
        filler.unlink()
        with store.batch():
            raised = [[a.id for a in rebuilt.record_reading(r)] for r in readings[500:]]
        rebuilt.snapshot()
        restarted = Journal(store, policy, "quotad", influx=True)
        restarted.restore()
        events = [e.body["raised"] for e in store.events() if e.kind == "reading"]
        store.close()
    assert raised == expected[500:]
    assert events == expected  # one event per reading, each with what it raised, as uninterrupted
    assert restarted.engine.orders == straight.orders
    assert restarted.engine.ledger.firm_day == straight.ledger.firm_day

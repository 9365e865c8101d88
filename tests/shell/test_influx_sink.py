"""The InfluxDB sink against a real influxd: 1.x's authentication, and the outbox's bound while it is away.

An `auth-enabled` influxd (Debian's 1.6) takes HTTP Basic credentials and answers 401 to `Authorization: Token`:
the sink must say "not authorized", keep every point, and deliver them all once the credentials are right. With
the database away, the outbox stays within its bound: the oldest telemetry gives way, counted and logged once;
every alert and order point is delivered, once, when the database is back; `quotad run` reports what gave way.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from quotad.config.daemon import InfluxSettings
from quotad.config.load import load
from quotad.core.feed import counters
from quotad.shell.bounds import OutboxBound
from quotad.shell.journal import Journal
from quotad.shell.sinks import InfluxSink
from quotad.shell.store import TELEMETRY, Store
from tests.brokers import Mosquitto
from tests.conftest import at, policy_text
from tests.services import Influx1
from tests.shell.township import Collector, Township, eventually

ROOT = Path(__file__).resolve().parents[2]
POLICY = load(ROOT / "config" / "township.toml").policy
FEED = list(counters(POLICY, dt.date(2010, 10, 20), 2, step_s=600, seed=3))
ALERT = 'quota_alert,firm=x,rule=firm_daily_limit,severity=violation,township=t id="t/x/{n}",action="cutoff" {t}'
READING = "meter_reading,firm=x,meter=x-m,township=t energy_kwh={n}.5 {t}"


def run_sink(
    settings: InfluxSettings, store: Store, until: Callable[[InfluxSink], bool], limit_s: float = 10.0
) -> InfluxSink:
    """The sink's delivery loop, until `until(sink)` holds or `limit_s` passed."""

    async def scenario() -> InfluxSink:
        sink = InfluxSink(settings, store)
        wake = asyncio.Event()
        wake.set()
        task = asyncio.create_task(sink.deliver(wake))
        deadline = time.monotonic() + limit_s
        while not until(sink) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return sink

    return asyncio.run(scenario())


def queue_points(store: Store, first: int, n: int) -> None:
    for k in range(first, first + n):
        t = 1287504000 * 10**9 + k * 60 * 10**9
        store.append("reading", {}, [("influx", "points", ALERT.format(n=k, t=t))])
        store.append("reading", {}, [("influx", TELEMETRY, READING.format(n=k, t=t))])


def test_influxdb_1x_with_authentication(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    right, wrong, token = tmp_path / "influx.pass", tmp_path / "wrong.pass", tmp_path / "influx.token"
    right.write_text("s3cret\n", encoding="utf-8")
    wrong.write_text("guess\n", encoding="utf-8")
    token.write_text("quotad:s3cret\n", encoding="utf-8")  # what InfluxDB 1.8+ would take as a token
    store = Store(tmp_path / "state")
    with Influx1(tmp_path / "influx", admin=("admin", "adm1n")) as influx:
        influx.add_writer("quotad", "s3cret")
        good = InfluxSettings(url=influx.url, username="quotad", password_file=right)
        queue_points(store, 0, 2)
        assert run_sink(good, store, lambda s: store.backlog("influx") == 0).delivered == 4
        assert len(influx.query("SELECT id FROM quota_alert")) == 2
        assert len(influx.query("SELECT energy_kwh FROM meter_reading")) == 2

        queue_points(store, 2, 3)
        caplog.clear()
        refused = run_sink(good.model_copy(update={"password_file": wrong}), store, lambda s: False, limit_s=3.5)
        assert refused.delivered == 0
        assert refused.fault == "not authorized"
        assert store.backlog("influx") == 6  # all kept
        said = [r.getMessage() for r in caplog.records]
        assert sum(f"InfluxDB at {influx.url} refused the credentials (not authorized" in m for m in said) == 1, said
        assert not any("unavailable" in m for m in said), said

        caplog.clear()
        tokened = InfluxSettings(url=influx.url, token_file=token)
        assert run_sink(tokened, store, lambda s: False, limit_s=1.0).delivered == 0
        assert "InfluxDB 1.x before 1.8 (Debian 12's 1.6) does not take token_file" in caplog.text

        assert run_sink(good, store, lambda s: store.backlog("influx") == 0).delivered == 6
        assert sorted(row["id"] for row in influx.query("SELECT id FROM quota_alert")) == [f"t/x/{n}" for n in range(5)]
        assert len(influx.query("SELECT energy_kwh FROM meter_reading")) == 5
    assert "s3cret" not in caplog.text


def outbox_rows(store: Store) -> list[tuple[int, str, str]]:
    return [(int(s), str(k), str(b)) for s, k, b in store.db.execute("SELECT seq, key, body FROM outbox ORDER BY seq")]


def recounted(store: Store, sink: str) -> int:
    row = store.db.execute("SELECT SUM(length(CAST(body AS BLOB))) FROM outbox WHERE sink = ?", (sink,)).fetchone()
    return int(row[0] or 0)


def journaled(state: Path) -> Journal:
    """Two days of the example township journaled with InfluxDB away: a transaction per poll round, as live."""
    journal = Journal(Store(state), POLICY, prefix=None, influx=True)
    for _t, readings in itertools.groupby(FEED, key=lambda r: r.t):
        with journal.store.batch():
            for reading in readings:
                journal.record_reading(reading)
    return journal


def test_past_its_bound_the_oldest_telemetry_gives_way_and_alerts_and_orders_never(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = journaled(tmp_path / "state")
    store = journal.store
    raised = sorted(journal.engine.raised)
    orders = sorted(journal.engine.orders)
    assert raised
    assert orders
    before = outbox_rows(store)
    kept_before = [row for row in before if row[1] != TELEMETRY]
    assert recounted(store, "influx") > 4 * 250_000
    influx = Influx1(tmp_path / "influx")  # not started yet: its port refuses connections
    settings = InfluxSettings(url=influx.url, outbox_max_mb=0.25)

    sink = run_sink(settings, store, lambda s: s.down)
    assert recounted(store, "influx") == store.outbox_bytes("influx") <= 250_000
    after = outbox_rows(store)
    assert [row for row in after if row[1] != TELEMETRY] == kept_before  # every alert and order point kept
    telemetry = [row for row in before if row[1] == TELEMETRY]
    left = [row for row in after if row[1] == TELEMETRY]
    assert left == telemetry[len(telemetry) - len(left) :]  # the oldest gave way
    gone = telemetry[: len(telemetry) - len(left)]
    gone_readings = sum(body.count("meter_reading,") for _s, _k, body in gone)
    counts = sink.bound.counts()
    assert counts["points"] == sum(body.count("\n") + 1 for _s, _k, body in gone)
    assert counts["readings"] == gone_readings > 0
    assert sink.bound.status()["dropped_readings"] == gone_readings
    said = [r.getMessage() for r in caplog.records if "past its bound" in r.getMessage()]
    assert len(said) == 1, said
    begun = f"influx outbox past its bound (over 0.25 MB): the oldest telemetry gives way, {counts['points']} points"
    assert said[0].startswith(begun), said

    waiting = sum(body.count("\n") + 1 for _s, _k, body in after)
    with influx:
        run_sink(settings, store, lambda s: store.backlog("influx") == 0)
        assert store.backlog("influx") == 0
        assert sorted(row["id"] for row in influx.query("SELECT id FROM quota_alert")) == raised
        assert sorted({row["firm"] for row in influx.query("SELECT * FROM cutoff_order")}) == orders
        stored = [row["time"] for row in influx.query("SELECT energy_kwh FROM meter_reading")]
        assert len(stored) == len(FEED) - gone_readings
        first = dt.datetime.fromisoformat(min(stored).replace("Z", "+00:00"))
        newest = [r for r in FEED if r.t >= int(first.timestamp()) * 1_000_000]
        assert len(newest) == len(stored)  # the newest readings, every one of them
        assert influx.points_written() == waiting  # each point once: none written twice
    assert "influx outbox delivered: " in caplog.text
    assert f"({gone_readings} meter readings) gave way to its bound in that outage" in caplog.text


def test_telemetry_waiting_longer_than_the_age_bound_gives_way(tmp_path: Path) -> None:
    store = Store(tmp_path)
    queue_points(store, 0, 10)
    store.db.execute("UPDATE outbox SET queued = queued - 7300 WHERE seq <= 10")  # the first five of each: 2 h ago
    bound = OutboxBound(store, "influx", max_mb=512, max_age_h=2)
    dropped = bound.enforce()
    assert (dropped.points, dropped.readings) == (5, 5)
    keys = [(seq, key) for seq, key, _b in outbox_rows(store)]
    assert keys == [(seq, "points") for seq in range(1, 11, 2)] + [
        (seq, key) for seq in range(11, 21) for key in ["points" if seq % 2 else TELEMETRY]
    ]
    assert bound.enforce().points == 0  # nothing more is old, and the bytes are far from the bound
    assert store.outbox_bytes("influx") == recounted(store, "influx")


def test_a_store_that_cannot_be_written_keeps_the_sink_going(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A full disk (here: a store made read-only under the bound) is said once; the sink's loop goes on, and the
    bound is kept once the store takes writes again."""
    store = Store(tmp_path)
    queue_points(store, 0, 10)
    bound = OutboxBound(store, "influx", max_mb=0.0002, max_age_h=1)
    store.db.execute("PRAGMA query_only = 1")
    assert bound.enforce().points == bound.enforce().points == 0
    assert caplog.text.count("influx outbox: cannot drop what is past its bound (cannot write the state in") == 1
    assert "the write failed (attempt to write a readonly database)" in caplog.text
    store.db.execute("PRAGMA query_only = 0")
    assert bound.enforce().readings > 0
    assert "influx outbox: its bound is kept again" in caplog.text
    assert [key for _seq, key, _body in outbox_rows(store)] == ["points"] * 10  # the alerts stay, past the bound
    assert store.outbox_bytes("influx") == recounted(store, "influx")


def test_an_old_state_dir_gains_the_queued_column(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "quotad.db")
    db.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, sink TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, "
        "event INTEGER)"
    )
    db.execute("INSERT INTO outbox (sink, key, body, event) VALUES ('influx', 'points', 'old 1', 1)")
    db.commit()
    db.close()
    store = Store(tmp_path)
    store.append("reading", {}, [("influx", TELEMETRY, "new 2")])
    assert [i.body for i in store.pending("influx")] == ["old 1", "new 2"]
    assert store.outbox_bytes("influx") == 10
    assert OutboxBound(store, "influx", max_mb=512, max_age_h=1).enforce().points == 0


def outbox_lines(state: Path) -> tuple[int, int]:
    """(rows, points) waiting in the InfluxDB outbox of a daemon's state, read beside it."""
    with contextlib.closing(sqlite3.connect(f"file:{state / 'quotad.db'}?mode=ro", uri=True, timeout=5)) as db:
        rows = db.execute("SELECT body FROM outbox WHERE sink = 'influx'").fetchall()
    return len(rows), sum(body.count("\n") + 1 for (body,) in rows)


def journal_readings(state: Path) -> tuple[int, list[str]]:
    """(readings journaled, alert ids raised) of a daemon's state, read beside it."""
    if not (state / "quotad.db").exists():
        return 0, []
    with contextlib.closing(sqlite3.connect(f"file:{state / 'quotad.db'}?mode=ro", uri=True, timeout=5)) as db:
        try:
            rows = db.execute("SELECT body FROM events WHERE kind = 'reading'").fetchall()
        except sqlite3.OperationalError:  # the schema is not written yet
            return 0, []
    return len(rows), [i for (body,) in rows for i in json.loads(body)["raised"]]


def test_the_daemon_reports_what_gave_way_and_delivers_every_alert_once_the_database_is_back(tmp_path: Path) -> None:
    """`quotad run` with InfluxDB down and a small bound: the oldest readings give way, the log says so once, the
    retained `status/daemon` and `quotad status` count them; restarted once InfluxDB is up, the daemon delivers
    every alert and order point, each once, and the newest readings."""
    (tmp_path / "mq").mkdir()
    (tmp_path / "township.toml").write_text(policy_text(), encoding="utf-8")
    influx = Influx1(tmp_path / "influx")  # started later: meanwhile its port refuses connections
    state = tmp_path / "state"
    with Mosquitto(data_dir=tmp_path / "mq") as broker:
        config = tmp_path / "quotad.toml"
        config.write_text(
            f'policy = "township.toml"\nstate_dir = "{state}"\n[mqtt]\nport = {broker.port}\nclient_id = "q-bound"\n'
            f'[influx]\nurl = "{influx.url}"\noutbox_max_mb = 0.05\n',
            encoding="utf-8",
        )
        town = Township(tmp_path, config)
        watcher = Collector(broker, ["quotad/t/#"])
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="meters")
        try:
            town.start_daemon()
            eventually(lambda: watcher.last("quotad/t/daemon") == "online", "the daemon online")
            publisher.connect("127.0.0.1", broker.port)
            publisher.loop_start()
            start = at("2010-10-20 00:00") // 1_000_000
            for minute in range(600):  # x (limit 100 kWh) reaches 180 kWh; p, off that day, draws 120 kWh
                for meter, rate in {"p": 0.2, "s": 0.05, "x": 0.3, "g": 0.05, "w": 0.01}.items():
                    reading = {"ts": start + 60 * minute, "energy_kwh": round(rate * minute, 2)}
                    publisher.publish(f"quotad/t/meters/{meter}-m", json.dumps(reading), qos=1)
            eventually(lambda: journal_readings(state)[0] == 3000, "every reading journaled")

            def dropped() -> dict[str, Any]:
                status = json.loads(watcher.last("quotad/t/status/daemon") or "{}")
                return dict(status.get("outbox", {}).get("influx", {}))

            eventually(lambda: dropped().get("dropped_readings", 0) > 0, "the drops reported in status/daemon")
            status = subprocess.run(
                [sys.executable, "-m", "quotad", "status", "-c", str(config)],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert town.stop_daemon() == 0
            gone = dropped()
            _rows, waiting = outbox_lines(state)
            readings, raised = journal_readings(state)
            with influx:
                town.start_daemon()
                eventually(lambda: outbox_lines(state)[0] == 0, "the outbox delivered")
                eventually(lambda: "outbox delivered" in town.log(), "the episode's end logged")
                alerts = sorted(row["id"] for row in influx.query("SELECT id FROM quota_alert"))
                ordered = {row["firm"] for row in influx.query("SELECT * FROM cutoff_order")}
                stored = influx.query("SELECT count(energy_kwh) FROM meter_reading")[0]["count"]
                written = influx.points_written()
                assert town.stop_daemon() == 0
        finally:
            publisher.loop_stop()
            watcher.close()
            town.close()
    assert gone["state"] == "unavailable"
    assert gone["max_mb"] == 0.05
    assert gone["pending_mb"] <= 0.05
    assert status.returncode == 0, status.stderr
    assert "InfluxDB 写入：无法连接" in status.stdout
    said = re.search(
        r"已丢弃最早的遥测数据 (\d+) 条（其中电表读数 (\d+) 条，最近一次 \d{4}-\d\d-\d\d \d\d:\d\d）", status.stdout
    )
    assert said, status.stdout
    assert 0 < int(said[2]) <= gone["dropped_readings"]  # as retained when `status` ran (more may have gone since)
    log = town.log()
    assert log.count("influx outbox past its bound (over 0.05 MB)") == 1
    assert "Traceback" not in log
    assert readings == 3000
    assert {a.split("/")[1] for a in raised} >= {"p", "x"}
    assert alerts == sorted(raised)  # every alert, ...
    assert ordered == {"p", "x"}  # ... every order, ...
    assert stored == 3000 - gone["dropped_readings"]  # ... the readings that did not give way, ...
    assert written == waiting  # ... each point once

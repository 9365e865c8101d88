"""The InfluxDB sink against a real influxd: 1.x's authentication.

An `auth-enabled` influxd (Debian's 1.6) takes HTTP Basic credentials and answers 401 to `Authorization: Token`:
the sink must say "not authorized", keep every point, and deliver them all once the credentials are right.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from quotad.config.daemon import InfluxSettings
from quotad.sinks import InfluxSink
from quotad.store import Store
from tests.services import Influx1

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
        store.append("reading", {}, [("influx", "points", READING.format(n=k, t=t))])


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

"""Snapshots of the state as a value: a reload carries the state over without replaying the journal, a restart
replays only what follows the latest snapshot, the journal is compacted behind the snapshots without losing the
register of alerts and orders, and a snapshot this quotad cannot read costs a replay, never the state."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from pathlib import Path

import pytest

from quotad.config.load import load
from quotad.core.policy import Policy
from quotad.core.state import STATE_VERSION
from quotad.shell import journal as journal_module
from quotad.shell import snapshots
from quotad.shell.daemon import Daemon
from quotad.shell.journal import Journal
from quotad.shell.register import recorded_orders
from quotad.shell.store import Store
from tests.orders_help import ending, order_command
from tests.shell.test_journal import FEED, POLICY, outbox_ids

ROOT = Path(__file__).resolve().parents[2]
HALF = len(FEED) // 2
EDITED = POLICY.model_copy(update={"township": POLICY.township.model_copy(update={"standby_kwh": 51.0})})


def journal(state: Path, policy: Policy = POLICY) -> Journal:
    return Journal(Store(state), policy, prefix="quotad", influx=True)


def raised_in_events(store: Store) -> list[str]:
    return [i for e in store.events() if e.kind == "reading" for i in e.body["raised"]]


def no_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise AssertionError("a journal event was replayed")

    monkeypatch.setattr(Journal, "_replay", refuse)


def test_a_reload_carries_the_state_and_a_restart_after_it_replays_only_what_follows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """standby_kwh 50 -> 51 halfway: the new engine is built from the old one's state (no event replayed), and
    a process killed after the reload's snapshot and started again under the new policy raises, journals and
    queues exactly what the uninterrupted one does."""
    straight = journal(tmp_path / "straight")
    ids = [a.id for r in FEED[:HALF] for a in straight.record_reading(r)]
    with monkeypatch.context() as patched:
        no_replay(patched)
        straight = straight.reloaded(EDITED)
    assert straight.engine.raised
    assert straight.engine.orders
    ids += [a.id for r in FEED[HALF:] for a in straight.record_reading(r)]

    crashy = journal(tmp_path / "crashy")
    for reading in FEED[:HALF]:
        crashy.record_reading(reading)
    before = crashy.engine.state()
    crashy = crashy.reloaded(EDITED)
    crashy.snapshot()  # what the daemon does at a reload: the point a restart replays from
    snapshot_at = crashy.last_event
    assert crashy.engine.state() == before  # a policy edit changes no cursor, total, id or order
    three_quarters = HALF + len(FEED) // 4
    for reading in FEED[HALF:three_quarters]:
        crashy.record_reading(reading)
    crashy.store.close()  # killed
    restarted = journal(tmp_path / "crashy", EDITED)
    lists = sum(1 for e in restarted.store.events(after=snapshot_at) if e.kind == "inspections")  # each 07:00's
    assert restarted.restore() == three_quarters - HALF + lists  # the events after the reload's snapshot, no more
    for reading in FEED[three_quarters:]:
        restarted.record_reading(reading)
    assert raised_in_events(restarted.store) == raised_in_events(straight.store) == ids
    assert outbox_ids(restarted.store) == outbox_ids(straight.store)
    assert restarted.engine.state() == straight.engine.state()
    assert restarted.points == straight.points


def test_the_daemons_reload_replays_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = tmp_path / "township.toml"
    shipped = (ROOT / "config" / "township.toml").read_text(encoding="utf-8")
    policy.write_text(shipped, encoding="utf-8")
    config = tmp_path / "quotad.toml"
    config.write_text(f'policy = "township.toml"\nstate_dir = "{tmp_path}/state"\n', encoding="utf-8")
    daemon = Daemon(load(config), config)
    try:
        for reading in FEED:
            daemon.journal.record_reading(reading)
        before = daemon.journal.engine.state()
        policy.write_text(shipped.replace("standby_kwh = 50", "standby_kwh = 51"), encoding="utf-8")
        no_replay(monkeypatch)
        assert daemon.reload()
        assert daemon.journal.policy.township.standby_kwh == 51
        assert daemon.journal.engine.state() == before
        assert daemon.journal.last_event == daemon.store.last_event()
    finally:
        daemon.store.close()
        daemon.lock.release()


def test_compaction_deletes_covered_readings_keeps_the_register_and_restores_the_same_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "SNAPSHOT_EVERY", 100)
    live = journal(tmp_path)
    lift_done = False
    for n, reading in enumerate(FEED):
        live.record_reading(reading)
        if not lift_done and n > HALF and live.engine.orders:  # an operator's event among the readings
            firm = sorted(live.engine.orders)[0]
            live.record_command(order_command(ending(live.engine.orders[firm]), firm))
            lift_done = True
        if n % 250 == 0:
            live.compact()
    assert lift_done
    live.snapshot()
    raised_before = raised_in_events(live.store)
    kinds_before = sorted(e.kind for e in live.store.events() if e.kind != "reading")
    deleted = live.compact()
    assert deleted
    kept = live.store.snapshot_events()
    assert len(kept) == 2  # the latest and the one before, behind which the journal is compacted
    older = kept[1][0]
    readings = [e for e in live.store.events() if e.kind == "reading"]
    assert all(e.body["raised"] or e.body["orders"] or e.seq > older for e in readings)  # the plain ones are gone
    assert len(readings) < len(FEED) / 2
    assert raised_in_events(live.store) == raised_before  # every alert raised is still in the register
    assert sorted(e.kind for e in live.store.events() if e.kind != "reading") == kinds_before  # lifts, multipliers
    assert recorded_orders(live.store) == live.engine.orders  # what `quotad orders` reads
    assert live.store.compacted_through() >= older - 1

    restarted = journal(tmp_path)
    assert restarted.restore() == 0
    assert restarted.engine.state() == live.engine.state()
    assert restarted.points == live.points
    restarted.store.db.execute("DELETE FROM snapshots WHERE event = ?", (kept[0][0],))  # the latest unreadable
    again = journal(tmp_path)
    again.restore()  # from the older one, and the events after it: all still there
    assert again.engine.state() == live.engine.state()


def test_a_snapshot_of_an_unknown_version_costs_a_replay(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    live = journal(tmp_path)
    for reading in FEED:
        live.record_reading(reading)
    live.snapshot()
    event, version, blob = live.store.snapshots().__next__()
    body = json.loads(zlib.decompress(blob))
    body["engine"]["version"] = STATE_VERSION + 98
    live.store.db.execute(
        "UPDATE snapshots SET blob = ? WHERE event = ?", (zlib.compress(json.dumps(body).encode()), event)
    )
    caplog.set_level(logging.INFO, logger="quotad")
    restarted = journal(tmp_path)
    assert restarted.restore() == live.store.last_event()  # every event, from the start
    assert (
        f"state snapshot at event {event} not read: saved engine state has schema version {STATE_VERSION + 98}"
        in caplog.text
    )
    assert "rebuilding from the journal" in caplog.text
    assert restarted.engine.state() == live.engine.state()
    assert version == snapshots.FORMAT


def test_a_pickle_of_an_older_quotad_is_not_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    live = journal(tmp_path)
    for reading in FEED[:HALF]:
        live.record_reading(reading)
    live.store.save_snapshot(live.last_event, "0.9.0:6:0123456789abcdef", b"\x80\x05not read")
    caplog.set_level(logging.INFO, logger="quotad")
    restarted = journal(tmp_path)
    assert restarted.restore() == live.store.last_event()
    assert "is from an older quotad (0.9.0:6:0123456789abcdef): not read" in caplog.text
    assert restarted.engine.state() == live.engine.state()


def test_the_daemons_snapshots_are_encoded_while_the_loop_goes_on(tmp_path: Path) -> None:
    """The daemon's snapshot copies the state on the loop, encodes it on a worker thread (the loop keeps running:
    readings, watchdog pings), saves it and compacts the journal behind the older of the two it keeps."""
    live = journal(tmp_path)
    live.auto_snapshot = False
    loop_turns: list[float] = []

    covered: list[int] = []  # the event each snapshot covers through

    async def run() -> None:
        snapper = snapshots.Snapshotter(lambda: live, lambda: True)

        async def ticker() -> None:
            while True:
                loop_turns.append(time.monotonic())
                await asyncio.sleep(0.001)

        ticking = asyncio.create_task(ticker())
        for part in (FEED[:HALF], FEED[HALF:]):
            for reading in part:
                live.record_reading(reading)
            snapper.start()
            task = snapper.task
            snapper.start()  # one at a time: a second start while one is under way follows it, in the same task
            assert snapper.task is task
            assert task is not None
            await task
            assert snapper.covered == live.last_event
            covered.append(live.last_event)
        ticking.cancel()

    asyncio.run(run())
    assert loop_turns
    assert [event for event, _format in live.store.snapshot_events()] == [covered[1], covered[0]]
    assert covered[1] - covered[0] >= len(FEED) - HALF  # the readings, and each morning's inspection list
    assert live.store.compacted_through() == covered[0]
    restarted = journal(tmp_path)
    assert restarted.restore() == 0
    assert restarted.engine.state() == live.engine.state()

"""The journal: a crash at any moment, then a restart, gives what an uninterrupted run gives."""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quotad.config.load import load
from quotad.core.feed import counters
from quotad.core.ledger import Total
from quotad.core.outputs import Message, line, meter_reading_line
from quotad.core.policy import Policy
from quotad.core.readings import Reading
from quotad.shell import journal as journal_module
from quotad.shell.journal import Journal
from quotad.shell.register import order_history
from quotad.shell.store import TELEMETRY, Store
from tests.orders_help import ending, order_command, people

ROOT = Path(__file__).resolve().parents[2]
K = TypeVar("K")
POLICY = load(ROOT / "config" / "township.toml").policy
FEED = list(counters(POLICY, dt.date(2010, 10, 20), 2, step_s=600, seed=3))


def wh(totals: Mapping[K, Total]) -> dict[K, int]:
    """The values of a ledger's totals, now (the totals themselves go on changing)."""
    return {key: total.wh for key, total in totals.items()}


def uninterrupted(tmp: Path) -> tuple[list[str], Journal]:
    journal = Journal(Store(tmp / "straight"), POLICY, prefix="quotad", influx=True)
    ids = [a.id for r in FEED for a in journal.record_reading(r)]
    return ids, journal


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Journal]:
    return uninterrupted(tmp_path_factory.mktemp("reference"))


def outbox_ids(store: Store) -> list[str]:
    return [
        __import__("json").loads(Message.from_json(item.body).payload)["id"]
        for item in store.pending("mqtt", 100_000)
        if "/alerts/" in Message.from_json(item.body).topic
    ]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(crashes=st.lists(st.integers(min_value=1, max_value=len(FEED) - 1), min_size=1, max_size=4, unique=True),
       snapshot_every=st.sampled_from([7, 100, 10**9]))  # fmt: skip
def test_crash_anywhere_then_restart_equals_uninterrupted(
    tmp_path_factory: pytest.TempPathFactory,
    reference: tuple[list[str], Journal],
    crashes: list[int],
    snapshot_every: int,
) -> None:
    expected_ids, straight = reference
    state = tmp_path_factory.mktemp("crashy")
    journal_module.SNAPSHOT_EVERY = snapshot_every
    try:
        journal = Journal(Store(state), POLICY, prefix="quotad", influx=True)
        raised: list[str] = []
        for n, reading in enumerate(FEED):
            if n in crashes:  # the process dies: only the store survives
                journal.store.close()
                journal = Journal(Store(state), POLICY, prefix="quotad", influx=True)
                journal.restore()
            raised += [a.id for a in journal.record_reading(reading)]
    finally:
        journal_module.SNAPSHOT_EVERY = 20_000
    assert raised == expected_ids  # every alert once, in the same order
    assert outbox_ids(journal.store) == expected_ids  # and each put in the outbox exactly once
    assert journal.engine.orders == straight.engine.orders
    assert journal.engine.ledger.firm_day == straight.engine.ledger.firm_day
    assert journal.engine.ledger.township_day == straight.engine.ledger.township_day
    assert journal.engine.raised == straight.engine.raised


def test_restore_keeps_history_when_the_policy_changes(tmp_path: Path) -> None:
    journal = Journal(Store(tmp_path), POLICY, prefix="quotad", influx=False)
    ids = [a.id for r in FEED for a in journal.record_reading(r)]
    orders = dict(journal.engine.orders)
    assert orders  # the example township's feed provokes cutoffs
    looser = POLICY.model_copy(update={"township": POLICY.township.model_copy(update={"daily_cap_kwh": 10**7})})
    restarted = Journal(Store(tmp_path), looser, prefix="quotad", influx=False)
    restarted.restore()
    assert restarted.engine.orders == orders
    assert set(ids) <= restarted.engine.raised


def test_lift_is_journaled_and_survives_restart(tmp_path: Path) -> None:
    journal = Journal(Store(tmp_path), POLICY, prefix="quotad", influx=True)
    for reading in FEED:
        journal.record_reading(reading)
    firm = sorted(journal.engine.cut_off(dt.date(2010, 10, 21)))[0]
    action = ending(journal.engine.orders[firm])
    journal.record_command(order_command(action, firm, reason="复核后解除"))
    messages = [Message.from_json(i.body) for i in journal.store.pending("mqtt", 100_000)]
    assert messages[-1].topic == f"quotad/xx-town/orders/{firm}"
    assert messages[-1].payload == ""  # the retained order is cleared
    assert messages[-1].retain
    lines = [i.body for i in journal.store.pending("influx", 100_000)]
    assert lines[-1].startswith(f"cutoff_order,firm={firm},township=xx-town ")
    assert f"lifted={'true' if action == 'lift' else 'false'}" in lines[-1]
    assert 'reason="复核后解除"' in lines[-1]
    restarted = Journal(Store(tmp_path), POLICY, prefix="quotad", influx=True)
    restarted.restore()
    ended = restarted.engine.orders[firm]
    assert not ended.open
    assert ended.history[-1].reason == "复核后解除"
    assert firm not in restarted.engine.cut_off(dt.date(2010, 10, 21))


def test_state_dir_is_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    Store(state).close()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "quotad.db").stat().st_mode) == 0o600
    os.chmod(state, 0o755)
    Store(state).close()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_notices_are_sent_once(tmp_path: Path) -> None:
    journal = Journal(Store(tmp_path), POLICY, prefix="quotad", influx=False)
    message = Message("quotad/xx-town/notices", "明日安排", retain=False)
    assert journal.record_notice("rota:2010-10-21", message)
    assert not journal.record_notice("rota:2010-10-21", message)
    again = Journal(Store(tmp_path), POLICY, prefix="quotad", influx=False)
    assert not again.record_notice("rota:2010-10-21", message)
    assert len(journal.store.pending("mqtt")) == 1


def test_an_order_that_ended_clears_its_retained_topic_once(tmp_path: Path) -> None:
    journal = Journal(Store(tmp_path), POLICY, prefix="quotad", influx=True)
    for reading in FEED:
        journal.record_reading(reading)
    orders = sorted(journal.engine.orders)
    assert orders
    assert journal.record_order_ends(dt.date(2010, 12, 31)) == []  # the control period's last day: still standing
    before = len(journal.store.pending("mqtt", 100_000))
    ended = journal.record_order_ends(dt.date(2011, 1, 1))
    assert sorted(o.firm for o in ended) == orders
    cleared = [Message.from_json(i.body) for i in journal.store.pending("mqtt", 100_000)][before:]
    assert sorted((m.topic, m.payload, m.retain) for m in cleared) == [
        (f"quotad/xx-town/orders/{firm}", "", True) for firm in orders
    ]
    lines = [i.body for i in journal.store.pending("influx", 100_000)][-len(orders) :]
    assert all(line.startswith("cutoff_order,") and 'reason="ended"' in line for line in lines)
    assert journal.record_order_ends(dt.date(2011, 1, 2)) == []  # once, ...
    restarted = Journal(Store(tmp_path), POLICY, prefix="quotad", influx=True)
    restarted.restore()
    assert restarted.record_order_ends(dt.date(2011, 1, 2)) == []  # ... across a restart too
    assert restarted.engine.cut_off(dt.date(2011, 1, 1)) == set()


CHILD = """
import datetime as dt, sys
from pathlib import Path
from quotad.config.load import load
from quotad.shell.journal import Journal
from quotad.core.feed import counters
from quotad.shell.store import TELEMETRY, Store
from tests.orders_help import people
policy = load(Path(sys.argv[1])).policy
feed = list(counters(policy, dt.date(2010, 10, 19), 3, step_s=600, seed=11))
journal = Journal(Store(Path(sys.argv[2])), policy, prefix="quotad", influx=True)
journal.restore()
for i in range(0, len(feed), 20):  # as the daemon does: a batch per transaction
    with journal.store.batch():
        for reading in feed[i : i + 20]:  # from the start each time: what is journaled already is ignored
            journal.record_reading(reading)
    people(journal, i // 20)  # and what people do in between, each command once
print("done", flush=True)
"""


def test_kill_9_at_twenty_moments_over_three_days(tmp_path: Path) -> None:
    """A process journaling a 3-day feed of the example township (batches of 20 readings, as the daemon), with
    people's commands in between (orders confirmed, notified, executed, one made by hand, talks), is killed with
    SIGKILL at 20 seeded points of its progress, and started again each time; the broker's part (sending again
    what was not acknowledged) is played by starting the feed over. Identical alerts (in the order raised), orders
    with their histories, the register, escalations, daily totals and outboxes (every topic, every point) to the
    uninterrupted run: zero lost, zero duplicated."""
    feed = list(counters(POLICY, dt.date(2010, 10, 19), 3, step_s=600, seed=11))
    straight = Journal(Store(tmp_path / "straight"), POLICY, prefix="quotad", influx=True)
    straight.restore()
    for i in range(0, len(feed), 20):
        with straight.store.batch():
            for reading in feed[i : i + 20]:
                straight.record_reading(reading)
        people(straight, i // 20)
    expected = [i for e in straight.store.events() for i in e.body.get("raised", ())]
    commands = [e.body["id"] for e in straight.store.events() if e.kind in ("order", "issue", "talk")]
    assert len(commands) == len(range(0, len(feed), 100))  # one every fifth batch
    by_people = {c.state for o in straight.engine.orders.values() for c in o.history if c.by == "督查"}
    assert by_people == {"issued", "notified", "executed"}, by_people  # confirmed, notified, executed, by hand
    state = tmp_path / "crashy"
    targets = sorted(random.Random(20).sample(range(1, len(feed)), 20))  # journaled readings at each kill
    command = [sys.executable, "-c", CHILD, str(ROOT / "config" / "township.toml"), str(state)]
    kills, landed = 0, []
    for target in targets:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=ROOT)
        deadline = time.monotonic() + 60
        while child.poll() is None and journaled(state) < target:
            assert time.monotonic() < deadline, "the child made no progress"
            time.sleep(0.002)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.wait(10)
        landed.append(journaled(state))
    finished = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT, timeout=120)
    assert finished.stdout.strip() == "done"
    assert kills == 20, landed
    assert len(set(landed)) >= 15  # the kills fell at many different moments
    store = Store(state)
    raised = [i for e in store.events() for i in e.body.get("raised", ())]
    assert len(expected) >= 10  # three days of the example township break the plan many times (16)
    assert raised == expected  # every alert once, in the order raised
    assert outbox_ids(store) == outbox_ids(straight.store) == [i for i in expected if "/manual_order/" not in i]
    assert [i.body for i in store.pending("mqtt", 10**6)] == [i.body for i in straight.store.pending("mqtt", 10**6)]
    assert [i.body for i in store.pending("influx", 10**6)] == [i.body for i in straight.store.pending("influx", 10**6)]
    assert [e.body["id"] for e in store.events() if e.kind in ("order", "issue", "talk")] == commands  # each once
    assert order_history(store) == order_history(straight.store)
    restarted = Journal(store, POLICY, prefix="quotad", influx=True)
    restarted.restore()
    assert restarted.engine.orders == straight.engine.orders
    assert restarted.engine.escalations == straight.engine.escalations
    assert restarted.engine.ledger.firm_day == straight.engine.ledger.firm_day
    assert restarted.engine.ledger.township_day == straight.engine.ledger.township_day
    assert journaled(state) == len(feed)


def journaled(state: Path) -> int:
    """Readings journaled in `state` so far (read-only, while another process writes)."""
    if not (state / "quotad.db").exists():
        return 0
    db = sqlite3.connect(f"file:{state / 'quotad.db'}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT COUNT(*) FROM events WHERE kind = 'reading'").fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not written yet
        return 0
    finally:
        db.close()


def test_township_energy_points_carry_the_projection(tmp_path: Path) -> None:
    journal = Journal(Store(tmp_path), POLICY, prefix=None, influx=True)
    for reading in FEED:
        journal.record_reading(reading)
    lines = [line for i in journal.store.pending("influx", 10**6) for line in i.body.split("\n")]
    points = [line for line in lines if line.startswith("township_energy,")]
    assert points
    assert all("projected_kwh=" in p and "cap_kwh=54611.0" in p for p in points[1:])  # the first has no rate yet


def with_multiplier(meter_id: str, value: float) -> Policy:
    meters = [m.model_copy(update={"multiplier": value}) if m.id == meter_id else m for m in POLICY.meters]
    return POLICY.model_copy(update={"meters": tuple(meters)})


def test_a_ct_ratio_changed_by_reload_counts_from_then_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An electrician swaps sd-main's CT for one of twice the ratio, the operator edits `multiplier` and reloads:
    energy already counted stays as counted, the counter's later rises count double, and a restart (from the
    snapshot or from the bare journal) keeps exactly that."""
    half = len(FEED) // 2
    raw = [r.energy_kwh for r in FEED if r.meter == "sd-main"]
    at_reload = [r.energy_kwh for r in FEED[:half] if r.meter == "sd-main"][-1]
    journal = Journal(Store(tmp_path), POLICY, prefix="quotad", influx=False)
    for reading in FEED[:half]:
        journal.record_reading(reading)
    before = wh(journal.engine.ledger.firm_day), journal.engine.ledger.meters["sd-main"].counted_wh
    doubled = with_multiplier("sd-main", 2.0)
    reloaded = Journal(Store(tmp_path), doubled, prefix="quotad", influx=False)  # what SIGHUP does
    reloaded.restore()
    assert (wh(reloaded.engine.ledger.firm_day), reloaded.engine.ledger.meters["sd-main"].counted_wh) == before
    assert "meter sd-main: multiplier 1 -> 2" in caplog.text
    for reading in FEED[half:]:
        reloaded.record_reading(reading)
    counted = reloaded.engine.ledger.meters["sd-main"].counted_wh - before[1]
    assert abs(counted - 2 * (raw[-1] - at_reload) * 1000) <= 2  # rounding of the rescaled baseline

    straight = Journal(Store(tmp_path / "straight"), POLICY, prefix="quotad", influx=False)
    for reading in FEED:
        straight.record_reading(reading)
    sd_days = {k: v for k, v in wh(reloaded.engine.ledger.firm_day).items() if k[0] == "shengda"}
    straight_sd = {k: v for k, v in wh(straight.engine.ledger.firm_day).items() if k[0] == "shengda"}
    assert sum(sd_days.values()) - sum(straight_sd.values()) == pytest.approx(counted / 2, abs=2)
    others = {k: v for k, v in wh(reloaded.engine.ledger.firm_day).items() if k[0] != "shengda"}
    assert others == {k: v for k, v in wh(straight.engine.ledger.firm_day).items() if k[0] != "shengda"}

    for drop_snapshots in (False, True):
        store = Store(tmp_path)
        if drop_snapshots:
            store.db.execute("DELETE FROM snapshots")
        restarted = Journal(store, doubled, prefix="quotad", influx=False)
        restarted.restore()
        assert restarted.engine.ledger.firm_day == reloaded.engine.ledger.firm_day
        assert restarted.engine.ledger.township_day == reloaded.engine.ledger.township_day
        assert restarted.engine.raised == reloaded.engine.raised
        assert not list(store.events(reloaded.last_event))  # nothing new to journal: the ratio is in force

    back = Journal(Store(tmp_path), POLICY, prefix="quotad", influx=False)  # and the old CT put back
    back.restore()
    assert back.engine.ledger.firm_day == reloaded.engine.ledger.firm_day
    assert back.engine.ledger.meters["sd-main"].multiplier == 1.0


@settings(max_examples=300, deadline=None)
@given(
    meter=st.text(min_size=1, max_size=12),
    t=st.integers(min_value=0, max_value=2**62),
    energy=st.floats(min_value=0, max_value=1e15),
    power=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    raised=st.lists(st.text(max_size=20), max_size=3),
)
def test_a_reading_event_is_written_as_json_dumps_would(
    meter: str, t: int, energy: float, power: float | None, raised: list[str]
) -> None:
    """The journal writes a reading's event text itself (it is on the hot path): byte for byte what the store's
    json.dumps of the same body gives, so a restart reads back exactly what was written."""
    alerts = [SimpleNamespace(id=i, payload=lambda i=i: {"id": i, "message": "超限"}) for i in raised]
    text = journal_module._reading_body(Reading(meter, t, energy, power), alerts, [])  # type: ignore[arg-type]
    body: dict[str, object] = {"reading": [meter, t, energy, power], "raised": raised, "orders": []}
    if raised:  # the alerts whole, for the register (`quotad alerts --since`)
        body["alerts"] = [{"id": i, "message": "超限"} for i in raised]
    assert text == json.dumps(body, ensure_ascii=False, separators=(",", ":"))


_TAG = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=12)


@settings(max_examples=500, deadline=None)
@given(
    names=st.tuples(_TAG, _TAG, _TAG),
    t=st.integers(min_value=0, max_value=2**62),
    energy=st.floats(),
    power=st.none() | st.floats(),
)
def test_the_meter_reading_point_is_what_the_general_line_gives(
    names: tuple[str, str, str], t: int, energy: float, power: float | None
) -> None:
    """A reading's point is built by a fast path (it is written for every reading): the same text as `line`'s,
    escaping, a power left out when absent or not finite, and a non-finite energy refused the same way."""
    township, firm, meter = names
    general: str | type[ValueError]
    try:
        general = line("meter_reading", {"township": township, "firm": firm, "meter": meter},
                       {"energy_kwh": energy, "power_kw": power}, t)  # fmt: skip
    except ValueError:
        general = ValueError
    try:
        fast: str | type[ValueError] = meter_reading_line(township, firm, meter, energy, power, t)
    except ValueError:
        fast = ValueError
    assert fast == general


def _outbox_rows(store: Store) -> list[tuple[str, str, str]]:
    return [(str(s), str(k), str(b)) for s, k, b in store.db.execute("SELECT sink, key, body FROM outbox ORDER BY seq")]


def _recounted(store: Store, sink: str) -> int:
    row = store.db.execute("SELECT SUM(length(CAST(body AS BLOB))) FROM outbox WHERE sink = ?", (sink,)).fetchone()
    return int(row[0] or 0)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["mqtt", "influx"]),
            st.sampled_from(["alert", "points", "cutoff_order", TELEMETRY]),
            st.text(st.characters(blacklist_characters="\n", blacklist_categories=["Cs"]), min_size=1),
        ),
        max_size=4,
    ),
    events=st.integers(min_value=1, max_value=6),
    budget=st.integers(min_value=1, max_value=12),
)
def test_a_batch_keeps_each_outbox_in_order_with_its_points_in_two_rows(
    tmp_path: Path, rows: list[tuple[str, str, str]], events: int, budget: int
) -> None:
    """Within a batch the line-protocol rows of all its events become two at most (a thousand inserts fewer per
    batch): one of telemetry, which may give way to the outbox's bound, one of the rest (alerts, orders), which
    never does. Each sink still sees exactly its items, each kind in order, and the InfluxDB sink's reads, a budget
    of lines at a time, hand over every line once; the store's count of each outbox's bytes stays exact."""
    directory = tmp_path / f"s{len(list(tmp_path.iterdir()))}"
    store = Store(directory)
    assert store.outbox_bytes("influx") == 0  # counted from here on
    expected: dict[str, list[str]] = {"mqtt": [], "influx": []}
    telemetry: set[str] = set()
    with store.batch():
        for n in range(events):
            outbox = [(sink, key, f"{body}-{n}.{i}") for i, (sink, key, body) in enumerate(rows)]
            store.append("reading", {"n": n}, outbox)
            for sink, key, body in outbox:
                expected[sink].append(body)
                if key == TELEMETRY:
                    telemetry.add(body)
    written = _outbox_rows(store)
    assert [b for s, _k, b in written if s == "mqtt"] == expected["mqtt"]
    assert len([b for s, k, b in written if s == "influx" and k == TELEMETRY]) <= 1
    assert len([b for s, k, b in written if s == "influx" and k != TELEMETRY]) <= 1
    assert all(k == TELEMETRY for s, k, b in written if s == "influx" and set(b.split("\n")) & telemetry)
    for sink in ("mqtt", "influx"):
        assert store.outbox_bytes(sink) == _recounted(store, sink)
    delivered: list[str] = []
    while (pending := store.pending_text("influx", budget)) is not None:
        last, text = pending
        delivered += text.split("\n")
        store.acknowledge_through("influx", last)
        assert store.outbox_bytes("influx") == _recounted(store, "influx")
    assert sorted(delivered) == sorted(expected["influx"])
    for kind in (lambda line: line in telemetry, lambda line: line not in telemetry):
        assert [line for line in delivered if kind(line)] == [line for line in expected["influx"] if kind(line)]
    store.acknowledge("mqtt", [item.seq for item in store.pending("mqtt")])
    assert store.outbox_bytes("mqtt") == _recounted(store, "mqtt") == 0
    store.close()


def test_the_influx_sink_reads_whole_rows_within_a_budget_of_lines(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    for n in range(5):
        store.append("notice", {"n": n}, [("influx", "points", "\n".join(f"p{n}.{i}" for i in range(n + 1)))])
    reads = []
    while (pending := store.pending_text("influx", 4)) is not None:
        reads.append(pending[1].split("\n"))
        store.acknowledge_through("influx", pending[0])
    # rows of 1, 2, 3, 4 and 5 lines: [1+2], [3], [4], [5 (alone, over budget)]
    assert [len(r) for r in reads] == [3, 3, 4, 5]
    assert [line for r in reads for line in r] == [f"p{n}.{i}" for n in range(5) for i in range(n + 1)]


@pytest.mark.parametrize("damage", [b"\x80\x05garbage", b"", None])
def test_a_damaged_snapshot_costs_a_replay_not_the_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, damage: bytes | None
) -> None:
    monkeypatch.setattr(journal_module, "SNAPSHOT_EVERY", 50)
    journal = Journal(Store(tmp_path), POLICY, prefix="quotad", influx=False)
    for reading in FEED:
        journal.record_reading(reading)
    store = Store(tmp_path)
    assert store.latest_snapshot() is not None
    if damage is None:  # a snapshot that is a pickle, but not of the state
        damage = pickle.dumps({"not": "an engine"})
    store.db.execute("UPDATE snapshots SET blob = ?", (damage,))
    restarted = Journal(store, POLICY, prefix="quotad", influx=False)
    restarted.restore()
    assert "state snapshot unreadable" in caplog.text
    assert wh(restarted.engine.ledger.firm_day) == wh(journal.engine.ledger.firm_day)
    assert restarted.engine.raised == journal.engine.raised
    assert restarted.engine.orders == journal.engine.orders

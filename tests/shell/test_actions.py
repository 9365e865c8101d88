"""People's commands on the journal: what each one publishes and writes, once, and what a restart rebuilds."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from quotad.config.load import load
from quotad.core.errors import StoreError
from quotad.core.feed import counters
from quotad.core.orders import OrderError
from quotad.core.outputs import Message
from quotad.shell.journal import Journal
from quotad.shell.register import order_history
from quotad.shell.store import Store
from tests.orders_help import order_command

ROOT = Path(__file__).resolve().parents[2]
POLICY = load(ROOT / "config" / "township.toml").policy
FEED = list(counters(POLICY, dt.date(2010, 10, 20), 1, step_s=300, seed=3))


def journal(tmp: Path) -> Journal:
    live = Journal(Store(tmp), POLICY, prefix="quotad", influx=True)
    live.restore()
    return live


@pytest.fixture
def day(tmp_path: Path) -> Journal:
    """The simulated township's 2010-10-20, journaled: the paper mill's order issued (5-minute readings)."""
    live = journal(tmp_path)
    for reading in FEED:
        live.record_reading(reading)
    assert live.engine.orders["rongsheng-paper"].state == "issued"
    return live


def mqtt(live: Journal, skip: int = 0) -> list[Message]:
    """The MQTT outbox, after its first `skip` rows."""
    return [Message.from_json(i.body) for i in live.store.pending("mqtt", 10**6)][skip:]


def influx(live: Journal, skip: int = 0) -> list[str]:
    """The InfluxDB outbox's rows, after its first `skip`."""
    return [i.body for i in live.store.pending("influx", 10**6)][skip:]


def test_an_order_change_is_published_with_its_history_and_written_with_its_state(day: Journal) -> None:
    before, rows = len(mqtt(day)), len(influx(day))
    day.record_command(order_command("executed", "rongsheng-paper", by="张站长", reason="已拉闸"))
    (message,) = mqtt(day, before)
    assert (message.topic, message.retain) == ("quotad/xx-town/orders/rongsheng-paper", True)
    payload = json.loads(message.payload)
    assert payload["state"] == "executed"
    assert [(c["state"], c["by"]) for c in payload["history"]][-1] == ("executed", "张站长")
    (line,) = influx(day, rows)
    assert line.startswith("cutoff_order,firm=rongsheng-paper,township=xx-town ")
    assert 'state="executed"' in line
    assert 'by="张站长"' in line
    assert 'reason="已拉闸"' in line


def test_a_visit_with_an_order_escalates_and_is_published_once(day: Journal) -> None:
    before, rows, event = len(mqtt(day)), len(influx(day)), day.last_event
    visit = {"kind": "inspection", "firm": "g-001", "by": "李督查", "result": "violation", "finding": "夜间开工",
             "issue_order": True, "photo": None, "at": "2010-10-20T23:00:00+08:00", "id": "visit-1"}  # fmt: skip
    outcome = day.record_command(visit)
    assert outcome == {"ok": True, "firm": "g-001", "result": "violation", "state": "issued",
                       "alert_id": "xx-town/g-001/manual_order/2010-10-21"}  # fmt: skip
    assert day.record_command(visit) == outcome  # the same id again: nothing more
    topics = [m.topic for m in mqtt(day, before)]
    assert topics == [
        "quotad/xx-town/orders/g-001",
        "quotad/xx-town/alerts/warning/g-001",  # escalation, step 1
        "quotad/xx-town/escalations/g-001",
        "quotad/xx-town/inspections/g-001",
    ]
    escalated = json.loads(mqtt(day, before)[2].payload)
    assert escalated == {"firm": "g-001", "count": 1, "step": "联系领导约谈",
                         "since": escalated["since"], "talks": []}  # fmt: skip
    lines = "\n".join(influx(day, rows)).splitlines()
    assert [line.split(",", 1)[0] for line in lines] == ["cutoff_order", "quota_alert", "inspection"]
    assert lines[2].startswith("inspection,firm=g-001,inspector=李督查,township=xx-town ")
    assert 'order_alert_id="xx-town/g-001/manual_order/2010-10-21"' in lines[2]
    assert [e.kind for e in day.store.events(after=event)] == ["inspection"]


def test_a_refused_command_changes_nothing(day: Journal) -> None:
    before, state = day.last_event, day.engine.state()
    with pytest.raises(OrderError, match="cannot be confirmed"):
        day.record_command(order_command("confirm", "rongsheng-paper"))
    with pytest.raises(OrderError, match="unknown firm"):
        day.record_command(order_command("lift", "nobody"))
    assert day.last_event == before
    assert day.engine.state() == state


def test_a_command_the_disk_refuses_leaves_the_engine_as_the_journal_has_it(
    day: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = day.engine.state()

    def refused(*args: object, **kwargs: object) -> int:
        raise StoreError("cannot write the state: the disk is full", full=True)

    monkeypatch.setattr(day.store, "append", refused)
    with pytest.raises(StoreError):
        day.record_command({"kind": "issue", "firm": "g-001", "by": "李督查", "reason": "现场", "at": "x", "id": "i"})
    assert day.engine.state() == state  # no order, no escalation, no id taken


def test_a_restart_rebuilds_orders_escalations_talks_and_the_register(day: Journal, tmp_path: Path) -> None:
    day.record_command(order_command("notified", "rongsheng-paper"))
    day.record_command({"kind": "talk", "firm": "rongsheng-paper", "by": "李副镇长", "note": "约谈",
                        "at": "2010-10-21T09:00:00+08:00", "id": "talk-1"})  # fmt: skip
    day.record_command({"kind": "issue", "firm": "g-002", "by": "李督查", "reason": "拒不执行",
                        "at": "2010-10-21T09:30:00+08:00", "id": "issue-1"})  # fmt: skip
    day.store.close()
    again = journal(tmp_path)
    assert again.engine.orders == day.engine.orders
    assert again.engine.escalations == day.engine.escalations
    assert again.engine.escalations["rongsheng-paper"].talks[0].note == "约谈"
    assert [(o.firm, o.state) for o in order_history(again.store)][-2:] == [
        ("rongsheng-paper", "notified"), ("g-002", "issued")]  # fmt: skip


def test_the_morning_list_is_published_once_from_what_was_known_at_seven(tmp_path: Path) -> None:
    live = journal(tmp_path)
    seven = next(n for n, r in enumerate(FEED) if live.engine.calendar.local(r.t).hour >= 7)
    for reading in FEED[:seven]:
        live.record_reading(reading)
    expected = live.list_of(dt.date(2010, 10, 20), FEED[seven].t)
    live.record_reading(FEED[seven])
    (event,) = [e for e in live.store.events() if e.kind == "inspections"]
    assert event.body == expected  # computed before the 07:00 reading was counted
    (message,) = [m for m in mqtt(live) if m.topic == "quotad/xx-town/inspections/today"]
    assert message.retain
    assert json.loads(message.payload) == expected
    assert [e["firm"] for e in expected["entries"]][:2] == ["rongsheng-paper", "w-003"]
    for reading in FEED[seven + 1 :]:
        live.record_reading(reading)
    live.store.close()
    again = journal(tmp_path)
    for reading in FEED:  # a restart fed the day again (the broker sending what was not acknowledged)
        again.record_reading(reading)
    assert [e.kind for e in again.store.events()].count("inspections") == 1

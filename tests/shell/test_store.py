"""The store: a batch of appends is one transaction (all durable, or none); delivered items go in one delete."""

from __future__ import annotations

from pathlib import Path

import pytest

from quotad.shell.store import Store


def test_a_batch_writes_every_event_and_its_outbox_rows_or_none(tmp_path: Path) -> None:
    store = Store(tmp_path)
    first = store.append("notice", {"key": "before"}, [("mqtt", "notice", "0")])
    with store.batch():
        seqs = [store.append("reading", {"n": n}, [("influx", "points", f"p{n}"), ("mqtt", "alert", f"a{n}")])
                for n in range(5)]  # fmt: skip
        store.save_snapshot(seqs[-1], "v", b"state")  # joins the batch's transaction
    assert seqs == list(range(first + 1, first + 6))
    reopened = Store(tmp_path)  # what another process (a restart) sees
    assert [(e.seq, e.body) for e in reopened.events(after=first)] == [(s, {"n": n}) for n, s in enumerate(seqs)]
    # the batch's line protocol is one row (its lines in order); the MQTT messages stay one row each
    assert [i.body for i in reopened.pending("influx")] == ["\n".join(f"p{n}" for n in range(5))]
    assert [i.body for i in reopened.pending("mqtt")] == ["0", *(f"a{n}" for n in range(5))]
    assert reopened.latest_snapshot() == (seqs[-1], "v", b"state")

    def failing_batch() -> None:
        with store.batch():
            store.append("reading", {"n": 99}, [("influx", "points", "p99")])
            raise RuntimeError("the process fails mid-batch")

    with pytest.raises(RuntimeError):
        failing_batch()
    assert store.last_event() == seqs[-1]  # nothing of the failed batch
    assert [i.body for i in store.pending("influx")] == ["\n".join(f"p{n}" for n in range(5))]
    assert store.append("lift", {}) == seqs[-1] + 1  # and the next event follows on


def test_acknowledging_removes_exactly_what_was_delivered(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for n in range(10):
        store.append("reading", {"n": n}, [("influx", "points", f"p{n}"), ("mqtt", "alert", f"a{n}")])
    delivered = store.pending("influx", 4)
    store.append("reading", {"n": 10}, [("influx", "points", "p10")])  # arrives while the batch is in flight
    store.acknowledge_through("influx", delivered[-1].seq)
    assert [i.body for i in store.pending("influx")] == [f"p{n}" for n in range(4, 11)]
    mqtt = store.pending("mqtt")
    store.acknowledge("mqtt", [mqtt[0].seq, mqtt[2].seq])
    store.requeue("mqtt", [mqtt[1].seq, mqtt[3].seq])  # refused by the broker: behind the others, in order
    assert [i.body for i in store.pending("mqtt")] == [f"a{n}" for n in range(4, 10)] + ["a1", "a3"]

"""The daemon's inbox: batches in order, a waiting take, `full` for the source that holds back, closing."""

from __future__ import annotations

import asyncio

from quotad.core.readings import Reading
from quotad.shell.inbox import Inbox


def test_batches_keep_the_order_and_the_limit_and_full_says_when_to_hold_back() -> None:
    async def scenario() -> tuple[list[float], list[int], list[bool]]:
        inbox = Inbox(limit=10)
        acked: list[int] = []
        fullness = []
        for n in range(25):
            inbox.put(Reading("m", n + 1, float(n)), lambda n=n: acked.append(n))
            fullness.append(inbox.full())
        got: list[float] = []
        sizes = []
        while len(got) < 25:
            batch = await inbox.take(limit=8)
            sizes.append(len(batch))
            for reading, ack in batch:
                got.append(reading.energy_kwh)
                assert ack is not None
                ack()
        assert not inbox.full()
        return got, sizes, fullness

    got, sizes, fullness = asyncio.run(scenario())
    assert got == [float(n) for n in range(25)]
    assert sizes == [8, 8, 8, 1]
    assert fullness == [False] * 9 + [True] * 16  # full from the tenth reading on


def test_a_take_waits_for_the_next_put() -> None:
    async def scenario() -> list[list[float]]:
        inbox = Inbox()
        waiting = asyncio.create_task(inbox.take())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # nothing yet: it waits
        asyncio.get_running_loop().call_later(0.05, inbox.put, Reading("m", 1, 1.0))
        batches = [[r.energy_kwh for r, _ in await asyncio.wait_for(waiting, 5)]]
        inbox.put(Reading("m", 2, 2.0))
        inbox.put(Reading("m", 3, 3.0))
        batches.append([r.energy_kwh for r, _ in await asyncio.wait_for(inbox.take(), 5)])
        return batches

    assert asyncio.run(scenario()) == [[1.0], [2.0, 3.0]]


def test_a_closed_inbox_queues_nothing_and_acknowledges_nothing() -> None:
    async def scenario() -> tuple[int, list[int]]:
        inbox = Inbox()
        acked: list[int] = []
        inbox.put(Reading("m", 1, 1.0), lambda: acked.append(1))
        inbox.closed = True
        inbox.put(Reading("m", 2, 2.0), lambda: acked.append(2))
        return len(inbox), acked

    # the reading put after closing is neither queued nor acknowledged: the broker sends it again after the restart
    assert asyncio.run(scenario()) == (1, [])

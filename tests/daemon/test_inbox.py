"""The daemon's inbox: a full inbox holds paho's thread back instead of dropping; a closed one lets it go."""

from __future__ import annotations

import asyncio
import threading
import time

from quotad.inbox import Inbox
from quotad.readings import Reading


def test_a_fast_thread_into_a_small_inbox_loses_nothing_and_keeps_the_order() -> None:
    async def scenario() -> tuple[list[float], int, list[int]]:
        inbox = Inbox(asyncio.get_running_loop(), limit=10)
        acked: list[int] = []

        def produce() -> None:
            for n in range(5000):
                inbox.put_from_thread(Reading("m", n + 1, float(n)), lambda n=n: acked.append(n))

        producer = threading.Thread(target=produce)
        producer.start()
        got: list[float] = []
        largest = 0
        while len(got) < 5000:
            batch = await inbox.take(limit=64)
            largest = max(largest, len(batch))
            assert len(inbox) <= 10 + 1  # never more than the limit waits (and one being put)
            for reading, ack in batch:
                got.append(reading.energy_kwh)
                assert ack is not None
                ack()
            if len(got) % 500 == 0:
                await asyncio.sleep(0.01)  # a slow journal: the producer must wait, not drop
        producer.join(5)
        assert not producer.is_alive()
        return got, largest, acked

    got, largest, acked = asyncio.run(scenario())
    assert got == [float(n) for n in range(5000)]
    assert acked == list(range(5000))
    assert largest <= 64


def test_the_loops_own_door_and_a_waiting_take() -> None:
    async def scenario() -> list[list[float]]:
        loop = asyncio.get_running_loop()
        inbox = Inbox(loop, limit=10)
        batches = []
        waiting = asyncio.create_task(inbox.take())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # nothing yet: it waits
        threading.Thread(target=inbox.put_from_thread, args=(Reading("m", 1, 1.0),)).start()
        batches.append([r.energy_kwh for r, _ in await asyncio.wait_for(waiting, 5)])
        inbox.put(Reading("m", 2, 2.0))
        inbox.put(Reading("m", 3, 3.0))
        batches.append([r.energy_kwh for r, _ in await asyncio.wait_for(inbox.take(), 5)])
        return batches

    assert asyncio.run(scenario()) == [[1.0], [2.0, 3.0]]


def test_closing_lets_a_blocked_thread_go_without_queueing_its_reading() -> None:
    async def scenario() -> tuple[bool, int]:
        inbox = Inbox(asyncio.get_running_loop(), limit=1)
        inbox.put_from_thread(Reading("m", 1, 1.0))
        blocked = threading.Thread(target=inbox.put_from_thread, args=(Reading("m", 2, 2.0),))
        blocked.start()
        await asyncio.sleep(0.3)
        still_blocked = blocked.is_alive()
        inbox.closed = True
        started = time.monotonic()
        await asyncio.to_thread(blocked.join, 5)
        assert time.monotonic() - started < 2
        return still_blocked, len(inbox)

    still_blocked, waiting = asyncio.run(scenario())
    assert still_blocked  # a full inbox held it back
    assert waiting == 1  # its reading was not queued: unacknowledged, the broker sends it again

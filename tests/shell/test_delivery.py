"""Couriers deliver each channel's queue against real local servers (`tests.robots`): in order, once per id, within
the rate limit, a dead channel holding back nothing else, kill -9 mid-delivery losing and repeating nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from quotad.config.channels import Channel, EmailChannel, WebhookChannel, WecomChannel
from quotad.core.notices import Notice
from quotad.shell.channels import Message, Outcome, send
from quotad.shell.delivery import Courier
from quotad.shell.outbox import channel_sink as sink
from quotad.shell.outbox import notice_rows
from quotad.shell.store import Store
from tests.robots import HOOK_SECRET, RobotServer, SmtpServer

FAST = 0.005  # the courier's waits, shortened: the servers are real, the minutes are not


def _file(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text + "\n", encoding="utf-8")
    return path


def webhook(folder: Path, robots: RobotServer, name: str = "hook", **more: object) -> WebhookChannel:
    url, secret = _file(folder, f"{name}.url", robots.url("webhook")), _file(folder, f"{name}.secret", HOOK_SECRET)
    return WebhookChannel(name=name, kind="webhook", url_file=url, secret_file=secret, **more)  # type: ignore[arg-type]


def wecom(folder: Path, robots: RobotServer, name: str = "robot", key: str | None = None) -> WecomChannel:
    return WecomChannel(name=name, kind="wecom", url_file=_file(folder, f"{name}.url", robots.url("wecom", key)))


def notices(channel: str, n: int, kind: str = "alert") -> list[Notice]:
    return [Notice(f"{kind}:{i}:{channel}", channel, kind, f"标题 {i}", f"第 {i} 条通知") for i in range(n)]


def queue(store: Store, items: list[Notice], channels: set[str]) -> None:
    store.append("notice", {"key": "test"}, notice_rows(frozenset(channels), items))


class Waits:
    """The courier's sleeps, recorded and shortened; a clock that they advance (the rate limit's minute)."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self.now = 1000.0

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.now += seconds
        await asyncio.sleep(FAST)

    def clock(self) -> float:
        return self.now


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def run(couriers: list[Courier], body: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        tasks = [asyncio.create_task(c.run()) for c in couriers]
        for courier in couriers:
            courier.wake.set()
        try:
            await body()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


def keys(robots: RobotServer, path: str = "/hook") -> list[str]:
    return [r.headers["idempotency-key"] for r in robots.received if r.path == path and r.accepted]


def texts(robots: RobotServer) -> list[str]:
    return [r.json()["text"]["content"] for r in robots.received if r.accepted]


def test_a_queue_is_delivered_in_order_once_each_signed_and_keyed(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    with RobotServer() as robots:
        channel = webhook(tmp_path, robots)
        sent = notices("hook", 12)
        queue(store, sent, {"hook"})
        courier = Courier(channel, store, tmp_path)
        run([courier], lambda: until(lambda: store.backlog(sink("hook")) == 0))
    assert keys(robots) == [n.id for n in sent]
    assert [r.json()["text"] for r in robots.received] == [n.text for n in sent]
    assert all(r.accepted for r in robots.received)  # the signature checked by the receiver
    assert courier.delivered == 12


def test_a_dead_channel_holds_back_no_other_and_delivers_everything_once_when_back(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    waits = Waits()
    with RobotServer() as dead, RobotServer() as alive:
        dead.set_mode("5xx")
        down, up = wecom(tmp_path, dead), webhook(tmp_path, alive)
        stuck, flowing = notices("robot", 5), notices("hook", 30)
        for a, b in zip(stuck, flowing[:5], strict=True):
            queue(store, [a, b], {"robot", "hook"})
        queue(store, flowing[5:], {"hook"})
        couriers = [Courier(down, store, tmp_path, sleep=waits.sleep), Courier(up, store, tmp_path)]

        async def body() -> None:
            await until(lambda: store.backlog(sink("hook")) == 0)
            assert store.backlog(sink("robot")) == 5  # nothing of the dead one delivered, nothing lost
            await until(lambda: len(dead.received) >= 4)  # it kept trying, with backoff
            dead.set_mode("ok")
            await until(lambda: store.backlog(sink("robot")) == 0)

        run(couriers, body)
    assert keys(alive) == [n.id for n in flowing]
    assert texts(dead) == [f"{n.title}\n{n.text}" for n in stuck]  # in order, each once
    backoff = [w for w in waits.asked if w < 60]
    assert backoff[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(waits.asked) <= 30.0


def test_a_rate_limited_robot_is_waited_for_a_minute_and_nothing_is_sent_twice(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    waits = Waits()
    with RobotServer() as robots:
        robots.set_mode("rate")  # 45009 api freq out of limit
        channel = wecom(tmp_path, robots)
        sent = notices("robot", 3)
        queue(store, sent, {"robot"})
        courier = Courier(channel, store, tmp_path, sleep=waits.sleep, clock=waits.clock)

        async def body() -> None:
            await until(lambda: len(robots.received) >= 2)
            robots.set_mode("ok")
            await until(lambda: store.backlog(sink("robot")) == 0)

        run([courier], body)
    assert texts(robots) == [f"{n.title}\n{n.text}" for n in sent]
    assert waits.asked[0] == 60.0  # the robot's minute


def test_the_courier_keeps_to_the_channels_rate(tmp_path: Path) -> None:
    """A WeCom robot takes 20 a minute: 45 queued notices go out 20, then 20 a minute later, then 5."""
    store = Store(tmp_path / "state")
    waits = Waits()
    stamps: list[float] = []
    with RobotServer() as robots:
        channel = wecom(tmp_path, robots)
        assert channel.per_minute == 20
        queue(store, notices("robot", 45), {"robot"})

        def sender(chan: Channel, message: Message) -> Outcome:
            stamps.append(waits.now)
            return send(chan, message)

        courier = Courier(channel, store, tmp_path, sleep=waits.sleep, clock=waits.clock, sender=sender)
        run([courier], lambda: until(lambda: store.backlog(sink("robot")) == 0))
    assert len([r for r in robots.received if r.accepted]) == 45
    for i in range(len(stamps) - 20):
        assert stamps[i + 20] - stamps[i] >= 60.0  # never 21 within a minute
    assert stamps[20] - stamps[0] == pytest.approx(60.0)  # and no slower than that


def test_a_refusing_channel_keeps_its_notices_until_it_is_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "state")
    waits = Waits()
    with RobotServer() as robots:
        channel = wecom(tmp_path, robots, key="a-wrong-key")  # 93000 invalid webhook url
        sent = notices("robot", 2)
        queue(store, sent, {"robot"})
        courier = Courier(channel, store, tmp_path, sleep=waits.sleep)

        async def body() -> None:
            await until(lambda: len(robots.received) >= 3)
            assert store.backlog(sink("robot")) == 2
            channel.url_file.write_text(robots.url("wecom") + "\n")  # the operator puts the right URL in
            await until(lambda: store.backlog(sink("robot")) == 0)

        run([courier], body)
    assert texts(robots) == [f"{n.title}\n{n.text}" for n in sent]
    assert set(waits.asked) == {60.0}
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1  # said once, not at each try
    assert "93000" in refusals[0].getMessage()


def test_the_daily_report_goes_by_email_with_its_attachments(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "daily-2010-10-20.pdf").write_bytes(b"%PDF-1.4 the report")
    (reports / "daily-2010-10-20.xlsx").write_bytes(b"PK the workbook")
    with SmtpServer() as smtp:
        settings = {"name": "leaders", "kind": "email", "host": "127.0.0.1", "port": smtp.port, "starttls": False}
        channel = EmailChannel.model_validate({**settings, "from": "q@xx-town.test", "to": ["leader@xx-town.test"]})
        files = ("daily-2010-10-20.pdf", "daily-2010-10-20.xlsx")
        report = Notice("report:daily:2010-10-20:leaders", "leaders", "report", "日报", "全镇 51,168 kWh", files=files)
        queue(store, [report], {"leaders"})
        run([Courier(channel, store, reports)], lambda: until(lambda: store.backlog(sink("leaders")) == 0))
    [(envelope, mail)] = smtp.keeper.messages
    assert envelope.rcpt_tos == ["leader@xx-town.test"]
    assert mail["Message-ID"] == "<report.daily.2010-10-20.leaders@xx-town.test>"
    attached = {part.get_filename(): part.get_content() for part in mail.iter_attachments()}
    assert attached == {"daily-2010-10-20.pdf": b"%PDF-1.4 the report", "daily-2010-10-20.xlsx": b"PK the workbook"}


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from quotad.config.channels import WebhookChannel
    from quotad.shell.delivery import Courier
    from quotad.shell.store import Store

    folder = Path(sys.argv[1])
    channel = WebhookChannel(
        name="hook", kind="webhook", url_file=folder / "hook.url", secret_file=folder / "hook.secret"
    )
    courier = Courier(channel, Store(folder / "state"), folder)
    courier.wake.set()
    asyncio.run(courier.run())
    """
)


def test_kill_9_mid_delivery_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """The courier is killed while the receiver holds a notice's answer: it arrived, the courier never learnt so.
    Started again, it sends that one again with its key (the receiver acts on it once) and the rest in order."""
    store = Store(tmp_path / "state")
    sent = notices("hook", 8)
    queue(store, sent, {"hook"})
    store.close()
    with RobotServer() as robots:
        webhook(tmp_path, robots)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
        holding = robots.hold(after=3)
        first = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path)], env=env)
        try:
            assert holding.wait(20)  # three delivered, the 4th in flight, unanswered
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            first.kill()
        robots.release()
        in_flight = keys(robots)[-1]
        assert in_flight == sent[3].id
        again = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path)], env=env)
        try:
            deadline = time.monotonic() + 20
            while len({*keys(robots)}) < 8:
                assert time.monotonic() < deadline, keys(robots)
                time.sleep(0.01)
            time.sleep(0.3)  # anything sent twice would show now
        finally:
            again.kill()
            again.wait(10)
    acted = [r.headers["idempotency-key"] for r in robots.received if r.accepted and not r.repeat]
    assert acted == [n.id for n in sent]  # everything, in order, acted on once
    assert [r.headers["idempotency-key"] for r in robots.received if r.repeat] == [in_flight]
    assert Store(tmp_path / "state").backlog(sink("hook")) == 0


def test_rows_only_for_the_daemons_channels() -> None:
    items = notices("robot", 1) + notices("hook", 1)
    rows = notice_rows(frozenset({"hook"}), items)
    assert [(s, json.loads(b)["id"]) for s, _k, b in rows] == [("channel:hook", "alert:0:hook")]


def test_hung_channels_hold_back_neither_each_other_nor_the_loops_executor(tmp_path: Path) -> None:
    """Twelve channels whose service takes the message and never answers (a WeCom outage that hangs, not refuses):
    each courier waits on a thread of its own, so the loop's shared executor (the InfluxDB sink's writes) and a
    thirteenth channel that answers go on at once."""
    store = Store(tmp_path / "state")
    with RobotServer() as hung, RobotServer() as alive:
        hung.hold()
        dead = [wecom(tmp_path, hung, name=f"robot{i}") for i in range(12)]
        for channel in dead:
            queue(store, notices(channel.name, 1), {channel.name})
        up = webhook(tmp_path, alive)
        queue(store, notices("hook", 3), {"hook"})
        couriers = [Courier(channel, store, tmp_path) for channel in [*dead, up]]

        async def body() -> None:
            await until(lambda: len(hung.received) == 12)  # every hung channel has a send in flight
            assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), 2.0) == 42  # the executor is free
            await until(lambda: store.backlog(sink("hook")) == 0, timeout=5.0)  # and the live channel delivers
            assert all(store.backlog(sink(channel.name)) == 1 for channel in dead)

        run(couriers, body)
    assert keys(alive) == [n.id for n in notices("hook", 3)]


def test_a_url_file_gone_unreadable_keeps_the_notices_until_it_is_back(tmp_path: Path) -> None:
    """The URL file removed under a running daemon (checked at start, read at each send): the courier does not die
    with the notice; it says why once and delivers once the file is back."""
    store = Store(tmp_path / "state")
    waits = Waits()
    with RobotServer() as robots:
        channel = wecom(tmp_path, robots)
        url = channel.url_file.read_text()
        channel.url_file.unlink()
        sent = notices("robot", 2)
        queue(store, sent, {"robot"})
        courier = Courier(channel, store, tmp_path, sleep=waits.sleep)

        async def body() -> None:
            await until(lambda: courier.trouble is not None)
            assert store.backlog(sink("robot")) == 2
            channel.url_file.write_text(url)
            await until(lambda: store.backlog(sink("robot")) == 0)

        run([courier], body)
    assert texts(robots) == [f"{n.title}\n{n.text}" for n in sent]
    assert waits.asked[0] == 60.0  # a refusal: a minute, not a tight loop

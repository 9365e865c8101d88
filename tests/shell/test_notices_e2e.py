"""Notices lived by a real `quotad run` (SPEC "Notices and channels"), against the robots, a webhook receiver and
aiosmtpd on loopback (`tests.robots`).

The recorded day 2010-10-20 is journaled as the daemon would have, with the example's firms given channels: the
paper mill a 钉钉 robot, Shengda a 企业微信 robot, the 供电所 a signed webhook, the leaders an email address. That
day the paper mill draws on its off day (an order, issued at 02:15) and Shengda crosses 80% and 90% of its
4,200 kWh and then the limit (an order pending within its meters' accuracy at 21:15, issued at 21:30). The daemon
starts at 17:50 the next evening on a clock 360 times real time: past `[reports] daily_at` (the daily report of
10-20 is due) and, ten seconds later, `notices.tomorrow_at` (tomorrow's rota). The 供电所's receiver answers 503
from the start and for an hour of event time: the firms' and the leaders' notices do not wait for it, and it gets
its own once back, in order, once each.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from pathlib import Path

from quotad.config.load import load
from quotad.shell.register import recorded_orders
from quotad.shell.store import Store
from tests.robots import DINGTALK_SECRET, HOOK_SECRET, RobotServer, SmtpServer
from tests.shell.feedtown import all_on_mqtt, seed_recorded_day
from tests.shell.township import Township, eventually

CHANNELS = ("shengda-wecom", "paper-ding", "station-hook", "leaders-mail")


def _policy(directory: Path) -> Path:
    path = all_on_mqtt(directory)
    text = path.read_text(encoding="utf-8")
    for firm, channel in (("shengda", "shengda-wecom"), ("rongsheng-paper", "paper-ding")):
        contact = f'contacts = [{{ name = "厂长", phone = "13800000000", channel = "{channel}" }}]'
        text = text.replace(f'id = "{firm}"\n', f'id = "{firm}"\n{contact}\n', 1)
    text = text.replace("[enforcement]\n", '[enforcement]\nsupply_station = "station-hook"\n', 1)
    text += '\n[reports]\ndaily_at = "08:00"\nto = ["leaders-mail"]\n'
    path.write_text(text, encoding="utf-8")
    return path


def _daemon_file(directory: Path, state: Path, robots: RobotServer, station: RobotServer, smtp: SmtpServer) -> Path:
    (directory / "shengda.url").write_text(robots.url("wecom") + "\n")
    (directory / "paper.url").write_text(robots.url("dingtalk") + "\n")
    (directory / "paper.secret").write_text(DINGTALK_SECRET + "\n")
    (directory / "station.url").write_text(station.url("webhook") + "\n")
    (directory / "station.secret").write_text(HOOK_SECRET + "\n")
    config = directory / "quotad.toml"
    config.write_text(
        f'policy = "township.toml"\nstate_dir = "{state}"\n'
        '[notices]\ntomorrow_at = "18:00"\n'
        "[clock]\nstart = 2010-10-21T17:50:00+08:00\nspeed = 360\n"
        '[[channels]]\nname = "shengda-wecom"\nkind = "wecom"\nurl_file = "shengda.url"\n'
        '[[channels]]\nname = "paper-ding"\nkind = "dingtalk"\nurl_file = "paper.url"\nsecret_file = "paper.secret"\n'
        '[[channels]]\nname = "station-hook"\nkind = "webhook"\nurl_file = "station.url"\n'
        'secret_file = "station.secret"\n'
        f'[[channels]]\nname = "leaders-mail"\nkind = "email"\nhost = "127.0.0.1"\nport = {smtp.port}\n'
        'from = "quotad@xx-town.test"\nto = ["leader@xx-town.test"]\nstarttls = false\n',
        encoding="utf-8",
    )
    return config


def _seed(config: Path, state: Path) -> None:
    """The recorded day journaled with the daemon's channels (the notices it makes wait in their queues), and a
    reading at 17:45 of the next day: the township's event time when the daemon starts."""
    seed_recorded_day(state, load(config).policy, dt.time(17, 45), frozenset(CHANNELS))


def _robot_texts(robots: RobotServer, path: str) -> list[str]:
    return [r.json()["text"]["content"] for r in robots.received if r.path == path and r.accepted]


def _backlogs(state: Path) -> dict[str, int]:
    with sqlite3.connect(state / "quotad.db") as db:
        rows = db.execute("SELECT sink, COUNT(*) FROM outbox WHERE sink LIKE 'channel:%' GROUP BY sink")
        return {str(s): int(n) for s, n in rows}


def test_firms_the_station_and_the_leaders_each_get_theirs_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with RobotServer() as robots, RobotServer() as station, SmtpServer() as smtp:
        station.set_mode("5xx")
        config = _daemon_file(tmp_path, state, robots, station, smtp)
        _policy(tmp_path)
        _seed(config, state)
        town = Township(tmp_path, config)
        try:
            town.start_daemon()
            started = time.monotonic()
            shengda = lambda: _robot_texts(robots, "/cgi-bin/webhook/send")  # noqa: E731
            paper = lambda: _robot_texts(robots, "/robot/send")  # noqa: E731
            eventually(lambda: any("明日" in t for t in shengda()), "Shengda's rota for tomorrow", 30)
            eventually(lambda: any("明日" in t for t in paper()), "the paper mill's rota for tomorrow", 30)
            eventually(lambda: len(smtp.keeper.messages) >= 4, "the leaders' escalations and the daily report", 90)
            time.sleep(max(0.0, started + 10.5 - time.monotonic()))  # an hour of event time at 360x
            assert not [r for r in station.received if r.accepted]  # the station is down meanwhile...
            assert len(station.received) >= 3  # ...and was tried, with backoff (1 s, 2 s, 4 s...)
            station.set_mode("ok")
            eventually(lambda: len([r for r in station.received if r.accepted]) >= 3, "the station's notices", 60)
            eventually(lambda: not _backlogs(state), "every queue empty", 30)
            assert town.stop_daemon() == 0
        finally:
            town.close()
        log = town.log()

    # Shengda: its notice (80%) and warning (90%), its cutoff notice (停电通知书), tomorrow's rota; in that order
    texts = shengda()
    assert len(texts) == 4, texts
    assert "停电通知书" in texts[2]
    assert "4,242" in texts[2] or "4242" in texts[2]  # the evidence: what it drew against its 4,200 kWh
    assert "明日" in texts[3]
    # the paper mill: its cutoff notice (off-day use), then the rota
    ptexts = paper()
    assert len(ptexts) == 2, ptexts
    assert "停电通知书" in ptexts[0]
    # the 供电所: every cutoff notice (the workshop w-003 has no channel of its own), in the order they were issued,
    # each once, signed and keyed
    accepted = [r for r in station.received if r.accepted]
    assert [r.json()["firm"] for r in accepted] == ["rongsheng-paper", "w-003", "shengda"]
    assert [r.json()["kind"] for r in accepted] == ["cutoff", "cutoff", "cutoff"]
    assert not [r for r in accepted if r.repeat]
    # the leaders: the three escalations, then the report with its files attached
    subjects = [mail["Subject"] for _envelope, mail in smtp.keeper.messages]
    report = smtp.keeper.messages[-1][1]
    assert len(subjects) == 4, subjects
    assert {part.get_filename() for part in report.iter_attachments()} >= {"daily-2010-10-20.pdf"}
    # a cutoff notice delivered to the firm's own channel marks its order notified (已通知), by quotad
    orders = recorded_orders(Store(state))
    assert orders["shengda"].state == "notified"
    assert orders["rongsheng-paper"].state == "notified"
    assert orders["shengda"].history[-1].by == "quotad"
    assert "shengda-wecom" in orders["shengda"].history[-1].reason
    assert "channel station-hook" in log  # the outage said...
    assert log.count("channel station-hook: 503") == 1  # ...once
    assert json.loads(accepted[2].body)["alert_id"] == orders["shengda"].alert_id
    assert orders["w-003"].state == "issued"  # no channel of its own: notified by hand

"""The commands of SPEC's enforcement loop, end to end, with the daemon stopped and with it running.

The state is the recorded day of the example township under `confirm = "inspector"`, journaled as the daemon
journals it: three pending orders on 2010-10-20 — the paper mill on the seven's day, Shengda over its 4,200 kWh
limit and the Wang workshop on its rest day. With the daemon running,
each command is filed as a request and carried out by `quotad run`; stopped, the command journals it itself.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from quotad.commands.replay import read_readings
from quotad.config.load import load
from quotad.shell.journal import Journal
from quotad.shell.register import order_history
from quotad.shell.store import Store
from tests.locales import english

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
DAY = CONFIG / "recorded" / "2010-10-20.jsonl"
DAEMON = """policy = "{policy}"
state_dir = "{state}"
[clock]
start = 2010-10-20T23:00:00+08:00
speed = 1
"""


def quotad(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quotad", *map(str, args)], capture_output=True, text=True,
                          env=english(), check=False, timeout=60)  # fmt: skip


def inspector_township(folder: Path) -> Path:
    """The example township with `confirm = "inspector"`: every order waits for an inspector."""
    policy = folder / "township.toml"
    text = (CONFIG / "township.toml").read_text(encoding="utf-8")
    assert 'confirm = "auto"' in text
    policy.write_text(text.replace('confirm = "auto"', 'confirm = "inspector"'), encoding="utf-8")
    return policy


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state database of the recorded day, journaled reading by reading."""
    folder = tmp_path_factory.mktemp("recorded")
    state = folder / "state"
    journal = Journal(Store(state), load(inspector_township(folder)).policy, "quotad", True)
    for _n, reading in read_readings(DAY, sys.stderr):
        journal.record_reading(reading)
    assert {f: o.state for f, o in journal.engine.orders.items()} == {
        "rongsheng-paper": "pending", "shengda": "pending", "w-003": "pending"}  # fmt: skip
    journal.store.close()
    return state / "quotad.db"


@pytest.fixture(params=["stopped", "running"])
def town(request: pytest.FixtureRequest, recorded: Path, tmp_path: Path) -> Iterator[Path]:
    """A daemon file over a copy of the recorded state; with `quotad run` on it for the "running" case."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "quotad.db").write_bytes(recorded.read_bytes())
    config = tmp_path / "quotad.toml"
    config.write_text(DAEMON.format(policy=inspector_township(tmp_path), state=state), encoding="utf-8")
    if request.param == "stopped":
        yield config
        return
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen([sys.executable, "-m", "quotad", "run", "-c", str(config)], stdout=log, stderr=log,
                              env=english())  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "quotad serving" not in (tmp_path / "daemon.log").read_text():
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "daemon.log").read_text()
            time.sleep(0.1)
        yield config
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(20) == 0
        log.close()
        assert "Traceback" not in (tmp_path / "daemon.log").read_text()


def journal_of(config: Path) -> Journal:
    loaded = load(config)
    assert loaded.daemon is not None
    journal = Journal(Store.read_only(loaded.daemon.state_dir) or pytest.fail("no state"), loaded.policy, "quotad",
                      True)  # fmt: skip
    journal.restore()
    return journal


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_an_order_from_pending_to_executed_and_lifted(town: Path) -> None:
    said = ok(quotad("order", "confirm", "shengda", "--by", "李督查", "-c", town))
    assert "xx-town/shengda/firm_daily_limit/2010-10-20/1.0) is now 已下达" in said
    ok(quotad("order", "notified", "shengda", "--by", "张站长", "-c", town))
    ok(quotad("order", "executed", "shengda", "--by", "张站长", "--reason", "10 kV 线路已拉闸", "-c", town))
    refused = quotad("order", "dismiss", "shengda", "--by", "李督查", "--reason", "x", "-c", town)
    assert refused.returncode == 2
    assert "is executed (已停电): it cannot be dismissed" in refused.stderr
    ok(quotad("order", "lift", "shengda", "--by", "王镇长", "--reason", "县里批准复产", "-c", town))
    order = journal_of(town).engine.orders["shengda"]
    assert [(c.state, c.by, c.reason) for c in order.history] == [
        ("pending", "quotad", "xx-town/shengda/firm_daily_limit/2010-10-20/1.0"),
        ("issued", "李督查", "督查核实属实"),
        ("notified", "张站长", "停电通知书已送达"),
        ("executed", "张站长", "10 kV 线路已拉闸"),
        ("lifted", "王镇长", "县里批准复产"),
    ]


def test_a_pending_order_dismissed_and_an_impossible_change_refused(town: Path) -> None:
    ok(quotad("order", "dismiss", "shengda", "--by", "李督查", "--reason", "电表误差以内", "-c", town))
    again = quotad("order", "confirm", "shengda", "--by", "李督查", "-c", town)
    assert (again.returncode, again.stdout) == (2, "")
    assert "shengda" in again.stderr
    assert "dismissed" in again.stderr
    missing = quotad("order", "executed", "g-001", "-c", town)
    assert missing.returncode == 2
    assert "g-001 has no cutoff order" in missing.stderr
    unknown = quotad("order", "confirm", "nobody", "-c", town)
    assert (unknown.returncode, unknown.stderr.strip()) == (2, "quotad: unknown firm 'nobody'")
    pending_lift = quotad("order", "lift", "rongsheng-paper", "--reason", "", "-c", town)
    assert pending_lift.returncode == 2  # an empty reason is no reason


def test_an_order_by_hand_a_talk_and_the_register(town: Path) -> None:
    said = ok(quotad("order", "issue", "g-005", "--by", "李督查", "--reason", "现场发现夜间生产", "-c", town))
    assert "xx-town/g-005/manual_order/2010-10-21" in said
    assert "已下达" in said
    under = quotad("order", "issue", "g-005", "--by", "李督查", "--reason", "again", "-c", town)
    assert under.returncode == 2
    assert "already under an order" in under.stderr
    ok(quotad("talks", "add", "g-005", "--by", "镇纪委书记", "--note", "约谈厂长，责令停产整改", "-c", town))
    journal = journal_of(town)
    assert journal.engine.escalations["g-005"].count == 1
    assert journal.engine.escalations["g-005"].talks[0].note == "约谈厂长，责令停产整改"
    standing = [json.loads(line) for line in ok(quotad("orders", "--json", "-c", town)).splitlines()]
    assert {o["firm"]: o["state"] for o in standing} == {
        "rongsheng-paper": "pending", "shengda": "pending", "w-003": "pending", "g-005": "issued"}  # fmt: skip
    table = ok(quotad("orders", "--firm", "g-005", "-c", town))
    assert "新盛木业" in table
    assert "现场发现夜间生产" in table


def test_past_alerts_from_the_journal(town: Path) -> None:
    day = [
        json.loads(line) for line in ok(quotad("alerts", "--since", "2010-10-20", "--json", "-c", town)).splitlines()
    ]
    replayed = ok(quotad("replay", "-c", town.parent / "township.toml", DAY))
    assert day == [json.loads(line) for line in replayed.splitlines()]  # the same alerts, in the order raised
    text = ok(quotad("alerts", "--since", "2010-10-20", "--until", "2010-10-20", "--firm", "shengda", "-c", town))
    assert text.count("\n") == 4  # its notice at 80%, its warning at 90%, its violation and the talk it calls for
    assert "盛达机电公司" in text
    none = quotad("alerts", "--since", "2010-10-21", "-c", town)
    assert (none.returncode, none.stdout) == (0, "")
    assert "no alerts" in none.stderr
    backwards = quotad("alerts", "--since", "2010-10-21", "--until", "2010-10-20", "-c", town)
    assert backwards.returncode == 2


def jpeg(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 80, 40)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue())
    return path


def test_a_visit_with_a_photo_and_an_order_and_photos_refused(town: Path, tmp_path: Path) -> None:
    photo = jpeg(tmp_path / "现场.jpg")
    said = ok(quotad("inspections", "add", "g-002", "--by", "李督查", "--result", "violation", "--finding",
                     "车间夜间开工", "--photo", photo, "--order", "-c", town))  # fmt: skip
    assert (
        "visit to 永安食品厂（g-002） recorded: 违规; order xx-town/g-002/manual_order/2010-10-21 issued (已下达)"
        in said
    )
    kept = list((tmp_path / "state" / "photos").iterdir())
    assert [p.read_bytes() for p in kept] == [photo.read_bytes()]
    assert oct(kept[0].stat().st_mode & 0o777) == "0o600"
    visits = [json.loads(line) for line in ok(quotad("inspections", "list", "--json", "-c", town)).splitlines()]
    assert [(v["firm"], v["result"], v["photo"]["file"]) for v in visits] == [("g-002", "violation",
                                                                                f"photos/{kept[0].name}")]  # fmt: skip
    text = tmp_path / "not-a-photo.jpg"
    text.write_text("这不是照片")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photo.read_bytes()[:200])
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(photo.read_bytes() + b"\0" * (10 * 1024 * 1024))
    unreadable = "cannot read the photo"
    for bad, why in [(text, "not a readable image"), (truncated, "not a readable image"), (huge, "larger than 10 MB"),
                     (tmp_path, unreadable), (tmp_path / "none.jpg", unreadable)]:  # fmt: skip
        refused = quotad("inspections", "add", "g-003", "--by", "李督查", "--result", "ok", "--finding", "正常",
                         "--photo", bad, "-c", town)  # fmt: skip
        assert refused.returncode == 2, bad
        assert why in refused.stderr, refused.stderr
    assert len(list((tmp_path / "state" / "photos").iterdir())) == 1  # nothing of the refused ones kept
    assert [v["firm"] for v in Store.read_only(tmp_path / "state").visits()] == ["g-002"]  # nor recorded
    wrong = quotad(
        "inspections", "add", "g-003", "--by", "李", "--result", "ok", "--finding", "x", "--order", "-c", town
    )
    assert wrong.returncode == 2


def test_each_command_is_journaled_once(town: Path) -> None:
    ok(quotad("order", "confirm", "shengda", "-c", town))
    ok(quotad("talks", "add", "shengda", "--by", "镇长", "--note", "约谈", "-c", town))
    store = Store.read_only(town.parent / "state")
    assert store is not None
    kinds = [e.kind for e in store.events() if e.kind in ("order", "talk")]
    assert kinds == ["order", "talk"]
    assert [o.state for o in order_history(store) if o.firm == "shengda"] == ["pending", "issued"]
    by = os.environ.get("SUDO_USER") or __import__("getpass").getuser()
    assert journal_of(town).engine.orders["shengda"].history[-1].by == by  # --by defaults to the Unix user


def test_todays_inspection_list(town: Path) -> None:
    """The journal's day is 10-21 (its last reading at midnight): before 07:00 the list is computed as things stand,
    and says so; the firms that broke the plan the day before come first, then the day's random draw."""
    text = ok(quotad("inspections", "today", "-c", town))
    assert text.startswith("××镇 inspection list of 2010-10-21（computed now, from the readings so far）")
    listed = json.loads(ok(quotad("inspections", "today", "--json", "-c", town)))
    assert listed["day"] == "2010-10-21"
    firms = [e["firm"] for e in listed["entries"]]
    assert firms[:3] == ["rongsheng-paper", "w-003", "shengda"]
    drawn = [e["firm"] for e in listed["entries"] if e["evidence"][0]["kind"] == "random_sample"]
    assert len(drawn) == 2  # the example's inspection_sample
    assert "1. 荣生公司造纸厂（rongsheng-paper）" in text

"""`quotad inspections today|add|list` (SPEC "Inspections and escalation"): the day's list, a visit recorded (with
its photo), the record of visits."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from quotad.commands.orders import carry_out, command
from quotad.commands.register import firm_text, open_register
from quotad.config.load import Loaded
from quotad.core.errors import QuotadError, UsageError
from quotad.core.i18n import _
from quotad.core.orders import STATE_NAMES
from quotad.core.tables import render

__all__ = ["RESULT_NAMES", "add_inspections_parser", "add_visit", "list_visits", "today"]

RESULT_NAMES = {"ok": "正常", "violation": "违规", "rectify": "限期整改"}


def add_inspections_parser(sub: Any, config_option: Callable[[argparse.ArgumentParser], None]) -> None:
    help_text = _("inspections (督查): today's list, a visit recorded, the record")
    p = sub.add_parser("inspections", help=help_text, description=help_text)
    inspections_sub = p.add_subparsers(dest="inspections_command", required=True, metavar="ACTION")
    p = inspections_sub.add_parser("today", help=_("today's inspection list (今日督查清单), ranked, with reasons"))
    p.add_argument("--json", action="store_true", help=_("the list as published, JSON"))
    config_option(p)
    p = inspections_sub.add_parser("add", help=_("record a visit to a firm (with a photo)"))
    p.add_argument("firm", help=_("the firm's id"))
    p.add_argument("--by", required=True, help=_("the inspector"))
    p.add_argument("--result", required=True, choices=("ok", "violation", "rectify"), help=_("what was found"))
    p.add_argument("--finding", required=True, help=_("what was found, in words"))
    p.add_argument("--photo", type=Path, help=_("a photo taken on site (JPEG, PNG or WebP, at most 10 MB)"))
    p.add_argument("--order", action="store_true", help=_("with --result violation: also issue an order by hand"))
    config_option(p)
    p = inspections_sub.add_parser("list", help=_("the visits recorded"))
    p.add_argument("--firm", help=_("only this firm's visits"))
    p.add_argument("--since", type=dt.date.fromisoformat, help=_("from this day on"))
    p.add_argument("--json", action="store_true", help=_("the visits as published, one per line"))
    config_option(p)


def today(loaded: Loaded, as_json: bool, out: TextIO) -> int:
    """The list the daemon published at 07:00 of the journal's day; before 07:00 (or if it has none), the list as
    it stands now, computed the same way, and said so."""
    from quotad.core.inspections import Entry, list_lines
    from quotad.shell.journal import Journal

    with open_register(loaded) as store:
        journal = Journal(store, loaded.policy, None, False)
        journal.restore()
        now = journal.engine.now
        if now is None:
            raise QuotadError(_("no readings journaled yet: there is no day to list"))
        day = journal.engine.calendar.day_of(now)
        published = store.latest("inspections")
        fresh = published is None or published.body.get("day") != day.isoformat()
        payload = journal.list_of(day, now) if fresh or published is None else published.body
    if as_json:
        print(json.dumps(payload, ensure_ascii=False), file=out)
        return 0
    head = _("{township} inspection list of {day}").format(township=loaded.policy.township.name, day=day)
    how = _("computed now, from the readings so far") if fresh else _("published at {computed}")
    print(f"{head}（{how.format(computed=str(payload['computed'])[11:16])}）", file=out)
    entries = [Entry(e["firm"], e["firm_name"], tuple(e["reasons"]), tuple(e["evidence"])) for e in payload["entries"]]
    for line in list_lines(entries):
        print(line, file=out)
    return 0


def add_visit(loaded: Loaded, firm: str, by: str, result: str, finding: str, photo_path: Path | None, order: bool,
              out: TextIO) -> int:  # fmt: skip
    """Record a visit; its photo is checked and kept first, and removed again if the visit is refused."""
    from quotad.shell import photos

    if order and result != "violation":
        raise UsageError(_("--order goes with --result violation: an order needs a violation found"))
    if not finding.strip():
        raise UsageError(_("--finding must say what was found"))
    body = command(loaded, "inspection", firm, by, result=result, finding=finding, issue_order=order, photo=None)
    kept: Path | None = None
    if photo_path is not None:
        assert loaded.daemon is not None  # `command` checked the firm; `carry_out` needs the daemon file anyway
        photo = photos.read(photo_path)
        kept, new = photos.keep(photo, loaded.daemon.state_dir)
        body["photo"] = photo.record()
        kept = kept if new else None  # an identical photo kept before belongs to an earlier visit too
    try:
        outcome, _online = carry_out(loaded, body)
    except BaseException:
        if kept is not None:
            kept.unlink(missing_ok=True)
        raise
    said = _("visit to {firm} recorded: {result}").format(firm=firm_text(loaded, firm), result=RESULT_NAMES[result])
    if "alert_id" in outcome:
        said += _("; order {alert_id} issued ({state})").format(
            alert_id=outcome["alert_id"], state=STATE_NAMES.get(outcome["state"], outcome["state"])
        )
    print(said, file=out)
    return 0


def list_visits(loaded: Loaded, firm: str | None, since: dt.date | None, as_json: bool, out: TextIO) -> int:
    with open_register(loaded) as store:
        visits = [
            v for v in store.visits()
            if (firm is None or v["firm"] == firm) and (since is None or v["at"][:10] >= since.isoformat())
        ]  # fmt: skip
    if as_json:
        for visit in visits:
            fields = ("firm", "by", "at", "result", "finding", "photo", "order")
            print(json.dumps({k: visit.get(k) for k in fields}, ensure_ascii=False), file=out)
        return 0
    if not visits:
        print(_("no visits recorded"), file=out)
        return 0
    names = {f.id: f.name for f in loaded.policy.firms}
    rows = [
        [v["at"][:16].replace("T", " "), names.get(v["firm"], v["firm"]), v["by"], RESULT_NAMES.get(v["result"], "?"),
         v["finding"], _photo(v.get("photo")), (v.get("order") or {}).get("alert_id", "—")]
        for v in visits
    ]  # fmt: skip
    print(render(["时间", "企业", "督查", "结果", "发现", "照片", "停电令"], rows), file=out)
    return 0


def _photo(photo: dict[str, Any] | None) -> str:
    """A visit's photo in the table: where it is under state_dir, its digest shortened ('photos/31b14d98….jpg')."""
    if not photo:
        return "—"
    return f"photos/{photo['sha256'][:8]}….{photo['type']}"

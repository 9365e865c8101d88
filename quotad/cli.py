"""The `quotad` command. Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad configuration."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from quotad import __version__
from quotad.commands.inspect import add_inspections_parser
from quotad.commands.notify import add_notify_parser
from quotad.commands.probe import add_probe_parser
from quotad.commands.register import add_order_parsers, add_talks_parser, alerts_since, orders, run_order, talks
from quotad.commands.replay import replay
from quotad.commands.report import add_report_parser
from quotad.commands.users import add_user_parser
from quotad.config.figures import echo
from quotad.config.foreign import os_error
from quotad.config.load import Loaded, load
from quotad.core.errors import ConfigError, QuotadError, UsageError
from quotad.core.feed import counters, to_jsonl
from quotad.core.i18n import _
from quotad.core.orders import Order, cut_off_on
from quotad.core.sources import SOURCE_LABELS
from quotad.core.tables import render
from quotad.core.views import off_text
from quotad.schedule.calendar import Calendar
from quotad.schedule.rota import DaySchedule, Plan

__all__ = ["main"]

log = logging.getLogger("quotad")
_WEEKDAYS_ZH = "一二三四五六日"
_DEFAULT_CONFIG = "/etc/quotad/quotad.toml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quotad", description=_("Enforces a township's electricity quota plan."))
    parser.add_argument("--version", action="version", version=f"quotad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config_help = _("the daemon file, or a policy file on its own (default: $QUOTAD_CONFIG or {default})")

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "-c", "--config", type=Path, default=Path(os.environ.get("QUOTAD_CONFIG", _DEFAULT_CONFIG)),
            help=config_help.format(default=_DEFAULT_CONFIG),
        )  # fmt: skip
        return p

    p = with_config("check-config", _("validate the daemon file and the policy file; list every problem"))
    p.add_argument("--strict", action="store_true", help=_("treat warnings (values that look like a slip) as errors"))
    p = with_config("schedule", _("the rota as a table: who runs, who is off, who is cut off, each day"))
    p.add_argument(
        "--from", dest="start", type=dt.date.fromisoformat, help=_("first day (default: today, or the control start)")
    )
    p.add_argument("--days", type=int, default=7, help=_("number of days (default 7)"))
    p.add_argument("--json", action="store_true", help=_("JSON for machines"))
    p = with_config("replay", _("run the rules over recorded readings; alerts as JSONL on stdout"))
    p.add_argument("readings", type=Path, help=_("readings: JSONL, or CSV with a header when the name ends in .csv"))
    p.add_argument("--format", choices=("jsonl", "text"), default="jsonl", help=_("jsonl (default) or readable text"))
    p.add_argument("--commands", type=Path, help=_("people's commands too (JSONL with a ts each): orders, talks"))
    p = with_config("feed", _("a simulated feed of the policy's meters (JSONL readings), for replay and benchmarks"))
    p.add_argument("--from", dest="start", type=dt.date.fromisoformat, required=True, help=_("first local day"))
    p.add_argument("--days", type=int, default=1, help=_("number of days (default 1)"))
    p.add_argument("--step", type=int, default=60, help=_("seconds between readings (default 60)"))
    p.add_argument("--seed", type=int, default=1, help=_("random seed (default 1)"))
    p = with_config("simulate", _("serve the policy's simulated township: its Modbus gateways and MQTT meters"))
    p.add_argument("--start", type=dt.datetime.fromisoformat, help=_("simulated start (default: [clock] start)"))
    p.add_argument("--speed", type=float, help=_("simulated seconds per real second (default: [clock] speed, or 1)"))
    p.add_argument("--seed", type=int, default=1, help=_("random seed (default 1)"))
    with_config("run", _("the daemon, in the foreground (systemd Type=notify); SIGHUP reloads, SIGTERM stops"))
    p = sub.add_parser("order", help=_("cutoff orders"), description=_("cutoff orders"))
    order_sub = p.add_subparsers(dest="order_command", required=True, metavar="ACTION")
    add_order_parsers(order_sub, _config_option)
    p = with_config("orders", _("the register of orders, with each change of state: who, when, why"))
    p.add_argument("--firm", help=_("only this firm's orders"))
    p.add_argument("--all", action="store_true", help=_("also the orders lifted, dismissed or ended"))
    p.add_argument("--json", action="store_true", help=_("the orders' payloads, one per line"))
    add_talks_parser(sub, _config_option)
    add_inspections_parser(sub, _config_option)
    p = with_config("alerts", _("print alerts as they arrive, in readable Chinese; or past ones from the journal"))
    p.add_argument("--follow", action="store_true", help=_("keep printing until interrupted (the default)"))
    p.add_argument("--since", type=dt.date.fromisoformat, help=_("past alerts from this day on, from the journal"))
    p.add_argument("--until", type=dt.date.fromisoformat, help=_("with --since: up to this day (included)"))
    p.add_argument("--severity", choices=("notice", "warning", "violation", "breach"))
    p.add_argument("--firm", help=_("only this firm's alerts ('township' for township alerts)"))
    p.add_argument("--json", action="store_true", help=_("the alert payloads, one per line"))
    add_report_parser(sub, _config_option)
    with_config("status", _("today's schedule, the township against its cap, each firm, the standing orders"))
    add_user_parser(sub, _config_option)
    add_notify_parser(sub, _config_option)
    add_probe_parser(sub)
    p = sub.add_parser("demo", help=_("the example township enforced live, for a first look"))
    p.add_argument("--speed", type=float, default=720.0, help=_("simulated seconds per real second (default 720)"))
    p.add_argument("--days", type=int, default=2, help=_("simulated days to run (default 2)"))
    return parser


def _config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c", "--config", type=Path, default=Path(os.environ.get("QUOTAD_CONFIG", _DEFAULT_CONFIG)),
        help=_("the daemon file (default: $QUOTAD_CONFIG or {default})").format(default=_DEFAULT_CONFIG),
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-config":
            return _check_config(args.config, args.strict)
        if args.command == "demo":
            from quotad.commands.demo import demo

            return demo(args.speed, args.days)
        if args.command == "probe":  # no configuration: the meter is on the command line
            from quotad.commands.probe import probe

            return probe(args, sys.stdout)
        if args.command == "user":
            from quotad.commands.users import main as user_main

            return user_main(args)
        loaded = load(args.config)
        if args.command == "schedule":
            return _schedule(loaded, args.start, args.days, args.json)
        if args.command == "replay":
            return _replay(loaded, args.readings, args.format == "text", args.commands)
        if args.command == "feed":
            return _feed(loaded, args.start, args.days, args.step, args.seed)
        if args.command == "report":
            from quotad.commands.report import report

            return report(loaded, args, sys.stdout)
        return _shell(args, loaded)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"quotad: {exc}", file=sys.stderr)
        return 2
    except QuotadError as exc:
        print(f"quotad: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        sys.stderr.close()  # output piped into `head`: not an error
        return 0
    return 2


def _shell(args: argparse.Namespace, loaded: Loaded) -> int:
    """The commands that talk to meters, brokers and databases (imported only when used)."""
    if args.command == "simulate":
        from quotad.commands.simulate import simulate

        return simulate(loaded, args.start, args.speed, args.seed)
    if args.command == "run":
        from quotad.shell.daemon import run

        if loaded.daemon is None:  # before anything is touched, like a refused configuration
            message = _("{path} is a policy file: `quotad run` needs the daemon file that names it")
            raise UsageError(message.format(path=args.config))

        return run(loaded, args.config)
    if args.command == "order":
        return run_order(loaded, args.order_command, args.firm, args.reason, args.by, sys.stdout)
    if args.command == "orders":
        return orders(loaded, args.firm, args.all, args.json, sys.stdout)
    if args.command == "talks":
        return talks(loaded, args.firm, args.by, args.note, sys.stdout)
    if args.command == "inspections":
        return _inspections(args, loaded)
    if args.command == "alerts" and (args.since is not None or args.until is not None):
        if args.since is None or args.follow:
            raise UsageError(_("--until goes with --since, and --since does not go with --follow"))
        return alerts_since(loaded, args.since, args.until, args.firm, args.severity, args.json, sys.stdout)
    if args.command == "alerts":
        from quotad.commands.watch import follow_alerts

        return follow_alerts(loaded, args.severity, args.firm, args.json)
    if args.command == "status":
        from quotad.commands.watch import show_status

        return show_status(loaded)
    if args.command == "notify":
        from quotad.commands.notify import main as notify_main

        return notify_main(args, loaded)
    return 2


def _inspections(args: argparse.Namespace, loaded: Loaded) -> int:
    from quotad.commands import inspect

    if args.inspections_command == "add":
        return inspect.add_visit(loaded, args.firm, args.by, args.result, args.finding, args.photo, args.order,
                                 sys.stdout)  # fmt: skip
    if args.inspections_command == "list":
        return inspect.list_visits(loaded, args.firm, args.since, args.json, sys.stdout)
    return inspect.today(loaded, args.json, sys.stdout)


def _check_config(path: Path, strict: bool) -> int:
    try:
        loaded = load(path, strict=strict)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        if any(p.warning for p in exc.problems):
            found = _("{count} problem(s) found (warnings count under --strict)")
        else:
            found = _("{count} problem(s) found")
        print(found.format(count=len(exc.problems)), file=sys.stderr)
        return 2
    for warning in loaded.warnings:
        print(warning, file=sys.stderr)
    print(summary(loaded))
    return 0


def summary(loaded: Loaded) -> str:
    """The `ok` line, then the figures an operator must eyeball (caps, limits, quotas), one indented line each."""
    return "\n".join([_counts(loaded), *(f"  {line}" for line in echo(loaded.policy))])


def _counts(loaded: Loaded) -> str:
    policy = loaded.policy
    kinds = Counter(f.kind for f in policy.firms)
    read_over = Counter(type(m.source).LABEL for m in policy.meters)
    # TRANSLATORS: one kind of source in the `ok` line: "16 Modbus"; they are joined by the message ", "
    labels = [label for label in SOURCE_LABELS if read_over[label]] or SOURCE_LABELS  # the kinds it has, if any
    sources = _(", ").join(_("{count} {kind}").format(count=read_over[label], kind=label) for label in labels)
    files = f"{loaded.daemon_path} + {loaded.policy_path}" if loaded.daemon_path else str(loaded.policy_path)
    # TRANSLATORS: keep "{files}: " as it is: a problem's line starts the same way
    message = _(
        "{files}: ok: 1 township ({township}), {large} large firms, {general} general firms, {workshops} workshops, "
        "{meters} meters ({sources}); control {start}..{end}"
    )
    return message.format(
        files=files,
        township=policy.township.id,
        large=kinds["large"],
        general=kinds["general"],
        workshops=kinds["workshop"],
        meters=len(policy.meters),
        sources=sources,
        start=policy.control.start,
        end=policy.control.end,
    )


def _schedule(loaded: Loaded, start: dt.date | None, days: int, as_json: bool) -> int:
    if days < 1:
        print("quotad schedule: " + _("--days must be at least 1"), file=sys.stderr)
        return 2
    policy, plan = loaded.policy, Plan(loaded.policy)
    if start is None:
        today = dt.datetime.now(policy.township.tz).date()
        start = today if today in plan.control else policy.control.start
    orders = _recorded_orders(loaded)
    table = []
    for k in range(days):
        day = start + dt.timedelta(days=k)
        table.append(plan.day(day, cut_off_on(orders, day)))
    if as_json:
        print(json.dumps([_day_json(d) for d in table], ensure_ascii=False, indent=2))
    else:
        print(_day_table(loaded, table))
    return 0


def _recorded_orders(loaded: Loaded) -> list[Order]:
    """The orders the daemon's journal records (under the state_dir of the daemon file); says on stderr when
    there is none to read, so that an empty cut-off column is not taken for "nobody is cut off"."""
    if loaded.daemon is None:
        _note(_("a policy file alone names no state directory: firms cut off are not shown (give -c quotad.toml)"))
        return []
    from quotad.shell.register import recorded_orders
    from quotad.shell.store import Store

    state_dir = loaded.daemon.state_dir
    try:
        store = Store.read_only(state_dir)
    except OSError as exc:
        _note(_("{error}: firms cut off are not shown").format(error=os_error(exc)))
        return []
    if store is None:
        _note(_("no daemon state in {state_dir} yet: no firm is shown as cut off").format(state_dir=state_dir))
        return []
    try:
        return list(recorded_orders(store).values())
    finally:
        store.close()


def _note(text: str) -> None:
    print(f"quotad schedule: {text}", file=sys.stderr)


def _day_json(d: DaySchedule) -> dict[str, object]:
    return {
        "day": d.day.isoformat(),
        "weekday": d.day.isoweekday(),
        "in_control": d.in_control,
        "phase": d.phase,
        "cap_kwh": d.cap_kwh,
        "running_groups": list(d.running_groups),
        "off_groups": list(d.off_groups),
        "exempt_running": list(d.exempt_running),
        "resting_workshops": list(d.resting_workshops),
        "cut_off_firms": list(d.cut_off_firms),
        "residents_experience": d.residents_hours,
    }


def _day_table(loaded: Loaded, table: list[DaySchedule]) -> str:
    policy = loaded.policy
    groups = {g.id: g.name for g in policy.groups}
    firms = {f.id: f.name for f in policy.firms}

    def names(ids: Sequence[str], known: dict[str, str]) -> str:
        return "、".join(known.get(i, i) for i in ids) or "—"

    rows = [
        [
            d.day.isoformat(),
            f"周{_WEEKDAYS_ZH[d.day.weekday()]}",
            d.phase or ("管控期" if d.in_control else "管控期外"),
            f"{d.cap_kwh:g}" if d.cap_kwh is not None else "—",
            names(d.running_groups, groups),
            off_text(policy, d) if d.off_groups else "—",
            names(d.resting_workshops, firms),
            names(d.cut_off_firms, firms),
            d.residents_hours or "—",
        ]
        for d in table
    ]
    header = ["日期", "星期", "阶段", "日上限 kWh", "运行", "停电", "休息的作坊", "一停到底", "能源紧缺体验日"]
    title = f"{policy.township.name}（{policy.township.id}）错时供电安排"
    return f"{title}\n{render(header, rows)}"


def _replay(loaded: Loaded, readings: Path, text: bool, commands: Path | None) -> int:
    for path in (readings, commands):
        if path is not None and not path.is_file():
            print("quotad replay: " + _("no such file: {path}").format(path=path), file=sys.stderr)
            return 2
    replay(loaded.policy, readings, sys.stdout, sys.stderr, text=text, commands=commands)
    return 0


def _feed(loaded: Loaded, start: dt.date, days: int, step: int, seed: int) -> int:
    if days < 1 or step < 1:
        print("quotad feed: " + _("--days and --step must be at least 1"), file=sys.stderr)
        return 2
    cal = Calendar(loaded.policy.township.timezone)
    out = sys.stdout
    for reading in counters(loaded.policy, start, days, step, seed):
        out.write(to_jsonl(reading, cal) + "\n")
    return 0

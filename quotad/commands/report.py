"""`quotad report daily|phase|firm` (SPEC "Reports"): the township's daily report (日报), a phase's report, a firm's
monthly statement (对账单), as html, pdf or xlsx; from the daemon's journal (read-only, beside a running daemon) or
from a readings file (`--replay`, with no daemon, as `quotad replay`)."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from quotad.config.foreign import os_error
from quotad.config.load import Loaded
from quotad.core.engine import Engine
from quotad.core.errors import QuotadError, UsageError
from quotad.core.i18n import _
from quotad.core.reports.collect import Collected

__all__ = ["FORMATS", "add_report_parser", "default_name", "report", "write_daily"]

FORMATS = ("html", "pdf", "xlsx")


def add_report_parser(sub: Any, config_option: Callable[[argparse.ArgumentParser], None]) -> None:
    what = _("the reports: daily (日报), a phase's, a firm's monthly statement (对账单)")
    p = sub.add_parser("report", help=what, description=what)
    kinds = p.add_subparsers(dest="report_kind", required=True, metavar="KIND")
    daily = kinds.add_parser("daily", help=_("the township's daily report (日报) of one day"))
    daily.add_argument("--date", type=dt.date.fromisoformat, required=True, help=_("the day (YYYY-MM-DD)"))
    phase_help = _("a phase's report: each day of the phase and its totals against the plan")
    phase = kinds.add_parser("phase", help=phase_help)
    phase.add_argument("name", help=_("the phase's name, as in [[control.phases]] (e.g. 首期)"))
    firm = kinds.add_parser("firm", help=_("a firm's monthly statement (对账单): its days, its limit, its orders"))
    firm.add_argument("firm", help=_("the firm's id"))
    firm.add_argument("--month", required=True, help=_("the month (YYYY-MM)"))
    for q in (daily, phase, firm):
        q.add_argument("--format", choices=FORMATS, default="html", help=_("html (default), pdf or xlsx"))
        q.add_argument("-o", "--output", type=Path,
                       help=_("the file to write (default: html to stdout; pdf and xlsx to a file named after the "
                              "report in the current directory)"))  # fmt: skip
        q.add_argument(
            "--replay",
            type=Path,
            metavar="READINGS",
            help=_("make it from a readings file (as `quotad replay`) instead of the daemon's state"),
        )
        q.add_argument("--commands", type=Path, help=_("with --replay: people's commands too (as `quotad replay`)"))
        config_option(q)


def default_name(args: argparse.Namespace) -> str:
    """The report's file name: daily-YYYY-MM-DD, phase-<name>, firm-<id>-YYYY-MM, with the format's extension."""
    if args.report_kind == "daily":
        stem = f"daily-{args.date}"
    elif args.report_kind == "phase":
        stem = f"phase-{args.name}"
    else:
        stem = f"firm-{args.firm}-{args.month}"
    return f"{stem}.{args.format}"


def report(loaded: Loaded, args: argparse.Namespace, out: TextIO) -> int:
    policy = loaded.policy
    check = _checks[args.report_kind]
    subject = check(loaded, args)
    engine, data, source = _figures(loaded, args)
    output: Path | None = args.output
    if output is None and args.format != "html":
        output = Path(default_name(args))
    html, write_xlsx = _makers[args.report_kind](engine, data, subject, source)
    _write(args.format, html, write_xlsx, output, out)
    if output is not None:
        print(_("{township}: report written to {path}").format(township=policy.township.name, path=output),
              file=sys.stderr)  # fmt: skip
    return 0


def _daily(engine: Engine, data: Collected, day: dt.date, source: str) -> tuple[str, Callable[[Path], None]]:
    from quotad.core.reports.daily import daily_report
    from quotad.reports.html import render_daily
    from quotad.reports.xlsx import daily_xlsx

    figures = daily_report(engine, data, day)
    return render_daily(figures, source), lambda path: daily_xlsx(figures, path)


def _phase(engine: Engine, data: Collected, name: str, source: str) -> tuple[str, Callable[[Path], None]]:
    from quotad.core.reports.phase import phase_report
    from quotad.reports.html import render_phase
    from quotad.reports.xlsx import phase_xlsx

    phase = next(p for p in engine.policy.control.phases if p.name == name)
    figures = phase_report(engine, data, phase)
    return render_phase(figures, source), lambda path: phase_xlsx(figures, path)


def _firm(engine: Engine, data: Collected, subject: tuple[str, int, int],
          source: str) -> tuple[str, Callable[[Path], None]]:  # fmt: skip
    from quotad.core.reports.statement import firm_statement
    from quotad.reports.html import render_firm
    from quotad.reports.xlsx import firm_xlsx

    figures = firm_statement(engine, data, *subject)
    return render_firm(figures, source), lambda path: firm_xlsx(figures, path)


_makers: dict[str, Callable[[Engine, Collected, Any, str], tuple[str, Callable[[Path], None]]]] = {
    "daily": _daily,
    "phase": _phase,
    "firm": _firm,
}


def write_daily(engine: Engine, data: Collected, day: dt.date, source: str, folder: Path,
                formats: tuple[str, ...] = FORMATS) -> list[Path]:  # fmt: skip
    """Write the daily report of `day` into `folder` as daily-YYYY-MM-DD.<format> for each of `formats` (what the
    daemon does each morning); the files written."""
    html, write_xlsx = _daily(engine, data, day, source)
    written = []
    for fmt in formats:
        path = folder / f"daily-{day}.{fmt}"
        _write(fmt, html, write_xlsx, path, sys.stdout)
        written.append(path)
    return written


def _write(fmt: str, html: str, write_xlsx: Callable[[Path], None], output: Path | None, out: TextIO) -> None:
    """Written whole or not at all: into a temporary file beside `output`, then renamed."""
    if output is None:
        out.write(html)
        return
    partial = output.with_name(f".{output.name}.partial")
    try:
        _write_file(fmt, html, write_xlsx, partial)
        partial.replace(output)
    except OSError as exc:  # a full disk, a folder refused: said in a line, not a traceback
        raise QuotadError(os_error(exc)) from None
    finally:
        partial.unlink(missing_ok=True)


def _write_file(fmt: str, html: str, write_xlsx: Callable[[Path], None], partial: Path) -> None:
    if fmt == "html":
        partial.write_text(html, encoding="utf-8")
    elif fmt == "pdf":
        from quotad.reports.pdf import html_to_pdf

        html_to_pdf(html, partial)
    else:
        write_xlsx(partial)


def _figures(loaded: Loaded, args: argparse.Namespace) -> tuple[Engine, Collected, str]:
    from quotad.reports.feed import from_journal, from_readings

    if args.replay is not None:
        for path in (args.replay, args.commands):
            if path is not None and not path.is_file():
                raise UsageError(_("no such file: {path}").format(path=path))
        try:
            engine, data = from_readings(loaded.policy, args.replay, args.commands)
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(_("cannot read {path}: {error}").format(path=args.replay, error=exc)) from None
        return engine, data, f"读数文件 {args.replay.name}"
    if args.commands is not None:
        raise UsageError(_("--commands goes with --replay"))
    from quotad.commands.register import open_register

    with open_register(loaded) as store:
        try:
            engine, data = from_journal(store, loaded.policy)
        except sqlite3.Error as exc:
            raise QuotadError(_("cannot read the journal: {error}").format(error=exc)) from None
    assert loaded.daemon is not None
    return engine, data, f"状态目录 {loaded.daemon.state_dir} 的日志"


def _check_daily(loaded: Loaded, args: argparse.Namespace) -> dt.date:
    control = loaded.policy.control
    day: dt.date = args.date
    if not control.start <= day <= control.end:
        message = _("{day} is outside the control period ({start}..{end}): there is no daily report of it")
        raise UsageError(message.format(day=day, start=control.start, end=control.end))
    return day


def _check_phase(loaded: Loaded, args: argparse.Namespace) -> str:
    names = [p.name for p in loaded.policy.control.phases]
    if args.name not in names:
        known = "、".join(names) or _("none")
        raise UsageError(_("unknown phase {name!r} (the policy's phases: {known})").format(name=args.name, known=known))
    return str(args.name)


def _check_firm(loaded: Loaded, args: argparse.Namespace) -> tuple[str, int, int]:
    if args.firm not in {f.id for f in loaded.policy.firms}:
        raise UsageError(_("unknown firm {firm!r}").format(firm=args.firm))
    match = re.fullmatch(r"(\d{4})-(\d{2})", args.month)
    if not match or not 1 <= int(match[2]) <= 12:
        raise UsageError(_("expected a month as YYYY-MM, got {month!r}").format(month=args.month))
    year, month = int(match[1]), int(match[2])
    control = loaded.policy.control
    if (year, month) < (control.start.year, control.start.month) or (year, month) > (
        control.end.year,
        control.end.month,
    ):
        message = _("{month} is outside the control period ({start}..{end})")
        raise UsageError(message.format(month=args.month, start=control.start, end=control.end))
    return str(args.firm), year, month


_checks: dict[str, Callable[[Loaded, argparse.Namespace], Any]] = {
    "daily": _check_daily,
    "phase": _check_phase,
    "firm": _check_firm,
}

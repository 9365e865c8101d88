"""The daemon's morning report (SPEC "Reports"): yesterday's daily report at `[reports] daily_at` local event time,
written into `state_dir/reports/` as daily-YYYY-MM-DD.html, .xlsx and .pdf, once.

A child process (`quotad report daily`) writes it, so that the asyncio loop and its systemd watchdog never wait for
the journal's replay or chromium. It is journaled once (`report:daily:<day>`, like the 07:00 inspection list) when
all three files are written; after a failure it is tried again 10 minutes later; the daemon stopping kills it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sys
import time
from pathlib import Path

from quotad.core.errors import StoreError
from quotad.shell.journal import Journal

__all__ = ["FORMATS", "MorningReport"]

log = logging.getLogger(__name__)
FORMATS = ("html", "xlsx", "pdf")
_RETRY_S = 600.0


class MorningReport:
    def __init__(self, state_dir: Path, config_path: Path) -> None:
        self.folder = state_dir / "reports"
        self.config_path = config_path
        self.task: asyncio.Task[None] | None = None
        self._retry_at = 0.0

    def due(self, journal: Journal, now: int) -> None:
        """Start writing yesterday's report when `now` (event time) has passed daily_at and it is not written yet."""
        engine = journal.engine
        local = engine.calendar.local(now)
        yesterday = local.date() - dt.timedelta(days=1)
        if self.task is not None or time.monotonic() < self._retry_at:
            return
        if local.strftime("%H:%M") < journal.policy.reports.daily_at or yesterday not in engine.plan.control:
            return
        if journal.store.get(f"report:daily:{yesterday}") is not None:
            return
        self.task = asyncio.get_running_loop().create_task(self._write(journal, yesterday), name="daily report")

    async def _write(self, journal: Journal, day: dt.date) -> None:
        written = []
        try:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            for fmt in FORMATS:
                path = self.folder / f"daily-{day}.{fmt}"
                said = await self._child(day, fmt, path)
                if said is not None:
                    log.warning("the daily report of %s (%s) was not written: %s", day, fmt, said)
                    self._retry_at = time.monotonic() + _RETRY_S
                    return
                written.append(path.name)
            journal.record_report(day, written)
            log.info("the daily report of %s written: %s", day, ", ".join(written))
        except (OSError, StoreError) as exc:
            log.warning("the daily report of %s was not written: %s", day, exc)
            self._retry_at = time.monotonic() + _RETRY_S
        finally:
            self.task = None

    async def _child(self, day: dt.date, fmt: str, path: Path) -> str | None:
        """Run `quotad report daily` for one format; None when it wrote, else the last line it said."""
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "quotad", "report", "daily", "--date", str(day), "-c", str(self.config_path),
            "--format", fmt, "-o", str(path), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            _out, err = await child.communicate()
        except asyncio.CancelledError:
            child.kill()
            raise
        if child.returncode == 0:
            return None
        return (err.decode(errors="replace").strip().splitlines() or ["(nothing said)"])[-1]

"""The reports as pdf: the html printed by headless Chromium (Debian's `chromium`), which lays out Chinese text with
the system's CJK font (`fonts-noto-cjk`). A fresh profile in a temporary directory each time; nothing fetched."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from quotad.core.errors import QuotadError
from quotad.core.i18n import _

__all__ = ["CHROMIUM", "html_to_pdf"]

CHROMIUM = "/usr/bin/chromium"
_TIMEOUT_S = 120


def _browser() -> str:
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise QuotadError(_("pdf needs Debian's chromium (apt-get install chromium fonts-noto-cjk)"))
    return found


def html_to_pdf(html: str, pdf: Path) -> None:
    """Print `html` to the file `pdf` (A4, as the page's own @page rule says)."""
    with tempfile.TemporaryDirectory(prefix="quotad-report-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html, encoding="utf-8")
        out = Path(tmp) / "report.pdf"
        command = [
            _browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={Path(tmp) / 'profile'}", "--no-pdf-header-footer", f"--print-to-pdf={out}",
            page.as_uri(),
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise QuotadError(_("chromium could not print the report: {error}").format(error=exc)) from None
        if done.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
            tail = (done.stderr or "").strip().splitlines()[-3:]
            raise QuotadError(_("chromium could not print the report: {error}").format(error=" / ".join(tail)))
        shutil.move(str(out), pdf)

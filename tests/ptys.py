"""A serial line for the tests: two ptys linked by socat (`./dev test` installs it), the meter's end and quotad's."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["linked_ptys"]


@contextmanager
def linked_ptys(folder: Path) -> Iterator[tuple[str, str]]:
    """(the meter's side, quotad's side): what is written on one is read on the other, as on an RS-485 pair."""
    socat = shutil.which("socat")
    if socat is None:
        pytest.fail("socat is not installed (`./dev test` installs it: apt-get install socat)")
    a, b = folder / "meter-side", folder / "quotad-side"
    process = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 5
        while not (a.exists() and b.exists()):
            assert time.monotonic() < deadline, "socat did not create the ptys"
            time.sleep(0.02)
        yield str(a), str(b)
    finally:
        process.terminate()
        process.wait(5)

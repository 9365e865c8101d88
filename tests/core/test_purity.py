"""The functional core does no IO: it imports only pure modules, and never our IO libraries."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "quotad"
CORE = [
    "engine.py",
    "ledger.py",
    "rules.py",
    "windows.py",
    "alerts.py",
    "messages.py",
    "readings.py",
    "schedule/__init__.py",
    "schedule/calendar.py",
    "schedule/control.py",
    "schedule/rota.py",
    "config/policy.py",
    "config/crosscheck.py",
    "config/topics.py",
    "meters/feed.py",
]
ALLOWED = {
    "__future__", "array", "calendar", "collections", "csv", "dataclasses", "datetime", "fractions", "functools",
    "heapq", "json", "math", "random", "re", "typing", "unicodedata", "zlib", "zoneinfo", "pydantic", "quotad",
}  # fmt: skip
IO_LIBRARIES = ["pymodbus", "paho", "influxdb_client", "apscheduler", "sqlite3", "asyncio", "serial", "urllib3"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_only_pure_modules(module: str) -> None:
    names = imported_modules(PACKAGE / module)
    assert names  # the file was read and has imports
    assert sorted(n for n in names if n.split(".")[0] not in ALLOWED) == []


def test_core_loads_no_io_library_at_runtime() -> None:
    modules = ["quotad." + m.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for m in CORE]
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert "quotad.engine" in loaded  # the check really imported the core
    assert sorted({m for m in loaded for lib in IO_LIBRARIES if m == lib or m.startswith(lib + ".")}) == []
    assert "pydantic_settings" not in loaded

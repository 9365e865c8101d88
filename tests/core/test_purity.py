"""The functional core does no IO: every module in quotad/core/ and quotad/schedule/ imports only the standard
library's pure modules, pydantic and the core itself, and never one of our IO libraries. The list of core modules
is the folders' contents, not a list kept by hand: a module put in the core is checked the moment it exists."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "quotad"
CORE_FOLDERS = ("core", "schedule")
CORE = sorted(str(p.relative_to(PACKAGE)) for folder in CORE_FOLDERS for p in (PACKAGE / folder).rglob("*.py"))
CORE_PACKAGES = tuple(f"quotad.{folder}" for folder in CORE_FOLDERS)
ALLOWED = {
    "__future__", "array", "bisect", "calendar", "collections", "csv", "dataclasses", "datetime", "enum", "fractions",
    "functools", "heapq", "itertools", "json", "math", "random", "re", "typing", "unicodedata", "zlib", "zoneinfo",
    "pydantic",
    # quotad/core/inspections.py: the day's random draw is SHA-256 of a text, so anyone can recompute it (no IO)
    "hashlib",
    # quotad/core/i18n.py: the translation catalogs are package data, found beside the code and read at the first
    # message (the one lookup of a file the core makes, as importing a module reads one)
    "gettext", "pathlib",
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
            names |= {f"{node.module}.{alias.name}" for alias in node.names if node.module == "quotad"}
        elif isinstance(node, ast.ImportFrom) and node.level:
            names.add("." * node.level + (node.module or ""))  # relative: refused below, the core says its folder
    return names


def _pure(name: str) -> bool:
    if name.startswith("quotad"):
        return name.startswith(CORE_PACKAGES) and name.split(".")[1] in CORE_FOLDERS
    return name.split(".")[0] in ALLOWED


def test_the_core_folders_hold_the_engine() -> None:
    assert "core/engine.py" in CORE
    assert "core/rules.py" in CORE or "core/rules/__init__.py" in CORE
    assert "schedule/rota.py" in CORE
    assert len(CORE) >= 15


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_only_pure_modules(module: str) -> None:
    names = imported_modules(PACKAGE / module)
    assert names or module.endswith("__init__.py")  # the file was read and has imports
    assert sorted(n for n in names if not _pure(n)) == []


def test_the_check_would_catch_a_shell_import(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("from quotad.shell.store import Store\nimport sqlite3\nfrom quotad.core import alerts\n")
    assert sorted(n for n in imported_modules(sample) if not _pure(n)) == ["quotad.shell.store", "sqlite3"]


def test_core_loads_no_io_library_at_runtime() -> None:
    modules = ["quotad." + m.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for m in CORE]
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert "quotad.core.engine" in loaded  # the check really imported the core
    assert sorted({m for m in loaded for lib in IO_LIBRARIES if m == lib or m.startswith(lib + ".")}) == []
    assert "pydantic_settings" not in loaded
    assert sorted(m for m in loaded if m.startswith("quotad.") and not m.startswith(CORE_PACKAGES)) == []

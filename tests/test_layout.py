"""The package's shape: no import cycle between quotad's modules, no module past ~400 lines, and a tests folder
for each of the package's folders (the tests mirror the package)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "quotad"
TESTS = Path(__file__).resolve().parent
MAX_LINES = 420  # "about 400": a module past it has a seam to split along


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """The quotad modules `path` imports when it is imported: its top-level imports, also those inside a top-level
    `if` or `try`, but not those under `if TYPE_CHECKING:` nor inside functions (imported when called)."""
    found: set[str] = set()
    todo = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.If):
            todo += node.orelse if "TYPE_CHECKING" in ast.unparse(node.test) else node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
    return {n for n in found if n in MODULES}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (found := walk(node)):
            return found
    return None


def test_the_graph_was_read() -> None:
    assert "quotad.core.rules" in GRAPH["quotad.core.engine"] or any(
        m.startswith("quotad.core.rules") for m in GRAPH["quotad.core.engine"]
    )
    assert len(MODULES) >= 40


def test_no_import_cycle() -> None:
    assert _cycle() is None


def test_no_module_past_about_400_lines() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_tests_mirror_the_package() -> None:
    folders = {p.relative_to(PACKAGE).parts[0] for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE}
    assert {"core", "shell", "meters", "schedule", "config", "commands"} <= folders
    assert sorted(f for f in folders if not (TESTS / f).is_dir()) == []

"""PositionIndex: exact lines for headers, keys and multi-line array elements, and the ancestor fallback."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotad.config.tomlpos import PositionIndex, _Scanner

Path = tuple[str | int, ...]


def doc(*lines: str) -> str:
    """A TOML text whose line n is lines[n - 1]."""
    return "\n".join(lines) + "\n"


TABLES = doc(
    "title = 'x'",  # 1
    "[township]",  # 2
    "id = 't'",  # 3
    "  [ control . window ]  # spaced",  # 4
    "start = 1",  # 5
    '["a.b"]',  # 6
    "'lit' = 2",  # 7
    "[ 'lit2' .\"q\\u0041\" ]",  # 8
    "[control]",  # 9
    "end = 2",  # 10
)

ARRAYS_OF_TABLES = doc(
    "[[firms]]",  # 1
    "id = 'a'",  # 2
    "[[firms]]",  # 3
    "id = 'b'",  # 4
    "group = 'g'",  # 5
    "[[meters]]",  # 6
    "[[meters]]",  # 7
    "[meters.modbus]",  # 8
    "port = 502",  # 9
    "[control]",  # 10
    "[[control.phases]]",  # 11
    "at = 1",  # 12
    "[[control.phases]]",  # 13
    "at = 2",  # 14
    "[[a]]",  # 15
    "[[a.b]]",  # 16
    "[[a.b]]",  # 17
    "[[a]]",  # 18
    "[[a.b]]",  # 19
    "x = 1",  # 20
    "[[firms]]",  # 21
)

KEYS = doc(
    "top = 1",  # 1
    "a.b = 2",  # 2
    "a . c = 3",  # 3
    '"quoted key" = 4',  # 4
    "'lit.key' = 5",  # 5
    "\"x\".y.'z' = 6",  # 6
    "when = 1979-05-27 07:32:00Z # datetime with a space",  # 7
    "[t]",  # 8
    "k=1",  # 9
    "  indented   =   'v'  # c = 3",  # 10
    "s.t = 1",  # 11
    "[t.s.u]",  # 12
)

MULTILINE_VALUES = doc(
    "order = [",  # 1
    "  'a',",  # 2
    "  # comment [x] = 1, ]",  # 3
    '  "b]#=,",',  # 4
    "  [1, [2, ']'],",  # 5
    "   3],",  # 6
    "  '''",  # 7
    "  key = 1''',",  # 8
    "]",  # 9
    'text = """',  # 10
    "key = 1",  # 11
    "[table]",  # 12
    '\\""" still inside',  # 13
    'ends with a quote""""',  # 14
    "lit = '''",  # 15
    "[[nope]]",  # 16
    "x = \"'''",  # 17
    "after = 'x' # \"",  # 18
    'esc = "a \\" [b] # c = 1"',  # 19
    "hash = 'a # b' # real comment",  # 20
    "flat = [1, 2, '[', \"]\"]",  # 21
    "[next]",  # 22
    "rows = [ [1, 2],",  # 23
    "  [3,",  # 24
    "   4] ]",  # 25
    'empty = ""',  # 26
    'empty_ml = """"""',  # 27
    "v = 1",  # 28
)

INLINE = doc(
    "[[meters]]",  # 1
    'modbus = { host = "h,}", port = 502, opts.retry = 3 }',  # 2
    "[other]",  # 3
    "firms = [",  # 4
    "  { id = 'a', group = 'g' },",  # 5
    "  { id = 'b' },",  # 6
    "]",  # 7
    "deep = { list = [",
    "  1,",
    "  2], x = 1 }",  # 8-10
    "after = 1",  # 11
)


@pytest.mark.parametrize(
    ("text", "path", "line"),
    [
        pytest.param(TABLES, ("title",), 1, id="top-level-key"),
        pytest.param(TABLES, ("township",), 2, id="table"),
        pytest.param(TABLES, ("township", "id"), 3, id="key-in-table"),
        pytest.param(TABLES, ("control", "window"), 4, id="spaced-dotted-header"),
        pytest.param(TABLES, ("control", "window", "start"), 5, id="key-under-spaced-header"),
        pytest.param(TABLES, ("control",), 9, id="own-header-beats-implied"),
        pytest.param(TABLES, ("control", "end"), 10, id="key-after-late-parent-header"),
        pytest.param(TABLES, ("a.b",), 6, id="quoted-header-with-dot"),
        pytest.param(TABLES, ("a.b", "lit"), 7, id="literal-key"),
        pytest.param(TABLES, ("lit2", "qA"), 8, id="escaped-quoted-header"),
        pytest.param(TABLES, ("lit2",), 8, id="implied-parent-table"),
        pytest.param(ARRAYS_OF_TABLES, ("firms",), 1, id="array-first-header-wins"),
        pytest.param(ARRAYS_OF_TABLES, ("firms", 0), 1, id="aot-element-0"),
        pytest.param(ARRAYS_OF_TABLES, ("firms", 1), 3, id="aot-element-1"),
        pytest.param(ARRAYS_OF_TABLES, ("firms", 1, "group"), 5, id="aot-key"),
        pytest.param(ARRAYS_OF_TABLES, ("firms", 2), 21, id="aot-element-resumed-later"),
        pytest.param(ARRAYS_OF_TABLES, ("meters", 1), 7, id="aot-second-meter"),
        pytest.param(ARRAYS_OF_TABLES, ("meters", 1, "modbus"), 8, id="subtable-of-last-element"),
        pytest.param(ARRAYS_OF_TABLES, ("meters", 1, "modbus", "port"), 9, id="key-in-subtable-of-element"),
        pytest.param(ARRAYS_OF_TABLES, ("control", "phases", 0), 11, id="aot-under-table-0"),
        pytest.param(ARRAYS_OF_TABLES, ("control", "phases", 1, "at"), 14, id="aot-under-table-1"),
        pytest.param(ARRAYS_OF_TABLES, ("a", 0, "b", 0), 16, id="nested-aot-0-0"),
        pytest.param(ARRAYS_OF_TABLES, ("a", 0, "b", 1), 17, id="nested-aot-0-1"),
        pytest.param(ARRAYS_OF_TABLES, ("a", 1, "b", 0), 19, id="nested-aot-per-parent"),
        pytest.param(ARRAYS_OF_TABLES, ("a", 1, "b", 0, "x"), 20, id="nested-aot-key"),
        pytest.param(KEYS, ("top",), 1, id="key-before-any-header"),
        pytest.param(KEYS, ("a", "b"), 2, id="dotted-key"),
        pytest.param(KEYS, ("a",), 2, id="dotted-key-intermediate"),
        pytest.param(KEYS, ("a", "c"), 3, id="dotted-key-with-spaces"),
        pytest.param(KEYS, ("quoted key",), 4, id="quoted-key"),
        pytest.param(KEYS, ("lit.key",), 5, id="literal-key-with-dot"),
        pytest.param(KEYS, ("x", "y", "z"), 6, id="mixed-dotted-key"),
        pytest.param(KEYS, ("when",), 7, id="datetime-value"),
        pytest.param(KEYS, ("t", "k"), 9, id="no-spaces"),
        pytest.param(KEYS, ("t", "indented"), 10, id="indented-with-comment"),
        pytest.param(KEYS, ("t", "s"), 11, id="dotted-intermediate-in-table"),
        pytest.param(KEYS, ("t", "s", "u"), 12, id="header-after-dotted-key"),
        pytest.param(MULTILINE_VALUES, ("order",), 1, id="multiline-array-key"),
        pytest.param(MULTILINE_VALUES, ("order", 0), 2, id="array-element-0"),
        pytest.param(MULTILINE_VALUES, ("order", 1), 4, id="array-element-after-comment"),
        pytest.param(MULTILINE_VALUES, ("order", 2), 5, id="array-element-nested-array"),
        pytest.param(MULTILINE_VALUES, ("order", 2, 1), 5, id="multiline-nested-array-same-line"),
        pytest.param(MULTILINE_VALUES, ("order", 2, 2), 6, id="multiline-nested-array-element"),
        pytest.param(MULTILINE_VALUES, ("order", 3), 7, id="array-element-multiline-string"),
        pytest.param(MULTILINE_VALUES, ("text",), 10, id="multiline-basic-string"),
        pytest.param(MULTILINE_VALUES, ("lit",), 15, id="after-string-ending-in-quotes"),
        pytest.param(MULTILINE_VALUES, ("after",), 18, id="after-multiline-literal"),
        pytest.param(MULTILINE_VALUES, ("esc",), 19, id="escaped-quote"),
        pytest.param(MULTILINE_VALUES, ("hash",), 20, id="hash-in-string"),
        pytest.param(MULTILINE_VALUES, ("flat",), 21, id="single-line-array"),
        pytest.param(MULTILINE_VALUES, ("next",), 22, id="header-after-tricky-values"),
        pytest.param(MULTILINE_VALUES, ("next", "rows", 1), 24, id="element-after-same-line-element"),
        pytest.param(MULTILINE_VALUES, ("next", "rows", 1, 1), 25, id="element-of-nested-multiline"),
        pytest.param(MULTILINE_VALUES, ("next", "empty"), 26, id="empty-string"),
        pytest.param(MULTILINE_VALUES, ("next", "empty_ml"), 27, id="empty-multiline-string"),
        pytest.param(MULTILINE_VALUES, ("next", "v"), 28, id="key-after-empty-strings"),
        pytest.param(INLINE, ("meters", 0, "modbus"), 2, id="inline-table-key"),
        pytest.param(INLINE, ("meters", 0, "modbus", "port"), 2, id="inline-inner-key"),
        pytest.param(INLINE, ("meters", 0, "modbus", "opts", "retry"), 2, id="inline-dotted-key"),
        pytest.param(INLINE, ("other", "firms", 1), 6, id="inline-table-as-element"),
        pytest.param(INLINE, ("other", "firms", 0, "group"), 5, id="key-of-inline-element"),
        pytest.param(INLINE, ("other", "deep", "list", 0), 9, id="multiline-array-in-inline"),
        pytest.param(INLINE, ("other", "deep", "x"), 10, id="inline-key-after-multiline-array"),
        pytest.param(INLINE, ("other", "after"), 11, id="key-after-inline-table"),
    ],
)
def test_exact_line(text: str, path: Path, line: int) -> None:
    tomllib.loads(text)  # every fixture is valid TOML
    assert PositionIndex.from_text(text).exact(path) == line
    assert PositionIndex.from_text(text).line_of(path) == line


@pytest.mark.parametrize(
    ("text", "path", "line"),
    [
        pytest.param(ARRAYS_OF_TABLES, ("firms", 0, "group"), 1, id="missing-key-in-element"),
        pytest.param(ARRAYS_OF_TABLES, ("meters", 1, "modbus", "host"), 8, id="missing-key-in-subtable"),
        pytest.param(ARRAYS_OF_TABLES, ("firms", 7, "id"), 1, id="missing-element"),
        pytest.param(MULTILINE_VALUES, ("flat", 2), 21, id="single-line-array-element"),
        pytest.param(MULTILINE_VALUES, ("order", 2, 1, 0), 5, id="nested-single-line-element"),
        pytest.param(MULTILINE_VALUES, ("order", 9), 1, id="missing-array-element"),
        pytest.param(INLINE, ("meters", 0, "modbus", "unit"), 2, id="missing-inline-key"),
        pytest.param(INLINE, ("other", "firms", 0, "id", "x"), 5, id="below-a-leaf"),
        pytest.param(KEYS, ("nowhere", "at", "all"), 1, id="nothing-matches"),
        pytest.param(KEYS, (), 1, id="empty-path"),
    ],
)
def test_line_of_falls_back_to_ancestor(text: str, path: Path, line: int) -> None:
    index = PositionIndex.from_text(text)
    assert index.exact(path) is None
    assert index.line_of(path) == line


@pytest.mark.parametrize(
    ("text", "path"),
    [
        pytest.param(MULTILINE_VALUES, ("key",), id="key-inside-multiline-basic-string"),
        pytest.param(MULTILINE_VALUES, ("table",), id="header-inside-multiline-basic-string"),
        pytest.param(MULTILINE_VALUES, ("nope",), id="aot-inside-multiline-literal"),
        pytest.param(MULTILINE_VALUES, ("x",), id="key-inside-multiline-literal"),
        pytest.param(MULTILINE_VALUES, ("c",), id="key-inside-string"),
        pytest.param(MULTILINE_VALUES, ("flat", 0), id="single-line-array-not-recorded"),
        pytest.param(MULTILINE_VALUES, ("order", 2, 1, 0), id="single-line-nested-array-not-recorded"),
        pytest.param(TABLES, ("x",), id="comment-not-a-key"),
    ],
)
def test_values_are_not_keys(text: str, path: Path) -> None:
    assert PositionIndex.from_text(text).exact(path) is None


def test_crlf_and_no_final_newline() -> None:
    text = "a = 1\r\n[t]\r\nb = [\r\n  1,\r\n  2\r\n]\r\nc = 'x'"
    tomllib.loads(text)
    index = PositionIndex.from_text(text)
    assert [index.exact(p) for p in [("a",), ("t",), ("t", "b", 1), ("t", "c")]] == [1, 2, 5, 7]


def test_empty_document() -> None:
    assert PositionIndex.from_text("").line_of(("a", 0)) == 1
    assert PositionIndex.from_text("# only a comment\n\n").exact(("a",)) is None


# -- property: documents from a small grammar ---------------------------------------------------------------

TRICKY = ["[", "]", "#", "=", ",", "{", "}", ".", "'", '"', "\\", " ", "a", "é", "[x]", "k = 1"]


@dataclass
class Out:
    """Lines of a rendered value, and (relative path, line offset) of what the index must record in it."""

    lines: list[str]
    marks: list[tuple[Path, int]] = field(default_factory=list)


def basic(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def key_text(name: str, style: int) -> str:
    """A key spelled bare, basic-quoted or literal-quoted (bare only when it can be)."""
    bare = name.replace("_", "").replace("-", "").isalnum() and name.isascii()
    if style == 0 and bare:
        return name
    return basic(name) if style == 1 or "'" in name else f"'{name}'"


words = st.lists(st.sampled_from(TRICKY), max_size=4).map("".join)
key_names = st.sampled_from(["id", "port", "a-b", "x_1", "a.b", "has space", "k = 1", "[t]", "q'", 'd"', "#"])
key_styles = st.integers(0, 2)


@st.composite
def keys(draw: st.DrawFn) -> tuple[str, str]:
    """(name, spelling) of a single key."""
    name = draw(key_names)
    return name, key_text(name, draw(key_styles))


scalars = st.one_of(
    st.integers(-(10**6), 10**6).map(lambda n: Out([str(n)])),
    words.map(lambda w: Out([basic(w)])),
    words.filter(lambda w: "'" not in w).map(lambda w: Out([f"'{w}'"])),
    st.sampled_from(["true", "1979-05-27 07:32:00Z", "1.5e3", "0x1F", "[1, ']', [2]]", '["#", "="]']).map(
        lambda s: Out([s])
    ),
)

ML_LINES = ["key = 1", "[table]", "[[arr]]", "x = [", "]", "# not a comment", "", "  a = 'b'", "{ y = 1 }"]


@st.composite
def multiline_strings(draw: st.DrawFn) -> Out:
    body = draw(st.lists(st.sampled_from(ML_LINES), max_size=4))
    if draw(st.booleans()):
        escaped = [line + ' \\"""' for line in body]
        return Out(['"""', *escaped, "end" + '"' * draw(st.integers(0, 2)) + '"""'])
    return Out(["'''", *body, "end" + "'" * draw(st.integers(0, 2)) + "'''"])


@st.composite
def inline_tables(draw: st.DrawFn) -> Out:
    entries = draw(st.lists(st.tuples(keys(), scalars), max_size=3, unique_by=lambda e: e[0][0]))
    parts = [f"{spelled} = {value.lines[0]}" for (_, spelled), value in entries]
    return Out(["{ " + ", ".join(parts) + " }"], [((name,), 0) for (name, _), _ in entries])


@st.composite
def multiline_arrays(draw: st.DrawFn) -> Out:
    lines, marks = ["["], list[tuple[Path, int]]()
    elements = draw(st.lists(st.one_of(scalars, multiline_strings(), inline_tables()), max_size=4))
    for index, element in enumerate(elements):
        if draw(st.booleans()):
            lines.append("  # a comment ] [x] = 1, \" '")
        marks.append(((index,), len(lines)))
        marks += [((index, *path), len(lines) + offset) for path, offset in element.marks]
        lines += ["  " + element.lines[0], *element.lines[1:]]
        lines[-1] += ","
    lines.append("] # done [y]" if draw(st.booleans()) else "]")
    return Out(lines, marks)


values = st.one_of(scalars, multiline_strings(), inline_tables(), multiline_arrays())


@dataclass
class Doc:
    lines: list[str] = field(default_factory=list)
    expected: dict[Path, int] = field(default_factory=dict)

    def add(self, path: Path, text: str) -> None:
        self.expected.setdefault(path, len(self.lines) + 1)
        self.lines.append(text)

    def body(self, draw: st.DrawFn, table: Path) -> None:
        """Keys of one table, each plain or dotted under a unique first part."""
        for name in draw(st.lists(key_names, max_size=3, unique=True)):
            path, spelled, line = (*table, name), key_text(name, draw(key_styles)), len(self.lines) + 1
            if draw(st.booleans()):  # dotted: the first part is recorded too
                self.expected[path] = line
                path, spelled = (*path, "sub"), f"{spelled} . sub"
            value = draw(values)
            self.add(path, f"{spelled} = {value.lines[0]}")
            self.lines += value.lines[1:]
            self.expected.update({(*path, *sub): line + offset for sub, offset in value.marks})
            if draw(st.booleans()):
                self.lines.append(draw(st.sampled_from(["", "# [fake] = 1", "   ", "# [[fake]]"])))


SECTIONS = ["t0", "t1", "sp ace", "a0", "a1", "a.x"]  # names beginning with "a" are arrays of tables


@st.composite
def documents(draw: st.DrawFn) -> Doc:
    out = Doc()
    out.body(draw, ())
    counts: dict[str, int] = {}
    for name in draw(st.lists(st.sampled_from(SECTIONS), max_size=6)):
        head = key_text(name, draw(key_styles))
        if not name.startswith("a"):
            if name in counts:
                continue
            counts[name] = 1
            if draw(st.booleans()):  # a child table first: the parent's own later header is its line
                out.add((name, "child"), f"[{head}.child]")
                out.body(draw, (name, "child"))
            out.add((name,), f"[ {head} ]")
            out.body(draw, (name,))
            continue
        index = counts[name] = counts.get(name, 0) + 1
        out.add((name,), f"[[{head}]]")
        out.expected[(name, index - 1)] = len(out.lines)
        out.body(draw, (name, index - 1))
        if draw(st.booleans()):
            out.add((name, index - 1, "sub"), f"[{head}.sub]")
            out.body(draw, (name, index - 1, "sub"))
        for inner in range(draw(st.integers(0, 2))):
            out.add((name, index - 1, "items"), f"[[ {head} . items ]]")
            out.expected[(name, index - 1, "items", inner)] = len(out.lines)
            out.body(draw, (name, index - 1, "items", inner))
    return out


def paths(data: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every key and array element of the parsed document, depth first."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else []
    for part, value in items:
        yield (*prefix, part)
        yield from paths(value, (*prefix, part))


@settings(max_examples=300, deadline=None)
@given(documents())
def test_generated_documents(document: Doc) -> None:
    """Exactly the keys, headers and multi-line array elements are recorded, each at its own line."""
    text = "\n".join(document.lines) + "\n"
    index = PositionIndex.from_text(text)
    found = set(paths(tomllib.loads(text)))
    assert set(document.expected) <= found  # the generator's own bookkeeping
    for path in found:
        assert index.exact(path) == document.expected.get(path), (path, text)


@settings(max_examples=100, deadline=None)
@given(documents(), st.data())
def test_a_lookup_that_scans_only_part_of_the_text_agrees_with_the_whole_scan(
    document: Doc, data: st.DataObject
) -> None:
    """The index scans only as far as a lookup needs (a warning on a key near the top of a 10,000-meter file):
    lookups in any order, each on an index scanned only that far, give the lines of the whole scan."""
    text = "\n".join(document.lines) + "\n"
    whole = PositionIndex(_Scanner(text).run())
    found = sorted(set(paths(tomllib.loads(text))), key=repr)
    asked = data.draw(st.lists(st.sampled_from(found) if found else st.just(("missing",)), max_size=8))
    partial = PositionIndex.from_text(text)
    for path in [*asked, (*asked[0], "missing")] if asked else [("missing",)]:
        assert partial.line_of(path) == whole.line_of(path), (path, text)
        assert partial.exact(path) == whole.exact(path), (path, text)

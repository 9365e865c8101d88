"""Line numbers for the keys and tables of a TOML document (tomllib gives none).

A small scanner walks the (already validated) text once and records, for each table header, array-of-tables
element, key, and element of a multi-line array, the 1-based line where it starts. It understands every
kind of string, multi-line arrays, inline tables and comments, so values are never mistaken for keys.
"""

from __future__ import annotations

import bisect
import re
import string
import tomllib
from collections.abc import Iterator

__all__ = ["PositionIndex"]

Path = tuple[str | int, ...]  # e.g. ("firms", 3, "group"), ("meters", 0, "modbus", "port"), ("township",)

_BARE = frozenset(string.ascii_letters + string.digits + "_-")
_SPACE = " \t"
_BLANK = " \t\r\n"


class PositionIndex:
    """Where each key and table of one TOML text starts."""

    def __init__(self, lines: dict[Path, int] | None = None, text: str | None = None) -> None:
        self._text = text or ""
        self._lines: dict[Path, int] = dict(lines) if lines is not None else {}
        self._scanner: _Scanner | None = None  # made at the first lookup
        self._steps: Iterator[bool] = iter(())
        self._done = lines is not None

    @classmethod
    def from_text(cls, text: str) -> PositionIndex:
        """Scanned when a line is first asked for, and only as far as needed: a valid file needs none, a warning
        about a key near the top of a 10,000-meter file only the top."""
        return cls(text=text)

    def _scan_until(self, path: Path) -> None:
        """Scan on until `path` is recorded for good (a header or key: first line wins; a table only implied so far
        may still get its own header) or the text ends."""
        if self._done:
            return
        if self._scanner is None:
            self._scanner = _Scanner(self._text)
            self._lines, self._steps = self._scanner.lines, self._scanner.steps()
        scanner = self._scanner
        while path not in scanner.lines or path in scanner.implicit:
            if not next(self._steps, False):
                self._done = True  # the whole text is scanned
                return

    def line_of(self, path: Path) -> int:
        """1-based line of the key or table at `path`; for a path not recorded (a missing key, an
        element inside an array value, a key inside an inline table), the line of the nearest recorded
        ancestor; 1 when nothing matches."""
        self._scan_until(path)
        for n in range(len(path), 0, -1):
            line = self._lines.get(path[:n])
            if line is not None:
                return line
        return 1

    def exact(self, path: Path) -> int | None:
        """The recorded line of exactly this path, or None."""
        self._scan_until(path)
        return self._lines.get(path)


class _Scanner:
    """One pass over valid TOML text; `pos` only moves forward."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.breaks = [match.start() for match in re.finditer("\n", text)]
        self.lines: dict[Path, int] = {}
        self.implicit: set[Path] = set()  # tables only implied by a longer header or a dotted key
        self.counts: dict[Path, int] = {}  # array of tables -> number of elements so far

    def run(self) -> dict[Path, int]:
        for _ in self.steps():
            pass
        return self.lines

    def steps(self) -> Iterator[bool]:
        """The scan, one header or key-value pair at a time (each step yields True)."""
        table: Path = ()
        while self.skip(_BLANK):
            if self.text.startswith("[[", self.pos):
                table = self.header(array=True)
            elif self.peek() == "[":
                table = self.header(array=False)
            else:
                self.keyval(table)
            yield True

    # -- recording ---------------------------------------------------------------------------------------

    def line(self, pos: int | None = None) -> int:
        return bisect.bisect_left(self.breaks, self.pos if pos is None else pos) + 1

    def record(self, path: Path, line: int, *, implicit: bool = False) -> None:
        """First line wins, except that a table's own header or key beats one that merely implied it."""
        if path in self.lines and (implicit or path not in self.implicit):
            return
        self.lines[path] = line
        if implicit:
            self.implicit.add(path)
        else:
            self.implicit.discard(path)

    # -- document structure ------------------------------------------------------------------------------

    def header(self, *, array: bool) -> Path:
        """`[a.b]` or `[[a.b]]`; returns the path of the table that the following keys belong to."""
        line, width = self.line(), 2 if array else 1
        self.pos += width
        keys = self.key()
        self.pos += width
        if not array:
            path = self.resolve(keys, line)
            self.record(path, line)
            return path
        owner = (*self.resolve(keys[:-1], line), keys[-1])
        index = self.counts.get(owner, 0)
        self.counts[owner] = index + 1
        self.record(owner, line)
        self.record((*owner, index), line)
        return (*owner, index)

    def resolve(self, keys: list[str], line: int) -> Path:
        """Concrete path of a header's keys: a prefix naming an array of tables means its last element."""
        path: Path = ()
        for key in keys:
            path = (*path, key)
            self.record(path, line, implicit=True)
            if path in self.counts:
                path = (*path, self.counts[path] - 1)
        return path

    def keyval(self, table: Path) -> None:
        line = self.line()
        path = table + tuple(self.key())
        for n in range(len(table) + 1, len(path)):
            self.record(path[:n], line, implicit=True)
        self.record(path, line)
        self.pos += 1  # "="
        self.skip(_SPACE)
        self.value(path)

    def key(self) -> list[str]:
        """A dotted key, with the spaces around it; stops at "=" or "]"."""
        keys: list[str] = []
        while True:
            self.skip(_SPACE)
            start = self.pos
            if self.peek() in "\"'":
                self.string()
                keys.append(str(tomllib.loads("k = " + self.text[start : self.pos])["k"]))
            else:
                while self.peek() in _BARE:
                    self.pos += 1
                keys.append(self.text[start : self.pos])
            self.skip(_SPACE)
            if self.peek() != ".":
                return keys
            self.pos += 1

    # -- values ------------------------------------------------------------------------------------------

    def value(self, path: Path) -> None:
        char = self.peek()
        if char in "\"'":
            self.string()
        elif char == "[":
            self.array(path)
        elif char == "{":
            self.inline_table(path)
        else:  # number, boolean or date-time (which may hold a space)
            while self.peek() not in ",]}\n#":
                self.pos += 1

    def string(self) -> None:
        """Any of the four string kinds; escapes only in basic strings."""
        quote = self.text[self.pos]
        delim = quote * 3 if self.text.startswith(quote * 3, self.pos) else quote
        at = self.pos + len(delim)
        while not self.text.startswith(delim, at):
            at += 2 if quote == '"' and self.text[at] == "\\" else 1
        end = at + len(delim)
        while len(delim) == 3 and end - at < 5 and self.text.startswith(quote, end):
            end += 1  # a multi-line string may end with one or two quotes of its own: """a""""
        self.pos = end

    def array(self, path: Path) -> None:
        """Elements of an array that spans lines are recorded at the line where each starts."""
        first = self.line()
        self.pos += 1
        starts: list[int] = []
        while self.skip(_BLANK) and self.peek() != "]":
            starts.append(self.line())
            self.value((*path, len(starts) - 1))
            self.skip(_BLANK)
            if self.peek() == ",":
                self.pos += 1
        self.pos += 1
        if self.line() > first:
            for index, line in enumerate(starts):
                self.record((*path, index), line)

    def inline_table(self, path: Path) -> None:
        self.pos += 1
        while self.skip(_BLANK) and self.peek() != "}":
            self.keyval(path)
            self.skip(_BLANK)
            if self.peek() == ",":
                self.pos += 1
        self.pos += 1

    # -- characters --------------------------------------------------------------------------------------

    def peek(self) -> str:
        """The current character, or "\\n" at the end (every construct ends there too)."""
        return self.text[self.pos] if self.pos < len(self.text) else "\n"

    def skip(self, chars: str) -> bool:
        """Skip `chars` and comments (a comment stops before its newline); False at the end of the text."""
        text = self.text
        while self.pos < len(text):
            if text[self.pos] == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif text[self.pos] in chars:
                self.pos += 1
            else:
                return True
        return False

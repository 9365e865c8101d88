"""Plain-text tables that line up with Chinese (double-width) characters in a terminal."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

__all__ = ["render", "width"]


def width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cols = [max(width(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c + " " * (w - width(c)) for c, w in zip(cells, cols, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in cols)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])

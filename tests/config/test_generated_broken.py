"""200+ generated broken policy files: each gives exit 2 and `file:line: ...` lines, never an exception.

Each case takes the shipped township and breaks it one to three ways: a value replaced by a wrong type, a
negative or huge number, a key deleted, a key misspelt, a table duplicated, a line cut in half, garbage bytes.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from quotad.cli import main

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (ROOT / "config" / "township.toml").read_text(encoding="utf-8")
KEY_LINE = re.compile(r"^([A-Za-z_]+) = (.+)$")
WRONG = ['"text"', "-1", "0", "1e400", "true", "[]", "{}", "2010-13-45", '"2010-10-01"', "99999999999999999999", '""']


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        keyed = [i for i, line in enumerate(lines) if KEY_LINE.match(line)]
        i = rng.choice(keyed)
        key, _value = KEY_LINE.match(lines[i]).groups()  # type: ignore[union-attr]
        kind = rng.choice(["value", "value", "drop", "rename", "cut", "garbage", "duplicate"])
        if kind == "value":
            lines[i] = f"{key} = {rng.choice(WRONG)}"
        elif kind == "drop":
            lines[i] = ""
        elif kind == "rename":
            lines[i] = f"{key}x = {_value}"
        elif kind == "cut":
            lines[i] = lines[i][: rng.randint(1, max(1, len(lines[i]) - 1))]
        elif kind == "garbage":
            lines[i] = rng.choice(["= =", "[[", "key = 'unterminated", "\x00\x01", "ключ = 1", "a.b.c = 1\na = 2"])
        else:
            lines.insert(i, lines[i])
    return "\n".join(lines) + "\n"


CASES = list(range(210))


@pytest.mark.parametrize("seed", CASES)
def test_generated_broken_policy(seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(seed)
    text = mutate(SHIPPED, rng)
    path = tmp_path / "township.toml"
    path.write_text(text, encoding="utf-8")
    code = main(["check-config", "-c", str(path)])  # an exception (a traceback) fails the test
    out, err = capsys.readouterr()
    if text == SHIPPED or code == 0:
        return  # a mutation that happens to be valid (a dropped optional key, a renamed comment) is fine
    assert code == 2, out + err
    problems = out.strip().splitlines()
    assert problems
    assert all(re.match(rf"{re.escape(str(path))}:\d+: ", line) for line in problems), problems

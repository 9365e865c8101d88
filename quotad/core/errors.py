"""The exceptions of quotad: one root, each carrying the context an operator needs."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "DecodeError",
    "MeterError",
    "Problem",
    "QuotadError",
    "ReadingError",
    "StoreError",
    "UsageError",
]


class QuotadError(Exception):
    """Root of every error quotad raises on purpose."""


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in a configuration file, located for the operator; a `warning` when the file is usable but
    a value looks like a slip (printed `warning: ...`; an error under `check-config --strict`)."""

    file: str
    line: int
    path: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return f"warning: {text}" if self.warning else text


class ConfigError(QuotadError):
    """A configuration that cannot be used; `problems` lists every problem found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(QuotadError):
    """A command given what it cannot work with (an unknown firm, an empty reason): exit code 2."""


class ReadingError(QuotadError):
    """A reading that cannot be accepted (malformed, unknown meter, impossible value)."""


class MeterError(QuotadError):
    """A meter that cannot be read: no connection, no answer, an exception response, an unusable value."""


class DecodeError(MeterError):
    """Register words that do not hold a value: wrong count, NaN/inf, or the meter's 'no value' sentinel.

    Never decoded to 0: a sentinel read as 0 would corrupt an energy counter.
    """


class StoreError(QuotadError):
    """The state directory refused a write (a full disk, an I/O error, a read-only file system). Nothing of the
    write was committed; `full` says whether the disk is full."""

    def __init__(self, message: str, *, full: bool) -> None:
        super().__init__(message)
        self.full = full

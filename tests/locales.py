"""The language a test runs quotad in. gettext takes the first of LANGUAGE, LC_ALL, LC_MESSAGES and LANG that is set,
so each helper clears the ones before the one it sets: a developer's shell (LANGUAGE=zh_CN, LC_ALL=...) cannot
change what a test asserts."""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["chinese", "english"]


def english(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's environment) in the C locale: quotad's English, the text of its code."""
    out = {k: v for k, v in (os.environ if env is None else env).items() if k != "LANGUAGE"}
    out["LC_ALL"] = "C.UTF-8"
    return out


def chinese(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` as a Chinese operator's shell has it: LANG=zh_CN.UTF-8, nothing before it."""
    before = ("LANGUAGE", "LC_ALL", "LC_MESSAGES")
    out = {k: v for k, v in (os.environ if env is None else env).items() if k not in before}
    out["LANG"] = "zh_CN.UTF-8"
    return out

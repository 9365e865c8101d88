"""The operator's language: the standard library's gettext, domain `quotad`, English when no catalog matches.

The catalogs are package data, `quotad/locale/<lang>/LC_MESSAGES/quotad.mo`, each compiled from the `quotad.po`
beside it (the source; `./dev catalog` extracts, updates and compiles). The language comes from the environment the
way gettext reads it: the first of LANGUAGE, LC_ALL, LC_MESSAGES and LANG that is set (`LANG=zh_CN.UTF-8`); the
operating system's locale need not exist. The catalog is looked up once, at the first message, never at import, so
nothing is translated before the environment is final.

A message is a constant with named placeholders, filled after translation:
`_("unknown group {group!r}").format(group=...)`; `N_` marks one written where it is not yet translated.
"""

from __future__ import annotations

import functools
import gettext
from collections.abc import Sequence
from pathlib import Path

__all__ = ["DOMAIN", "LOCALE_DIR", "N_", "_", "ngettext", "translation"]

DOMAIN = "quotad"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"


def translation(languages: Sequence[str] | None = None) -> gettext.NullTranslations:
    """The catalog for `languages` (default: from the environment); the English of the code when none matches."""
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=languages, fallback=True)


@functools.cache
def _current() -> gettext.NullTranslations:
    return translation()


def _(message: str) -> str:
    """`message` in the operator's language."""
    return _current().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form of a message for `n` in the operator's language."""
    return _current().ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks `message` for the catalog where it is written; `_` translates it where it is used."""
    return message

"""The messages pydantic and tomllib write, in the operator's language.

Pydantic words a failed check by its error `type` and `ctx` ("Input should be greater than 0"), tomllib a syntax
error by a sentence of its own ("Invalid value"). Each known one is a msgid here whose English is exactly the
library's (tests/test_i18n.py holds the pydantic ones to it), so the English output is unchanged; one not listed is
passed on as the library wrote it.
"""

from __future__ import annotations

import re
from typing import Any

from quotad.core.i18n import N_, _, ngettext

__all__ = ["DATE_ERRORS", "PYDANTIC", "os_error", "pydantic_message", "toml_message"]

# error type -> msgid, its placeholders filled from the error's ctx
PYDANTIC: dict[str, str] = {
    "greater_than": N_("Input should be greater than {gt}"),
    "greater_than_equal": N_("Input should be greater than or equal to {ge}"),
    "less_than": N_("Input should be less than {lt}"),
    "less_than_equal": N_("Input should be less than or equal to {le}"),
    "int_type": N_("Input should be a valid integer"),
    "int_parsing": N_("Input should be a valid integer, unable to parse string as an integer"),
    "int_from_float": N_("Input should be a valid integer, got a number with a fractional part"),
    "float_type": N_("Input should be a valid number"),
    "float_parsing": N_("Input should be a valid number, unable to parse string as a number"),
    "finite_number": N_("Input should be a finite number"),
    "bool_type": N_("Input should be a valid boolean"),
    "bool_parsing": N_("Input should be a valid boolean, unable to interpret input"),
    "string_type": N_("Input should be a valid string"),
    "string_pattern_mismatch": N_("String should match pattern '{pattern}'"),
    "list_type": N_("Input should be a valid list"),
    "tuple_type": N_("Input should be a valid tuple"),
    "dict_type": N_("Input should be a valid dictionary"),
    "model_type": N_("Input should be a valid dictionary or instance of {class_name}"),
    "date_type": N_("Input should be a valid date"),
    "date_from_datetime_parsing": N_("Input should be a valid date or datetime, {error}"),
    "date_from_datetime_inexact": N_("Datetimes provided to dates should have zero time - e.g. be exact dates"),
    "datetime_type": N_("Input should be a valid datetime"),
    "datetime_from_date_parsing": N_("Input should be a valid datetime or date, {error}"),
    "literal_error": N_("Input should be {expected}"),
}

# what a date or time could not be read as (speedate's words, in pydantic's ctx["error"])
DATE_ERRORS = (
    N_("input is too short"),
    N_("invalid character in year"),
    N_("invalid character in month"),
    N_("invalid character in day"),
    N_("invalid date separator, expected `-`"),
    N_("invalid datetime separator, expected `T`, `t`, `_` or space"),
    N_("month value is outside expected range of 1-12"),
    N_("day value is outside expected range"),
    N_("unexpected extra characters at the end of the input"),
    N_("dates after 9999 are not supported as unix timestamps"),
)


def pydantic_message(err: Any) -> str:
    """Pydantic's message for one error (an `ErrorDetails`), in the operator's language when it is a known one."""
    kind, ctx = err["type"], {k: _number(v) for k, v in (err.get("ctx") or {}).items()}
    sized = _sized(kind, ctx)
    if sized is not None:
        return sized
    if kind not in PYDANTIC:
        return str(err["msg"])
    if "error" in ctx and ctx["error"] in DATE_ERRORS:
        ctx["error"] = _(ctx["error"])
    if kind == "literal_error" and " or " in ctx.get("expected", ""):
        choices, last = ctx["expected"].rsplit(" or ", 1)
        ctx["expected"] = _("{choices} or {last}").format(choices=choices, last=last)
    return _(PYDANTIC[kind]).format(**ctx)


def _sized(kind: str, ctx: dict[str, Any]) -> str | None:
    """The messages about a length, whose English has a singular and a plural."""
    if kind == "string_too_short":
        n = ctx["min_length"]
        text = ngettext(
            "String should have at least {min_length} character",
            "String should have at least {min_length} characters",
            n,
        )
    elif kind == "string_too_long":
        n = ctx["max_length"]
        text = ngettext(
            "String should have at most {max_length} character", "String should have at most {max_length} characters", n
        )
    elif kind == "too_short" and ctx.get("field_type") in ("Tuple", "List"):
        n = ctx["min_length"]
        if ctx["field_type"] == "Tuple":
            text = ngettext(
                "Tuple should have at least {min_length} item after validation, not {actual_length}",
                "Tuple should have at least {min_length} items after validation, not {actual_length}",
                n,
            )
        else:
            text = ngettext(
                "List should have at least {min_length} item after validation, not {actual_length}",
                "List should have at least {min_length} items after validation, not {actual_length}",
                n,
            )
    else:
        return None
    return text.format(**ctx)


def _number(value: Any) -> Any:
    """A bound as pydantic writes it: 0.0 as 0, 1.0 as 1."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# tomllib's sentence (with its variable part named) -> msgid
_TOML: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), msgid)
    for pattern, msgid in (
        (r"Cannot overwrite a value", N_("Cannot overwrite a value")),
        (r"Cannot declare (?P<key>.+) twice", N_("Cannot declare {key} twice")),
        (r"Cannot mutate immutable namespace (?P<key>.+)", N_("Cannot mutate immutable namespace {key}")),
        (r"Cannot redefine namespace (?P<key>.+)", N_("Cannot redefine namespace {key}")),
        (r"Duplicate inline table key (?P<key>.+)", N_("Duplicate inline table key {key}")),
        (r"Escaped character is not a Unicode scalar value", N_("Escaped character is not a Unicode scalar value")),
        (r"Expected '=' after a key in a key/value pair", N_("Expected '=' after a key in a key/value pair")),
        (r"Expected '\]' at the end of a table declaration", N_("Expected ']' at the end of a table declaration")),
        (
            r"Expected '\]\]' at the end of an array declaration",
            N_("Expected ']]' at the end of an array declaration"),
        ),
        (
            r"Expected newline or end of document after a statement",
            N_("Expected newline or end of document after a statement"),
        ),
        (r"Expected (?P<expected>.+)", N_("Expected {expected}")),
        (r"Found invalid character (?P<char>.+)", N_("Found invalid character {char}")),
        (r"Illegal character (?P<char>.+)", N_("Illegal character {char}")),
        (r"Invalid date or datetime", N_("Invalid date or datetime")),
        (r"Invalid hex value", N_("Invalid hex value")),
        (r"Invalid initial character for a key part", N_("Invalid initial character for a key part")),
        (r"Invalid statement", N_("Invalid statement")),
        (r"Invalid value", N_("Invalid value")),
        (r"Unclosed array", N_("Unclosed array")),
        (r"Unclosed inline table", N_("Unclosed inline table")),
        (r"Unescaped '\\' in a string", N_("Unescaped '\\' in a string")),
        (r"Unterminated string", N_("Unterminated string")),
    )
)


def toml_message(message: str) -> str:
    """tomllib's message (without its position), in the operator's language when it is a known one."""
    for pattern, msgid in _TOML:
        match = pattern.fullmatch(message)
        if match:
            return _(msgid).format(**match.groupdict())
    return message


# why a file could not be opened (the C library's words, in OSError.strerror)
_STRERROR = (N_("No such file or directory"), N_("Permission denied"), N_("Is a directory"))


def os_error(exc: OSError | UnicodeDecodeError) -> str:
    """Why a file could not be read, as Python words it ("[Errno 2] No such file or directory: 'x'"), its reason in
    the operator's language when it is a known one."""
    if isinstance(exc, OSError) and exc.strerror in _STRERROR and exc.filename is not None and exc.filename2 is None:
        return f"[Errno {exc.errno}] {_(exc.strerror)}: {exc.filename!r}"
    return str(exc)

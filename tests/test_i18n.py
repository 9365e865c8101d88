"""The catalogs: each shipped quotad.mo is its quotad.po compiled, every message the code marks is translated there
with the same placeholders, and the English of pydantic's messages that quotad words itself is pydantic's own.

After changing a message in the code, `./dev catalog` updates the .po (new messages empty, changed ones fuzzy) and
compiles the .mo; these tests say what is left to do.
"""

from __future__ import annotations

import datetime as dt
import gettext
from io import BytesIO
from pathlib import Path
from string import Formatter
from typing import Annotated, Any, Literal

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from quotad.config.foreign import DATE_ERRORS, PYDANTIC, pydantic_message
from quotad.core.i18n import LOCALE_DIR, _, translation

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "quotad"
CATALOGS = sorted(LOCALE_DIR.glob("*/LC_MESSAGES/quotad.po"))
TODO = "run ./dev catalog, translate what it marks new or fuzzy in the .po, and run it again"

MsgId = str | tuple[str, ...]


def _language(po: Path) -> str:
    return po.parent.parent.name


def _read(po: Path) -> Catalog:
    with po.open("rb") as f:
        return read_po(f)


def _key(msgid: Any) -> MsgId:
    return msgid if isinstance(msgid, str) else tuple(msgid)


def _entries(catalog: Catalog) -> dict[MsgId, MsgId]:
    return {_key(m.id): _key(m.string) for m in catalog if m.id}


def code_messages() -> dict[MsgId, str]:
    """Each message the code marks for translation (`_`, `N_`, `ngettext`), with where it first appears."""
    found: dict[MsgId, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(PACKAGE, [("**.py", "python")]):
        found.setdefault(_key(message), f"quotad/{filename}:{lineno}")
    return found


def test_there_is_a_chinese_catalog_beside_its_source() -> None:
    assert [_language(po) for po in CATALOGS] == ["zh_CN"]
    assert all(po.with_suffix(".mo").is_file() for po in CATALOGS)


@pytest.mark.parametrize("po", CATALOGS, ids=_language)
def test_the_shipped_mo_is_its_po_compiled(po: Path) -> None:
    """The same messages as a fresh compile, and the same plural rule (the Generated-By line may name another Babel)."""
    fresh = BytesIO()
    write_mo(fresh, _read(po))
    fresh.seek(0)
    compiled = read_mo(fresh)
    with po.with_suffix(".mo").open("rb") as f:
        shipped = read_mo(f)
    assert _entries(shipped) == _entries(compiled), f"{po.with_suffix('.mo')} is not {po} compiled: {TODO}"
    assert (shipped.num_plurals, shipped.plural_expr) == (compiled.num_plurals, compiled.plural_expr)


@pytest.mark.parametrize("po", CATALOGS, ids=_language)
def test_every_message_of_the_code_is_translated_and_no_other(po: Path) -> None:
    code = code_messages()
    assert len(code) > 150
    assert "unknown key" in code  # the extraction really read the code
    catalog = _read(po)
    listed = {_key(m.id): m for m in catalog if m.id}
    missing = [f"{where}: {msgid!r}" for msgid, where in code.items() if msgid not in listed]
    fuzzy = [m.id for m in listed.values() if m.fuzzy]
    empty = [m.id for m in listed.values() if not all((m.string,) if isinstance(m.string, str) else m.string)]
    stale = [msgid for msgid in listed if msgid not in code]
    assert (missing, fuzzy, empty, stale) == ([], [], [], []), f"missing, fuzzy, untranslated, no longer used: {TODO}"


def placeholders(text: str) -> set[tuple[str, str | None, str]]:
    """The `{name!conversion:spec}` fields of a message (a lone brace is an error, as it is for str.format)."""
    return {(name, conversion, spec or "") for _, name, spec, conversion in Formatter().parse(text) if name is not None}


@pytest.mark.parametrize("po", CATALOGS, ids=_language)
def test_each_translation_has_its_messages_placeholders(po: Path) -> None:
    wrong = []
    for m in _read(po):
        if not m.id:
            continue
        ids = (m.id,) if isinstance(m.id, str) else tuple(m.id)
        strings = (m.string,) if isinstance(m.string, str) else tuple(m.string)
        wanted = placeholders(ids[0])
        assert all(placeholders(i) == wanted for i in ids), ids
        for text in strings:
            # argparse %-formats a help text: a % the English has not would break `quotad --help`
            if placeholders(text) != wanted or text.count("%") != ids[0].count("%"):
                wrong.append(f"{ids[0]!r} -> {text!r}")
    assert wrong == []


def test_the_package_finds_its_catalog_whatever_the_operating_systems_locales() -> None:
    """gettext reads the catalog by the language's name: no zh_CN locale need be generated (this machine has none)."""
    chinese = translation(["zh_CN"])
    assert isinstance(chinese, gettext.GNUTranslations)
    assert chinese.gettext("unknown key") == "未知的键"
    one = "String should have at least {min_length} character"
    more = one + "s"
    assert chinese.ngettext(one, more, 1) == chinese.ngettext(one, more, 2) == "至少应有 {min_length} 个字符"
    assert translation(["en"]).gettext("unknown key") == "unknown key"  # no catalog: the code's English
    assert type(translation(["fr_FR"])) is gettext.NullTranslations


# ---- pydantic's own messages: quotad words them from the error's type, in pydantic's English by default ----------


class _Inner(BaseModel):
    x: int = 0


class _Every(BaseModel):
    """A field for each kind of error quotad words itself."""

    model_config = ConfigDict(extra="forbid")

    positive: Annotated[float, Field(gt=0)] = 1.0
    port: Annotated[int, Field(ge=1, le=65535)] = 1
    fraction: Annotated[float, Field(lt=1)] = 0.5
    strict_int: Annotated[int, Field(strict=True)] = 1
    lax_int: int = 1
    strict_float: Annotated[float, Field(strict=True)] = 1.0
    lax_float: float = 1.0
    finite: Annotated[float, Field(allow_inf_nan=False)] = 1.0
    strict_bool: Annotated[bool, Field(strict=True)] = True
    lax_bool: bool = True
    text: str = ""
    ident: Annotated[str, Field(pattern=r"^[a-z]+$")] = "a"
    name: Annotated[str, Field(min_length=1)] = "a"
    code: Annotated[str, Field(min_length=2, max_length=3)] = "ab"
    letter: Annotated[str, Field(max_length=1)] = "a"
    items: list[int] = []
    entries: tuple[str, ...] = ()
    order: Annotated[tuple[str, ...], Field(min_length=1)] = ("a",)
    pair: Annotated[tuple[str, ...], Field(min_length=2)] = ("a", "b")
    some: Annotated[list[int], Field(min_length=1)] = [1]
    several: Annotated[list[int], Field(min_length=3)] = [1, 2, 3]
    table: dict[str, int] = {}
    inner: _Inner = _Inner()
    day: dt.date = dt.date(2010, 10, 1)
    strict_day: Annotated[dt.date, Field(strict=True)] = dt.date(2010, 10, 1)
    moment: dt.datetime = dt.datetime(2010, 10, 1, tzinfo=dt.UTC)
    strict_moment: Annotated[dt.datetime, Field(strict=True)] = dt.datetime(2010, 10, 1, tzinfo=dt.UTC)
    kind: Literal["large", "general", "workshop"] = "large"
    api: Literal["v1", "v2"] = "v1"
    only: Literal["x"] = "x"


PYDANTIC_CASES: list[tuple[str, object, str]] = [
    ("positive", -1, "greater_than"),
    ("port", 0, "greater_than_equal"),
    ("port", 70000, "less_than_equal"),
    ("fraction", 1.0, "less_than"),
    ("strict_int", "1", "int_type"),
    ("lax_int", "x", "int_parsing"),
    ("lax_int", 1.5, "int_from_float"),
    ("strict_float", "15000 kWh", "float_type"),
    ("lax_float", "x", "float_parsing"),
    ("finite", float("inf"), "finite_number"),
    ("strict_bool", "yes", "bool_type"),
    ("lax_bool", "maybe", "bool_parsing"),
    ("text", 1, "string_type"),
    ("ident", "X", "string_pattern_mismatch"),
    ("name", "", "string_too_short"),
    ("code", "a", "string_too_short"),
    ("letter", "ab", "string_too_long"),
    ("code", "abcd", "string_too_long"),
    ("items", 1, "list_type"),
    ("entries", 1, "tuple_type"),
    ("order", (), "too_short"),
    ("pair", ("a",), "too_short"),
    ("some", [], "too_short"),
    ("several", [1], "too_short"),
    ("table", 1, "dict_type"),
    ("inner", 1, "model_type"),
    ("strict_day", "2010-10-01", "date_type"),
    ("day", "2010-10-01T10:00", "date_from_datetime_inexact"),
    ("day", "x", "date_from_datetime_parsing"),  # each of speedate's reasons quotad words
    ("day", "201x-10-01", "date_from_datetime_parsing"),
    ("day", "2010-1x-01", "date_from_datetime_parsing"),
    ("day", "2010-10-0x", "date_from_datetime_parsing"),
    ("day", "2010/10/01", "date_from_datetime_parsing"),
    ("day", "2010-10-01xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "date_from_datetime_parsing"),
    ("day", "2010-13-01", "date_from_datetime_parsing"),
    ("day", "2010-02-30", "date_from_datetime_parsing"),
    ("day", 1e20, "date_from_datetime_parsing"),
    ("moment", "2010-10-01T25:00", "datetime_from_date_parsing"),
    ("strict_moment", "2010-10-01", "datetime_type"),
    ("kind", "big", "literal_error"),
    ("api", "v3", "literal_error"),
    ("only", "y", "literal_error"),
]


def _error(field: str, value: object) -> Any:
    with pytest.raises(ValidationError) as caught:
        _Every.model_validate({field: value})
    (err,) = caught.value.errors()
    return err


@pytest.mark.parametrize(("field", "value", "kind"), PYDANTIC_CASES)
def test_a_pydantic_message_worded_by_quotad_is_pydantics_english(field: str, value: object, kind: str) -> None:
    assert _("unknown key") == "unknown key"  # the suite runs in English (tests/conftest.py)
    err = _error(field, value)
    assert err["type"] == kind
    assert pydantic_message(err) == err["msg"]


def test_the_cases_cover_every_kind_and_every_reason_quotad_words() -> None:
    """So that each is checked against pydantic's English: a kind or a reason pydantic no longer writes fails here."""
    kinds = {kind for _f, _v, kind in PYDANTIC_CASES}
    assert set(PYDANTIC) | {"string_too_short", "string_too_long", "too_short"} == kinds
    reasons = {(_error(f, v).get("ctx") or {}).get("error") for f, v, _k in PYDANTIC_CASES}
    assert set(DATE_ERRORS) <= reasons

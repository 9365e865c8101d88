"""Meter templates: every file loads and decodes its golden raw words; the request plan; inline specs."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from quotad.core.errors import DecodeError, MeterError
from quotad.core.sources import ModbusSource
from quotad.meters import templates
from quotad.meters.registers import decode
from quotad.meters.templates import (
    Block,
    RegisterField,
    Template,
    TemplateError,
    decode_block,
    fields_for,
    load_template,
    plan_blocks,
    template_names,
)

GOLDEN = Path(__file__).parent / "golden"
SHIPPED = ["adw300", "dtsu666", "sdm630"]


def golden(name: str) -> list[dict[str, Any]]:
    data = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    assert data["template"] == name
    cases: list[dict[str, Any]] = data["cases"]
    return cases


def matches(value: float, expected: float, field: RegisterField) -> bool:
    """f32 fields to f32 precision (12345.67 arrives as 12345.669921875); every other type exactly."""
    if field.type == "f32":
        return math.isclose(value, expected, rel_tol=2**-23, abs_tol=1e-12)
    return value == expected


def f(address: int, kind: str = "f32", table: str = "holding", unit: str = "kWh", **extra: Any) -> RegisterField:
    return RegisterField.model_validate({"table": table, "address": address, "type": kind, "unit": unit, **extra})


# ---- every template file ------------------------------------------------------------------------------------


def test_the_shipped_templates_and_their_golden_files() -> None:
    assert template_names() == SHIPPED
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == template_names()


@pytest.mark.parametrize("name", template_names())
def test_every_template_loads(name: str) -> None:
    template = load_template(name)
    assert template.model
    assert template.manufacturer
    assert template.source
    assert "energy_kwh" in template.fields
    assert load_template(name) is template  # cached


@pytest.mark.parametrize("name", template_names())
def test_every_field_decodes_its_golden_words(name: str) -> None:
    template = load_template(name)
    cases = golden(name)
    assert len(cases) >= 3
    for case in cases:
        assert set(case["words"]) == set(template.fields) == set(case["expected"]), case["name"]
        for field_name, field in template.fields.items():
            words = [int(w, 16) for w in case["words"][field_name]]
            expected = case["expected"][field_name]
            if expected is None:
                with pytest.raises(DecodeError):
                    decode(words, field.type, field.word_order, field.scale)
                continue
            per_kilo = 1000.0 if field.unit in ("Wh", "W") else 1.0
            value = decode(words, field.type, field.word_order, field.scale) / per_kilo
            assert matches(value, expected, field), (case["name"], field_name, value, expected)


@pytest.mark.parametrize("name", template_names())
def test_golden_words_through_the_request_plan(name: str) -> None:
    """The same cases, as the poller sees them: each block read whole, unused registers in between."""
    template = load_template(name)
    blocks = plan_blocks(template.fields)
    for case in golden(name):
        got: dict[str, float | DecodeError] = {}
        for block in blocks:
            words = [0xAAAA] * block.count
            for field_name, field in block.fields:
                offset = field.address - block.start
                words[offset : offset + field.count] = [int(w, 16) for w in case["words"][field_name]]
            got.update(decode_block(block, words))
        for field_name, expected in case["expected"].items():
            value = got[field_name]
            if expected is None:
                assert isinstance(value, DecodeError), (case["name"], field_name, value)
            else:
                assert not isinstance(value, DecodeError), value
                assert matches(value, expected, template.fields[field_name]), (case["name"], field_name, value)


def test_no_golden_case_reads_a_sentinel_as_zero() -> None:
    for name in template_names():
        for case in golden(name):
            for field_name, expected in case["expected"].items():
                if all(w in ("0xFFFF", "0x7FFF") for w in case["words"][field_name]):
                    assert expected is None, (name, case["name"], field_name)


@pytest.mark.parametrize(("name", "table", "energy", "power"), [
    ("dtsu666", "holding", (0x101E, "f32", 1.0, "kWh"), (0x2012, "f32", 0.1, "W")),
    ("sdm630", "input", (0x0048, "f32", 1.0, "kWh"), (0x0034, "f32", 1.0, "W")),
    ("adw300", "holding", (0x003E, "u32", 0.01, "kWh"), (0x0024, "i32", 0.001, "kW")),
])  # fmt: skip
def test_register_maps_as_researched(name: str, table: str, energy: tuple[Any, ...], power: tuple[Any, ...]) -> None:
    fields = load_template(name).fields
    for field, (address, kind, scale, unit) in ((fields["energy_kwh"], energy), (fields["power_kw"], power)):
        assert (field.table, field.address, field.type, field.word_order, field.scale, field.unit) == (
            table, address, kind, "big", scale, unit,
        )  # fmt: skip


# ---- errors -------------------------------------------------------------------------------------------------


def test_unknown_template_lists_the_known_ones() -> None:
    with pytest.raises(TemplateError, match="unknown meter template 'dtsu999' \\(known: adw300, dtsu666, sdm630\\)"):
        load_template("dtsu999")
    with pytest.raises(TemplateError, match="unknown"):
        load_template("../templates/dtsu666")
    assert issubclass(TemplateError, MeterError)


@pytest.fixture
def template_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A templates directory of our own, with the cache emptied before and after."""
    monkeypatch.setattr(templates, "_directory", lambda: tmp_path)
    templates._load.cache_clear()
    yield tmp_path
    templates._load.cache_clear()


GOOD = """
model = "X1"
manufacturer = "Acme"
source = "Acme X1 manual, table 3"

[fields.energy_kwh]
table = "holding"
address = 0x0100
type = "u32"
scale = 0.01
unit = "kWh"
"""


@pytest.mark.parametrize(("text", "problem"), [
    (GOOD.replace("address = 0x0100", "adress = 0x0100"), "fields.energy_kwh.adress: Extra inputs are not permitted"),
    (GOOD.replace('type = "u32"', 'type = "u8"'), "fields.energy_kwh.type: Input should be"),
    (GOOD.replace("0x0100", "70000"), "fields.energy_kwh.address: Input should be less than or equal to 65535"),
    (GOOD.replace("0x0100", '"0x0100"'), "fields.energy_kwh.address: Input should be a valid integer"),
    (GOOD.replace("scale = 0.01", "scale = 0"), "scale must not be 0"),
    (GOOD.replace('unit = "kWh"', 'unit = "kW"'), "fields.energy_kwh.unit must be one of kWh, Wh"),
    (GOOD.replace("[fields.energy_kwh]", "[fields.power_kw]"), "fields.energy_kwh is required"),
    (GOOD.replace("[fields.energy_kwh]", "[fields.energy]"), "fields.energy.[key]: Input should be 'energy_kwh' or"),
    (GOOD.replace('source = "Acme X1 manual, table 3"', ""), "source: Field required"),
    (GOOD + '[fields.power_kw]\ntable = "holding"\naddress = 0x0101\ntype = "i16"\nunit = "W"\n', "overlap"),
    (GOOD.replace("0x0100", "65535"), "runs past register 65535"),
    (GOOD.replace("model = ", "model = = "), "Invalid value"),
])  # fmt: skip
def test_a_broken_template_names_the_file_and_the_problem(template_dir: Path, text: str, problem: str) -> None:
    (template_dir / "x1.toml").write_text(text, encoding="utf-8")
    assert template_names() == ["x1"]
    with pytest.raises(TemplateError) as caught:
        load_template("x1")
    assert str(caught.value).startswith("quotad/meters/templates/x1.toml: ")
    assert problem in str(caught.value)


def test_a_good_template_from_a_directory(template_dir: Path) -> None:
    (template_dir / "x1.toml").write_text(GOOD, encoding="utf-8")
    (template_dir / "notes.txt").write_text("not a template", encoding="utf-8")
    assert template_names() == ["x1"]
    assert load_template("x1").fields["energy_kwh"] == f(0x0100, "u32", scale=0.01)


def test_register_fields_are_strict_and_frozen() -> None:
    field = f(10)
    with pytest.raises(ValidationError):
        field.address = 11  # type: ignore[misc]
    with pytest.raises(ValidationError, match="valid integer"):
        f(True)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="Extra inputs"):
        f(10, bytes="big")
    assert (field.count, field.end) == (2, 12)
    assert f(65534, "u32").end == 65536
    assert Template.model_fields.keys() == {"model", "manufacturer", "source", "fields"}


# ---- fields_for ---------------------------------------------------------------------------------------------


def source(**given: Any) -> ModbusSource:
    return ModbusSource.from_table({"host": "127.0.0.1", **given})


def test_fields_for_a_template() -> None:
    assert fields_for(source(template="sdm630")) == load_template("sdm630").fields


def test_fields_for_an_inline_spec() -> None:
    spec = source(register=0x401E, function="input", type="u32", word_order="little", scale=0.01)
    expected = RegisterField(table="input", address=0x401E, type="u32", word_order="little", scale=0.01, unit="kWh")
    assert fields_for(spec) == {"energy_kwh": expected}


def test_fields_for_an_inline_spec_uses_the_policy_defaults() -> None:
    assert fields_for(source(register=0)) == {"energy_kwh": f(0, "f32", word_order="big", scale=1.0)}


@pytest.mark.parametrize(("given", "problem"), [
    ({"template": "nope"}, "unknown meter template 'nope'"),
    ({"register": 1, "scale": 0.0}, "inline register spec: scale must not be 0"),
    ({"register": 65535, "type": "u32"}, "inline register spec: a u32 at address 65535 runs past register 65535"),
])  # fmt: skip
def test_fields_for_refuses(given: dict[str, Any], problem: str) -> None:
    with pytest.raises(TemplateError, match=problem.replace("(", "\\(")):
        fields_for(source(**given))


# ---- the request plan ---------------------------------------------------------------------------------------


def spans(blocks: list[Block]) -> list[tuple[str, int, int, list[str]]]:
    return [(b.table, b.start, b.count, [name for name, _ in b.fields]) for b in blocks]


@pytest.mark.parametrize(("fields", "options", "expected"), [
    ({}, {}, []),
    ({"a": f(0)}, {}, [("holding", 0, 2, ["a"])]),
    # contiguous fields: one read
    ({"a": f(0), "b": f(2), "c": f(4, "u16")}, {}, [("holding", 0, 5, ["a", "b", "c"])]),
    # order of the mapping does not matter; fields come out by address
    ({"c": f(4, "u16"), "a": f(0), "b": f(2)}, {}, [("holding", 0, 5, ["a", "b", "c"])]),
    # a gap of one register: two reads, unless max_gap allows reading it
    ({"a": f(0), "b": f(3)}, {}, [("holding", 0, 2, ["a"]), ("holding", 3, 2, ["b"])]),
    ({"a": f(0), "b": f(3)}, {"max_gap": 1}, [("holding", 0, 5, ["a", "b"])]),
    ({"a": f(0), "b": f(4)}, {"max_gap": 1}, [("holding", 0, 2, ["a"]), ("holding", 4, 2, ["b"])]),
    # different tables are never merged, even at the same addresses; holding first
    ({"i": f(0, table="input"), "h": f(2)}, {}, [("holding", 2, 2, ["h"]), ("input", 0, 2, ["i"])]),
    ({"i": f(0, table="input"), "h": f(0)}, {"max_gap": 10}, [("holding", 0, 2, ["h"]), ("input", 0, 2, ["i"])]),
    # fields sharing registers are read once
    ({"wide": f(0, "u32"), "low": f(1, "u16")}, {}, [("holding", 0, 2, ["wide", "low"])]),
    ({"x": f(0, "u16"), "y": f(0, "u16")}, {}, [("holding", 0, 1, ["x", "y"])]),
    # max_count
    ({"a": f(0), "b": f(2), "c": f(4), "d": f(6)}, {"max_count": 4},
     [("holding", 0, 4, ["a", "b"]), ("holding", 4, 4, ["c", "d"])]),
    ({"a": f(0, "f64"), "b": f(4, "u16")}, {"max_count": 4}, [("holding", 0, 4, ["a"]), ("holding", 4, 1, ["b"])]),
    # the real templates: two reads each
    (load_template("dtsu666").fields, {},
     [("holding", 0x101E, 2, ["energy_kwh"]), ("holding", 0x2012, 2, ["power_kw"])]),
    (load_template("sdm630").fields, {}, [("input", 0x0034, 2, ["power_kw"]), ("input", 0x0048, 2, ["energy_kwh"])]),
    (load_template("sdm630").fields, {"max_gap": 20}, [("input", 0x0034, 22, ["power_kw", "energy_kwh"])]),
])  # fmt: skip
def test_plan_blocks(fields: dict[str, RegisterField], options: dict[str, int], expected: list[Any]) -> None:
    assert spans(plan_blocks(fields, **options)) == expected


def test_plan_blocks_splits_at_125_registers() -> None:
    singles = {f"r{n:03d}": f(n, "u16") for n in range(126)}
    assert [(b.start, b.count) for b in plan_blocks(singles)] == [(0, 125), (125, 1)]
    assert [(b.start, b.count) for b in plan_blocks(dict(list(singles.items())[:125]))] == [(0, 125)]
    floats = {f"f{n:02d}": f(2 * n) for n in range(63)}  # 126 registers: the 63rd float starts a new read
    assert [(b.start, b.count) for b in plan_blocks(floats)] == [(0, 124), (124, 2)]
    for block in plan_blocks({**floats, **{f"i{n}": f(3 * n, "u32", table="input") for n in range(100)}}):
        assert block.count <= 125
        assert all(fld.table == block.table and block.start <= fld.address < fld.end <= block.start + block.count
                   for _, fld in block.fields)  # fmt: skip


@pytest.mark.parametrize("options", [{"max_count": 126}, {"max_count": 3}, {"max_gap": -1}])
def test_plan_blocks_refuses_impossible_limits(options: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="max_count"):
        plan_blocks({"a": f(0, "f64")}, **options)


# ---- decode_block -------------------------------------------------------------------------------------------


def test_decode_block_converts_units() -> None:
    fields = {
        "energy_kwh": f(0, "u32", unit="Wh"),
        "power_kw": f(2, "i16", unit="W", scale=10.0),
        "e2": f(3, "u16", unit="kWh", scale=0.1),
        "p2": f(4, "i16", unit="kW"),
    }
    (block,) = plan_blocks(fields)
    assert decode_block(block, [0x0012, 0xD687, 0xFFF6, 0x0007, 0x0005]) == {
        "energy_kwh": 1234.567,
        "power_kw": -0.1,
        "e2": 0.7,
        "p2": 5.0,
    }


def test_a_failing_field_does_not_stop_the_others() -> None:
    (block,) = plan_blocks({"energy_kwh": f(0, "u32"), "power_kw": f(2, "f32", unit="W")})
    result = decode_block(block, [0xFFFF, 0xFFFF, 0x447A, 0x0000])
    assert result["power_kw"] == 1.0
    error = result["energy_kwh"]
    assert isinstance(error, DecodeError)
    assert str(error).startswith("energy_kwh (holding register 0): u32 words [0xFFFF, 0xFFFF]")


@pytest.mark.parametrize("words", [[], [0x0000, 0x0001, 0x447A], [0, 0, 0, 0, 0]])
def test_a_short_or_long_answer_fails_every_field(words: list[int]) -> None:
    (block,) = plan_blocks({"energy_kwh": f(0, "u32"), "power_kw": f(2, "f32", unit="W")})
    result = decode_block(block, words)
    assert all(isinstance(v, DecodeError) for v in result.values())
    assert f"{len(words)} words for a block of 4" in str(result["power_kw"])

"""Meter models as data: one TOML file per model in ``quotad/meters/templates/``, and the request plan.

A template names, for each quantity quotad reads (``energy_kwh``, the counter, required; ``power_kw``,
optional), the register that holds it: table (holding or input), protocol address (0-based, as sent in the
request), type, word order, scale and unit. `fields_for` turns a policy's ``[meters.modbus]`` into those
fields (a named template, or an inline ``register`` spec for the energy counter); `plan_blocks` groups them
into as few reads as possible (Telegraf's request plan); `decode_block` turns a block's words into kWh and kW.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from quotad.core.errors import DecodeError, MeterError
from quotad.core.i18n import _
from quotad.core.sources import ModbusSource
from quotad.meters.registers import RegisterType, WordOrder, decoder, word_count

__all__ = [
    "Block",
    "FieldName",
    "RegisterField",
    "Table",
    "Template",
    "TemplateError",
    "decode_block",
    "fields_for",
    "load_template",
    "plan_blocks",
    "template_names",
]

Table = Literal["holding", "input"]
Unit = Literal["kWh", "Wh", "kW", "W"]
FieldName = Literal["energy_kwh", "power_kw"]
MAX_REGISTERS = 125  # the most registers one read (function 3 or 4) may ask for
_UNITS: dict[str, tuple[Unit, ...]] = {"energy_kwh": ("kWh", "Wh"), "power_kw": ("kW", "W")}
_PER_KILO: dict[str, float] = {"kWh": 1.0, "kW": 1.0, "Wh": 1000.0, "W": 1000.0}


class TemplateError(MeterError):
    """A template that cannot be used: unknown name, unreadable file, or a file that does not validate."""


class RegisterField(BaseModel):
    """Where one quantity lives in a meter, and how to read it."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    table: Table
    address: Annotated[int, Field(ge=0, le=65535)]
    type: RegisterType
    word_order: WordOrder = "big"
    scale: Annotated[float, Field(allow_inf_nan=False)] = 1.0
    unit: Unit

    @model_validator(mode="after")
    def _fits(self) -> RegisterField:
        if self.scale == 0:
            msg = _("scale must not be 0 (every reading would become 0)")
            raise ValueError(msg)
        if self.end > 65536:
            msg = _("a {type} at address {address} runs past register 65535")
            msg = msg.format(type=self.type, address=self.address)
            raise ValueError(msg)
        return self

    @property
    def count(self) -> int:
        return word_count(self.type)

    @property
    def end(self) -> int:
        """The first register after this field."""
        return self.address + self.count


class Template(BaseModel):
    """One meter model: its registers, and where that register map comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    model: str = Field(min_length=1)
    manufacturer: str = Field(min_length=1)
    source: str = Field(min_length=1)
    fields: dict[FieldName, RegisterField]

    @model_validator(mode="after")
    def _coherent(self) -> Template:
        problems = []
        if "energy_kwh" not in self.fields:
            problems.append("fields.energy_kwh is required (the counter quotad accounts from)")
        for name, field in self.fields.items():
            if field.unit not in _UNITS[name]:
                problems.append(f"fields.{name}.unit must be one of {', '.join(_UNITS[name])}, not {field.unit}")
        ordered = sorted(self.fields.items(), key=lambda item: (item[1].table, item[1].address))
        for (first, a), (second, b) in itertools.pairwise(ordered):
            if a.table == b.table and b.address < a.end:
                problems.append(f"fields.{first} and fields.{second} overlap in the {a.table} registers")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _directory() -> Traversable:
    return resources.files("quotad.meters").joinpath("templates")


def template_names() -> list[str]:
    """The meter models shipped with quotad: the stems of ``quotad/meters/templates/*.toml``, sorted."""
    return sorted(entry.name.removesuffix(".toml") for entry in _directory().iterdir() if entry.name.endswith(".toml"))


def load_template(name: str) -> Template:
    """The template called `name`; TemplateError for an unknown name or a file that does not validate."""
    known = template_names()
    if name not in known:
        msg = f"unknown meter template {name!r} (known: {', '.join(known) or 'none'})"
        raise TemplateError(msg)
    return _load(name)


@functools.cache
def _load(name: str) -> Template:
    entry = _directory().joinpath(f"{name}.toml")
    where = f"quotad/meters/templates/{name}.toml"
    try:
        data = tomllib.loads(entry.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        msg = f"{where}: {exc}"
        raise TemplateError(msg) from exc
    try:
        return Template.model_validate(data)
    except ValidationError as exc:
        msg = f"{where}: {_problems(exc)}"
        raise TemplateError(msg) from None


def fields_for(source: ModbusSource) -> dict[str, RegisterField]:
    """The registers to read for a ``[meters.modbus]``: its template's, or its inline spec as the energy counter."""
    if source.template is not None:
        # a fresh dict, its Literal keys widened to str (dict(...) would keep them invariant for mypy)
        return {name: field for name, field in load_template(source.template).fields.items()}  # noqa: C416
    if source.register_address is None:
        msg = "[meters.modbus] names neither a template nor a register"
        raise TemplateError(msg)
    try:
        field = RegisterField(
            table=source.function, address=source.register_address, type=source.type,
            word_order=source.word_order, scale=source.scale, unit="kWh",
        )  # fmt: skip
    except ValidationError as exc:
        msg = _("inline register spec: {problems}").format(problems=_problems(exc))
        raise TemplateError(msg) from None
    return {"energy_kwh": field}


@dataclass(frozen=True)
class Block:
    """One read: `count` registers of `table` from `start`, holding `fields` (name, field), by address."""

    table: Table
    start: int
    count: int
    fields: tuple[tuple[str, RegisterField], ...]
    # per field, made once: (name, offset in the block, words, decoder, unit divisor, where for errors)
    readers: tuple[tuple[str, int, int, Callable[[Sequence[int]], float], float, str], ...] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        readers = tuple(
            (
                name,
                f.address - self.start,
                f.count,
                decoder(f.type, f.word_order, f.scale),
                _PER_KILO[f.unit],
                f"{name} ({f.table} register {f.address})",
            )
            for name, f in self.fields
        )
        object.__setattr__(self, "readers", readers)


def plan_blocks(fields: Mapping[str, RegisterField], max_count: int = MAX_REGISTERS, max_gap: int = 0) -> list[Block]:
    """Group fields into reads: same table, at most `max_gap` unused registers between neighbours, at most
    `max_count` registers per read. Blocks come out ordered by (table, start); a field is never split.
    """
    widest = max((f.count for f in fields.values()), default=1)
    if not widest <= max_count <= MAX_REGISTERS or max_gap < 0:
        msg = f"max_count must lie in {widest}..{MAX_REGISTERS} and max_gap must not be negative"
        raise ValueError(msg)
    blocks: list[Block] = []
    group: list[tuple[str, RegisterField]] = []
    for name, field in sorted(fields.items(), key=lambda item: (item[1].table, item[1].address, item[0])):
        if group and _joins(group, field, max_count, max_gap):
            group.append((name, field))
            continue
        if group:
            blocks.append(_block(group))
        group = [(name, field)]
    if group:
        blocks.append(_block(group))
    return blocks


def _joins(group: Sequence[tuple[str, RegisterField]], field: RegisterField, max_count: int, max_gap: int) -> bool:
    first = group[0][1]
    end = max(f.end for _, f in group)
    return field.table == first.table and field.address - end <= max_gap and field.end - first.address <= max_count


def _block(group: Iterable[tuple[str, RegisterField]]) -> Block:
    members = tuple(group)
    start = members[0][1].address
    return Block(members[0][1].table, start, max(f.end for _, f in members) - start, members)


def decode_block(block: Block, words: Sequence[int]) -> dict[str, float | DecodeError]:
    """Each field of `block` decoded from the block's `words`, in kWh (energy) or kW (power).

    A field that does not decode gives its DecodeError; the others still decode.
    """
    result: dict[str, float | DecodeError] = {}
    if len(words) != block.count:
        for name, _offset, _words, _read, _per_kilo, where in block.readers:
            result[name] = DecodeError(f"{where}: {len(words)} words for a block of {block.count}")
        return result
    for name, offset, count, read, per_kilo, where in block.readers:
        try:
            value = read(words[offset : offset + count])
        except DecodeError as exc:
            result[name] = DecodeError(f"{where}: {exc}")
            continue
        result[name] = value / per_kilo
    return result


def _problems(exc: ValidationError) -> str:
    """Pydantic's errors as 'path: message', joined; a model-wide rule's message stands alone."""
    problems = []
    for err in exc.errors():
        path = ".".join(str(part) for part in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        problems.append(f"{path}: {message}" if path else message)
    return "; ".join(problems)

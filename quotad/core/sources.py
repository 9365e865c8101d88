"""How a meter is read: its source, one of a discriminated union tagged by `kind`.

The policy file keeps the syntax SPEC gives: a meter has one table, `[meters.modbus]` or `[meters.mqtt]` (and,
planned, `[meters.dlt645]`), with no tag written. `Meter` derives the tag in a before-validator (`tagged`) from
which table is given and what it holds, and validates the table as that member of the union:

- `modbus-tcp`: a Modbus TCP gateway (`host`, `port`, `framer = "tcp"`, the default);
- `modbus-rtu-tcp`: RTU frames over TCP, as cheap gateways speak (`host`, `port`, `framer = "rtu"`);
- `modbus-serial`: an RS-485 line (`serial`, `baudrate`, `parity`, `stopbits`, `bytesize`);
- `mqtt`: a topic (`topic`, `format`).

A problem inside a source is located by pydantic under `source.<tag>`; `file_loc` turns that back into the table
the operator wrote (`meters[3].modbus.port`). A new kind of source adds its model here, a line to `MeterSource` and
a line to `_TAGGERS` (the table it is written in, and how its tag is told).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from quotad.core.i18n import _
from quotad.core.topics import topic_problem

__all__ = [
    "SOURCE_LABELS",
    "MeterSource",
    "ModbusRtuOverTcp",
    "ModbusSerial",
    "ModbusSource",
    "ModbusTcp",
    "MqttSource",
    "SourceKind",
    "default_topic",
    "file_loc",
    "tagged",
]

SourceKind = Literal["modbus-tcp", "modbus-rtu-tcp", "modbus-serial", "mqtt"]
_SERIAL_SETTINGS = ("baudrate", "parity", "stopbits", "bytesize")


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, populate_by_name=True)

    TABLE: ClassVar[str]  # the policy file's table this kind is written in: [meters.<TABLE>]
    LABEL: ClassVar[str]  # what the operator calls it (check-config's count of meters: "16 Modbus, 2 MQTT")


class ModbusSource(_Source):
    """What every Modbus meter gives, whatever its line: the unit, the registers (a template or an inline spec),
    the poll. `line` is the physical line, opened once for all its meters; `LINE_SETTINGS` the settings its meters
    share (a cross-check refuses meters on one line that disagree)."""

    TABLE: ClassVar[str] = "modbus"
    LABEL: ClassVar[str] = "Modbus"
    LINE_SETTINGS: ClassVar[tuple[str, ...]] = ()

    unit: Annotated[int, Field(strict=True)] = Field(default=1, ge=0, le=247)
    template: str | None = None
    register_address: Annotated[int, Field(strict=True)] | None = Field(default=None, ge=0, le=65535, alias="register")
    function: Literal["holding", "input"] = "holding"
    type: Literal["u16", "i16", "u32", "i32", "u64", "f32", "f64"] = "f32"
    word_order: Literal["big", "little"] = "big"
    scale: Annotated[float, Field(allow_inf_nan=False, strict=True)] = 1.0
    poll_s: Annotated[float, Field(gt=0, le=86400, strict=True)] = 60.0
    timeout_s: Annotated[float, Field(gt=0, le=60, strict=True)] = 1.0

    @model_validator(mode="before")
    @classmethod
    def _one_line(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            if ("host" in data) == ("serial" in data):
                msg = _("give either host (Modbus TCP gateway) or serial (RS-485 port), not both or neither")
                raise ValueError(msg)
            if "serial" in data and "framer" in data:
                msg = _("framer is for a TCP gateway: a serial line always carries RTU frames")
                raise ValueError(msg)
            given = [key for key in _SERIAL_SETTINGS if key in data]
            if "host" in data and given:
                msg = _("a TCP gateway has no serial line settings: {keys}").format(keys=", ".join(given))
                raise ValueError(msg)
        return data

    @model_validator(mode="after")
    def _one_register_spec(self) -> ModbusSource:
        if (self.template is None) == (self.register_address is None):
            msg = _("give either template (a meter model) or register (an inline register spec), not both or neither")
            raise ValueError(msg)
        return self

    @property
    def line(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def where(self) -> str:
        """The line as logs name it."""
        raise NotImplementedError

    @staticmethod
    def from_table(table: Mapping[str, Any]) -> ModbusSource:
        """A `[meters.modbus]` table validated as the member of the union it is (for tests and tools)."""
        source = _ADAPTER.validate_python(_tag_modbus(table))
        assert isinstance(source, ModbusSource)
        return source


class _ModbusGateway(ModbusSource):
    LINE_SETTINGS: ClassVar[tuple[str, ...]] = ("framer", "timeout_s")

    host: str = Field(min_length=1)
    port: Annotated[int, Field(strict=True)] = Field(default=502, ge=1, le=65535)

    @property
    def line(self) -> tuple[str, ...]:
        return ("tcp", self.host, str(self.port))


class ModbusTcp(_ModbusGateway):
    kind: Literal["modbus-tcp"] = "modbus-tcp"
    framer: Literal["tcp"] = "tcp"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}/tcp"


class ModbusRtuOverTcp(_ModbusGateway):
    kind: Literal["modbus-rtu-tcp"] = "modbus-rtu-tcp"
    framer: Literal["rtu"] = "rtu"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}/rtu"


class ModbusSerial(ModbusSource):
    LINE_SETTINGS: ClassVar[tuple[str, ...]] = (*_SERIAL_SETTINGS, "timeout_s")

    kind: Literal["modbus-serial"] = "modbus-serial"
    serial: str = Field(min_length=1)
    baudrate: Annotated[int, Field(strict=True)] = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    @property
    def line(self) -> tuple[str, ...]:
        return ("serial", self.serial)

    @property
    def where(self) -> str:
        return f"{self.serial}@{self.baudrate}"


class MqttSource(_Source):
    TABLE: ClassVar[str] = "mqtt"
    LABEL: ClassVar[str] = "MQTT"

    kind: Literal["mqtt"] = "mqtt"
    topic: str | None = None  # None: the default topic, P/T/meters/<meter id>
    format: Literal["json", "tasmota", "shelly", "number"] = "json"

    @field_validator("topic")
    @classmethod
    def _concrete(cls, value: str | None) -> str | None:
        problem = None if value is None else topic_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    def topic_for(self, prefix: str, township: str, meter_id: str) -> str:
        """The topic this meter is read on: its own, or the default under the daemon's prefix."""
        return self.topic or default_topic(prefix, township, meter_id)


MeterSource = Annotated[ModbusTcp | ModbusRtuOverTcp | ModbusSerial | MqttSource, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[ModbusTcp | ModbusRtuOverTcp | ModbusSerial | MqttSource] = TypeAdapter(MeterSource)
_MEMBERS: tuple[type[_Source], ...] = (ModbusTcp, ModbusRtuOverTcp, ModbusSerial, MqttSource)
_TABLE_OF: dict[str, str] = {str(model.model_fields["kind"].default): model.TABLE for model in _MEMBERS}
SOURCE_LABELS: tuple[str, ...] = tuple(dict.fromkeys(model.LABEL for model in _MEMBERS))


def default_topic(prefix: str, township: str, meter_id: str) -> str:
    """The topic of an MQTT meter whose `[meters.mqtt]` names none (SPEC: `P/T/meters/<meter id>`)."""
    return f"{prefix}/{township}/meters/{meter_id}"


def _tag_modbus(table: Mapping[str, Any]) -> dict[str, Any]:
    kind = "modbus-rtu-tcp" if table.get("framer") == "rtu" else "modbus-tcp"
    return {"kind": "modbus-serial" if "serial" in table else kind, **table}


def _tag_mqtt(table: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": "mqtt", **table}


# the tables a meter's source is written in, and how each tells its tag (`kind`) when the file gives none
_TAGGERS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {"modbus": _tag_modbus, "mqtt": _tag_mqtt}


def tagged(data: Any) -> Any:
    """A meter as written (`[meters.modbus]` or `[meters.mqtt]`) made the shape `Meter` validates: its source table
    moved to `source`, with its tag. Anything else is left for the validation to refuse."""
    if not isinstance(data, Mapping) or "source" in data:
        return data
    tables = [key for key in _TAGGERS if key in data]
    if len(tables) != 1:
        msg = _("a meter is read either over [meters.modbus] or over [meters.mqtt]: give exactly one")
        raise ValueError(msg)
    meter = {key: value for key, value in data.items() if key != tables[0]}
    table = data[tables[0]]
    meter["source"] = _TAGGERS[tables[0]](table) if isinstance(table, Mapping) and "kind" not in table else table
    return meter


def file_loc(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """A validation error's location with `source.<tag>` turned back into the table the file has (`modbus`)."""
    for n in range(len(loc) - 1):
        if loc[n] == "source" and loc[n + 1] in _TABLE_OF:
            return (*loc[:n], _TABLE_OF[str(loc[n + 1])], *loc[n + 2 :])
    if loc and loc[-1] == "source":  # the source as a whole (not a table): name the meter
        return loc[:-1]
    return loc

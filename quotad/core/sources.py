"""How a meter is read: its source, one of a discriminated union tagged by `kind`.

The policy file keeps the syntax SPEC gives: a meter has one table, `[meters.modbus]`, `[meters.dlt645]` or
`[meters.mqtt]`, with no tag written. `Meter` derives the tag in a before-validator (`tagged`) from
which table is given and what it holds, and validates the table as that member of the union:

- `modbus-tcp`: a Modbus TCP gateway (`host`, `port`, `framer = "tcp"`, the default);
- `modbus-rtu-tcp`: RTU frames over TCP, as cheap gateways speak (`host`, `port`, `framer = "rtu"`);
- `modbus-serial`: an RS-485 line (`serial`, `baudrate`, `parity`, `stopbits`, `bytesize`);
- `dlt645-tcp`: a DL/T 645-2007 meter behind a transparent gateway, a DTU (`address`, `host`, `port`);
- `dlt645-serial`: a DL/T 645-2007 meter on an RS-485 line (`address`, `serial`, 2400 baud 8E1 by default);
- `mqtt`: a topic (`topic`, `format`).

Wired sources (Modbus and DL/T 645) name their physical `line`: a serial port, or a gateway's host and port. A line is
opened once for all its meters, whatever their protocol (`quotad.meters.modbus.ModbusPoller` owns every line).

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
    "Dlt645Serial",
    "Dlt645Source",
    "Dlt645Tcp",
    "MeterSource",
    "ModbusRtuOverTcp",
    "ModbusSerial",
    "ModbusSource",
    "ModbusTcp",
    "MqttSource",
    "SourceKind",
    "WiredSource",
    "default_topic",
    "file_loc",
    "tagged",
]

SourceKind = Literal["modbus-tcp", "modbus-rtu-tcp", "modbus-serial", "dlt645-tcp", "dlt645-serial", "mqtt"]
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


_HEX = frozenset("0123456789ABCDEFabcdef")


class Dlt645Source(_Source):
    """A DL/T 645-2007 meter: its 12-digit address (printed on it), the data identifiers read for the counter and
    the power, the poll, the time it is given to answer. `line` and `LINE_SETTINGS` as for `ModbusSource`; a meter's
    timeout is its own (quotad's own stream serves the line: no client-wide timeout)."""

    TABLE: ClassVar[str] = "dlt645"
    LABEL: ClassVar[str] = "DL/T 645"
    LINE_SETTINGS: ClassVar[tuple[str, ...]] = ()

    address: str
    energy: str = "00010000"  # forward active total energy, XXXXXX.XX kWh
    power: str | None = "02030000"  # instantaneous total active power, XX.XXXX kW; "" for none
    poll_s: Annotated[float, Field(gt=0, le=86400, strict=True)] = 60.0
    timeout_s: Annotated[float, Field(gt=0, le=60, strict=True)] = 2.0

    @model_validator(mode="before")
    @classmethod
    def _one_line(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            if ("host" in data) == ("serial" in data):
                msg = _(
                    "give either host (a DTU, a transparent TCP gateway) or serial (RS-485 port), not both or neither"
                )
                raise ValueError(msg)
            given = [key for key in _SERIAL_SETTINGS if key in data]
            if "host" in data and given:
                msg = _("a TCP gateway has no serial line settings: {keys}").format(keys=", ".join(given))
                raise ValueError(msg)
        return data

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if len(value) != 12 or not value.isascii() or not value.isdigit():
            msg = _("expected the meter's 12-digit address (digits 0-9, as printed on it), got {value!r}")
            raise ValueError(msg.format(value=value))
        return value

    @field_validator("energy")
    @classmethod
    def _energy(cls, value: str) -> str:
        if len(value) == 8 and set(value) <= _HEX and value.startswith("00"):
            return value.upper()
        msg = _("expected an energy's data identifier: 8 hex digits starting 00 (forward active total: 00010000)")
        raise ValueError(msg)

    @field_validator("power")
    @classmethod
    def _power(cls, value: str | None) -> str | None:
        if not value:
            return None
        if len(value) == 8 and set(value) <= _HEX and value.startswith("0203"):
            return value.upper()
        msg = _('expected an active power\'s data identifier: 8 hex digits starting 0203 (total: 02030000), or ""')
        raise ValueError(msg)

    @property
    def line(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def where(self) -> str:
        raise NotImplementedError


class Dlt645Tcp(Dlt645Source):
    kind: Literal["dlt645-tcp"] = "dlt645-tcp"
    host: str = Field(min_length=1)
    port: Annotated[int, Field(strict=True)] = Field(ge=1, le=65535)

    @property
    def line(self) -> tuple[str, ...]:
        return ("tcp", self.host, str(self.port))

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}/dtu"


class Dlt645Serial(Dlt645Source):
    LINE_SETTINGS: ClassVar[tuple[str, ...]] = _SERIAL_SETTINGS

    kind: Literal["dlt645-serial"] = "dlt645-serial"
    serial: str = Field(min_length=1)
    baudrate: Annotated[int, Field(strict=True)] = Field(default=2400, gt=0)
    parity: Literal["N", "E", "O"] = "E"
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


_Members = ModbusTcp | ModbusRtuOverTcp | ModbusSerial | Dlt645Tcp | Dlt645Serial | MqttSource
MeterSource = Annotated[_Members, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[_Members] = TypeAdapter(MeterSource)
_MEMBERS: tuple[type[_Source], ...] = (ModbusTcp, ModbusRtuOverTcp, ModbusSerial, Dlt645Tcp, Dlt645Serial, MqttSource)
WiredSource = ModbusSource | Dlt645Source
_TABLE_OF: dict[str, str] = {str(model.model_fields["kind"].default): model.TABLE for model in _MEMBERS}
SOURCE_LABELS: tuple[str, ...] = tuple(dict.fromkeys(model.LABEL for model in _MEMBERS))


def default_topic(prefix: str, township: str, meter_id: str) -> str:
    """The topic of an MQTT meter whose `[meters.mqtt]` names none (SPEC: `P/T/meters/<meter id>`)."""
    return f"{prefix}/{township}/meters/{meter_id}"


def _tag_modbus(table: Mapping[str, Any]) -> dict[str, Any]:
    kind = "modbus-rtu-tcp" if table.get("framer") == "rtu" else "modbus-tcp"
    return {"kind": "modbus-serial" if "serial" in table else kind, **table}


def _tag_dlt645(table: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": "dlt645-serial" if "serial" in table else "dlt645-tcp", **table}


def _tag_mqtt(table: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": "mqtt", **table}


# the tables a meter's source is written in, and how each tells its tag (`kind`) when the file gives none
_TAGGERS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "modbus": _tag_modbus,
    "dlt645": _tag_dlt645,
    "mqtt": _tag_mqtt,
}


def tagged(data: Any) -> Any:
    """A meter as written (`[meters.modbus]`, `[meters.dlt645]` or `[meters.mqtt]`) made the shape `Meter`
    validates: its source table moved to `source`, with its tag. Anything else is left for the validation to refuse."""
    if not isinstance(data, Mapping) or "source" in data:
        return data
    tables = [key for key in _TAGGERS if key in data]
    if len(tables) != 1:
        msg = _("a meter is read over one of [meters.modbus], [meters.dlt645] or [meters.mqtt]: give exactly one")
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

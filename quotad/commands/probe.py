"""`quotad probe dlt645|modbus ...`: read one meter once and print what it answered — the installer's check on site.

Needs no configuration: the meter's connection is given on the command line and validated by the policy's own
models (`quotad.core.sources`), so a probe that works is a `[meters.*]` table that works. Read-only like the daemon:
DL/T 645 control codes 0x11 and 0x13, Modbus function codes 3 and 4.

Exit 0: the meter answered (its address, counter and power printed); 1: it did not, or not usably (why is printed);
2: bad usage (an address that is not 12 digits, host and serial together, an unknown template).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any, TextIO

from pydantic import TypeAdapter, ValidationError

from quotad.core.errors import MeterError, UsageError
from quotad.core.i18n import _
from quotad.core.sources import Dlt645Source, MeterSource, ModbusSource

__all__ = ["add_probe_parser", "probe"]


def add_probe_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    help_text = _("read one meter once and print what it answered: the installer's check")
    p = sub.add_parser("probe", help=help_text, description=help_text)
    kinds = p.add_subparsers(dest="probe_kind", required=True, metavar="KIND")
    dl = kinds.add_parser("dlt645", help=_("a DL/T 645-2007 meter"), description=_("a DL/T 645-2007 meter"))
    dl.add_argument("--address", help=_("the meter's 12-digit address (default: ask the one meter on the line)"))
    dl.add_argument("--energy", default="00010000", help=_("data identifier of the counter (default 00010000)"))
    dl.add_argument("--power", default="02030000", help=_("data identifier of the power (default 02030000)"))
    _line(dl, baudrate=2400)
    mb = kinds.add_parser("modbus", help=_("a Modbus meter"), description=_("a Modbus meter"))
    mb.add_argument("--unit", type=int, default=1, help=_("the unit id (default 1)"))
    mb.add_argument("--template", required=True, help=_("the meter model's template (dtsu666, sdm630, adw300)"))
    mb.add_argument("--framer", choices=("tcp", "rtu"), help=_("over TCP: tcp (Modbus TCP, default) or rtu (a DTU)"))
    _line(mb, baudrate=9600)


def _line(p: argparse.ArgumentParser, baudrate: int) -> None:
    p.add_argument("--host", help=_("the gateway's (DTU's) address"))
    p.add_argument("--port", type=int, help=_("the gateway's TCP port"))
    p.add_argument("--serial", help=_("or the RS-485 port, like /dev/ttyUSB0"))
    p.add_argument("--baudrate", type=int, help=_("serial: baud rate (default {n})").format(n=baudrate))
    p.add_argument("--parity", choices=("N", "E", "O"), help=_("serial: parity"))
    p.add_argument("--timeout", type=float, default=2.0, help=_("seconds to wait for an answer (default 2)"))


def _table(args: argparse.Namespace) -> dict[str, Any]:
    if (args.host is None) == (args.serial is None):
        raise UsageError(_("give either --host and --port (a gateway) or --serial (an RS-485 port)"))
    if args.host is not None and args.port is None:
        raise UsageError(_("--host needs --port"))
    table: dict[str, Any] = {"timeout_s": args.timeout}
    table |= {"host": args.host, "port": args.port} if args.host is not None else {"serial": args.serial}
    table |= {k: v for k, v in (("baudrate", args.baudrate), ("parity", args.parity)) if v is not None}
    if args.probe_kind == "modbus":
        table |= {"unit": args.unit, "template": args.template}
        if args.framer is not None:
            table["framer"] = args.framer
        return {"modbus": table}
    return {"dlt645": {"address": args.address or "000000000000", "energy": args.energy, "power": args.power} | table}


def _source(args: argparse.Namespace) -> MeterSource:
    from quotad.core.sources import tagged

    try:
        meter = tagged(_table(args))
        source: MeterSource = TypeAdapter(MeterSource).validate_python(meter["source"])
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        raise UsageError(problems) from None
    if isinstance(source, ModbusSource):
        from quotad.meters.templates import TemplateError, fields_for

        try:
            fields_for(source)
        except TemplateError as exc:
            raise UsageError(str(exc)) from None
    return source


def probe(args: argparse.Namespace, out: TextIO) -> int:
    source = _source(args)
    try:
        if isinstance(source, Dlt645Source):
            asyncio.run(_dlt645(source, args.address is None, out))
        else:
            assert isinstance(source, ModbusSource)
            asyncio.run(_modbus(source, out))
    except MeterError as exc:
        print(_("no usable answer: {reason}").format(reason=exc), file=out)
        return 1
    return 0


async def _dlt645(source: Dlt645Source, ask_address: bool, out: TextIO) -> None:
    from quotad.meters.lines import StreamLink

    link = StreamLink(source, source.timeout_s)
    try:
        print(_("DL/T 645 meter on {line}").format(line=source.where), file=out)
        try:
            address = await link.read_address() if ask_address else source.address
        except MeterError as exc:
            hint = _("a broadcast read of the address needs exactly one meter on the line: give --address")
            msg = f"{exc} ({hint})"
            raise MeterError(msg) from None
        if ask_address:
            print(_("  address: {address} (the one meter on the line answered the broadcast)").format(address=address),
                  file=out)  # fmt: skip
        else:
            print(_("  address: {address}").format(address=address), file=out)
        energy = await link.read_data(address, source.energy)
        print(_("  counter ({di}): {value:.2f} kWh").format(di=source.energy, value=energy), file=out)
        if source.power is not None:
            try:
                power = await link.read_data(address, source.power)
                print(_("  power ({di}): {value:.4f} kW").format(di=source.power, value=power), file=out)
            except MeterError as exc:
                print(_("  power ({di}): none ({reason})").format(di=source.power, reason=exc), file=out)
    finally:
        link.close()


async def _modbus(source: ModbusSource, out: TextIO) -> None:
    from quotad.meters.modbus import ReadOnlyLink
    from quotad.meters.templates import decode_block, fields_for, plan_blocks

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # its own lines ("No response received...", frames
    # dumped as hex) say again what the probe says once, in the installer's terms
    link = ReadOnlyLink(source, source.timeout_s)
    try:
        print(_("Modbus unit {unit} on {line}, template {template}").format(
            unit=source.unit, line=source.where, template=source.template), file=out)  # fmt: skip
        names = {"energy_kwh": _("counter"), "power_kw": _("power")}
        for name, field in fields_for(source).items():
            (block,) = plan_blocks({name: field})
            try:
                words = await link.read(block.table, block.start, block.count, source.unit)
            except MeterError as exc:
                if getattr(source, "framer", None) == "tcp" and "No response" in str(exc):
                    hint = _("a DTU that passes RS-485 through speaks RTU: try --framer rtu")
                    msg = f"{exc} ({hint})"
                    raise MeterError(msg) from None
                raise
            value = decode_block(block, words)[name]
            raw = " ".join(f"{w:04X}" for w in words)
            where = f"{field.table} {field.address} (0x{field.address:04X}), {field.type}, [{raw}]"
            shown = (
                str(value)
                if isinstance(value, MeterError)
                else f"{value:.4f} {'kWh' if name == 'energy_kwh' else 'kW'}"
            )
            print(f"  {names.get(name, name)}: {shown}  <- {where}", file=out)
            if name == "energy_kwh" and isinstance(value, MeterError):
                raise value
    finally:
        link.close()

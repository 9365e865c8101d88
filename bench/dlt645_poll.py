"""DL/T 645 polling: 200 meters behind 10 DTUs, quotad's poller beside bare asyncio streams on the same DTUs.

10 simulated DTUs on loopback (asyncio servers), 20 DL/T 645 meters each, every meter answering its forward active
total energy (00010000) and total active power (02030000) with a fixed, precomputed reply frame. The floor sends the
same two request frames per meter over one bare asyncio stream per DTU and reads exactly the reply's length back
(no parsing, no checks); quotad is `ModbusPoller.poll` for every meter (the same two requests, plus frame search,
checksum, address, identifier and BCD checks, and the reading). Meters of a DTU one after another, DTUs
concurrently; rounds alternate between the two. Prints, last: `dlt645_poll: X readings/s, floor Y reads/s, ratio R`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import tomllib

from quotad.core.policy import Policy
from quotad.meters import dlt645
from quotad.meters.modbus import Gateway, ModbusPoller
from quotad.shell.clock import Clock
from tests.brokers import free_ports

DTUS, METERS = 10, 20
ENERGY, POWER = dlt645.ENERGY_TOTAL, dlt645.POWER_TOTAL


def address(d: int, m: int) -> str:
    return f"{d:06d}{m:06d}"


def policy(ports: list[int]) -> Policy:
    text = '[township]\nid = "b"\nname = "b"\ndaily_cap_kwh = 1\n[control]\nstart = 2010-10-01\nend = 2010-12-31\n'
    text += '[[firms]]\nid = "f"\nname = "f"\nkind = "large"\n'
    for d, port in enumerate(ports):
        for m in range(1, METERS + 1):
            text += (
                f'[[meters]]\nid = "m{d}-{m}"\nfirm = "f"\n[meters.dlt645]\naddress = "{address(d, m)}"\n'
                f'host = "127.0.0.1"\nport = {port}\n'
            )
    return Policy.model_validate(tomllib.loads(text))


def replies(d: int) -> dict[bytes, bytes]:
    """Each request frame this DTU's meters answer, and the answer."""
    table = {}
    for m in range(1, METERS + 1):
        a = address(d, m)
        for di, value in ((ENERGY, 12345.67 + m), (POWER, 1.2345)):
            data = bytes.fromhex(di)[::-1] + dlt645.encode_value(di, value)
            table[dlt645.read_data(a, di)] = dlt645.reply(a, dlt645.READ_DATA, data)
    return table


async def serve(port: int, table: dict[bytes, bytes]) -> asyncio.Server:
    size = len(next(iter(table)))

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readexactly(size)
                writer.write(table[request])
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(connection, "127.0.0.1", port)


async def floor_round(
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]], tables: list[dict[bytes, bytes]]
) -> int:
    async def dtu(stream: tuple[asyncio.StreamReader, asyncio.StreamWriter], table: dict[bytes, bytes]) -> int:
        reader, writer = stream
        for request, answer in table.items():  # energy, power, energy, power, ...: the same frames, in order
            writer.write(request)
            await reader.readexactly(len(answer))
        return len(table) // 2

    return sum(await asyncio.gather(*(dtu(s, t) for s, t in zip(streams, tables, strict=True))))


async def quotad_round(poller: ModbusPoller) -> int:
    async def gateway(g: Gateway) -> int:
        done = 0
        for polled in g.meters:
            done += (await poller.poll(g, polled)) is not None
        return done

    return sum(await asyncio.gather(*(gateway(g) for g in poller.gateways.values())))


async def main(rounds: int) -> None:
    ports = free_ports(DTUS)
    tables = [replies(d) for d in range(DTUS)]
    servers = [await serve(port, table) for port, table in zip(ports, tables, strict=True)]
    streams = [await asyncio.open_connection("127.0.0.1", port) for port in ports]
    readings: list[object] = []
    poller = ModbusPoller(policy(ports).meters, Clock(), readings.append)
    floor_s, quotad_s = [], []
    await quotad_round(poller)  # connect once, as the floor's streams are
    for _ in range(rounds):
        t0 = time.perf_counter()
        reads = await floor_round(streams, tables)
        floor_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = await quotad_round(poller)
        quotad_s.append(time.perf_counter() - t0)
        assert got == reads == DTUS * METERS, (got, reads)
    for _reader, writer in streams:
        writer.close()
    for gateway in poller.gateways.values():
        gateway.link.close()
    await asyncio.sleep(0.2)  # the DTUs see their clients go (end of stream) and end their connections
    for server in servers:
        server.close()
        await server.wait_closed()
    meters = DTUS * METERS
    floor = meters / statistics.median(floor_s)
    ours = meters / statistics.median(quotad_s)
    print(f"{meters} DL/T 645 meters behind {DTUS} DTUs, 2 frames each, {rounds} rounds; "
          f"slowest quotad round {max(quotad_s) * 1000:.0f} ms")  # fmt: skip
    print(f"dlt645_poll: {ours:.0f} readings/s, floor {floor:.0f} reads/s, ratio {ours / floor:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=21)
    asyncio.run(main(parser.parse_args().rounds))

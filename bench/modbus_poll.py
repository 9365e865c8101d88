"""Modbus polling: 1,000 meters behind 20 gateways, quotad's poller beside bare pymodbus on the same servers.

20 pymodbus TCP servers on loopback, 50 units each, every unit holding a float32 energy counter. The floor is
the bare async client reading each unit's counter (one request per unit, units of a gateway one after
another, gateways concurrently); quotad is `ModbusPoller.poll` for every meter (the same one request per
meter, plus decoding, sentinel checks and the reading). Rounds alternate between the two. Prints, last:
`modbus_poll: X readings/s, floor Y reads/s, ratio R` (and the slowest full round).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import tomllib

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from quotad.core.policy import Policy
from quotad.meters.modbus import ModbusPoller
from quotad.meters.registers import encode
from quotad.shell.clock import Clock
from tests.brokers import free_ports

GATEWAYS, UNITS, ADDRESS = 20, 50, 0x48


def policy(ports: list[int]) -> Policy:
    text = '[township]\nid = "b"\nname = "b"\ndaily_cap_kwh = 1\n[control]\nstart = 2010-10-01\nend = 2010-12-31\n'
    text += '[[firms]]\nid = "f"\nname = "f"\nkind = "large"\n'
    for g, port in enumerate(ports):
        for unit in range(1, UNITS + 1):
            text += (
                f'[[meters]]\nid = "m{g}-{unit}"\nfirm = "f"\n[meters.modbus]\nhost = "127.0.0.1"\nport = {port}\n'
                f'unit = {unit}\nregister = {ADDRESS}\nfunction = "input"\ntype = "f32"\n'
            )
    return Policy.model_validate(tomllib.loads(text))


async def floor_round(clients: list[AsyncModbusTcpClient]) -> int:
    async def gateway(client: AsyncModbusTcpClient) -> int:
        for unit in range(1, UNITS + 1):
            response = await client.read_input_registers(ADDRESS, count=2, device_id=unit)
            assert not response.isError()
        return UNITS

    return sum(await asyncio.gather(*(gateway(c) for c in clients)))


async def quotad_round(poller: ModbusPoller) -> int:
    async def gateway(g: object) -> int:
        done = 0
        for polled in g.meters:  # type: ignore[attr-defined]
            done += (await poller.poll(g, polled)) is not None  # type: ignore[arg-type]
        return done

    return sum(await asyncio.gather(*(gateway(g) for g in poller.gateways.values())))


async def main(rounds: int) -> None:
    ports = free_ports(GATEWAYS)
    words = encode(12345.67, "f32", "big")
    servers = [
        ModbusTcpServer(
            context=[
                SimDevice(id=u, simdata=[SimData(ADDRESS, values=words, datatype=DataType.REGISTERS)])
                for u in range(1, UNITS + 1)
            ],
            framer=FramerType.SOCKET,
            address=("127.0.0.1", port),
        )
        for port in ports
    ]
    tasks = [asyncio.create_task(s.serve_forever()) for s in servers]
    await asyncio.sleep(0.5)
    clients = [AsyncModbusTcpClient("127.0.0.1", port=p, timeout=2, retries=0) for p in ports]
    for client in clients:
        await client.connect()
    readings: list[object] = []
    poller = ModbusPoller(policy(ports).meters, Clock(), readings.append)
    floor_s, quotad_s = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        reads = await floor_round(clients)
        floor_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = await quotad_round(poller)
        quotad_s.append(time.perf_counter() - t0)
        assert got == reads == GATEWAYS * UNITS, (got, reads)
    for client in clients:
        client.close()
    for gateway in poller.gateways.values():
        gateway.link.close()
    for server in servers:
        await server.shutdown()  # type: ignore[no-untyped-call]
    for task in tasks:
        task.cancel()
    meters = GATEWAYS * UNITS
    floor = meters / statistics.median(floor_s)
    ours = meters / statistics.median(quotad_s)
    print(f"{meters} meters behind {GATEWAYS} gateways, {rounds} rounds; slowest quotad round {max(quotad_s):.2f} s")
    print(f"modbus_poll: {ours:.0f} readings/s, floor {floor:.0f} reads/s, ratio {ours / floor:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args().rounds))

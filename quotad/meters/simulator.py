"""The simulated township: its Modbus gateways served by pymodbus, its DL/T 645 meters behind simulated DTUs
(`quotad.meters.dtu`, which also answer the Modbus RTU meters on their port), its MQTT meters published, on a
shared clock.

Each Modbus gateway of the policy (a TCP host/port) becomes a pymodbus server on that port with one
`SimDevice` per unit; the device's action hook writes the meter's live counter (from `TownshipModel`, at the
clock's now) into the registers its template names, so every read sees the counter advance. Writes are
refused (a meter is read-only) and every request's function code is recorded. MQTT meters are published
every minute of the clock, in their configured format, to the broker of the daemon file's `[mqtt]` (with its
username, password file and CA file, like the daemon's own clients). The simulator also reads the retained cutoff
orders there: a firm whose order the 供电所 has executed draws only its lights from then on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Sequence
from functools import partial

from paho.mqtt.client import MQTTMessage
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from quotad.config.daemon import MqttSettings
from quotad.core.feed import TownshipModel
from quotad.core.policy import Meter, Policy
from quotad.core.sources import Dlt645Serial, ModbusRtuOverTcp, ModbusSerial, MqttSource
from quotad.meters.dtu import SimulatedDtu
from quotad.meters.registers import encode
from quotad.meters.templates import RegisterField, fields_for
from quotad.schedule.calendar import MICROS_PER_S, Micros
from quotad.shell.clock import Clock
from quotad.shell.mqtt import Driver, mqtt_client
from quotad.shell.pacing import Backoff

__all__ = ["Simulator", "payload"]

log = logging.getLogger(__name__)
_MINUTE: Micros = 60 * MICROS_PER_S


def payload(fmt: str, energy_kwh: float, power_kw: float, ts: str, epoch_s: float) -> bytes:
    """What a meter of format `fmt` publishes."""
    body: dict[str, object]
    if fmt == "tasmota":
        body = {"Time": ts[:19], "ENERGY": {"Total": round(energy_kwh, 3), "Power": round(power_kw * 1000)}}
    elif fmt == "shelly":
        body = {"aenergy": {"total": round(energy_kwh * 1000, 3), "minute_ts": int(epoch_s)}, "apower": power_kw * 1000}
    elif fmt == "number":
        return f"{energy_kwh:.3f}".encode()
    else:
        body = {"ts": ts, "energy_kwh": round(energy_kwh, 3), "power_kw": round(power_kw, 3)}
    return json.dumps(body).encode()


class Simulator:
    def __init__(
        self,
        policy: Policy,
        clock: Clock,
        model: TownshipModel,
        *,
        mqtt: MqttSettings | None = None,
        topic_prefix: str = "quotad",
        silence_s: float = 3.0,
    ) -> None:
        self.policy, self.clock, self.model = policy, clock, model
        self.mqtt, self.prefix, self.silence_s = mqtt, topic_prefix, silence_s
        self.function_codes: Counter[int] = Counter()  # every request the Modbus servers received
        self.dtus: list[SimulatedDtu] = []
        self.published = 0
        self.servers: list[ModbusTcpServer] = []
        self.ports: dict[tuple[str, int], list[Meter]] = {}
        for meter in policy.meters:
            source = meter.source
            if meter.firm is None or isinstance(source, MqttSource):
                continue
            if isinstance(source, ModbusSerial | Dlt645Serial):
                log.warning("meter %s is on a serial line: the simulator serves TCP gateways only", meter.id)
                continue
            self.ports.setdefault((source.host, source.port), []).append(meter)

    async def run(self) -> None:
        """Serve and publish until cancelled."""
        async with asyncio.TaskGroup() as group:
            for (host, port), meters in self.ports.items():
                if any(m.dlt645 is not None for m in meters):
                    dtu = SimulatedDtu(meters, self.model, self.clock.now)
                    dtu.function_codes = self.function_codes  # one record of the Modbus requests, wherever served
                    self.dtus.append(dtu)
                    group.create_task(dtu.serve(host, port), name=f"simulated DTU {port}")
                    continue
                group.create_task(self._serve(host, port, meters), name=f"simulated gateway {port}")
            if self.mqtt is not None:
                group.create_task(self._publish(), name="simulated MQTT meters")

    async def _serve(self, host: str, port: int, meters: Sequence[Meter]) -> None:
        framer = FramerType.RTU if isinstance(meters[0].source, ModbusRtuOverTcp) else FramerType.SOCKET
        devices = [self._device(m) for m in meters]
        server = ModbusTcpServer(
            context=devices, framer=framer, address=(host, port), trace_pdu=self._trace, ignore_missing_devices=True
        )  # a unit that is not there does not answer, as behind a real RS-485 gateway
        self.servers.append(server)
        log.info(
            "simulated gateway %s:%d (%s): units %s",
            host,
            port,
            framer.value,
            [m.modbus.unit for m in meters if m.modbus],
        )
        try:
            await server.serve_forever()
        finally:
            await server.shutdown()  # type: ignore[no-untyped-call]

    @property
    def control_codes(self) -> Counter[int]:
        """Every DL/T 645 control code the simulated DTUs received."""
        return sum((dtu.control_codes for dtu in self.dtus), Counter())

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.function_codes[pdu.function_code] += 1
        return pdu

    def _device(self, meter: Meter) -> SimDevice:
        assert meter.modbus is not None
        fields = fields_for(meter.modbus)
        blocks = [SimData(f.address, count=_words(f), datatype=DataType.REGISTERS) for f in fields.values()]
        return SimDevice(id=meter.modbus.unit, simdata=blocks, action=partial(self._answer, meter, fields))

    async def _answer(
        self,
        meter: Meter,
        fields: dict[str, RegisterField],
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if set_values is not None:
            log.warning("refused a write (function %d) to simulated meter %s", function_code, meter.id)
            return ExcCodes.ILLEGAL_FUNCTION
        t = self.clock.now()
        if self.model.silent(meter.id, t):
            await asyncio.sleep(self.silence_s)  # a unit that does not answer: the client times out
            return ExcCodes.DEVICE_FAILURE
        values = {"energy_kwh": self.model.counter(meter.id, t), "power_kw": self.model.power_kw(meter.id, t)}
        for name, field in fields.items():
            scaled = values[name] * (1000.0 if field.unit in ("Wh", "W") else 1.0)
            words = encode(scaled, field.type, field.word_order, field.scale)
            offset = field.address - start_address
            registers[offset : offset + len(words)] = words
        return None

    async def _publish(self) -> None:
        assert self.mqtt is not None
        meters = [m for m in self.policy.meters if m.mqtt is not None and m.firm is not None]
        client = mqtt_client(self.mqtt, f"quotad-sim-{self.policy.township.id}", clean=True)
        orders = f"{self.prefix}/{self.policy.township.id}/orders/+"
        client.on_connect = lambda c, userdata, flags, reason, props: c.subscribe(orders, 1)
        client.on_message = self._order
        driver = Driver(client, "simulated MQTT meters", backoff=Backoff(1.0, 10.0))
        client.connect_async(self.mqtt.host, self.mqtt.port)
        driver.start(asyncio.get_running_loop())
        try:
            t = (self.clock.now() // _MINUTE + 1) * _MINUTE
            while True:
                await self.clock.sleep_until(t)
                for meter in meters:
                    if meter.mqtt is not None and not self.model.silent(meter.id, t):
                        topic = meter.mqtt.topic_for(self.prefix, self.policy.township.id, meter.id)
                        body = payload(
                            meter.mqtt.format, self.model.counter(meter.id, t), self.model.power_kw(meter.id, t),
                            self.model.cal.isoformat(t), t / MICROS_PER_S,
                        )  # fmt: skip
                        client.publish(topic, body, qos=1)
                        self.published += 1
                t = max(t + _MINUTE, (self.clock.now() // _MINUTE) * _MINUTE)
        finally:
            driver.stop()

    def _order(self, client: object, userdata: object, message: MQTTMessage) -> None:
        """A firm's retained order (SPEC "MQTT topics"): the simulated firm stops drawing power once the 供电所 has
        executed it, and draws again once it is lifted (the retained topic cleared)."""
        firm = message.topic.rsplit("/", 1)[-1]
        if firm not in self.model.firms:
            return
        try:
            state = json.loads(message.payload)["state"] if message.payload else None
        except (ValueError, KeyError, TypeError):
            return
        if state == "executed":
            self.model.cut_off(firm, self.clock.now())
            log.info("simulated %s: supply cut off (its order executed)", firm)
        elif state is None:
            self.model.reconnect(firm, self.clock.now())


def _words(field: RegisterField) -> int:
    return {"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2, "u64": 4, "f64": 4}[field.type]

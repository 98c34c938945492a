"""The soak's physical world: the plant, its Modbus devices, the price market - and the faults done to them.

It outlives every EMS process of a soak (a killed EMS restarts against the same plant, as on site): the
plant simulator behind a `PlantLink`, one simulated device per configured Modbus device (on the in-process
loopback wire or on real 127.0.0.1 TCP ports), the aWATTar-format price server, and the injector that
applies a `Fault` at its start and undoes it at its end. PV and load sit behind the grid meter and no
device measures them: the world publishes them on the running EMS's bus, as the demo's harness does.

`truth(t)` is what the plant physically does at plant time `t` - the PCS's real output, the grid point,
the battery's own limits and SoC, the DSO box's state - the only thing the oracle reads. The world tells
its `observer` (the oracle) at every plant step and at every change it makes or sees (a PCS command
arriving over Modbus, a fault starting), so reaction times are measured at the instant, not at the step.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from ..bus import TelemetryBus
from ..clock import Clock
from ..config.schema import EmsConfig
from ..devices.profile import Profile, load_library
from ..resources import profiles_dir
from ..sim.battery import ALARM_OVER_TEMPERATURE_TRIP, FAULT_ALARMS
from ..sim.loopback import LoopbackNetwork
from ..sim.modbus_devices import DeviceServer, simulated_devices
from ..sim.plant import PlantSample, PlantSimulator
from ..sim.plant_link import PlantLink
from ..state import Measurement
from .faults import Fault
from .prices import MARKET_TZ, PriceMarket, PriceServer
from .timing import TRANSPORTS

log = logging.getLogger(__name__)



@dataclass(frozen=True, slots=True)
class PlantTruth:
    """What the plant physically does at `ts`. Power > 0 = discharging; grid > 0 = import."""

    ts: float
    pcs_w: float  # the PCS's AC output as it drives it (its command, its own limit %, its fallback)
    bess_w: float  # what the battery delivers (the BMS's own clamp and the energy left applied)
    pcs_enabled: bool  # under the EMS's remote control
    pcs_fallback: bool  # the PCS's own comm-loss fallback (0 W) in force
    pcs_cap_w: float  # the PCS's own power cap (its limit % register × rating)
    pcs_contact_ts: float | None  # when the PCS last heard its EMS (a heartbeat write)
    pcs_setpoint_w: float  # what the PCS's setpoint register asks for (before its own cap and fallback)
    load_w: float
    pv_w: float
    grid_w: float
    soc_pct: float
    bms_charge_limit_w: float
    bms_discharge_limit_w: float
    bms_stop: bool  # the BMS demands a stop: a critical/shutdown alarm, or its contactors open
    dso_mode: str
    dso_limit_pct: float


class SoakWorld:
    """The plant and its devices for one soak; `start()`, `run_plant()` (a task), `stop()`."""

    def __init__(self, cfg: EmsConfig, clock: Clock, *, transport: str = "loopback",
                 pcs_comm_loss_timeout_s: float = 10.0, latency_s: float = 0.0,
                 safety_alarm_severity: str = "critical"):
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown transport {transport!r} (allowed: {', '.join(TRANSPORTS)})")
        self.cfg = cfg
        self.clock = clock
        self.transport = transport
        self.pcs_comm_loss_timeout_s = pcs_comm_loss_timeout_s
        self.network = LoopbackNetwork(latency_s) if transport == "loopback" else None
        self.plant = PlantSimulator(cfg.bess, cfg.simulator, clock.now())
        self.link = PlantLink(self.plant)
        self.link.on_command = self._on_command
        self.market = PriceMarket(cfg.forecast.price_country)
        self.prices = PriceServer(self.market, clock.now)
        self.servers: dict[str, DeviceServer] = {}
        self.roles: dict[str, str] = {d.role: d.name for d in cfg.modbus if d.enabled}
        self.profiles: dict[str, Profile] = {}
        self.bus: TelemetryBus | None = None  # the running EMS's bus (None while it is down)
        self.observer: Callable[[PlantTruth], None] | None = None
        self.active: dict[int, Fault] = {}
        self._severity_floor = {"critical": 2, "shutdown": 3}.get(safety_alarm_severity, 2)
        self._forced_bms_severity: int | None = None
        self._storms: dict[int, asyncio.Task[None]] = {}
        self.steps = 0

    # -- lifetime -------------------------------------------------------------------------------
    async def start(self) -> None:
        profiles, broken = load_library(profiles_dir())
        if broken:
            log.warning("broken profiles (not used by the soak): %s", ", ".join(sorted(broken)))
        self.profiles = profiles
        for d in simulated_devices(self.cfg.modbus, profiles):
            timeout = self.pcs_comm_loss_timeout_s if d.name == self.roles.get("pcs") else None
            server = DeviceServer(d.profile, self.link, tcp=d.tcp, rtu=d.rtu, unit_id=d.unit_id, clock=self.clock,
                                  loopback=self.network, comm_loss_timeout_s=timeout)
            await server.start()
            self.servers[d.name] = server
        self.prices.start()
        self.link.step(self.clock.now())

    async def stop(self) -> None:
        for task in self._storms.values():
            task.cancel()
        for server in reversed(list(self.servers.values())):
            await server.stop()
        self.prices.stop()

    async def run_plant(self) -> None:
        """Step the plant every `simulator.step_s` until cancelled; the observer sees every step."""
        step_s = self.cfg.simulator.step_s
        while True:
            sample = self.link.step(self.clock.now())
            self.steps += 1
            bus = self.bus
            if bus is not None:
                max_age_s = 3.0 * step_s * self.clock.speed
                bus.publish({"pv.power_w": Measurement(sample.pv_power_w, sample.ts, "sim", max_age_s),
                             "load.power_w": Measurement(sample.load_power_w, sample.ts, "sim", max_age_s)})
            if self.observer is not None:
                self.observer(self.truth(sample.ts, sample))
            await self.clock.sleep(step_s)

    def device(self, role: str) -> DeviceServer:
        return self.servers[self.roles[role]]

    # -- truth ----------------------------------------------------------------------------------
    def truth(self, t: float | None = None, sample: PlantSample | None = None) -> PlantTruth:
        """The plant's physical state at plant time `t` (default now), from the plant model itself
        (`sample`: the plant's sample of this very instant, whose PV and load need no recomputing)."""
        t = self.clock.now() if t is None else t
        link, plant, battery = self.link, self.plant, self.plant.battery
        pcs_w = link.requested_w(t)
        charge_w, discharge_w = battery.max_charge_power_w, battery.max_discharge_power_w
        bess_w = min(max(pcs_w, -charge_w), discharge_w)
        if (bess_w > 0 and battery.soc_pct <= 0.0) or (bess_w < 0 and battery.soc_pct >= 100.0):
            bess_w = 0.0
        if sample is not None and sample.ts == t:
            load_w, pv_w = sample.load_power_w, sample.pv_power_w
        else:
            load_w, pv_w = plant.load_power_w(t), plant.pv_power_w(t)
        rated_w = link.rated_power_w
        stop = bool(battery.alarm_bits & FAULT_ALARMS) or (
            self._forced_bms_severity is not None and self._forced_bms_severity >= self._severity_floor)
        return PlantTruth(
            ts=t, pcs_w=pcs_w, bess_w=bess_w, pcs_enabled=link.remote_enabled, pcs_fallback=link.fallback_active(t),
            pcs_cap_w=rated_w * min(100.0, max(0.0, link.limit_pct)) / 100.0, pcs_contact_ts=link.last_contact_ts,
            pcs_setpoint_w=link.setpoint_w if link.remote_enabled else 0.0,
            load_w=load_w, pv_w=pv_w, grid_w=load_w - pv_w - bess_w, soc_pct=battery.soc_pct,
            bms_charge_limit_w=charge_w, bms_discharge_limit_w=discharge_w, bms_stop=stop,
            dso_mode=plant.dso.mode, dso_limit_pct=plant.dso.limit_pct)

    def observe(self) -> None:
        if self.observer is not None:
            self.observer(self.truth())

    def _on_command(self, _now: float) -> None:
        self.observe()

    # -- faults ---------------------------------------------------------------------------------
    def mark_negative_days(self, faults: list[Fault], start_ts: float) -> None:
        """The market knows its negative days in advance (they are published the day before)."""
        for f in faults:
            if f.kind == "negative_prices":
                day = datetime.fromtimestamp(start_ts + f.start_s, MARKET_TZ).date()
                self.market.negative_days.add(day)
                self.market.forget(day)

    async def inject(self, fault: Fault) -> str:
        """Apply `fault` to the world now; returns what was done (for the fault log)."""
        self.active[fault.id] = fault
        p = fault.params
        what = self._apply(fault, p, start=True)
        if fault.kind == "reconnect_storm":
            self._storms[fault.id] = asyncio.create_task(self._storm(self.servers[p["device"]],
                                                                     float(p["reboot_every_s"])),
                                                         name=f"soak_storm_{fault.id}")
        self.link.step(self.clock.now())  # the devices show the new state at once, as a real one would
        self.observe()
        log.info("fault %s started: %s", fault.label, what)
        return what

    async def recover(self, fault: Fault) -> str:
        p = fault.params
        storm = self._storms.pop(fault.id, None)
        if storm is not None:
            storm.cancel()
            await asyncio.gather(storm, return_exceptions=True)
            await self.servers[p["device"]].start()
        what = self._apply(fault, p, start=False)
        self.active.pop(fault.id, None)
        self.link.step(self.clock.now())
        self.observe()
        log.info("fault %s ended: %s", fault.label, what)
        return what

    def _apply(self, fault: Fault, p: Mapping[str, Any], start: bool) -> str:
        kind = fault.kind
        box = self.plant.dso
        battery = self.plant.battery
        if kind == "dso_trip":
            box.set_state("trip" if start else "normal")
            return "DSO box: trip" if start else "DSO box: normal"
        if kind in ("dso_limit", "dso_14a"):
            if start:
                box.set_state("limit", float(p["limit_pct"]))
                return f"DSO box: limit {p['limit_pct']:g} %"
            box.set_state("normal")
            return "DSO box: normal"
        if kind in ("device_silent", "device_exception", "device_garbage"):
            server = self.servers[p["device"]]
            if not start:
                server.heal()
                return f"{p['device']}: answering again"
            if kind == "device_silent":
                server.go_silent()
            elif kind == "device_exception":
                server.answer_exception(int(p["code"]))
            else:
                server.answer_garbage()
            return f"{p['device']}: {kind.removeprefix('device_')}"
        if kind == "reconnect_storm":
            return f"{p['device']}: rebooting every {p['reboot_every_s']} s" if start else f"{p['device']}: stable"
        if kind == "bms_alarm":
            severity = {"info": 0, "warning": 1, "critical": 2, "shutdown": 3}[p["severity"]]
            if p["severity"] == "shutdown":  # the BMS opens its contactors: the pack itself refuses power
                battery.forced_alarm_bits = battery.forced_alarm_bits | ALARM_OVER_TEMPERATURE_TRIP if start \
                    else battery.forced_alarm_bits & ~ALARM_OVER_TEMPERATURE_TRIP
            else:
                self.device("bms").force_alarm(str(p["alarm"]), start)
            self._forced_bms_severity = severity if start else None
            return f"BMS alarm {p['alarm']} ({p['severity']}) {'raised' if start else 'cleared'}"
        if kind == "bms_limit_drop":
            battery.charge_limit_cap_w = p.get("charge_cap_w") if start else None
            battery.discharge_limit_cap_w = p.get("discharge_cap_w") if start else None
            return (f"BMS limits capped ({p['cause']}): charge {p.get('charge_cap_w')} W, "
                    f"discharge {p.get('discharge_cap_w')} W" if start else "BMS limits restored")
        if kind == "meter_spike":
            meter = self.device("meter")
            if start:
                reading = self.plant.sample().grid_power_w + float(p["spike_w"])
                meter.set_value(self._meter_power_register(meter), reading)
                return f"meter reads {reading:.0f} W"
            meter.set_value(self._meter_power_register(meter), None)
            return "meter reads the plant again"
        if kind == "meter_stale":
            meter = self.device("meter")
            if start:
                meter.freeze()
                return "meter readings frozen"
            meter.heal()
            return "meter readings live again"
        if kind == "price_outage":
            self.prices.outage(str(p["mode"]) if start else None)
            return f"price feed: {p['mode']}" if start else "price feed: back"
        if kind == "negative_prices":
            return "negative midday prices today" if start else "prices back to the usual shape"
        # ems_kill and config changes are the runner's: they act on the EMS, not on the plant
        return f"{kind} {'begins' if start else 'ends'}"

    @staticmethod
    def _meter_power_register(meter: DeviceServer) -> str:
        regs = meter.profile.point_registers().get("grid.power_w")
        if not regs:
            raise KeyError(f"{meter.profile.key} has no register for grid.power_w")
        return regs[0].name

    async def _storm(self, server: DeviceServer, every_s: float) -> None:
        """Reboot the device every `every_s`: down for a moment, then up (links drop each time)."""
        while True:
            await server.stop()
            await self.clock.sleep(min(1.0, every_s / 3))
            await server.start()
            await self.clock.sleep(every_s)

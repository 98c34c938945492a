"""The simulator as the runtime sees it: one object that owns the simulated plant in either demo form.

- read directly: the plant is stepped on the clock and publishes its readings on the bus; it is also
  the setpoint sink (only the safety loop calls it);
- behind Modbus (`simulator.serve_modbus`): the plant sits behind real Modbus servers on the configured
  devices' addresses, the pollers read it like hardware, and PV/load (behind the grid meter, measured
  by no device) are published from the plant model.

The runtime asks it for its supervised tasks, its sink, its device names and to apply scripted events;
nothing else in the EMS touches simulator internals.
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Mapping

from ..bus import TelemetryBus
from ..clock import Clock
from ..config.schema import EmsConfig
from ..devices.profile import Profile
from ..state import Measurement
from .events import SimEvent, apply_event, parse_event
from .modbus_devices import DeviceServer, serve_plant, simulated_devices
from .plant import PlantSample, PlantSimulator, resolve_start_epoch_s
from .plant_link import PlantLink
from .runner import SimulatedPlant

log = logging.getLogger(__name__)

__all__ = ["Simulation", "resolve_start_epoch_s"]


class Simulation:
    def __init__(self, cfg: EmsConfig, clock: Clock, bus: TelemetryBus,
                 config: Callable[[], EmsConfig], profiles: Callable[[], Mapping[str, Profile]]):
        self._clock = clock
        self._bus = bus
        self._config = config
        self._profiles = profiles
        self.serve_modbus = cfg.simulator.serve_modbus
        self.direct: SimulatedPlant | None = None if self.serve_modbus else \
            SimulatedPlant(cfg.bess, cfg.simulator, clock, bus)
        self.link: PlantLink | None = PlantLink(PlantSimulator(cfg.bess, cfg.simulator, clock.now())) \
            if self.serve_modbus else None
        self.servers: dict[str, DeviceServer] = {}

    @property
    def plant(self) -> PlantSimulator:
        if self.direct is not None:
            return self.direct.simulator
        assert self.link is not None
        return self.link.plant

    @property
    def sink(self) -> SimulatedPlant | None:
        """The setpoint sink while no PCS device is configured (the directly read plant), else None."""
        return self.direct

    def task_name(self) -> str:
        return "modbus_simulator" if self.serve_modbus else "plant_simulator"

    def task(self) -> Callable[[], Awaitable[None]]:
        return self._serve_devices if self.serve_modbus else self._run_direct

    async def _run_direct(self) -> None:
        assert self.direct is not None
        await self.direct.run()

    async def _serve_devices(self) -> None:
        """The demo's Modbus devices: the simulated plant behind real servers on their configured addresses."""
        assert self.link is not None
        cfg = self._config()
        async with serve_plant(self.link, simulated_devices(cfg.modbus, self._profiles()), self._clock) as servers:
            self.servers = servers
            try:
                await self.link.run(self._clock, cfg.simulator.step_s, on_step=self._publish_unmetered)
            finally:
                self.servers = {}

    def device_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.servers))

    def parse_event(self, body: Any) -> SimEvent:
        """Validate a scripted event (any thread); ApiError 400 naming the field otherwise."""
        return parse_event(body, tuple(self.servers))

    def apply_event(self, event: SimEvent) -> str:
        """Apply on the event loop and step the plant to now, so the event shows on its devices at once."""
        what = apply_event(event, self.plant, self.servers)
        if self.link is not None:
            self.link.step(self._clock.now())
        elif self.direct is not None:
            self.direct.step()
        return what

    def _publish_unmetered(self, sample: PlantSample) -> None:
        """PV and load behind the grid meter: no simulated device measures them, so the plant model does."""
        max_age_s = 3.0 * self._config().simulator.step_s * self._clock.speed
        self._bus.publish({"pv.power_w": Measurement(sample.pv_power_w, sample.ts, "sim", max_age_s),
                           "load.power_w": Measurement(sample.load_power_w, sample.ts, "sim", max_age_s)})

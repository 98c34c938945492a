"""Runs the plant simulator as a subsystem: steps it on the clock and publishes its readings.

It is also the setpoint sink while no real PCS is configured; only the safety loop calls
`apply` / `safe_state`. Readings carry source "sim" and go stale after three missed steps.
"""
from __future__ import annotations

import logging

from ..bus import TelemetryBus
from ..clock import Clock
from ..config.schema import BessConfig, SimulatorConfig
from .plant import PlantSample, PlantSimulator
from ..safety.rules import PowerControlDecision
from ..state import Measurement

log = logging.getLogger(__name__)

_POINTS = {
    "battery.soc_pct": "soc_pct", "battery.soh_pct": "soh_pct", "battery.voltage_v": "voltage_v",
    "battery.current_a": "current_a", "battery.temperature_c": "temperature_c",
    "battery.max_charge_power_w": "max_charge_power_w", "battery.max_discharge_power_w": "max_discharge_power_w",
    "battery.insulation_resistance_kohm": "insulation_resistance_kohm", "battery.status_code": "status_code",
    "battery.status_text": "status_text", "battery.alarms": "alarms",
    "bess.power_w": "bess_power_w", "pv.power_w": "pv_power_w", "load.power_w": "load_power_w",
    "grid.power_w": "grid_power_w", "dso.mode": "dso_mode", "dso.limit_pct": "dso_limit_pct",
}


class SimulatedPlant:
    def __init__(self, bess: BessConfig, sim: SimulatorConfig, clock: Clock, bus: TelemetryBus):
        self.sim_config = sim
        self.clock = clock
        self.bus = bus
        self.simulator = PlantSimulator(bess, sim, clock.now())
        self.setpoint_w = 0.0
        self._last_now = clock.now()
        self._publish(self.simulator.sample())

    async def apply(self, decision: PowerControlDecision) -> None:
        """The simulated PCS: disabled on a shutdown order, otherwise it follows the setpoint."""
        self.setpoint_w = 0.0 if decision.remote_shutdown_requested else float(decision.setpoint_w)

    async def safe_state(self) -> None:
        self.setpoint_w = 0.0

    async def run(self) -> None:
        while True:  # step first: readings are fresh from the task's start, however long start-up took
            self.step()
            await self.clock.sleep(self.sim_config.step_s)

    def step(self) -> PlantSample:
        now = self.clock.now()
        dt_s = max(0.0, now - self._last_now)
        self._last_now = now
        sample = self.simulator.step(now, dt_s, self.setpoint_w)
        self._publish(sample)
        return sample

    def _publish(self, sample: PlantSample) -> None:
        max_age_s = 3.0 * self.sim_config.step_s * self.clock.speed
        self.bus.publish({path: Measurement(getattr(sample, attr), sample.ts, "sim", max_age_s)
                          for path, attr in _POINTS.items()})

"""The simulated plant between the simulated Modbus devices: samples out to their registers, the PCS's
command (remote enable, setpoint, grid setpoint, limit %) in, so the simulated battery really moves."""
from __future__ import annotations

from typing import Callable

from ..clock import Clock
from ..config.schema import BessConfig, SimulatorConfig
from .plant import PlantSample, PlantSimulator


class PlantLink:
    """The simulated plant between the simulated devices: samples out, the PCS's command in.

    The PCS registers set `remote_enabled`, `setpoint_w` (> 0 discharge), `grid_setpoint_w` (> 0 import;
    when set, the battery covers load - PV - grid setpoint as a Victron ESS does) and `limit_pct` of the
    rated power. Without remote control the battery is asked for 0 W. Whoever owns the link steps it:
    `step()` in tests, `run()` in a process.
    """

    def __init__(self, plant: PlantSimulator):
        self.plant = plant
        bess = plant.bess_config
        self.rated_power_w = 1000.0 * max(bess.max_charge_power_kw, bess.max_discharge_power_kw)
        self.remote_enabled = False
        self.setpoint_w = 0.0
        self.grid_setpoint_w: float | None = None
        self.limit_pct = 100.0

    @classmethod
    def from_config(cls, bess: BessConfig | None = None, sim: SimulatorConfig | None = None,
                    start_epoch_s: float = 0.0) -> "PlantLink":
        return cls(PlantSimulator(bess or BessConfig(), sim or SimulatorConfig(), start_epoch_s))

    def sample(self) -> PlantSample:
        return self.plant.sample()

    def requested_w(self, now_s: float | None = None) -> float:
        """The battery power the PCS is commanded to at plant time `now_s` (> 0 discharge)."""
        if not self.remote_enabled:
            return 0.0
        if self.grid_setpoint_w is not None:  # the inverter regulates its grid meter to the setpoint
            t = self.plant.now_s if now_s is None else now_s
            want = self.plant.load_power_w(t) - self.plant.pv_power_w(t) - self.grid_setpoint_w
        else:
            want = self.setpoint_w
        cap = self.rated_power_w * min(100.0, max(0.0, self.limit_pct)) / 100.0
        return max(-cap, min(cap, want))

    def step(self, now_s: float) -> PlantSample:
        """Advance the plant to plant time `now_s` with the current command."""
        dt_s = max(0.0, now_s - self.plant.now_s)
        return self.plant.step(now_s, dt_s, self.requested_w(now_s))

    async def run(self, clock: Clock, step_s: float = 1.0,
                  on_step: Callable[[PlantSample], None] | None = None) -> None:
        """Step the plant on the clock until cancelled; `on_step` sees each new sample (e.g. to publish the
        points no simulated device measures, such as PV and load behind a grid meter)."""
        while True:  # step first: the devices show fresh readings from the task's start
            sample = self.step(clock.now())
            if on_step is not None:
                on_step(sample)
            await clock.sleep(step_s)

"""The simulated plant between the simulated Modbus devices: samples out to their registers, the PCS's
command (remote enable, setpoint, grid setpoint, limit %) in, so the simulated battery really moves.

The PCS side also carries the inverter's own comm-loss fallback, as field PCSs have one (Victron 60 s,
SMA 60 s, FoxESS ~35 s): with `comm_loss_timeout_s` set, a PCS under remote control that hears nothing
from its EMS (`contact()`, called by the simulated PCS on every heartbeat write) for that long goes to
0 W by itself until the EMS is heard again. Off (None) by default, as before.
"""
from __future__ import annotations

import logging
from typing import Callable

from ..clock import Clock
from ..config.schema import BessConfig, SimulatorConfig
from .plant import PlantSample, PlantSimulator

log = logging.getLogger(__name__)


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
        self.comm_loss_timeout_s: float | None = None
        self.last_contact_ts: float | None = None
        self._fallback_logged = False
        # Told (with plant time) whenever the PCS's command changes: an observer of the PCS's real output.
        self.on_command: Callable[[float], None] | None = None
        self._last_command: tuple[object, ...] | None = None

    @classmethod
    def from_config(cls, bess: BessConfig | None = None, sim: SimulatorConfig | None = None,
                    start_epoch_s: float = 0.0) -> "PlantLink":
        return cls(PlantSimulator(bess or BessConfig(), sim or SimulatorConfig(), start_epoch_s))

    def sample(self) -> PlantSample:
        return self.plant.sample()

    def contact(self, now_s: float) -> None:
        """The EMS was heard (a heartbeat or control write): the comm-loss watchdog starts again."""
        self.last_contact_ts = now_s
        if self._fallback_logged:
            log.info("simulated PCS hears its EMS again: remote control resumed")
            self._fallback_logged = False

    def fallback_active(self, now_s: float) -> bool:
        """True while the PCS's own comm-loss fallback (0 W) is in force at plant time `now_s`."""
        if not self.remote_enabled or self.comm_loss_timeout_s is None or self.last_contact_ts is None:
            return False
        active = now_s - self.last_contact_ts > self.comm_loss_timeout_s
        if active and not self._fallback_logged:
            log.info("simulated PCS: no EMS contact for %.0f s: own fallback to 0 W", self.comm_loss_timeout_s)
            self._fallback_logged = True
        return active

    def commanded(self, now_s: float) -> None:
        """A write reached the PCS (called by the simulated PCS): `on_command` hears of it when the PCS's
        output changes (a heartbeat alone changes nothing, unless it ends a fallback)."""
        key = (self.remote_enabled, self.setpoint_w, self.grid_setpoint_w, self.limit_pct, self.fallback_active(now_s))
        if key != self._last_command:
            self._last_command = key
            if self.on_command is not None:
                self.on_command(now_s)

    def requested_w(self, now_s: float | None = None) -> float:
        """The battery power the PCS is commanded to at plant time `now_s` (> 0 discharge)."""
        t = self.plant.now_s if now_s is None else now_s
        if not self.remote_enabled or self.fallback_active(t):
            return 0.0
        if self.grid_setpoint_w is not None:  # the inverter regulates its grid meter to the setpoint
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

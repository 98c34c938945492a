"""The simulated plant: PV, a building load, the battery and the DSO box behind one grid meter.

It replaces the field devices when no hardware is attached. It never chooses setpoints — the EMS's
safety loop passes one into every `step()` — so the EMS is exercised exactly as on site.
The grid meter closes the balance: grid = load − PV − battery, exactly, every step.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime

from ..config.schema import BessConfig, SimulatorConfig
from .battery import BatteryModel
from .dso import DsoBox
from ..data.profiles import load_profile, pv_profile

log = logging.getLogger(__name__)

_MASK64 = (1 << 64) - 1

# Household appliances switching on and off at the reference size (4000 kWh/a):
# (power_w, cycle_s, mean on-fraction). Their mean is subtracted so the profile's energy is kept.
_APPLIANCES = ((90.0, 2400.0, 0.40),   # fridge compressor
               (70.0, 3100.0, 0.35),   # freezer
               (120.0, 1700.0, 0.30),  # media / computer
               (60.0, 900.0, 0.50))    # lights, small loads
_JITTER_W = 15.0
_NOISE_REFERENCE_KWH = 4000.0


def _unit_hash(seed: int, a: int, b: int) -> float:
    """Deterministic uniform [0, 1) from three integers (splitmix64 finaliser); cheap, no RNG state."""
    x = (seed * 0x9E3779B97F4A7C15 + a * 0xBF58476D1CE4E5B9 + b * 0x94D049BB133111EB + 0x2545F4914F6CDD1D) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    x ^= x >> 31
    return (x >> 11) / float(1 << 53)


def load_noise_w(epoch_s: float, seed: int) -> float:
    """Zero-mean appliance switching plus a little jitter, in W at the 4000 kWh/a reference size.

    A pure function of time and seed, so the same plant time always gives the same load no matter
    how the simulation is stepped. Bounded to about ±200 W.
    """
    total = 0.0
    for k, (power_w, cycle_s, duty) in enumerate(_APPLIANCES):
        phase_s = _unit_hash(seed, k, -1) * cycle_s
        pos = (epoch_s + phase_s) / cycle_s
        n = math.floor(pos)
        on_fraction = min(0.95, duty * (0.5 + _unit_hash(seed, k, n)))
        on = (pos - n) < on_fraction
        total += power_w * ((1.0 if on else 0.0) - duty)
    total += _JITTER_W * (2.0 * _unit_hash(seed, 99, math.floor(epoch_s * 10.0)) - 1.0)
    return total


def resolve_start_epoch_s(sim: SimulatorConfig, now_s: float) -> float:
    """`sim.start` (ISO with offset) as epoch seconds, or `now_s` when it is null."""
    if sim.start is None:
        return now_s
    return datetime.fromisoformat(sim.start).timestamp()


@dataclass(frozen=True)
class PlantSample:
    """One consistent snapshot of the plant. Battery power > 0 = discharging, grid > 0 = import;
    current_a > 0 = charging (BMS convention)."""

    ts: float
    pv_power_w: float
    load_power_w: float
    bess_power_w: float
    grid_power_w: float
    soc_pct: float
    soh_pct: float
    voltage_v: float
    current_a: float
    temperature_c: float
    max_charge_power_w: float
    max_discharge_power_w: float
    insulation_resistance_kohm: float
    status_code: int
    status_text: str
    alarm_bits: int
    alarms: tuple[str, ...]
    dso_mode: str
    dso_limit_pct: float


class PlantSimulator:
    """PV + load + battery + DSO box, advanced by the caller in plant time."""

    def __init__(self, bess: BessConfig, sim: SimulatorConfig, start_epoch_s: float):
        self.bess_config = bess
        self.sim_config = sim
        self.start_epoch_s = float(start_epoch_s)
        self.now_s = self.start_epoch_s
        self.pv = pv_profile(sim.pv_peak_kwp)
        self.load = load_profile(sim.load_profile, sim.annual_load_kwh)
        self._noise_scale = sim.annual_load_kwh / _NOISE_REFERENCE_KWH
        self.battery = BatteryModel(
            nominal_capacity_kwh=bess.capacity_kwh,
            rated_charge_power_w=bess.max_charge_power_kw * 1000.0,
            rated_discharge_power_w=bess.max_discharge_power_kw * 1000.0,
            charge_efficiency=bess.charge_efficiency,
            discharge_efficiency=bess.discharge_efficiency,
            soc_pct=sim.initial_soc_pct,
            soh_pct=sim.soh_pct,
            nominal_voltage_v=sim.pack_nominal_voltage_v,
            ambient_temperature_c=sim.ambient_temperature_c,
        )
        self.dso = DsoBox(sim.dso_script, self.start_epoch_s)
        self._sample = self._snapshot(self.now_s, 0.0)
        log.info("plant simulator: %s load %.0f kWh/a, PV %.1f kWp, BESS %.1f kWh / %.1f kW, SoC %.1f %%",
                 sim.load_profile, sim.annual_load_kwh, sim.pv_peak_kwp, bess.capacity_kwh,
                 bess.max_discharge_power_kw, sim.initial_soc_pct)

    def pv_power_w(self, epoch_s: float) -> float:
        return max(0.0, self.pv.value_at(epoch_s) * 1000.0)

    def load_power_w(self, epoch_s: float) -> float:
        base_w = self.load.value_at(epoch_s) * 1000.0
        return max(0.0, base_w + self._noise_scale * load_noise_w(epoch_s, self.sim_config.seed))

    def step(self, now_s: float, dt_s: float, setpoint_w: float) -> PlantSample:
        """Advance dt_s of plant time ending at `now_s` with the battery asked for `setpoint_w`
        (> 0 discharge). Returns the new sample; the battery may deliver less than asked."""
        bess_power_w = self.battery.step(setpoint_w, dt_s)
        self.now_s = float(now_s)
        self.dso.update(self.now_s)
        self._sample = self._snapshot(self.now_s, bess_power_w)
        return self._sample

    def sample(self) -> PlantSample:
        """The last sample, without stepping."""
        return self._sample

    def _snapshot(self, ts: float, bess_power_w: float) -> PlantSample:
        b = self.battery
        pv_w = self.pv_power_w(ts)
        load_w = self.load_power_w(ts)
        return PlantSample(
            ts=ts,
            pv_power_w=pv_w,
            load_power_w=load_w,
            bess_power_w=bess_power_w,
            grid_power_w=load_w - pv_w - bess_power_w,
            soc_pct=b.soc_pct,
            soh_pct=b.soh_pct,
            voltage_v=b.voltage_v,
            current_a=b.current_a,
            temperature_c=b.temperature_c,
            max_charge_power_w=b.max_charge_power_w,
            max_discharge_power_w=b.max_discharge_power_w,
            insulation_resistance_kohm=b.insulation_resistance_kohm,
            status_code=b.status_code,
            status_text=b.status_text,
            alarm_bits=b.alarm_bits,
            alarms=b.alarms,
            dso_mode=self.dso.mode,
            dso_limit_pct=self.dso.limit_pct,
        )


__all__ = ["PlantSample", "PlantSimulator", "load_noise_w", "resolve_start_epoch_s"]

"""A pure battery pack model: what a BMS would report, good enough to exercise the EMS.

No wall-clock, no I/O: `step()` advances the state by `dt_s`. Efficiencies cover every loss (PCS
and cells) for the energy accounting; the cells' I²R share only heats the pack. Sign convention:
AC power > 0 = discharging. Pack current follows the Hithium BMS instead: current > 0 = charging.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from ..battery_energy import battery_step
from ..safety.alarms import STANDARD_ALARMS

log = logging.getLogger(__name__)

STATUS_STANDBY = 0
STATUS_CHARGING = 1
STATUS_DISCHARGING = 2
STATUS_FAULT = 3
STATUS_TEXTS = {
    STATUS_STANDBY: "standby",
    STATUS_CHARGING: "charging",
    STATUS_DISCHARGING: "discharging",
    STATUS_FAULT: "fault",
}

ALARM_OVER_TEMPERATURE = 1 << 0
ALARM_UNDER_TEMPERATURE = 1 << 1
ALARM_SOC_LOW = 1 << 2
ALARM_SOC_HIGH = 1 << 3
ALARM_INSULATION_LOW = 1 << 4
ALARM_OVER_TEMPERATURE_TRIP = 1 << 5
ALARM_BITS = {bit: text for bit, (text, _severity) in STANDARD_ALARMS.items()}
# Alarms that put the pack into STATUS_FAULT with zero power limits, as a real BMS opens its contactors.
FAULT_ALARMS = sum(1 << bit for bit, (_text, severity) in STANDARD_ALARMS.items() if severity == "shutdown")

# Derating corners (°C / %). Charging stops at 0 °C (LFP must not be charged when freezing);
# discharging is allowed colder.
TEMP_DERATE_HIGH_START_C = 45.0
TEMP_DERATE_HIGH_ZERO_C = 55.0
TEMP_DERATE_LOW_START_C = 5.0
TEMP_CHARGE_ZERO_C = 0.0
TEMP_DISCHARGE_ZERO_C = -20.0
SOC_CHARGE_TAPER_START_PCT = 90.0
SOC_DISCHARGE_TAPER_START_PCT = 10.0
SOC_LOW_ALARM_PCT = 5.0
SOC_HIGH_ALARM_PCT = 98.0
INSULATION_LOW_KOHM = 100.0
STANDBY_THRESHOLD_W = 1.0

# LFP-like open-circuit voltage relative to nominal: flat in the middle, knees at both ends.
_OCV_CURVE = ((0.0, 0.86), (5.0, 0.94), (10.0, 0.97), (30.0, 0.99), (50.0, 1.0), (70.0, 1.01),
              (90.0, 1.03), (95.0, 1.045), (100.0, 1.08))

_J_PER_KWH = 3.6e6


def _ramp(x: float, zero_at: float, full_at: float) -> float:
    """0 at `zero_at`, 1 at `full_at`, linear in between, clamped."""
    if full_at == zero_at:
        return 1.0 if x >= full_at else 0.0
    return min(1.0, max(0.0, (x - zero_at) / (full_at - zero_at)))


def ocv_ratio(soc_pct: float) -> float:
    """Open-circuit voltage / nominal voltage at `soc_pct` (piecewise linear)."""
    s = min(100.0, max(0.0, soc_pct))
    for (s0, r0), (s1, r1) in zip(_OCV_CURVE, _OCV_CURVE[1:]):
        if s <= s1:
            return r0 + (r1 - r0) * (s - s0) / (s1 - s0)
    return _OCV_CURVE[-1][1]


@dataclass
class BatteryModel:
    """Pack state plus BMS behaviour (limits, status, alarms).

    `current_a` is positive when CHARGING (Hithium BMS convention), while the AC power returned by
    `step()` is positive when DISCHARGING (EMS convention). Energy counters are AC-side
    (`energy_charged_kwh`, `energy_discharged_kwh`); `losses_kwh` is everything the efficiencies
    took, so stored-energy change == charged·η_c − discharged/η_d.
    """

    nominal_capacity_kwh: float
    rated_charge_power_w: float
    rated_discharge_power_w: float
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soc_pct: float = 50.0
    soh_pct: float = 100.0
    nominal_voltage_v: float = 400.0
    ambient_temperature_c: float = 25.0
    temperature_c: float = math.nan  # NaN (or None) = start at ambient
    thermal_time_constant_s: float = 3600.0
    # Fraction of power lost as cell I²R heat at a 1C rate; sets the internal resistance.
    cell_loss_fraction_at_1c: float = 0.02
    # Heat capacity per nominal kWh (LFP packs are roughly 6-7 kg/kWh at ~1 kJ/(kg·K)).
    heat_capacity_j_per_k_per_kwh: float = 6500.0
    insulation_base_kohm: float = 2000.0
    forced_alarm_bits: int = 0  # for fault-injection tests; OR-ed into alarm_bits
    # For fault injection: a BMS that lowers its limits at once (cold cells, imbalance, a high-SoC
    # calibration); None = no cap. The physics obeys the capped limit, as the BMS reports it.
    charge_limit_cap_w: float | None = None
    discharge_limit_cap_w: float | None = None

    voltage_v: float = field(init=False, default=0.0)
    current_a: float = field(init=False, default=0.0)
    power_w: float = field(init=False, default=0.0)
    elapsed_s: float = field(init=False, default=0.0)
    energy_charged_kwh: float = field(init=False, default=0.0)
    energy_discharged_kwh: float = field(init=False, default=0.0)
    losses_kwh: float = field(init=False, default=0.0)
    status_code: int = field(init=False, default=STATUS_STANDBY)
    alarm_bits: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.nominal_capacity_kwh <= 0:
            raise ValueError("nominal_capacity_kwh must be > 0")
        if not (0 < self.charge_efficiency <= 1 and 0 < self.discharge_efficiency <= 1):
            raise ValueError("efficiencies must be in (0, 1]")
        self.soc_pct = min(100.0, max(0.0, float(self.soc_pct)))
        if self.temperature_c is None or math.isnan(self.temperature_c):
            self.temperature_c = float(self.ambient_temperature_c)
        self.voltage_v = self.open_circuit_voltage_v
        self._update_status()

    # --- derived quantities -------------------------------------------------------------------
    @property
    def capacity_kwh(self) -> float:
        """Usable capacity now: nominal × SoH."""
        return self.nominal_capacity_kwh * self.soh_pct / 100.0

    @property
    def stored_energy_kwh(self) -> float:
        return self.capacity_kwh * self.soc_pct / 100.0

    @property
    def open_circuit_voltage_v(self) -> float:
        return self.nominal_voltage_v * ocv_ratio(self.soc_pct)

    @property
    def internal_resistance_ohm(self) -> float:
        """R such that I²R at a 1C rate is `cell_loss_fraction_at_1c` of the power."""
        p_1c_w = self.nominal_capacity_kwh * 1000.0
        return self.cell_loss_fraction_at_1c * self.nominal_voltage_v ** 2 / p_1c_w

    @property
    def insulation_resistance_kohm(self) -> float:
        """High and steady, with a slow deterministic wobble (±0.5 %) so the value looks alive."""
        return self.insulation_base_kohm * (1.0 + 0.005 * math.sin(2 * math.pi * self.elapsed_s / 5400.0))

    def _temperature_factor(self, zero_cold_c: float) -> float:
        t = self.temperature_c
        hot = _ramp(t, TEMP_DERATE_HIGH_ZERO_C, TEMP_DERATE_HIGH_START_C)
        cold = _ramp(t, zero_cold_c, TEMP_DERATE_LOW_START_C)
        return min(hot, cold)

    @property
    def max_charge_power_w(self) -> float:
        """BMS charge limit: rated × SoC taper (90 → 100 %) × temperature derating, capped; 0 on fault."""
        if self.alarm_bits & FAULT_ALARMS:
            return 0.0
        soc_f = _ramp(self.soc_pct, 100.0, SOC_CHARGE_TAPER_START_PCT)
        limit = self.rated_charge_power_w * soc_f * self._temperature_factor(TEMP_CHARGE_ZERO_C)
        return limit if self.charge_limit_cap_w is None else min(limit, max(0.0, self.charge_limit_cap_w))

    @property
    def max_discharge_power_w(self) -> float:
        """BMS discharge limit: rated × SoC taper (10 → 0 %) × temperature derating, capped; 0 on fault."""
        if self.alarm_bits & FAULT_ALARMS:
            return 0.0
        soc_f = _ramp(self.soc_pct, 0.0, SOC_DISCHARGE_TAPER_START_PCT)
        limit = self.rated_discharge_power_w * soc_f * self._temperature_factor(TEMP_DISCHARGE_ZERO_C)
        return limit if self.discharge_limit_cap_w is None else min(limit, max(0.0, self.discharge_limit_cap_w))

    @property
    def status_text(self) -> str:
        return STATUS_TEXTS[self.status_code]

    @property
    def alarms(self) -> tuple[str, ...]:
        return tuple(text for bit, text in ALARM_BITS.items() if self.alarm_bits & (1 << bit))

    # --- dynamics -----------------------------------------------------------------------------
    def step(self, requested_power_w: float, dt_s: float) -> float:
        """Apply a power request for dt_s; returns the AC power actually delivered (> 0 discharging).

        The request is clamped to the BMS limits at the start of the step and to the energy left
        (stored energy for discharging, headroom for charging), so SoC stays within 0–100 %.
        """
        if dt_s < 0:
            raise ValueError("dt_s must be >= 0")
        p = float(requested_power_w)
        if not math.isfinite(p):
            p = 0.0
        # The energy step in J, W and s: the request comes back unchanged unless a limit cuts it.
        stored_j = self.stored_energy_kwh * _J_PER_KWH
        capacity_j = self.capacity_kwh * _J_PER_KWH
        p, new_j = battery_step(stored_j, p, dt_s, min_energy=0.0, max_energy=capacity_j,
                                max_charge=self.max_charge_power_w, max_discharge=self.max_discharge_power_w,
                                charge_efficiency=self.charge_efficiency,
                                discharge_efficiency=self.discharge_efficiency)

        ac_kwh = abs(p) * dt_s / _J_PER_KWH
        if p > 0:
            stored_delta_kwh = -ac_kwh / self.discharge_efficiency
            self.energy_discharged_kwh += ac_kwh
            self.losses_kwh += -stored_delta_kwh - ac_kwh
        elif p < 0:
            stored_delta_kwh = ac_kwh * self.charge_efficiency
            self.energy_charged_kwh += ac_kwh
            self.losses_kwh += ac_kwh - stored_delta_kwh
        else:
            stored_delta_kwh = 0.0
        if new_j != stored_j:
            self.soc_pct = min(100.0, max(0.0, new_j / capacity_j * 100.0))

        # DC power into the cells (> 0 charging) -> current via OCV, then terminal voltage with IR.
        dc_w = stored_delta_kwh * _J_PER_KWH / dt_s if dt_s > 0 else 0.0
        ocv = self.open_circuit_voltage_v
        r = self.internal_resistance_ohm
        self.current_a = dc_w / ocv if ocv > 0 else 0.0
        self.voltage_v = ocv + self.current_a * r
        self.power_w = p

        # First-order thermal model, solved exactly so any dt is stable.
        heat_w = self.current_a ** 2 * r
        c_th = self.heat_capacity_j_per_k_per_kwh * self.nominal_capacity_kwh
        r_th = self.thermal_time_constant_s / c_th
        t_ss = self.ambient_temperature_c + heat_w * r_th
        self.temperature_c = t_ss + (self.temperature_c - t_ss) * math.exp(-dt_s / self.thermal_time_constant_s)

        self.elapsed_s += dt_s
        self._update_status()
        return p

    def _update_status(self) -> None:
        bits = self.forced_alarm_bits
        t = self.temperature_c
        if t >= TEMP_DERATE_HIGH_START_C:
            bits |= ALARM_OVER_TEMPERATURE
        if t >= TEMP_DERATE_HIGH_ZERO_C:
            bits |= ALARM_OVER_TEMPERATURE_TRIP
        if t < TEMP_DERATE_LOW_START_C:
            bits |= ALARM_UNDER_TEMPERATURE
        if self.soc_pct <= SOC_LOW_ALARM_PCT:
            bits |= ALARM_SOC_LOW
        if self.soc_pct >= SOC_HIGH_ALARM_PCT:
            bits |= ALARM_SOC_HIGH
        if self.insulation_resistance_kohm < INSULATION_LOW_KOHM:
            bits |= ALARM_INSULATION_LOW
        new_faults = bits & FAULT_ALARMS & ~self.alarm_bits
        if new_faults:
            log.warning("battery fault: %s", ", ".join(ALARM_BITS[b] for b in ALARM_BITS if new_faults & (1 << b)))
        self.alarm_bits = bits
        if bits & FAULT_ALARMS:
            self.status_code = STATUS_FAULT
        elif self.power_w > STANDBY_THRESHOLD_W:
            self.status_code = STATUS_DISCHARGING
        elif self.power_w < -STANDBY_THRESHOLD_W:
            self.status_code = STATUS_CHARGING
        else:
            self.status_code = STATUS_STANDBY

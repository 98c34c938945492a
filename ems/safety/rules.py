"""Which battery setpoint is safe right now: a pure function of the plant state, the request and config.

Rules, in priority order (the first ones win):
1. Missing or stale inputs the decision needs (SoC, BMS limits, grid and BESS power; the DSO state when
   power control is on) → 0 W, mode "safety". Unknown never means "not restricted".
2. DSO trip → 0 W, mode "shutdown".
3. DSO limit → |discharge| ≤ limit % of rated power; charging keeps at least the §14a minimum.
4. BMS charge/discharge limits and the configured inverter ratings.
5. SoC window: no discharge at or below min SoC, no charge at or above max SoC.
6. Grid connection: import ≤ max_power_kw, export ≤ max_feedin_kw after the new setpoint.
Sign convention: setpoint > 0 = discharge, grid > 0 = import.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config.schema import BessConfig, GridConnectionConfig, PowerControlConfig
from ..state import PlantState

Mode = Literal["normal", "safety", "shutdown"]

REQUIRED_POINTS = ("battery.soc_pct", "battery.max_charge_power_w", "battery.max_discharge_power_w",
                   "grid.power_w", "bess.power_w")


@dataclass(frozen=True)
class SafetyDecision:
    setpoint_w: float
    requested_w: float
    mode: Mode
    reasons: tuple[str, ...]
    limit_pct: float  # the effective DSO limit in force (100 = unrestricted)


def decide(state: PlantState, requested_w: float, now: float, bess: BessConfig,
           power_control: PowerControlConfig, grid: GridConnectionConfig) -> SafetyDecision:
    values = {p: state.value(p, now) for p in REQUIRED_POINTS}
    missing = [p for p, v in values.items() if v is None]
    dso_mode = state.value("dso.mode", now)
    dso_limit_pct = state.value("dso.limit_pct", now)
    if power_control.enabled and dso_mode is None:
        missing.append("dso.mode")
    if missing:
        return SafetyDecision(0.0, requested_w, "safety", tuple(f"no fresh value: {p}" for p in missing), 0.0)

    if power_control.enabled and dso_mode == "trip":
        return SafetyDecision(0.0, requested_w, "shutdown", ("DSO trip",), 0.0)

    mode: Mode = "normal"
    reasons: list[str] = []
    lo_w = -min(values["battery.max_charge_power_w"], bess.max_charge_power_kw * 1000.0)
    hi_w = min(values["battery.max_discharge_power_w"], bess.max_discharge_power_kw * 1000.0)

    limit_pct = 100.0
    if power_control.enabled and dso_mode == "limit":
        limit_pct = 0.0 if dso_limit_pct is None else float(dso_limit_pct)
        rated_w = max(bess.max_charge_power_kw, bess.max_discharge_power_kw) * 1000.0
        hi_w = min(hi_w, rated_w * limit_pct / 100.0)
        charge_floor_w = max(rated_w * limit_pct / 100.0, power_control.min_grid_charge_kw_under_dso_limit * 1000.0)
        lo_w = max(lo_w, -charge_floor_w)
        mode = "safety"
        reasons.append(f"DSO limit {limit_pct:g} %")

    soc = values["battery.soc_pct"]
    if soc <= bess.min_soc_pct:
        hi_w = min(hi_w, 0.0)
    if soc >= bess.max_soc_pct:
        lo_w = max(lo_w, 0.0)

    # What the grid would see with the new setpoint: the rest of the site stays as measured.
    site_w = values["grid.power_w"] + values["bess.power_w"]
    max_import_w = grid.max_power_kw * 1000.0
    max_export_w = (grid.max_feedin_kw if grid.max_feedin_kw is not None else grid.max_power_kw) * 1000.0
    grid_lo_w = site_w - max_import_w  # setpoint below this would import too much
    grid_hi_w = site_w + max_export_w  # setpoint above this would export too much

    setpoint_w = min(max(requested_w, lo_w), hi_w)
    if setpoint_w != requested_w:
        reasons.append("clamped to battery limits")
    if setpoint_w < grid_lo_w or setpoint_w > grid_hi_w:
        # The grid connection outranks the battery's wish; it may still be unreachable (0 W is then safest).
        clamped = min(max(setpoint_w, grid_lo_w), grid_hi_w)
        setpoint_w = min(max(clamped, min(lo_w, 0.0)), max(hi_w, 0.0))
        mode = "safety"
        reasons.append("grid connection limit")
    return SafetyDecision(setpoint_w, requested_w, mode, tuple(reasons), limit_pct)

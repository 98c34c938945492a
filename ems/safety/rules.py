"""Which battery setpoint is safe right now: a pure function of the plant state, the request and config.

Rules, in priority order (the first ones win):
1. Missing, stale (by the reading's own max age or `stale_timeout_s`) or non-finite inputs the decision
   needs (SoC, BMS limits, grid and BESS power) → 0 W, mode "safety". Unknown never means "not
   restricted". A lost or garbled DSO state (power control on) applies `dso_comm_loss_limit_pct`.
2. DSO trip → 0 W, mode "shutdown".
3. DSO limit → |discharge| ≤ limit % of rated power; charging keeps at least the §14a minimum.
4. BMS charge/discharge limits and the configured inverter ratings.
5. SoC window: no discharge at or below min SoC, no charge at or above max SoC.
6. Grid connection: import ≤ max_power_kw, export ≤ max_feedin_kw after the new setpoint.
Sign convention: setpoint > 0 = discharge, grid > 0 = import.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

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


DSO_MODES = ("normal", "limit", "trip")


def _fresh(state: PlantState, path: str, now: float, max_age_s: float) -> Any:
    """The value at `path` if it is fresh by its own max age and by the configured stale timeout."""
    m = getattr(getattr(state, path.partition(".")[0]), path.partition(".")[2])
    if m is None or m.is_stale(now) or now - m.ts > max_age_s:
        return None
    return m.value


def _number(value: Any) -> float | None:
    """A finite number, or None: NaN and infinities are unknowns, never "no restriction"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def decide(state: PlantState, requested_w: float, now: float, bess: BessConfig,
           power_control: PowerControlConfig, grid: GridConnectionConfig) -> SafetyDecision:
    stale_s = power_control.stale_timeout_s
    values = {p: _number(_fresh(state, p, now, stale_s)) for p in REQUIRED_POINTS}
    missing = [p for p, v in values.items() if v is None]
    dso_mode = _fresh(state, "dso.mode", now, stale_s)
    dso_limit_pct = _number(_fresh(state, "dso.limit_pct", now, stale_s))
    dso_lost = power_control.enabled and dso_mode not in DSO_MODES
    if missing:
        if dso_lost:
            missing.append("dso.mode")
        return SafetyDecision(0.0, _number(requested_w) or 0.0, "safety",
                              tuple(f"no fresh value: {p}" for p in missing), 0.0)
    request = _number(requested_w)
    if request is None:
        return SafetyDecision(0.0, 0.0, "safety", ("request is not a finite number",), 0.0)
    requested_w = request
    if power_control.enabled and dso_mode == "trip":
        return SafetyDecision(0.0, requested_w, "shutdown", ("DSO trip",), 0.0)

    mode: Mode = "normal"
    reasons: list[str] = []
    lo_w = -min(max(0.0, values["battery.max_charge_power_w"]), bess.max_charge_power_kw * 1000.0)
    hi_w = min(max(0.0, values["battery.max_discharge_power_w"]), bess.max_discharge_power_kw * 1000.0)

    limit_pct = 100.0
    rated_w = max(bess.max_charge_power_kw, bess.max_discharge_power_kw) * 1000.0
    if dso_lost:
        # Lost or garbled control box: the comm-loss limit applies both ways (0 % unless configured).
        limit_pct = power_control.dso_comm_loss_limit_pct
        hi_w = min(hi_w, rated_w * limit_pct / 100.0)
        lo_w = max(lo_w, -rated_w * limit_pct / 100.0)
        mode = "safety"
        reasons.append("no fresh value: dso.mode" if dso_mode is None else f"unknown DSO mode {dso_mode!r}")
    elif power_control.enabled and dso_mode == "limit":
        limit_pct = 0.0 if dso_limit_pct is None else min(100.0, max(0.0, dso_limit_pct))
        hi_w = min(hi_w, rated_w * limit_pct / 100.0)
        # §14a EnWG: a dimming order must leave the minimum charging power available.
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

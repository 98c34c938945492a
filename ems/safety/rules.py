"""Which battery setpoint is safe right now: a pure function of the plant state, the request and config.

Rules, in priority order (the first ones win):
1. Power control off: the DSO box is ignored (and said so); every other rule still applies.
2. A configured device offline, or a missing, stale (by the reading's own max age or
   `stale_timeout_s`) or non-finite input the decision needs (SoC, BMS limits, grid and BESS power;
   BMS current limits and pack voltage when the BMS reports them), or a non-finite request → 0 W,
   "safety". Unknown never means "not restricted". A lost or garbled DSO state (power control on)
   applies `dso_comm_loss_limit_pct` (0 % by default) and is "safety" too.
3. DSO trip (power control on) → 0 W, "shutdown", the PCS must be disabled. It outranks rule 2:
   whatever else is unknown, a shutdown order still disables the PCS.
4. Safety alarms: BMS alarms at or above `safety_alarm_severity`, insulation resistance below
   `min_insulation_resistance_kohm`, battery temperature above `max_battery_temperature_c` → 0 W,
   "safety". These readings are optional; once reported they must be fresh.
5. DSO limit → |discharge| ≤ limit % of the rated power; charging keeps at least the §14a minimum.
6. BMS charge/discharge power (and current × pack voltage) limits and the configured ratings.
7. SoC window: no discharge at or below min SoC, no charge at or above max SoC.
8. Feed-in limitation (`ems.safety.feedin`): the export after the new setpoint stays within the limit;
   discharging is reduced first, then the battery charges (within rules 5-7) to absorb the excess.
   What it cannot absorb is `pv_curtailment_w`, for the PV inverter to shed.
9. Grid connection: import ≤ max_power_kw, export ≤ max_feedin_kw after the new setpoint, from the
   measured site power (grid + battery), so the battery may have to act against the request.
The state is "limited" whenever a limit changed the request or binds at the grid point, or a DSO
limit is in force; "normal" otherwise. Sign convention: setpoint > 0 = discharge, grid > 0 = import.
Every reason is a `Reason` (`ems.safety.reasons`): a code to branch on, the text people read, details.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import time
from typing import Any, Literal

from ..config.schema import BessConfig, FeedinLimitationConfig, GridConnectionConfig, PowerControlConfig
from ..localtime import to_minutes_of_day
from ..state import PlantState
from .alarms import safety_alarms
from .feedin import export_limit_w as feedin_export_limit_w
from .feedin import feedin_limit_pct
from .reasons import DetailValue, Reason, ReasonCode

State = Literal["normal", "limited", "safety", "shutdown"]

REQUIRED_POINTS = ("battery.soc_pct", "battery.max_charge_power_w", "battery.max_discharge_power_w",
                   "grid.power_w", "bess.power_w")
# BMS current limits count only when the BMS reports them (a point the plant state may carry).
CURRENT_LIMIT_POINTS = ("battery.max_charge_current_a", "battery.max_discharge_current_a")
DSO_MODES = ("normal", "limit", "trip")
CURTAILMENT_RESOLUTION_W = 1e-6


@dataclass(frozen=True)
class DecisionInputs:
    """Everything one decision depends on; `local_time` (the site's wall clock) drives feed-in rules."""

    state: PlantState
    requested_w: float
    now: float
    local_time: time | float  # a time of day, or minutes since local midnight
    bess: BessConfig
    power_control: PowerControlConfig
    grid: GridConnectionConfig
    feedin: FeedinLimitationConfig
    pv_peak_kw: float
    offline_devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class PowerControlDecision:
    """What the PCS gets this cycle and why. The limit fields default to "nothing allowed"."""

    setpoint_w: float  # effective battery setpoint, > 0 = discharge
    requested_w: float  # what the real-time layer asked for (0.0 if it was not finite)
    state: State
    reasons: tuple[Reason, ...]  # every active reason, in priority order
    limit_pct: float  # DSO limit in force (100 = unrestricted; 0 in shutdown and safety)
    limit_w: float = 0.0  # discharge-side limit after every rule (>= 0)
    charge_limit_w: float = 0.0  # charge-side limit after every rule (>= 0)
    export_limit_w: float | None = None  # export limit at the grid point (feed-in or connection)
    remote_shutdown_requested: bool = False  # DSO trip: the PCS must be disabled
    pv_curtailment_w: float = 0.0  # export above the limit the battery cannot absorb

    @property
    def mode(self) -> State:
        """The state, under its earlier name."""
        return self.state

    @property
    def messages(self) -> tuple[str, ...]:
        """The reasons as people read them."""
        return tuple(r.message for r in self.reasons)

    @property
    def codes(self) -> tuple[ReasonCode, ...]:
        """The reasons' codes, for code that branches on them."""
        return tuple(r.code for r in self.reasons)

    def to_json(self) -> dict[str, Any]:
        """For `/api/state` under "power_control"."""
        def w(value: float | None) -> float | None:
            return None if value is None else round(value, 1)
        return {"state": self.state, "requested_w": w(self.requested_w),
                "effective_setpoint_w": w(self.setpoint_w),
                "limit_pct": round(self.limit_pct, 2), "limit_w": w(self.limit_w),
                "charge_limit_w": w(self.charge_limit_w), "export_limit_w": w(self.export_limit_w),
                "pv_curtailment_w": w(self.pv_curtailment_w),
                "remote_shutdown_requested": self.remote_shutdown_requested, "reasons": list(self.messages),
                "reason_codes": [code.value for code in self.codes]}


def _measurement(state: PlantState, path: str) -> Any:
    group, _, name = path.partition(".")
    return getattr(getattr(state, group, None), name, None)


def _fresh(state: PlantState, path: str, now: float, max_age_s: float) -> Any:
    """The value at `path` if it is fresh by its own max age and by the configured stale timeout."""
    m = _measurement(state, path)
    if m is None or m.is_stale(now) or now - m.ts > max_age_s:
        return None
    return m.value


def _number(value: Any) -> float | None:
    """A finite number, or None: NaN and infinities are unknowns, never "no restriction"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _clamp(value: float, lo: float, hi: float) -> float:
    return min(max(value, lo), hi)


def _bound(power_w: float, code: ReasonCode, label: str, side: str, **detail: DetailValue) -> tuple[float, Reason]:
    """A power limit (>= 0) and the reason shown when it binds."""
    power_w = max(0.0, power_w)
    return power_w, Reason(code, f"{label}: {power_w:.0f} W", {"side": side, "limit_w": power_w, **detail})


def _add(reasons: list[Reason], reason: Reason) -> None:
    if all(r.message != reason.message for r in reasons):
        reasons.append(reason)


def _stale(path: str) -> Reason:
    return Reason(ReasonCode.STALE_INPUT, f"no fresh value: {path}", {"point": path})


def _grid_feedin_rating_kw(grid: GridConnectionConfig) -> float:
    return grid.max_feedin_kw if grid.max_feedin_kw is not None else grid.max_power_kw


def _export_limits(inputs: DecisionInputs) -> tuple[float, float | None, float | None]:
    """(export limit at the grid point, feed-in share of it or None, feed-in % or None), from config and time."""
    minute = to_minutes_of_day(inputs.local_time)
    rating_kw = _grid_feedin_rating_kw(inputs.grid)
    feedin_w = feedin_export_limit_w(inputs.feedin, minute, inputs.pv_peak_kw, rating_kw)
    grid_w = rating_kw * 1000.0
    return (grid_w if feedin_w is None else min(grid_w, feedin_w)), feedin_w, feedin_limit_pct(inputs.feedin, minute)


def _equipment_faults(inputs: DecisionInputs) -> list[Reason]:
    """Rule 4 and the optional inputs of rule 2: alarms, insulation, temperature, current limits."""
    state, now, pc = inputs.state, inputs.now, inputs.power_control
    stale_s = pc.stale_timeout_s
    faults: list[Reason] = []
    for path in CURRENT_LIMIT_POINTS:
        if _measurement(state, path) is not None:
            if _number(_fresh(state, path, now, stale_s)) is None:
                faults.append(_stale(path))
            elif _number(_fresh(state, "battery.voltage_v", now, stale_s)) is None:
                _add(faults, _stale("battery.voltage_v"))
    if _measurement(state, "battery.alarms") is not None:
        alarms = _fresh(state, "battery.alarms", now, stale_s)
        found = None if alarms is None else safety_alarms(alarms, pc.safety_alarm_severity)
        if found is None:
            faults.append(_stale("battery.alarms"))
        else:
            faults.extend(Reason(ReasonCode.BMS_ALARM, f"safety alarm: {text}", {"alarm": text}) for text in found)
    if _measurement(state, "battery.insulation_resistance_kohm") is not None:
        kohm = _number(_fresh(state, "battery.insulation_resistance_kohm", now, stale_s))
        if kohm is None:
            faults.append(_stale("battery.insulation_resistance_kohm"))
        elif kohm < pc.min_insulation_resistance_kohm:
            faults.append(Reason(ReasonCode.INSULATION, f"insulation resistance {kohm:g} kΩ below "
                                 f"{pc.min_insulation_resistance_kohm:g} kΩ",
                                 {"kohm": kohm, "min_kohm": pc.min_insulation_resistance_kohm}))
    if _measurement(state, "battery.temperature_c") is not None:
        temp_c = _number(_fresh(state, "battery.temperature_c", now, stale_s))
        if temp_c is None:
            faults.append(_stale("battery.temperature_c"))
        elif temp_c > pc.max_battery_temperature_c:
            faults.append(Reason(ReasonCode.TEMPERATURE, f"battery temperature {temp_c:g} °C above "
                                 f"{pc.max_battery_temperature_c:g} °C",
                                 {"temperature_c": temp_c, "max_c": pc.max_battery_temperature_c}))
    return faults


def _curtailment_w(site_w: float | None, setpoint_w: float, export_limit_w: float) -> float:
    """Export above the limit after `setpoint_w`; 0 when the site power is unknown."""
    if site_w is None:
        return 0.0
    excess_w = (setpoint_w - site_w) - export_limit_w
    return excess_w if excess_w > CURTAILMENT_RESOLUTION_W else 0.0  # float residue is not an order


def decide(inputs: DecisionInputs) -> PowerControlDecision:
    """The rules of the module docstring; any reading or request, however garbled, fails safe, never raises."""
    pc, bess, grid, state, now = inputs.power_control, inputs.bess, inputs.grid, inputs.state, inputs.now
    stale_s = pc.stale_timeout_s
    reasons = [] if pc.enabled else [Reason(ReasonCode.POWER_CONTROL_DISABLED, "power control disabled")]
    request = _number(inputs.requested_w)
    requested_w = 0.0 if request is None else request
    export_limit_w, feedin_w, feedin_pct = _export_limits(inputs)

    values = {p: _number(_fresh(state, p, now, stale_s)) for p in REQUIRED_POINTS}
    site_w = None
    if values["grid.power_w"] is not None and values["bess.power_w"] is not None:
        site_w = values["grid.power_w"] + values["bess.power_w"]  # the site without the battery, > 0 = import
    dso_mode = _fresh(state, "dso.mode", now, stale_s) if pc.enabled else None
    dso_lost = pc.enabled and (not isinstance(dso_mode, str) or dso_mode not in DSO_MODES)
    dso_lost_reason = _stale("dso.mode") if dso_mode is None else \
        Reason(ReasonCode.DSO_UNKNOWN_MODE, f"unknown DSO mode {dso_mode!r}", {"mode": repr(dso_mode)})

    faults = [Reason(ReasonCode.DEVICE_OFFLINE, f"device offline: {name}", {"device": name})
              for name in inputs.offline_devices]
    faults += [_stale(p) for p, v in values.items() if v is None]
    if site_w is not None and not math.isfinite(site_w):
        faults.append(Reason(ReasonCode.SITE_POWER_OUT_OF_RANGE,
                             "site power out of range: grid.power_w + bess.power_w"))
        site_w = None
    if request is None:
        faults.append(Reason(ReasonCode.INVALID_REQUEST, "request is not a finite number"))
    faults += _equipment_faults(inputs)

    def halt(halt_state: State, why: list[Reason], shutdown: bool) -> PowerControlDecision:
        return PowerControlDecision(0.0, requested_w, halt_state, tuple(reasons + why), 0.0, 0.0, 0.0,
                                    export_limit_w, shutdown, _curtailment_w(site_w, 0.0, export_limit_w))

    if pc.enabled and dso_mode == "trip":
        return halt("shutdown", [Reason(ReasonCode.DSO_TRIP, "DSO trip")] + faults, True)
    if faults or request is None or site_w is None:  # (no faults implies both are known)
        return halt("safety", faults + ([dso_lost_reason] if dso_lost else []), False)

    decision_state: State = "normal"
    known = {p: v for p, v in values.items() if v is not None}  # every required point: there was no fault
    # Upper bounds on discharge and on charge (both >= 0), each with the reason shown when it binds.
    bms, rating = ReasonCode.BMS_LIMIT, ReasonCode.INVERTER_RATING
    discharge = [_bound(known["battery.max_discharge_power_w"], bms, "BMS discharge limit", "discharge"),
                 _bound(bess.max_discharge_power_kw * 1000.0, rating, "inverter discharge rating", "discharge")]
    charge = [_bound(known["battery.max_charge_power_w"], bms, "BMS charge limit", "charge"),
              _bound(bess.max_charge_power_kw * 1000.0, rating, "inverter charge rating", "charge")]
    voltage_v = _number(_fresh(state, "battery.voltage_v", now, stale_s))
    for path, bounds, side in ((CURRENT_LIMIT_POINTS[0], charge, "charge"),
                               (CURRENT_LIMIT_POINTS[1], discharge, "discharge")):
        amps = _number(_fresh(state, path, now, stale_s))
        if amps is not None and voltage_v is not None:
            bounds.append(_bound(amps * abs(voltage_v), ReasonCode.BMS_CURRENT_LIMIT,
                                 f"BMS {side} current limit {amps:g} A", side, current_a=amps, voltage_v=voltage_v))

    limit_pct = 100.0
    rated_w = max(bess.max_charge_power_kw, bess.max_discharge_power_kw) * 1000.0
    if dso_lost:
        # Lost or garbled control box: the comm-loss limit applies both ways (0 % unless configured).
        limit_pct = pc.dso_comm_loss_limit_pct
        share_w = rated_w * limit_pct / 100.0
        discharge.append((share_w, dso_lost_reason))
        charge.append((share_w, dso_lost_reason))
        decision_state = "safety"
        reasons.append(dso_lost_reason)
    elif pc.enabled and dso_mode == "limit":
        dso_pct = _number(_fresh(state, "dso.limit_pct", now, stale_s))
        limit_pct = 0.0 if dso_pct is None else _clamp(dso_pct, 0.0, 100.0)
        share_w = rated_w * limit_pct / 100.0
        dso_limit = Reason(ReasonCode.DSO_LIMIT, f"DSO limit {limit_pct:g} %", {"limit_pct": limit_pct})
        discharge.append((share_w, dso_limit))
        # §14a EnWG: a dimming order must leave the minimum charging power available.
        charge.append((max(share_w, pc.min_grid_charge_kw_under_dso_limit * 1000.0), dso_limit))
        decision_state = "limited"
        reasons.append(dso_limit)

    soc = known["battery.soc_pct"]
    if soc <= bess.min_soc_pct:
        discharge.append((0.0, Reason(ReasonCode.SOC_WINDOW, f"SoC {soc:g} % at or below min {bess.min_soc_pct:g} %",
                                      {"side": "discharge", "soc_pct": soc, "min_soc_pct": bess.min_soc_pct})))
    if soc >= bess.max_soc_pct:
        charge.append((0.0, Reason(ReasonCode.SOC_WINDOW, f"SoC {soc:g} % at or above max {bess.max_soc_pct:g} %",
                                   {"side": "charge", "soc_pct": soc, "max_soc_pct": bess.max_soc_pct})))

    hi_w = min(bound for bound, _ in discharge)
    lo_w = -min(bound for bound, _ in charge)
    setpoint_w = _clamp(request, lo_w, hi_w)
    if request > hi_w or request < lo_w:
        for bound, why in (discharge if request > hi_w else charge):
            if bound <= abs(setpoint_w):  # every limit that binds (ties included)
                _add(reasons, why)

    # The grid point: the rest of the site stays as measured, the battery's new setpoint changes it.
    max_import_w = grid.max_power_kw * 1000.0
    grid_lo_w = site_w - max_import_w  # a setpoint below this imports too much
    grid_hi_w = site_w + export_limit_w  # a setpoint above this exports too much
    if setpoint_w > grid_hi_w:
        grid_export_w = _grid_feedin_rating_kw(grid) * 1000.0
        if feedin_w is not None and feedin_w <= grid_export_w:
            reasons.append(Reason(ReasonCode.FEEDIN_LIMIT, f"feed-in limit {feedin_pct:g} % = {feedin_w:.0f} W",
                                  {"limit_pct": feedin_pct, "limit_w": feedin_w}))
        if feedin_w is None or grid_export_w <= feedin_w:
            reasons.append(Reason(ReasonCode.GRID_LIMIT_EXPORT, f"grid connection limit: export {grid_export_w:.0f} W",
                                  {"limit_w": grid_export_w}))
    elif setpoint_w < grid_lo_w:
        reasons.append(Reason(ReasonCode.GRID_LIMIT_IMPORT, f"grid connection limit: import {max_import_w:.0f} W",
                              {"limit_w": max_import_w}))
    binding_at_grid = not grid_lo_w <= setpoint_w <= grid_hi_w
    # The grid limits outrank the request, never the battery's own limits (rules 5-7).
    setpoint_w = _clamp(_clamp(setpoint_w, grid_lo_w, grid_hi_w), lo_w, hi_w)
    curtailment_w = _curtailment_w(site_w, setpoint_w, export_limit_w)
    if curtailment_w > 0.0:
        reasons.append(Reason(ReasonCode.PV_CURTAILMENT, f"PV curtailment {curtailment_w:.0f} W needed",
                              {"curtailment_w": curtailment_w}))

    if decision_state == "normal" and (setpoint_w != request or binding_at_grid):
        decision_state = "limited"
    return PowerControlDecision(
        setpoint_w, request, decision_state, tuple(reasons), limit_pct,
        limit_w=max(0.0, min(hi_w, grid_hi_w)), charge_limit_w=max(0.0, min(-lo_w, -grid_lo_w)),
        export_limit_w=export_limit_w, remote_shutdown_requested=False, pv_curtailment_w=curtailment_w)

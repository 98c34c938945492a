"""The power-control decision: which setpoint reaches the plant, cycle by cycle, and why.

The table reads as the specification: one row per plant situation (readings, config, request) and the
decision the PCS gets. The properties then check the promises for random situations.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ems.config.schema import (BessConfig, FeedinLimitationConfig, FeedinRule, GridConnectionConfig,
                               PowerControlConfig)
from ems.safety.feedin import export_limit_w as feedin_export_w
from ems.safety.reasons import Reason, ReasonCode, limited_category
from ems.safety.rules import DecisionInputs, PowerControlDecision, decide
from ems.state import BatteryState, Measurement, PlantState
from safety_common import DEFAULTS, POINTS

NOW = 1_750_000_000.0
MAX_AGE_S = 10.0
NOON = 12 * 60
MISSING = "<missing>"
STALE = "<stale>"

OPTIONAL_SAMPLES = {"voltage": 400.0, "temperature": 25.0, "insulation": 2000.0, "alarms": (),
                    "charge_current": 50.0, "discharge_current": 50.0}


@dataclass(frozen=True)
class BmsWithCurrentLimits(BatteryState):
    """A BMS that also reports current limits (as the Hithium and Victron profiles can)."""

    max_charge_current_a: Any = None
    max_discharge_current_a: Any = None


def plant(now: float = NOW, **overrides: Any) -> PlantState:
    """Every required point fresh (DEFAULTS); MISSING leaves a point out, STALE makes it old."""
    base = PlantState()
    if "charge_current" in overrides or "discharge_current" in overrides:
        base = PlantState(battery=BmsWithCurrentLimits())
    updates = {}
    for key, path in POINTS.items():
        value = overrides.get(key, DEFAULTS.get(key, MISSING))
        if isinstance(value, str) and value == MISSING:
            continue
        if isinstance(value, str) and value == STALE:
            sample = DEFAULTS.get(key, OPTIONAL_SAMPLES.get(key))
            updates[path] = Measurement(sample, now - 6 * MAX_AGE_S, "modbus", MAX_AGE_S)
        else:
            updates[path] = Measurement(value, now - 1.0, "modbus", MAX_AGE_S)
    return base.with_updates(updates)


# 10 kW inverter both ways, SoC window 10-95 %, 20 kW import and 15 kW export at the grid connection.
BESS = BessConfig(capacity_kwh=20.0, max_charge_power_kw=10.0, max_discharge_power_kw=10.0,
                  min_soc_pct=10.0, max_soc_pct=95.0)
# 6 kW charging, 8 kW discharging: the DSO percentage applies to the larger rating.
SMALL_BESS = BessConfig(capacity_kwh=20.0, max_charge_power_kw=6.0, max_discharge_power_kw=8.0,
                        min_soc_pct=10.0, max_soc_pct=95.0)
GRID = GridConnectionConfig(max_power_kw=20.0, max_feedin_kw=15.0)
PC_ON = PowerControlConfig(enabled=True, min_grid_charge_kw_under_dso_limit=4.2)
PC_OFF = PowerControlConfig(enabled=False)
PC_ALARMS_AT_SHUTDOWN = PowerControlConfig(enabled=True, safety_alarm_severity="shutdown")
FEEDIN_OFF = FeedinLimitationConfig()
PV_PEAK_KW = 10.0
# 50 % of the 10 kWp PV peak = 5 kW export allowed.
FEEDIN_50_PV = FeedinLimitationConfig(enabled=True, mode="fixed", fixed_limit_pct=50.0, pv_integration_enabled=True)
# 50 % of the grid connection's 15 kW feed-in rating = 7.5 kW.
FEEDIN_50_GRID = FeedinLimitationConfig(enabled=True, mode="fixed", fixed_limit_pct=50.0)
# Midday: no export at all; otherwise 100 % of the PV peak.
FEEDIN_NOON_ZERO = FeedinLimitationConfig(enabled=True, mode="dynamic", fixed_limit_pct=100.0,
                                          pv_integration_enabled=True,
                                          dynamic_rules=(FeedinRule("10:00", "16:00", 0.0),))


def inputs(request_w: float, readings: dict[str, Any], pc: PowerControlConfig = PC_ON, bess: BessConfig = BESS,
           grid: GridConnectionConfig = GRID, feedin: FeedinLimitationConfig = FEEDIN_OFF,
           pv_peak_kw: float = PV_PEAK_KW, minute: float = NOON, offline: tuple[str, ...] = ()) -> DecisionInputs:
    return DecisionInputs(plant(**readings), request_w, NOW, minute, bess, pc, grid, feedin, pv_peak_kw, offline)


def case(request_w: float, readings: dict[str, Any], expected_w: float, state: str, reason: str | None, id: str,
         expect: dict[str, Any] | None = None, **config: Any) -> Any:
    return pytest.param(request_w, readings, config, expected_w, state, reason, expect or {}, id=id)


CYCLES = [
    case(3000, {}, 3000, "normal", None, id="all fresh, request within limits: unchanged"),
    case(-3000, {}, -3000, "normal", None, id="all fresh, charging within limits: unchanged"),
    # 1. power control off: the DSO box is ignored, everything else still applies
    case(3000, {"dso": MISSING}, 3000, "normal", "power control disabled", pc=PC_OFF,
         id="power control off: missing DSO state not needed"),
    case(3000, {"dso": "trip"}, 3000, "normal", "power control disabled", pc=PC_OFF,
         expect={"remote_shutdown_requested": False}, id="power control off: DSO trip ignored"),
    case(8000, {"dso": "limit", "dso_limit": 30}, 8000, "normal", "power control disabled", pc=PC_OFF,
         expect={"limit_pct": 100.0}, id="power control off: DSO limit ignored"),
    case(8000, {"bms_discharge": 2500}, 2500, "limited", "BMS discharge limit: 2500 W", pc=PC_OFF,
         id="power control off: BMS limit still clamps"),
    case(3000, {"soc": STALE}, 0, "safety", "no fresh value: battery.soc_pct", pc=PC_OFF,
         id="power control off: stale SoC still -> 0 W"),
    case(3000, {"alarms": ("over-temperature shutdown",)}, 0, "safety", "safety alarm", pc=PC_OFF,
         id="power control off: safety alarm still -> 0 W"),
    case(0, {"grid": -20_000}, -5000, "limited", "grid connection limit: export 15000 W", pc=PC_OFF,
         id="power control off: grid connection limit still applies"),
    # 2. offline devices and unknown inputs
    case(3000, {"soc": STALE}, 0, "safety", "no fresh value: battery.soc_pct", id="stale SoC -> 0 W"),
    case(-3000, {"soc": MISSING}, 0, "safety", "no fresh value: battery.soc_pct", id="missing SoC -> 0 W"),
    case(-3000, {"bms_charge": STALE}, 0, "safety", "battery.max_charge_power_w", id="stale BMS charge limit -> 0 W"),
    case(3000, {"bms_discharge": MISSING}, 0, "safety", "battery.max_discharge_power_w",
         id="missing BMS discharge limit -> 0 W"),
    case(3000, {"grid": MISSING}, 0, "safety", "no fresh value: grid.power_w", id="missing grid meter -> 0 W"),
    case(3000, {"bess": STALE}, 0, "safety", "no fresh value: bess.power_w", id="stale battery power -> 0 W"),
    case(3000, {}, 0, "safety", "device offline: meter", offline=("meter",), id="meter offline -> 0 W"),
    case(-3000, {}, 0, "safety", "device offline: bms", offline=("bms",), pc=PC_OFF,
         id="BMS offline, power control off -> 0 W"),
    case(3000, {"dso": MISSING}, 0, "safety", "no fresh value: dso.mode",
         expect={"limit_pct": 0.0}, id="missing DSO state, power control on -> comm-loss limit 0 %"),
    case(-3000, {"dso": STALE}, 0, "safety", "no fresh value: dso.mode", id="stale DSO state -> 0 W"),
    case(3000, {"dso": "tripp"}, 0, "safety", "unknown DSO mode 'tripp'", id="garbled DSO mode -> 0 W"),
    case(3000, {"dso": 2}, 0, "safety", "unknown DSO mode 2", id="numeric DSO mode -> 0 W"),
    case(8000, {"dso": MISSING}, 5000, "safety", "no fresh value: dso.mode",
         pc=PowerControlConfig(dso_comm_loss_limit_pct=50.0), expect={"limit_pct": 50.0},
         id="lost DSO with comm-loss limit 50 % -> half the rated power"),
    case(-8000, {"dso": MISSING}, -5000, "safety", "no fresh value: dso.mode",
         pc=PowerControlConfig(dso_comm_loss_limit_pct=50.0), id="comm-loss limit also caps charging"),
    case(math.nan, {}, 0, "safety", "request is not a finite number", id="NaN request -> 0 W"),
    case(3000, {"grid": math.inf}, 0, "safety", "no fresh value: grid.power_w", id="infinite grid reading -> 0 W"),
    case(3000, {"soc": "50"}, 0, "safety", "no fresh value: battery.soc_pct", id="SoC as text -> unknown -> 0 W"),
    # 3. DSO trip: shutdown, the PCS must be disabled, whatever else is known
    case(3000, {"dso": "trip"}, 0, "shutdown", "DSO trip", expect={"remote_shutdown_requested": True, "limit_pct": 0},
         id="DSO trip while discharging -> 0 W shutdown"),
    case(-8000, {"dso": "trip"}, 0, "shutdown", "DSO trip", expect={"remote_shutdown_requested": True},
         id="DSO trip while charging -> 0 W shutdown"),
    case(3000, {"dso": "trip", "soc": STALE}, 0, "shutdown", "no fresh value: battery.soc_pct",
         expect={"remote_shutdown_requested": True}, id="DSO trip with stale SoC -> still shutdown"),
    case(3000, {"dso": "trip"}, 0, "shutdown", "device offline: pcs", offline=("pcs",),
         expect={"remote_shutdown_requested": True}, id="DSO trip with PCS offline -> still shutdown"),
    case(3000, {"dso": "trip", "alarms": ("insulation resistance low",)}, 0, "shutdown", "safety alarm",
         expect={"remote_shutdown_requested": True}, id="DSO trip and a safety alarm -> shutdown"),
    # 4. safety alarms, insulation, temperature
    case(3000, {"alarms": ("over-temperature shutdown",)}, 0, "safety",
         "safety alarm: over-temperature shutdown (shutdown)", id="BMS over-temperature trip alarm -> 0 W"),
    case(-3000, {"alarms": ("insulation resistance low",)}, 0, "safety", "insulation resistance low",
         id="BMS insulation alarm -> 0 W"),
    case(3000, {"alarms": ("over-temperature (derating)", "SoC high")}, 3000, "normal", None,
         id="warning-level BMS alarms -> unchanged"),
    case(3000, {"alarms": ("fan filter dusty",)}, 3000, "normal", None, id="unknown alarm text -> a warning"),
    case(3000, {"alarms": ({"severity": "critical", "text": "Cell overvoltage (serious)"},)}, 0, "safety",
         "Cell overvoltage (serious) (critical)", id="critical alarm from a device profile -> 0 W"),
    case(3000, {"alarms": ({"severity": "critical", "text": "Cell overvoltage (serious)"},)}, 3000, "normal", None,
         pc=PC_ALARMS_AT_SHUTDOWN, id="critical alarm when only shutdown alarms stop -> unchanged"),
    case(3000, {"alarms": ({"severity": "shutdown", "text": "BMS fault"},)}, 0, "safety", "BMS fault (shutdown)",
         pc=PC_ALARMS_AT_SHUTDOWN, id="shutdown alarm when only shutdown alarms stop -> 0 W"),
    case(3000, {"alarms": ({"severity": "fatal", "text": "x"},)}, 0, "safety", "x (critical)",
         id="alarm with an unknown severity -> taken as critical"),
    case(3000, {"alarms": STALE}, 0, "safety", "no fresh value: battery.alarms", id="stale alarm list -> 0 W"),
    case(3000, {"alarms": 7}, 0, "safety", "no fresh value: battery.alarms", id="garbled alarm list -> 0 W"),
    case(3000, {"insulation": 80.0}, 0, "safety", "insulation resistance 80 kΩ below 100 kΩ",
         id="insulation below 100 kΩ -> 0 W"),
    case(3000, {"insulation": 100.0}, 3000, "normal", None, id="insulation at the threshold -> unchanged"),
    case(3000, {"insulation": math.nan}, 0, "safety", "no fresh value: battery.insulation_resistance_kohm",
         id="NaN insulation reading -> 0 W"),
    case(3000, {"insulation": 5.0}, 3000, "normal", None, pc=PowerControlConfig(min_insulation_resistance_kohm=0),
         id="insulation check off (0 kΩ) -> unchanged"),
    case(3000, {"temperature": 56.0}, 0, "safety", "battery temperature 56 °C above 55 °C",
         id="battery above 55 °C -> 0 W"),
    case(3000, {"temperature": 55.0}, 3000, "normal", None, id="battery at 55 °C -> unchanged"),
    case(3000, {"temperature": STALE}, 0, "safety", "no fresh value: battery.temperature_c",
         id="stale temperature -> 0 W"),
    # 5. DSO limit (rated 10 kW; §14a keeps 4.2 kW of charging)
    case(8000, {"dso": "limit", "dso_limit": 30}, 3000, "limited", "DSO limit 30 %", expect={"limit_pct": 30.0},
         id="DSO limit 30 % -> discharge at most 30 % of rated"),
    case(2000, {"dso": "limit", "dso_limit": 30}, 2000, "limited", "DSO limit 30 %",
         id="DSO limit 30 % in force, request within -> unchanged but limited"),
    case(-8000, {"dso": "limit", "dso_limit": 30}, -4200, "limited", "DSO limit 30 %",
         id="DSO limit 30 % -> charging keeps the 4.2 kW floor"),
    case(-9500, {"dso": "limit", "dso_limit": 80}, -8000, "limited", "DSO limit 80 %",
         id="DSO limit 80 % -> charging at most 80 % of rated"),
    case(-8000, {"dso": "limit", "dso_limit": 30, "bms_charge": 2000}, -2000, "limited", "BMS charge limit: 2000 W",
         id="DSO charging floor never exceeds the BMS limit"),
    case(5000, {"dso": "limit", "dso_limit": 0}, 0, "limited", "DSO limit 0 %", id="DSO limit 0 % -> no discharge"),
    case(7000, {"dso": "limit", "dso_limit": 50}, 4000, "limited", "DSO limit 50 %", bess=SMALL_BESS,
         id="DSO limit 50 % of an 8 kW inverter -> 4 kW discharge"),
    case(-6000, {"dso": "limit", "dso_limit": 70}, -5600, "limited", "DSO limit 70 %", bess=SMALL_BESS,
         id="DSO limit 70 % of an 8 kW inverter -> 5.6 kW charging"),
    case(5000, {"dso": "limit", "dso_limit": MISSING}, 0, "limited", "DSO limit 0 %",
         id="DSO limit with unknown percentage -> treated as 0 %"),
    case(5000, {"dso": "limit", "dso_limit": math.nan}, 0, "limited", "DSO limit 0 %",
         id="DSO limit NaN -> treated as 0 %"),
    case(9000, {"dso": "limit", "dso_limit": 250}, 9000, "limited", "DSO limit 100 %",
         id="DSO limit above 100 % -> read as 100 %"),
    # 6. BMS limits, current limits and inverter ratings
    case(8000, {"bms_discharge": 2500}, 2500, "limited", "BMS discharge limit: 2500 W",
         id="BMS max discharge below the request -> clamped"),
    case(-8000, {"bms_charge": 1500}, -1500, "limited", "BMS charge limit: 1500 W",
         id="BMS max charge below the request -> clamped"),
    case(3000, {"bms_discharge": -500}, 0, "limited", "BMS discharge limit: 0 W",
         id="negative BMS limit -> read as 0 W"),
    case(50_000, {"bms_discharge": 60_000}, 10_000, "limited", "inverter discharge rating: 10000 W",
         id="inverter rating below the request -> clamped"),
    case(-50_000, {"bms_charge": 60_000}, -10_000, "limited", "inverter charge rating: 10000 W",
         id="inverter charge rating below the request -> clamped"),
    case(8000, {"discharge_current": 10.0, "voltage": 400.0}, 4000, "limited", "BMS discharge current limit 10 A",
         id="BMS discharge current 10 A at 400 V -> 4 kW"),
    case(-8000, {"charge_current": 5.0, "voltage": 400.0}, -2000, "limited", "BMS charge current limit 5 A",
         id="BMS charge current 5 A at 400 V -> 2 kW"),
    case(3000, {"discharge_current": 10.0, "voltage": MISSING}, 0, "safety", "no fresh value: battery.voltage_v",
         id="current limit without a pack voltage -> 0 W"),
    case(3000, {"discharge_current": STALE, "voltage": 400.0}, 0, "safety",
         "no fresh value: battery.max_discharge_current_a", id="stale current limit -> 0 W"),
    # 7. SoC window
    case(5000, {"soc": 10.0}, 0, "limited", "SoC 10 % at or below min 10 %", id="SoC at min -> no discharge"),
    case(5000, {"soc": 4.0}, 0, "limited", "SoC 4 % at or below min 10 %", id="SoC below min -> no discharge"),
    case(-5000, {"soc": 10.0}, -5000, "normal", None, id="SoC at min -> charging allowed"),
    case(-5000, {"soc": 95.0}, 0, "limited", "SoC 95 % at or above max 95 %", id="SoC at max -> no charge"),
    case(5000, {"soc": 95.0}, 5000, "normal", None, id="SoC at max -> discharging allowed"),
    # 8. feed-in limitation (site = grid + battery; export after = setpoint - site)
    case(0, {"grid": -3000}, 0, "normal", None, feedin=FEEDIN_50_PV, expect={"export_limit_w": 5000.0},
         id="feed-in 50 % of 10 kWp, 3 kW export -> within, unchanged"),
    case(5000, {"grid": -3000}, 2000, "limited", "feed-in limit 50 % = 5000 W", feedin=FEEDIN_50_PV,
         id="feed-in limit -> discharging reduced first"),
    case(0, {"grid": -8000}, -3000, "limited", "feed-in limit 50 % = 5000 W", feedin=FEEDIN_50_PV,
         id="feed-in limit -> battery charges to absorb the excess"),
    case(2000, {"grid": -6000, "bess": 2000}, 1000, "limited", "feed-in limit", feedin=FEEDIN_50_PV,
         id="feed-in limit counts the battery's present output"),
    case(-6000, {"grid": -8000}, -6000, "normal", None, feedin=FEEDIN_50_PV,
         id="charging already absorbs the excess -> unchanged"),
    case(0, {"grid": -20_000}, -10_000, "limited", "PV curtailment 5000 W needed", feedin=FEEDIN_50_PV,
         expect={"pv_curtailment_w": 5000.0}, id="excess beyond the charge limit -> PV curtailment"),
    case(0, {"grid": -8000, "soc": 95.0}, 0, "limited", "PV curtailment 3000 W needed", feedin=FEEDIN_50_PV,
         expect={"pv_curtailment_w": 3000.0}, id="battery full -> the whole excess is curtailed"),
    case(0, {"grid": -12_000, "dso": "limit", "dso_limit": 30}, -4200, "limited", "PV curtailment 2800 W needed",
         feedin=FEEDIN_50_PV, expect={"pv_curtailment_w": 2800.0},
         id="DSO limit caps the absorbing charge at the §14a floor -> rest curtailed"),
    case(0, {"grid": -10_000}, -2500, "limited", "feed-in limit 50 % = 7500 W", feedin=FEEDIN_50_GRID,
         id="without PV integration: 50 % of the 15 kW connection"),
    case(0, {"grid": -2000}, -2000, "limited", "feed-in limit 50 % = 0 W", feedin=FEEDIN_50_PV, pv_peak_kw=0.0,
         id="PV integration with unknown PV peak -> no export"),
    case(0, {"grid": -3000}, -3000, "limited", "feed-in limit 0 % = 0 W", feedin=FEEDIN_NOON_ZERO, minute=12 * 60,
         id="dynamic rule 10-16 h at 0 %: noon -> no export"),
    case(0, {"grid": -3000}, 0, "normal", None, feedin=FEEDIN_NOON_ZERO, minute=17 * 60,
         id="dynamic rule 10-16 h at 0 %: 17:00 -> export allowed"),
    case(0, {"grid": -18_000}, -3000, "limited", "grid connection limit: export 15000 W",
         feedin=FeedinLimitationConfig(enabled=True, mode="fixed", fixed_limit_pct=100.0, pv_integration_enabled=True),
         pv_peak_kw=20.0, id="feed-in limit looser than the connection -> the connection binds"),
    case(0, {"grid": -8000}, 0, "normal", None,
         feedin=FeedinLimitationConfig(enabled=True, mode="off", fixed_limit_pct=10.0),
         id="feed-in mode off -> no limitation"),
    case(3000, {"soc": STALE, "grid": -8000}, 0, "safety", "no fresh value: battery.soc_pct", feedin=FEEDIN_50_PV,
         expect={"pv_curtailment_w": 3000.0}, id="safe state keeps reporting the curtailment needed"),
    case(3000, {"dso": "trip", "grid": -8000}, 0, "shutdown", "DSO trip", feedin=FEEDIN_50_PV,
         expect={"pv_curtailment_w": 3000.0, "export_limit_w": 5000.0}, id="trip keeps the feed-in limit in force"),
    # 9. grid connection (new grid = site - setpoint)
    case(-8000, {"grid": 15_000}, -5000, "limited", "grid connection limit: import 20000 W",
         id="import limit -> charging reduced"),
    case(-3000, {"grid": 18_000, "bess": 4000}, 2000, "limited", "grid connection limit: import",
         id="import limit counts the battery's present output"),
    case(8000, {"grid": -10_000}, 5000, "limited", "grid connection limit: export",
         id="export limit -> discharging reduced"),
    case(0, {"grid": -20_000}, -5000, "limited", "grid connection limit: export",
         id="export overload -> battery absorbs the excess"),
    case(0, {"grid": 35_000}, 10_000, "limited", "grid connection limit: import",
         id="import overload -> battery discharges up to its limit"),
    case(0, {"grid": 35_000, "soc": 10.0}, 0, "limited", "grid connection limit: import",
         id="import overload at min SoC -> stays at 0 W"),
    case(0, {"grid": -40_000, "soc": 95.0}, 0, "limited", "grid connection limit: export",
         expect={"pv_curtailment_w": 25_000.0}, id="export overload at max SoC -> stays at 0 W, curtailment"),
    # combinations
    case(0, {"grid": 35_000, "dso": "limit", "dso_limit": 30}, 3000, "limited", "grid connection limit: import",
         id="import overload under a DSO limit -> discharge only up to the DSO share"),
    case(8000, {"dso": "limit", "dso_limit": 60, "bms_discharge": 2500, "soc": 60}, 2500, "limited",
         "BMS discharge limit: 2500 W", id="DSO limit and a lower BMS limit -> the BMS binds"),
    case(-8000, {"soc": 96.0, "dso": "limit", "dso_limit": 50}, 0, "limited", "SoC 96 % at or above max 95 %",
         id="DSO limit and full battery -> no charge"),
    case(5000, {"bms_discharge": 4000, "grid": -13_000}, 2000, "limited", "grid connection limit: export",
         id="BMS limit and export limit -> the tighter export limit"),
]


@pytest.mark.parametrize("request_w, readings, config, expected_w, state, reason, expect", CYCLES)
def test_power_control_decision_cycle_table(request_w, readings, config, expected_w, state, reason, expect):
    d = decide(inputs(request_w, readings, **config))
    assert d.setpoint_w == pytest.approx(expected_w, abs=1e-6)
    assert d.state == state
    assert d.requested_w == (request_w if math.isfinite(request_w) else 0.0)
    notes = ("power control disabled",) if not config.get("pc", PC_ON).enabled else ()
    if reason is None:
        assert d.messages == notes
    else:
        assert d.messages[:len(notes)] == notes
        assert any(reason in r for r in d.messages), d.messages
    assert d.remote_shutdown_requested == (state == "shutdown")
    assert -d.charge_limit_w - 1e-6 <= d.setpoint_w <= d.limit_w + 1e-6
    for field, value in expect.items():
        assert getattr(d, field) == pytest.approx(value), field


def test_every_reason_is_listed_in_priority_order():
    d = decide(inputs(3000, {"soc": STALE, "temperature": 70.0}, pc=PC_OFF, offline=("meter",)))
    assert d.messages == ("power control disabled", "device offline: meter", "no fresh value: battery.soc_pct",
                          "battery temperature 70 °C above 55 °C")
    assert d.codes == (ReasonCode.POWER_CONTROL_DISABLED, ReasonCode.DEVICE_OFFLINE, ReasonCode.STALE_INPUT,
                       ReasonCode.TEMPERATURE)
    assert [r.detail for r in d.reasons[1:3]] == [{"device": "meter"}, {"point": "battery.soc_pct"}]
    tripped = decide(inputs(3000, {"dso": "trip", "grid": MISSING}))
    assert tripped.messages == ("DSO trip", "no fresh value: grid.power_w")
    assert tripped.codes == (ReasonCode.DSO_TRIP, ReasonCode.STALE_INPUT)


# What the safety loop and the pages used to match in the texts: each text's code must say the same.
TEXT_CODES = [("power control disabled", ReasonCode.POWER_CONTROL_DISABLED),
              ("device offline: ", ReasonCode.DEVICE_OFFLINE), ("no fresh value: ", ReasonCode.STALE_INPUT),
              ("site power out of range", ReasonCode.SITE_POWER_OUT_OF_RANGE),
              ("request is not a finite number", ReasonCode.INVALID_REQUEST),
              ("safety alarm: ", ReasonCode.BMS_ALARM), ("insulation resistance ", ReasonCode.INSULATION),
              ("battery temperature ", ReasonCode.TEMPERATURE), ("DSO trip", ReasonCode.DSO_TRIP),
              ("unknown DSO mode ", ReasonCode.DSO_UNKNOWN_MODE), ("DSO limit ", ReasonCode.DSO_LIMIT),
              ("BMS charge limit: ", ReasonCode.BMS_LIMIT), ("BMS discharge limit: ", ReasonCode.BMS_LIMIT),
              ("BMS charge current limit ", ReasonCode.BMS_CURRENT_LIMIT),
              ("BMS discharge current limit ", ReasonCode.BMS_CURRENT_LIMIT),
              ("inverter charge rating: ", ReasonCode.INVERTER_RATING),
              ("inverter discharge rating: ", ReasonCode.INVERTER_RATING), ("SoC ", ReasonCode.SOC_WINDOW),
              ("feed-in limit ", ReasonCode.FEEDIN_LIMIT), ("grid connection limit: import ", ReasonCode.GRID_LIMIT_IMPORT),
              ("grid connection limit: export ", ReasonCode.GRID_LIMIT_EXPORT),
              ("PV curtailment ", ReasonCode.PV_CURTAILMENT)]


def text_code(message: str) -> ReasonCode:
    return next(code for prefix, code in TEXT_CODES if message.startswith(prefix))


@pytest.mark.parametrize("request_w, readings, config, expected_w, state, reason, expect", CYCLES)
def test_every_reason_carries_the_code_its_text_names(request_w, readings, config, expected_w, state, reason, expect):
    d = decide(inputs(request_w, readings, **config))
    assert [r.code for r in d.reasons] == [text_code(r.message) for r in d.reasons], d.messages
    assert all(str(r) == r.message for r in d.reasons)
    data = d.to_json()
    assert data["reasons"] == list(d.messages) and data["reason_codes"] == [c.value for c in d.codes]


def test_reason_codes_say_what_the_safety_loop_needs():
    """Health: unknown inputs and failures stop the watchdog petting; start-up: only missing inputs are
    "waiting"; a limited decision is a DSO matter before a feed-in one before a safety one."""
    blocking = {c for c in ReasonCode if c.blocks_health}
    assert blocking == {ReasonCode.STALE_INPUT, ReasonCode.DEVICE_OFFLINE, ReasonCode.INTERNAL_ERROR,
                        ReasonCode.REALTIME_FAILED, ReasonCode.PCS_WRITE_FAILED}
    assert {c for c in ReasonCode if c.awaiting_input} == {ReasonCode.STALE_INPUT, ReasonCode.DEVICE_OFFLINE}
    feedin = Reason(ReasonCode.FEEDIN_LIMIT, "feed-in limit 50 % = 5000 W")
    dso = Reason(ReasonCode.DSO_LIMIT, "DSO limit 30 %")
    grid = Reason(ReasonCode.GRID_LIMIT_EXPORT, "grid connection limit: export 15000 W")
    assert limited_category([grid, feedin, dso]) == "dso"
    assert limited_category([grid, feedin]) == "feedin"
    assert limited_category([grid]) == limited_category([]) == "safety"


def test_export_limit_defaults_to_the_import_limit_when_not_set():
    readings = {"grid": -15_000}  # 15 kW already flowing out
    without_feedin = decide(inputs(8000, readings, grid=GridConnectionConfig(max_power_kw=20.0)))
    tight_feedin = decide(inputs(8000, readings, grid=GridConnectionConfig(max_power_kw=20.0, max_feedin_kw=15.0)))
    assert without_feedin.setpoint_w == 5000  # 20 kW export allowed
    assert tight_feedin.setpoint_w == 0


def test_dso_limit_in_force_is_reported():
    assert decide(inputs(0, {"dso": "limit", "dso_limit": 60})).limit_pct == 60
    assert decide(inputs(0, {})).limit_pct == 100
    assert decide(inputs(0, {"soc": MISSING})).limit_pct == 0
    assert decide(inputs(0, {"dso": "trip"})).limit_pct == 0


def test_limits_in_watts_are_reported_for_the_pcs():
    d = decide(inputs(1000, {"dso": "limit", "dso_limit": 30, "bms_charge": 3000, "grid": 2000}))
    assert d.limit_w == 3000  # 30 % of 10 kW
    assert d.charge_limit_w == 3000  # the BMS below the §14a floor
    assert d.export_limit_w == 15_000
    grid_bound = decide(inputs(0, {"grid": 18_000}))
    assert grid_bound.charge_limit_w == 2000  # 2 kW more import and the connection is full


@pytest.mark.parametrize("request_w, readings", [
    pytest.param(math.nan, {}, id="NaN request from the dispatcher"),
    pytest.param(math.inf, {}, id="infinite request"),
    pytest.param(50_000, {"bms_discharge": math.nan, "grid": -60_000}, id="NaN BMS discharge limit"),
    pytest.param(5000, {"soc": math.nan}, id="NaN SoC"),
    pytest.param(8000, {"dso": "limit", "dso_limit": math.nan}, id="NaN DSO limit"),
    pytest.param(8000, {"bess": -math.inf}, id="infinite battery power"),
    pytest.param(8000, {"grid": 1e308, "bess": 1e308}, id="site power overflowing to infinity"),
])
def test_a_nan_reading_or_request_never_reaches_the_inverter(request_w, readings):
    d = decide(inputs(request_w, readings, grid=GridConnectionConfig(max_power_kw=100.0)))
    assert d.setpoint_w == 0.0
    assert math.isfinite(d.pv_curtailment_w)


def test_decision_json_for_the_api():
    d = decide(inputs(5000.04, {"grid": -3000}, feedin=FEEDIN_50_PV))
    data = json.loads(json.dumps(d.to_json()))
    assert data["state"] == "limited"
    assert data["effective_setpoint_w"] == 2000.0
    assert "mode" not in data and "setpoint_w" not in data  # no duplicates under earlier names
    assert data["requested_w"] == 5000.0
    assert data["export_limit_w"] == 5000.0 and data["limit_pct"] == 100.0
    assert data["reasons"] == ["feed-in limit 50 % = 5000 W"]
    assert data["reason_codes"] == ["feedin_limit"]
    assert data["remote_shutdown_requested"] is False and data["pv_curtailment_w"] == 0.0


def test_a_decision_made_without_limits_allows_nothing():
    """The loop's own fallback decision (e.g. after an internal error) must not permit any power."""
    internal_error = PowerControlDecision(0.0, 0.0, "safety", (Reason(ReasonCode.INTERNAL_ERROR, "internal error"),),
                                          0.0)
    assert internal_error.mode == "safety"
    assert internal_error.limit_w == internal_error.charge_limit_w == 0.0  # allows nothing
    assert not internal_error.remote_shutdown_requested


# -- properties -----------------------------------------------------------------------------------

def finite(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)


hhmm = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59)) | st.just("24:00")
feedins = st.builds(
    FeedinLimitationConfig, enabled=st.booleans(), mode=st.sampled_from(["off", "fixed", "dynamic"]),
    fixed_limit_pct=finite(0, 100), pv_integration_enabled=st.booleans(),
    dynamic_rules=st.lists(st.builds(FeedinRule, hhmm, hhmm, finite(0, 100)), max_size=3).map(tuple))


@st.composite
def configs(draw: Any) -> tuple[BessConfig, PowerControlConfig, GridConnectionConfig, FeedinLimitationConfig, float]:
    min_soc = draw(finite(0, 60))
    bess = BessConfig(capacity_kwh=20.0, max_charge_power_kw=draw(finite(0.5, 50)),
                      max_discharge_power_kw=draw(finite(0.5, 50)), min_soc_pct=min_soc,
                      max_soc_pct=draw(finite(min_soc + 1, 100)))
    pc = PowerControlConfig(enabled=draw(st.booleans()), min_grid_charge_kw_under_dso_limit=draw(finite(0, 11)),
                            dso_comm_loss_limit_pct=draw(st.sampled_from([0.0, 50.0])))
    grid = GridConnectionConfig(max_power_kw=draw(finite(1, 100)), max_feedin_kw=draw(st.none() | finite(0, 100)))
    return bess, pc, grid, draw(feedins), draw(finite(0, 100))


readings = st.fixed_dictionaries({
    "soc": finite(0, 100), "bms_charge": finite(0, 60_000), "bms_discharge": finite(0, 60_000),
    "grid": finite(-150_000, 150_000), "bess": finite(-60_000, 60_000),
    "dso": st.sampled_from(["normal", "limit", "trip"]), "dso_limit": finite(0, 100),
}, optional={"voltage": finite(100, 1000), "charge_current": finite(0, 200), "discharge_current": finite(0, 200),
             "temperature": finite(-20, 54), "insulation": finite(100, 5000),
             "alarms": st.lists(st.sampled_from(["SoC low", "over-temperature (derating)", "fan"])).map(tuple)})
requests = finite(-200_000, 200_000)
minutes = finite(0, 1439.99)
EPS = 1e-6


def decide_random(cfg: Any, values: dict[str, Any], request_w: float, minute: float,
                  offline: tuple[str, ...] = ()) -> PowerControlDecision:
    bess, pc, grid, feedin, pv_peak_kw = cfg
    if ("charge_current" in values or "discharge_current" in values) and "voltage" not in values:
        values = {**values, "voltage": 400.0}  # a BMS that reports current limits reports its voltage
    return decide(DecisionInputs(plant(**values), request_w, NOW, minute, bess, pc, grid, feedin, pv_peak_kw, offline))


def battery_bounds_w(cfg: Any, values: dict[str, Any]) -> tuple[float, float]:
    """(most charging, most discharging) setpoint the battery-side rules (5-7) allow, computed independently."""
    bess, pc, _, _, _ = cfg
    discharge = [values["bms_discharge"], bess.max_discharge_power_kw * 1000]
    charge = [values["bms_charge"], bess.max_charge_power_kw * 1000]
    volts = values.get("voltage", 400.0)
    if "discharge_current" in values:
        discharge.append(values["discharge_current"] * volts)
    if "charge_current" in values:
        charge.append(values["charge_current"] * volts)
    if pc.enabled and values["dso"] == "limit":
        share_w = max(bess.max_charge_power_kw, bess.max_discharge_power_kw) * 1000 * values["dso_limit"] / 100
        discharge.append(share_w)
        charge.append(max(share_w, pc.min_grid_charge_kw_under_dso_limit * 1000))
    if values["soc"] <= bess.min_soc_pct:
        discharge.append(0.0)
    if values["soc"] >= bess.max_soc_pct:
        charge.append(0.0)
    return -min(charge), min(discharge)


def grid_overload_w(site_w: float, setpoint_w: float, grid: GridConnectionConfig) -> float:
    """How far the grid exchange after `setpoint_w` lies outside the connection limits (0 = inside)."""
    exchange = site_w - setpoint_w
    export_kw = grid.max_feedin_kw if grid.max_feedin_kw is not None else grid.max_power_kw
    return max(0.0, exchange - grid.max_power_kw * 1000, -exchange - export_kw * 1000)


@settings(max_examples=400, deadline=None, database=None)
@given(cfg=configs(), values=readings, request_w=requests, minute=minutes)
def test_setpoint_never_exceeds_bms_limits_ratings_soc_window_or_dso_limit(cfg, values, request_w, minute):
    bess, pc, grid, _, _ = cfg
    d = decide_random(cfg, values, request_w, minute)
    sp = d.setpoint_w
    assert math.isfinite(sp)
    lo_w, hi_w = battery_bounds_w(cfg, values)
    assert lo_w - EPS <= sp <= hi_w + EPS
    assert -d.charge_limit_w - EPS <= sp <= d.limit_w + EPS
    if pc.enabled and values["dso"] == "trip":
        assert sp == 0.0
    # The battery never makes a grid-connection overload worse than standing still would.
    site_w = values["grid"] + values["bess"]
    assert grid_overload_w(site_w, sp, grid) <= grid_overload_w(site_w, 0.0, grid) + EPS
    if d.state == "normal":
        assert sp == request_w


@settings(max_examples=400, deadline=None, database=None)
@given(cfg=configs(), values=readings, request_w=requests, minute=minutes)
def test_export_stays_within_the_limit_unless_the_battery_is_at_its_charge_limit(cfg, values, request_w, minute):
    bess, pc, grid, feedin, pv_peak_kw = cfg
    d = decide_random(cfg, values, request_w, minute)
    if d.state in ("safety", "shutdown"):
        return
    rating_kw = grid.max_feedin_kw if grid.max_feedin_kw is not None else grid.max_power_kw
    feedin_w = feedin_export_w(feedin, minute, pv_peak_kw, rating_kw)
    expected_limit_w = rating_kw * 1000 if feedin_w is None else min(rating_kw * 1000, feedin_w)
    assert d.export_limit_w == pytest.approx(expected_limit_w)
    export_w = d.setpoint_w - (values["grid"] + values["bess"])
    if export_w > expected_limit_w + EPS:
        lo_w, _ = battery_bounds_w(cfg, values)
        assert d.setpoint_w == pytest.approx(lo_w, abs=EPS)  # charging as hard as the battery may
        assert d.pv_curtailment_w == pytest.approx(export_w - expected_limit_w, abs=1e-3)
        assert d.state == "limited" or (d.state == "safety" and pc.enabled)
    else:
        assert d.pv_curtailment_w == 0.0


@settings(max_examples=300, deadline=None, database=None)
@given(cfg=configs(), values=readings, request_w=requests | st.just(math.nan), minute=minutes,
       lost=st.dictionaries(st.sampled_from(["soc", "bms_charge", "bms_discharge", "grid", "bess"]),
                            st.sampled_from([MISSING, STALE, math.nan])),
       offline=st.lists(st.sampled_from(["bms", "pcs", "meter"]), max_size=2).map(tuple))
def test_dso_trip_always_yields_0_w_shutdown_and_pcs_disable(cfg, values, request_w, minute, lost, offline):
    bess, pc, grid, feedin, pv_peak_kw = cfg
    cfg = (bess, replace(pc, enabled=True), grid, feedin, pv_peak_kw)
    d = decide_random(cfg, {**values, **lost, "dso": "trip"}, request_w, minute, offline)
    assert d.setpoint_w == 0.0
    assert d.state == "shutdown" and d.mode == "shutdown"
    assert d.remote_shutdown_requested
    assert d.messages[0] == "DSO trip" and d.codes[0] is ReasonCode.DSO_TRIP
    assert d.limit_w == d.charge_limit_w == d.limit_pct == 0.0


NEEDED = ["soc", "bms_charge", "bms_discharge", "grid", "bess"]


@settings(max_examples=300, deadline=None, database=None)
@given(cfg=configs(), values=readings, request_w=requests, minute=minutes,
       lost=st.dictionaries(st.sampled_from(NEEDED + ["dso"]), st.sampled_from([MISSING, STALE, math.nan, math.inf]),
                            min_size=1))
def test_any_missing_stale_or_non_finite_required_point_yields_0_w(cfg, values, request_w, minute, lost):
    _, pc, _, _, _ = cfg
    values = {**values, "dso": "normal" if values["dso"] == "trip" else values["dso"]}
    d = decide_random(cfg, {**values, **lost}, request_w, minute)
    named = {key for key in lost if any(f"no fresh value: {POINTS[key]}" in r for r in d.messages)}
    assert named == {key for key in lost if any(r.code is ReasonCode.STALE_INPUT and r.detail == {"point": POINTS[key]}
                                                for r in d.reasons)}
    if any(r.startswith("unknown DSO mode") for r in d.messages):
        assert ReasonCode.DSO_UNKNOWN_MODE in d.codes
        named.add("dso")  # a NaN where the mode text belongs is a garbled DSO state
    if set(lost) == {"dso"} and not pc.enabled:
        assert named == set()  # the DSO state is only needed with power control on
        return
    if set(lost) == {"dso"} and pc.dso_comm_loss_limit_pct > 0:
        assert d.state == "safety" and named == {"dso"}  # a comm-loss limit above 0 % was configured
        return
    assert d.setpoint_w == 0.0
    assert d.state == "safety" and not d.remote_shutdown_requested
    assert named == ({k for k in lost if k != "dso"} | ({"dso"} & set(lost) if pc.enabled else set()))


@settings(max_examples=200, deadline=None, database=None)
@given(cfg=configs(), values=readings, request_w=requests, minute=minutes,
       offline=st.lists(st.sampled_from(["bms", "pcs", "meter", "dso_box"]), min_size=1, max_size=3, unique=True).map(tuple))
def test_any_offline_device_yields_0_w(cfg, values, request_w, minute, offline):
    d = decide_random(cfg, values, request_w, minute, offline)
    assert d.setpoint_w == 0.0
    assert d.state in ("safety", "shutdown")
    assert all(f"device offline: {name}" in d.messages for name in offline)
    assert {r.detail["device"] for r in d.reasons if r.code is ReasonCode.DEVICE_OFFLINE} == set(offline)


@settings(max_examples=200, deadline=None, database=None)
@given(cfg=configs(), values=readings, request_w=requests, minute=minutes,
       alarm=st.sampled_from(["over-temperature shutdown", "insulation resistance low",
                              {"severity": "critical", "text": "Contactor opened unexpectedly"},
                              {"severity": "shutdown", "text": "BMS system fault"}]),
       others=st.lists(st.sampled_from(["SoC low", "fan", {"severity": "info", "text": "ok"}]), max_size=3))
def test_any_safety_alarm_yields_0_w(cfg, values, request_w, minute, alarm, others):
    d = decide_random(cfg, {**values, "alarms": (*others, alarm)}, request_w, minute)
    assert d.setpoint_w == 0.0
    assert d.state in ("safety", "shutdown")
    assert any(r.startswith("safety alarm: ") for r in d.messages)
    assert ReasonCode.BMS_ALARM in d.codes

"""The real-time layer: turns the current plan step's intent into a battery power request, every cycle.

Plans come in 15-minute steps; load and PV change within seconds. So the request follows the meter:
- self-consumption (and no plan): keep the grid at 0 W — discharge by the import, charge by the export;
- load balancing: keep the grid at the plan's grid power for this step;
- peak shaving: the plan's battery power, but discharge more whenever import would exceed the plan's peak;
- arbitrage: the plan's battery power as it is (a trade against prices, not against the meter).
Requests are wishes: the safety loop clamps them. Pure functions of their inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .state import PlantState


class PlanStepLike(Protocol):
    bess_power_w: float  # > 0 = discharging
    grid_power_w: float  # > 0 = import


@dataclass(frozen=True)
class Intent:
    strategy: str | None  # None: no plan yet
    step: PlanStepLike | None
    peak_import_w: float | None = None  # peak shaving: the plan's highest import over the horizon


@dataclass(frozen=True)
class Request:
    power_w: float
    why: str


def realtime_request(state: PlantState, now: float, intent: Intent) -> Request:
    grid_w = state.value("grid.power_w", now)
    bess_w = state.value("bess.power_w", now)
    step = intent.step
    if intent.strategy == "arbitrage" and step is not None:
        return Request(float(step.bess_power_w), "arbitrage: planned battery power")
    if grid_w is None or bess_w is None:
        return Request(0.0, "no fresh meter reading: idle")
    site_w = float(grid_w) + float(bess_w)  # what the grid would carry with the battery idle
    if intent.strategy == "peak_shaving" and step is not None:
        threshold_w = intent.peak_import_w if intent.peak_import_w is not None else step.grid_power_w
        guard_w = site_w - threshold_w  # discharge needed to keep import at the threshold
        if guard_w > step.bess_power_w:
            return Request(guard_w, f"peak shaving: import held at {threshold_w:.0f} W")
        return Request(float(step.bess_power_w), "peak shaving: planned battery power")
    if intent.strategy == "load_balancing" and step is not None:
        return Request(site_w - float(step.grid_power_w), f"load balancing: grid held at {step.grid_power_w:.0f} W")
    why = "self-consumption: grid held at 0 W" if intent.strategy else "no plan yet: self-consumption"
    return Request(site_w, why)

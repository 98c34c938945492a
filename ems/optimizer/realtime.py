"""The real-time layer: turns the current plan step's intent into a battery power request, every cycle.

Each strategy's rule lives in its module (`Strategy.realtime`, see `strategies/base.py`); this only
reads the meter and hands it to the rule of the plan's strategy. Without a plan step (or for a name
the registry does not know) the base rule runs: self-consumption, the grid held at 0 W.
Requests are wishes: the safety loop clamps them. Pure functions of their inputs.
"""
from __future__ import annotations

from ..state import PlantState
from .strategies import STRATEGIES
from .strategies.base import Intent, Meter, PlanStepLike, Request, hold_grid_at_zero


def realtime_request(state: PlantState, now: float, intent: Intent) -> Request:
    meter = Meter(state.value("grid.power_w", now), state.value("bess.power_w", now))
    strategy = STRATEGIES.get(intent.strategy) if intent.strategy is not None else None
    if strategy is not None and intent.step is not None:
        return strategy.realtime(meter, intent.step, intent)
    return hold_grid_at_zero(meter, "self-consumption: grid held at 0 W" if intent.strategy
                             else "no plan yet: self-consumption")


__all__ = ["Intent", "PlanStepLike", "Request", "realtime_request"]

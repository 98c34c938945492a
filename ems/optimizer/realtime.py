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


METER_GAIN = 0.5
"""How far a cycle moves the battery from its last setpoint towards a request worked out from the meter."""


def damped(request: Request, previous_w: float | None) -> float:
    """The power to ask for this cycle: a meter-following request approached by `METER_GAIN` from the last
    setpoint, any other (a planned power, no meter) as it is.

    Why: grid + battery is the site only when both readings show the same battery power. They come from
    two devices polled at their own times; a battery reading taken just before the last write and a meter
    reading just after it count that write's change twice. At a gain of 1 (the request taken whole) the
    error then grows by the golden ratio each cycle, its sign flipping, until the battery swings between
    full charge and full discharge every cycle: inside every limit, paid for at the grid (the soak found
    it: `ems soak`, poll phases that line up so). At 0.5 the loop is stable with either reading one or
    two writes late, and with fresh readings it halves the error each cycle. The safety rules still clamp
    every request at once (export, import, DSO, BMS limits): only the approach is gentle."""
    if not request.follows_meter or previous_w is None:
        return request.power_w
    return previous_w + METER_GAIN * (request.power_w - previous_w)


def realtime_request(state: PlantState, now: float, intent: Intent) -> Request:
    meter = Meter(state.value("grid.power_w", now), state.value("bess.power_w", now))
    strategy = STRATEGIES.get(intent.strategy) if intent.strategy is not None else None
    if strategy is not None and intent.step is not None:
        return strategy.realtime(meter, intent.step, intent)
    return hold_grid_at_zero(meter, "self-consumption: grid held at 0 W" if intent.strategy
                             else "no plan yet: self-consumption")


__all__ = ["Intent", "PlanStepLike", "Request", "damped", "realtime_request"]

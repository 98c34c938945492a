"""The real-time layer: turns the current plan step into a setpoint request for the safety loop.

Until a plan exists (the optimizer lands later), the request is plain self-consumption: the battery
covers the site's net load and absorbs its PV surplus. Requests are wishes; the safety loop clamps them.
"""
from __future__ import annotations

from .state import PlantState


def self_consumption_request_w(state: PlantState, now: float) -> float:
    """Discharge by the net load (load − PV), charge by the surplus; 0 W when either is unknown."""
    load_w = state.value("load.power_w", now)
    pv_w = state.value("pv.power_w", now)
    if load_w is None or pv_w is None:
        return 0.0
    return float(load_w) - float(pv_w)

"""One step of a battery's stored energy: the physics every model of the pack shares.

The backtest's replay, the optimizer's greedy fallback plan and the pack simulator all move energy
the same way: a requested AC power (> 0 discharging, < 0 charging) is cut to the power limit and to
what the SoC window allows over the step; charging stores `η_c` of the AC energy, discharging takes
the AC energy `/ η_d` from the cells. Pure and unit-free: any consistent units (kWh, kW and hours
in the replay and the plan; J, W and seconds in the simulator).
"""
from __future__ import annotations


def battery_step(energy: float, request: float, dt: float, *, min_energy: float, max_energy: float,
                 max_charge: float, max_discharge: float, charge_efficiency: float,
                 discharge_efficiency: float) -> tuple[float, float]:
    """Apply the AC power `request` (> 0 discharging) for `dt` to a battery storing `energy`.

    The power is limited by `max_discharge` / `max_charge` (magnitudes, ≥ 0) and by the energy the
    window [min_energy, max_energy] leaves over the step: down to the minimum when discharging, up to
    the maximum when charging. A battery already outside the window is never pulled back into it (it
    can only move towards it), and rounding never carries the new energy across a bound. A zero
    request or a step of no duration changes nothing.

    Returns (the AC power delivered, > 0 discharging; the stored energy after the step).
    """
    if dt <= 0:
        return 0.0, energy
    e_lo = min(min_energy, energy)
    e_hi = max(max_energy, energy)
    if request > 0:
        d = min(request, max_discharge, max(0.0, energy - e_lo) * discharge_efficiency / dt)
        return d, max(e_lo, energy - d * dt / discharge_efficiency)
    if request < 0:
        c = min(-request, max_charge, max(0.0, e_hi - energy) / (charge_efficiency * dt))
        return -c, min(e_hi, energy + c * dt * charge_efficiency)
    return 0.0, energy

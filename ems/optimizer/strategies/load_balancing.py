"""Load balancing: flatten the grid profile — cut the peaks, fill the valleys.

Auxiliary columns per step, with m the horizon's mean net load without a battery (load − PV):
    peak excess    a⁺_t ≥ g_t − m,            g = import − export (the real grid power)
    valley gap     a⁻_t ≥ m − (net_t + c_t − d_t/(η_c·η_d))
and the range g_hi ≥ g_t, g_lo ≤ net_t + c_t − d_t/(η_c·η_d). The objective adds
W·Σ Δt·(a⁺ + a⁻) + W·1 h·(g_hi − g_lo) to the real prices, W = 4 × the largest price (≥ 5 ct/kWh),
so flatness comes first and money second.

Why the valley side is measured through the battery rather than on g: filling a valley by charging
stores energy, but raising g by charging and discharging at once only burns it in the losses. The
expression c − d/(η_c·η_d) is unchanged by such burning (d = η_c·η_d·c leaves the SoC alone) and
equals the real lift of g while the battery only charges, so valleys are filled by storing and the
model's no-simultaneous-flows argument (see `model.py`) keeps holding. While discharging it
overstates the drop in g, which only makes discharging into a valley look worse than it is.

In real time the grid is held at the plan's grid power for the step, whatever load and PV do.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..inputs import PlanInputs
from .base import NO_METER, Intent, Meter, PlanStepLike, Request, Strategy

if TYPE_CHECKING:
    from ..model import ColumnIndex, ModelBuilder

INF = float("inf")
MIN_PRICE_FOR_WEIGHT_EUR_PER_KWH = 0.05
WEIGHT_FACTOR = 4.0
RANGE_HOURS = 1.0


def flatness_weight_eur_per_kwh(inputs: PlanInputs) -> float:
    prices = np.concatenate([np.abs(inputs.import_price_eur_per_kwh), np.abs(inputs.export_price_eur_per_kwh)])
    return WEIGHT_FACTOR * max(float(np.max(prices)), MIN_PRICE_FOR_WEIGHT_EUR_PER_KWH)


def target_grid_kw(inputs: PlanInputs) -> float:
    return float(np.mean(np.asarray(inputs.load_kw) - np.asarray(inputs.pv_kw)))


class LoadBalancing(Strategy):
    name = "load_balancing"
    title = "Load balancing"
    description = ("Flattens the grid profile: charges in the valleys and discharges at the peaks of "
                   "the site's net load, prices second.")

    def add_terms(self, builder: "ModelBuilder", inputs: PlanInputs, cols: "ColumnIndex") -> None:
        n = inputs.n
        weight = flatness_weight_eur_per_kwh(inputs)
        m = target_grid_kw(inputs)
        net = np.asarray(inputs.load_kw) - np.asarray(inputs.pv_kw)
        stored_per_discharged = 1.0 / (inputs.bess.charge_efficiency * inputs.bess.discharge_efficiency)
        steps = np.arange(n)
        imp, exp_, c, d = cols.grid_import, cols.grid_export, cols.charge, cols.discharge

        excess = builder.add_columns(n, inputs.dt_h * weight, 0.0, INF)
        # a⁺ − i + e ≥ −m
        builder.add_rows(n, steps.repeat(3), np.column_stack([excess, imp, exp_]).ravel(),
                         np.tile([1.0, -1.0, 1.0], n), -m, INF)
        gap = builder.add_columns(n, inputs.dt_h * weight, 0.0, INF)
        # a⁻ + c − d/(η_c·η_d) ≥ m − net
        builder.add_rows(n, steps.repeat(3), np.column_stack([gap, c, d]).ravel(),
                         np.tile([1.0, 1.0, -stored_per_discharged], n), m - net, INF)
        hi_lo = builder.add_columns(2, np.array([RANGE_HOURS * weight, -RANGE_HOURS * weight]), -INF, INF)
        # g_hi − i + e ≥ 0
        builder.add_rows(n, steps.repeat(3), np.column_stack([np.full(n, hi_lo[0]), imp, exp_]).ravel(),
                         np.tile([1.0, -1.0, 1.0], n), 0.0, INF)
        # c − d/(η_c·η_d) − g_lo ≥ −net
        builder.add_rows(n, steps.repeat(3), np.column_stack([c, d, np.full(n, hi_lo[1])]).ravel(),
                         np.tile([1.0, -stored_per_discharged, -1.0], n), -net, INF)

    def realtime(self, meter: Meter, step: PlanStepLike, intent: Intent) -> Request:
        site_w = meter.site_w
        if site_w is None:
            return NO_METER
        return Request(site_w - float(step.grid_power_w), f"load balancing: grid held at {step.grid_power_w:.0f} W",
                       follows_meter=True)

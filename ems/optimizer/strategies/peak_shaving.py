"""Peak shaving: keep the highest grid import of the horizon as low as possible.

An auxiliary column `peak` ≥ every step's import carries a price per kW. That price is the demand
charge where one is billed, but never less than a weight that makes one kW of peak worth more than
any energy shifting could cost over the horizon (horizon × highest import price / round-trip
efficiency, doubled): the peak goes down first, then energy cost is minimised around it.

In real time: the plan's battery power, but discharge more whenever import would exceed the plan's
peak (the highest import over the whole plan, which `intent` hands to the real-time layer).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..inputs import PlanInputs
from .base import NO_METER, Intent, Meter, PlanStepLike, Request, Strategy, Weights, real_weights

if TYPE_CHECKING:
    from ..plan import Plan

MIN_PRICE_FOR_WEIGHT_EUR_PER_KWH = 0.05


def peak_weight_eur_per_kw(inputs: PlanInputs) -> float:
    b = inputs.bess
    top_price = max(float(np.max(np.abs(inputs.import_price_eur_per_kwh))), MIN_PRICE_FOR_WEIGHT_EUR_PER_KWH)
    dominant = 2.0 * inputs.horizon_h * top_price / (b.charge_efficiency * b.discharge_efficiency)
    return max(float(inputs.demand_charge_eur_per_kw), dominant)


class PeakShaving(Strategy):
    name = "peak_shaving"
    title = "Peak shaving"
    description = ("Keeps the highest grid import as low as possible (demand charge, grid-connection "
                   "limit); uses the battery for that first and for prices second.")

    def weights(self, inputs: PlanInputs) -> Weights:
        real = real_weights(inputs)
        return Weights(real.import_per_kwh, real.export_per_kwh, real.discharge_per_kwh,
                       real.terminal_per_kwh, peak_weight_eur_per_kw(inputs))

    def intent(self, plan: "Plan", step: PlanStepLike) -> Intent:
        return Intent(plan.strategy, step, peak_import_w=max(s.grid_power_w for s in plan.steps))

    def realtime(self, meter: Meter, step: PlanStepLike, intent: Intent) -> Request:
        site_w = meter.site_w
        if site_w is None:
            return NO_METER
        threshold_w = intent.peak_import_w if intent.peak_import_w is not None else step.grid_power_w
        guard_w = site_w - threshold_w  # discharge needed to keep import at the threshold
        if guard_w > step.bess_power_w:
            return Request(guard_w, f"peak shaving: import held at {threshold_w:.0f} W", follows_meter=True)
        return Request(float(step.bess_power_w), "peak shaving: planned battery power")

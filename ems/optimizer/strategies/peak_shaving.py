"""Peak shaving: keep the highest grid import of the horizon as low as possible.

An auxiliary column `peak` ≥ every step's import carries a price per kW. That price is the demand
charge where one is billed, but never less than a weight that makes one kW of peak worth more than
any energy shifting could cost over the horizon (horizon × highest import price / round-trip
efficiency, doubled): the peak goes down first, then energy cost is minimised around it.
"""
from __future__ import annotations

import numpy as np

from ..inputs import PlanInputs
from .base import Strategy, Weights, real_weights

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

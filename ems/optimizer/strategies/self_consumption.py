"""Self-consumption: use as much of the site's own PV as possible; the grid is the last resort.

Prices are replaced by one flat internal price π̄ (the horizon's mean import price, at least
5 ct/kWh) for import, and a tenth of it for export: with a flat price, charging from the grid only
loses the round-trip losses, so it never happens; storing PV surplus (worth π̄·η_c·η_d later) beats
exporting it (0.1·π̄); discharging into the grid (0.1·π̄·…) loses against covering the own load.
A stored kWh left at the end is worth half of π̄·η_d: enough to keep PV rather than export it, not
enough to hold energy back from the own load inside the horizon. Where exporting costs money
(negative export price) the real price is kept, so PV is curtailed rather than paid away.

In real time it keeps the grid at 0 W: the base rule (`Strategy.realtime`), which also runs without a plan.
"""
from __future__ import annotations

import numpy as np

from ..inputs import PlanInputs
from .base import Strategy, Weights

MIN_FLAT_PRICE_EUR_PER_KWH = 0.05
EXPORT_SHARE = 0.1
TERMINAL_SHARE = 0.5


def flat_price_eur_per_kwh(inputs: PlanInputs) -> float:
    prices = np.asarray(inputs.import_price_eur_per_kwh)
    return max(float(np.mean(np.maximum(prices, 0.0))), MIN_FLAT_PRICE_EUR_PER_KWH)


class SelfConsumption(Strategy):
    name = "self_consumption"
    title = "Self-consumption"
    description = ("Stores PV surplus and covers the own load from the battery; never charges from "
                   "the grid and never discharges into it.")

    def weights(self, inputs: PlanInputs) -> Weights:
        flat = flat_price_eur_per_kwh(inputs)
        export_real = np.asarray(inputs.export_price_eur_per_kwh)
        return Weights(
            import_per_kwh=np.full(inputs.n, flat),
            export_per_kwh=np.where(export_real < 0, export_real, EXPORT_SHARE * flat),
            discharge_per_kwh=float(inputs.bess.degradation_cost_eur_per_kwh),
            terminal_per_kwh=TERMINAL_SHARE * flat * inputs.bess.discharge_efficiency,
            peak_per_kw=float(inputs.demand_charge_eur_per_kw),
        )

"""What a strategy is: objective weights for the shared model, plus optional terms of its own.

The physical model (flows, SoC, limits) is the same for every strategy and lives in `model.py`. A
strategy only says what it wants: the price of each kWh imported or exported, what discharging and a
stored kWh at the end are worth, how much a kW of peak import costs — and may add auxiliary columns
and rows (`add_terms`). That keeps each strategy's logic in its own module and nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..inputs import PlanInputs

if TYPE_CHECKING:
    from ..model import ColumnIndex, ModelBuilder


@dataclass(frozen=True)
class Weights:
    """Objective coefficients of the shared model; € or internal €-like units, per kWh / kW."""

    import_per_kwh: np.ndarray
    export_per_kwh: np.ndarray  # revenue: subtracted in the objective
    discharge_per_kwh: float
    terminal_per_kwh: float
    peak_per_kw: float  # weight on the peak import above `peak_so_far_kw`; 0 = no peak term


def real_weights(inputs: PlanInputs) -> Weights:
    """The site's real money: prices, degradation, terminal value, the configured demand charge."""
    return Weights(
        import_per_kwh=np.asarray(inputs.import_price_eur_per_kwh, dtype=float),
        export_per_kwh=np.asarray(inputs.export_price_eur_per_kwh, dtype=float),
        discharge_per_kwh=float(inputs.bess.degradation_cost_eur_per_kwh),
        terminal_per_kwh=inputs.terminal_value_eur_per_kwh(),
        peak_per_kw=float(inputs.demand_charge_eur_per_kw),
    )


class Strategy:
    """Base: real-money weights and no extra terms (that alone is arbitrage)."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    def weights(self, inputs: PlanInputs) -> Weights:
        return real_weights(inputs)

    def add_terms(self, builder: "ModelBuilder", inputs: PlanInputs, cols: "ColumnIndex") -> None:
        """Add auxiliary columns and rows; the default strategy has none."""

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "title": self.title, "description": self.description}

"""What a strategy is: objective weights for the shared model, optional terms of its own, and its
real-time rule.

The physical model (flows, SoC, limits) is the same for every strategy and lives in `model.py`. A
strategy only says what it wants: the price of each kWh imported or exported, what discharging and a
stored kWh at the end are worth, how much a kW of peak import costs — and may add auxiliary columns
and rows (`add_terms`). Between re-plans it says how the battery follows the plan: `intent` picks
what the real-time layer needs of the plan (the current step, and e.g. the plan's peak import), and
`realtime` turns that and the meter into a battery request, every cycle (`ems.optimizer.realtime`).
That keeps each strategy's logic in its own module and nowhere else.

Plans come in 15-minute steps; load and PV change within seconds. So a real-time rule follows the
meter: the default (self-consumption, and what runs without a plan) keeps the grid at 0 W —
discharge by the import, charge by the export. Requests are wishes: the safety loop clamps them.
Rules are pure functions of their inputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from ..inputs import PlanInputs

if TYPE_CHECKING:
    from ..model import ColumnIndex, ModelBuilder
    from ..plan import Plan


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


class PlanStepLike(Protocol):
    """What a real-time rule reads of a plan step (`plan.PlanStep`, or the backtest's stand-in)."""

    @property
    def bess_power_w(self) -> float: ...  # > 0 = discharging

    @property
    def grid_power_w(self) -> float: ...  # > 0 = import


@dataclass(frozen=True)
class Intent:
    """What the plan wants now: its strategy, the current step, and what the strategy took from the
    whole plan (`Strategy.intent`)."""

    strategy: str | None  # None: no plan yet
    step: PlanStepLike | None
    peak_import_w: float | None = None  # peak shaving: the plan's highest import over the horizon


@dataclass(frozen=True)
class Request:
    """The battery power asked for this cycle (> 0 = discharge) and why; `follows_meter`: worked out from
    the meter (grid + battery), so the runtime approaches it by a loop gain below 1 (`realtime.damped`)."""

    power_w: float
    why: str
    follows_meter: bool = False


@dataclass(frozen=True)
class Meter:
    """The fresh meter readings a real-time rule may follow; None = no fresh reading."""

    grid_w: float | None  # > 0 = import
    bess_w: float | None  # > 0 = discharging

    @property
    def site_w(self) -> float | None:
        """What the grid would carry with the battery idle; None without both readings."""
        if self.grid_w is None or self.bess_w is None:
            return None
        return float(self.grid_w) + float(self.bess_w)


NO_METER = Request(0.0, "no fresh meter reading: idle")


def hold_grid_at_zero(meter: Meter, why: str) -> Request:
    """Self-consumption: discharge by the import, charge by the export; idle without a fresh meter."""
    site_w = meter.site_w
    if site_w is None:
        return NO_METER
    return Request(site_w, why, follows_meter=True)


class Strategy:
    """Base: real-money weights and no extra terms (that alone is arbitrage's plan), and the
    self-consumption rule in real time (the safe default: it follows the meter, never the prices)."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def weights(self, inputs: PlanInputs) -> Weights:
        return real_weights(inputs)

    def add_terms(self, builder: "ModelBuilder", inputs: PlanInputs, cols: "ColumnIndex") -> None:
        """Add auxiliary columns and rows; the default strategy has none."""

    def intent(self, plan: "Plan", step: PlanStepLike) -> Intent:
        """What the real-time layer gets of `plan` while `step` is in force; a rule that needs more of
        the plan than the step (peak shaving: its peak import) adds it here."""
        return Intent(plan.strategy, step)

    def realtime(self, meter: Meter, step: PlanStepLike, intent: Intent) -> Request:
        """The battery request for this cycle while this strategy's plan step is in force.

        Default: self-consumption — keep the grid at 0 W whatever the step says.
        """
        return hold_grid_at_zero(meter, "self-consumption: grid held at 0 W")

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "title": self.title, "description": self.description}

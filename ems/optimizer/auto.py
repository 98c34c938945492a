"""Auto mode: pick the strategy for one planning run from the situation and the money, and say why.

Arbitrage's plan *is* the least real cost of the horizon — prices, PV, grid fees, degradation and a
billed demand charge all in one objective — so any other strategy can only lose money against it in
the plan. Auto therefore picks arbitrage unless another strategy buys something the plan cannot
show, at a price that is small and stated:
1. The forecast net load comes close to the grid-connection limit → peak shaving: its real-time rule
   discharges whenever import would pass the plan's peak, so a load the forecast missed does not
   trip the fuse (a blown fuse costs more than any price spread earns).
2. A demand charge is billed and the horizon's forecast peak would set a new billing-period peak →
   peak shaving, if its plan costs at most what a forecast miss of `peak_guard_share_pct` of that
   peak would cost in demand charge (its real-time guard is what protects against that miss).
   Otherwise arbitrage, which already prices the demand charge in its plan.
3. Otherwise arbitrage: the reason names what pays (a price spread worth a round trip, PV surplus
   worth storing, or nothing that stands out).
Self-consumption and load balancing stay for the operator to choose: each costs money against
arbitrage here (bench/bench_backtest.py: 2–8 points of the optimum's savings with the earlier rules
that picked them). Pure: looks only at the inputs (and solves the LPs it compares, see `optimize`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .inputs import PlanInputs


@dataclass(frozen=True)
class AutoThresholds:
    peak_utilisation_pct: float = 90.0
    """Net load peak as % of the grid import limit from which peak shaving takes over."""
    min_round_trip_gain_eur_per_kwh: float = 0.03
    """A round trip (buy at the low price, use or sell at the high one) earning this is called a spread worth trading."""
    price_quantile_pct: float = 10.0
    """Low/high prices are this quantile and its mirror, so one spike does not decide."""
    min_pv_surplus_share_pct: float = 10.0
    """PV surplus over the horizon, as % of the usable capacity, called worth storing."""
    peak_guard_share_pct: float = 10.0
    """The forecast miss on the peak (as % of it) that peak shaving's real-time guard is worth paying for."""


@dataclass(frozen=True)
class AutoChoice:
    strategy: str
    reason: str
    figures: dict[str, float] = field(default_factory=dict)


def situation_figures(inputs: PlanInputs, thresholds: AutoThresholds = AutoThresholds()) -> dict[str, float]:
    """The numbers the choice is made on (units in the names)."""
    b = inputs.bess
    dt = inputs.dt_h
    net = np.asarray(inputs.load_kw) - np.asarray(inputs.pv_kw)
    prices = np.asarray(inputs.import_price_eur_per_kwh)
    q = thresholds.price_quantile_pct
    low, high = float(np.percentile(prices, q)), float(np.percentile(prices, 100 - q))
    eta = b.charge_efficiency * b.discharge_efficiency
    usable_kwh = b.capacity_kwh * (b.max_soc_pct - b.min_soc_pct) / 100.0
    peak_kw = float(np.max(net))
    import_kw = np.maximum(net, 0.0)
    mean_import_kw = float(np.mean(import_kw))
    surplus_kwh = float(np.sum(np.maximum(-net, 0.0)) * dt)
    return {
        "price_low_eur_per_kwh": low,
        "price_high_eur_per_kwh": high,
        "price_spread_eur_per_kwh": high - low,
        "round_trip_gain_eur_per_kwh": (high - b.degradation_cost_eur_per_kwh) * eta - low,
        "net_load_peak_kw": peak_kw,
        "grid_limit_kw": inputs.max_import_kw,
        "peak_utilisation_pct": 100.0 * peak_kw / inputs.max_import_kw,
        "pv_surplus_kwh": surplus_kwh,
        "usable_capacity_kwh": usable_kwh,
        "pv_surplus_share_pct": 100.0 * surplus_kwh / usable_kwh if usable_kwh > 0 else 0.0,
        "mean_import_kw": mean_import_kw,
        "peak_to_mean": (peak_kw / mean_import_kw) if mean_import_kw > 1e-9 else 0.0,
        "demand_charge_eur_per_kw": float(inputs.demand_charge_eur_per_kw),
        "peak_so_far_kw": float(inputs.peak_so_far_kw),
    }


def _arbitrage_reason(f: dict[str, float], t: AutoThresholds) -> str:
    if f["round_trip_gain_eur_per_kwh"] >= t.min_round_trip_gain_eur_per_kwh:
        return (f"price spread {100 * f['price_spread_eur_per_kwh']:.1f} ct/kWh "
                f"({100 * f['price_low_eur_per_kwh']:.1f} to {100 * f['price_high_eur_per_kwh']:.1f}) "
                f"earns {100 * f['round_trip_gain_eur_per_kwh']:.1f} ct per kWh round trip after "
                f"losses and degradation (threshold {100 * t.min_round_trip_gain_eur_per_kwh:g} ct): "
                f"arbitrage, the plan with the lowest cost")
    if f["pv_surplus_share_pct"] >= t.min_pv_surplus_share_pct:
        return (f"PV surplus {f['pv_surplus_kwh']:.1f} kWh ({f['pv_surplus_share_pct']:.0f} % of the usable "
                f"capacity) is worth storing for later use; arbitrage stores it where that pays most and "
                f"keeps the cost lowest")
    return ("no price spread, PV surplus or load peak stands out: arbitrage keeps the cost lowest "
            "(it covers the own load from the battery where that pays)")


def choose_strategy(inputs: PlanInputs, thresholds: AutoThresholds = AutoThresholds()) -> AutoChoice:
    """The strategy for this horizon, a one-sentence reason with the deciding figures, and all figures."""
    f = situation_figures(inputs, thresholds)
    t = thresholds
    if f["peak_utilisation_pct"] >= t.peak_utilisation_pct:
        return AutoChoice("peak_shaving",
                          f"forecast net load peak {f['net_load_peak_kw']:.1f} kW is "
                          f"{f['peak_utilisation_pct']:.0f} % of the {f['grid_limit_kw']:g} kW grid limit "
                          f"(threshold {t.peak_utilisation_pct:g} %): peak shaving guards the limit in real time", f)
    charge = f["demand_charge_eur_per_kw"]
    if charge > 0 and f["net_load_peak_kw"] > f["peak_so_far_kw"]:
        from .model import optimize  # the model imports this module's package: import on use

        arbitrage = optimize(inputs, "arbitrage", reason="auto: comparison")
        shaving = optimize(inputs, "peak_shaving", reason="auto: comparison")
        if arbitrage.ok and shaving.ok:
            extra = float(shaving.objective_eur - arbitrage.objective_eur)
            peak_kw = max(max(s.grid_power_w for s in arbitrage.steps) / 1000.0, 0.0)
            guard = charge * peak_kw * t.peak_guard_share_pct / 100.0
            shaved_kw = max(s.grid_power_w for s in shaving.steps) / 1000.0
            f.update(peak_shaving_extra_cost_eur=extra, peak_guard_value_eur=guard,
                     arbitrage_peak_kw=peak_kw, peak_shaving_peak_kw=shaved_kw)
            if extra <= guard:
                return AutoChoice("peak_shaving",
                                  f"demand charge {charge:g} €/kW: peak shaving holds the import at "
                                  f"{shaved_kw:.1f} kW (arbitrage {peak_kw:.1f} kW) for {extra:.2f} € of energy "
                                  f"trading, less than a {t.peak_guard_share_pct:g} % miss of the peak would cost "
                                  f"({guard:.2f} €), which its real-time guard prevents", f)
            return AutoChoice("arbitrage",
                              f"demand charge {charge:g} €/kW is priced into the arbitrage plan (peak "
                              f"{peak_kw:.1f} kW); peak shaving would cost {extra:.2f} € more, above what its "
                              f"guard is worth ({guard:.2f} €)", f)
    return AutoChoice("arbitrage", _arbitrage_reason(f, t), f)

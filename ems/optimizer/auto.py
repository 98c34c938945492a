"""Auto mode: pick the strategy for one planning run from the situation, and say why.

Pure: looks only at the inputs. The order of the questions is the order of what matters most:
1. Will the forecast net load come close to the grid-connection limit? → peak shaving (a blown fuse
   or a demand charge costs more than any price spread earns).
2. Does the price spread pay for a round trip (after losses and degradation)? → arbitrage.
3. Is there PV surplus worth storing? → self-consumption.
4. Is the net load peaky (peak far above its mean)? → load balancing.
5. Otherwise → self-consumption, the safe default.
The figures behind each question are returned with the choice, for the record and the UI.
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
    """What one kWh of round trip (buy at the low price, sell or use at the high one) must earn."""
    price_quantile_pct: float = 10.0
    """Low/high prices are this quantile and its mirror, so one spike does not decide."""
    min_pv_surplus_share_pct: float = 10.0
    """PV surplus over the horizon, as % of the usable capacity, worth storing."""
    min_peak_to_mean: float = 2.5
    """Net-load peak / mean import from which the profile counts as peaky."""


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
    return {
        "price_low_eur_per_kwh": low,
        "price_high_eur_per_kwh": high,
        "price_spread_eur_per_kwh": high - low,
        "round_trip_gain_eur_per_kwh": (high - b.degradation_cost_eur_per_kwh) * eta - low,
        "net_load_peak_kw": peak_kw,
        "grid_limit_kw": inputs.max_import_kw,
        "peak_utilisation_pct": 100.0 * peak_kw / inputs.max_import_kw,
        "pv_surplus_kwh": float(np.sum(np.maximum(-net, 0.0)) * dt),
        "usable_capacity_kwh": usable_kwh,
        "mean_import_kw": mean_import_kw,
        "peak_to_mean": (peak_kw / mean_import_kw) if mean_import_kw > 1e-9 else 0.0,
    }


def choose_strategy(inputs: PlanInputs, thresholds: AutoThresholds = AutoThresholds()) -> AutoChoice:
    """The strategy for this horizon, a one-sentence reason with the deciding figures, and all figures."""
    f = situation_figures(inputs, thresholds)
    t = thresholds
    if f["peak_utilisation_pct"] >= t.peak_utilisation_pct:
        return AutoChoice("peak_shaving",
                          f"forecast net load peak {f['net_load_peak_kw']:.1f} kW is "
                          f"{f['peak_utilisation_pct']:.0f} % of the {f['grid_limit_kw']:g} kW grid limit "
                          f"(threshold {t.peak_utilisation_pct:g} %)", f)
    if f["round_trip_gain_eur_per_kwh"] >= t.min_round_trip_gain_eur_per_kwh:
        return AutoChoice("arbitrage",
                          f"price spread {100 * f['price_spread_eur_per_kwh']:.1f} ct/kWh "
                          f"({100 * f['price_low_eur_per_kwh']:.1f} to {100 * f['price_high_eur_per_kwh']:.1f}) "
                          f"earns {100 * f['round_trip_gain_eur_per_kwh']:.1f} ct per kWh round trip after "
                          f"losses and degradation (threshold {100 * t.min_round_trip_gain_eur_per_kwh:g} ct)", f)
    surplus_share = 100.0 * f["pv_surplus_kwh"] / f["usable_capacity_kwh"] if f["usable_capacity_kwh"] > 0 else 0.0
    f["pv_surplus_share_pct"] = surplus_share
    if surplus_share >= t.min_pv_surplus_share_pct:
        return AutoChoice("self_consumption",
                          f"PV surplus {f['pv_surplus_kwh']:.1f} kWh is {surplus_share:.0f} % of the usable "
                          f"capacity and the price spread earns only "
                          f"{100 * f['round_trip_gain_eur_per_kwh']:.1f} ct/kWh round trip", f)
    if f["peak_to_mean"] >= t.min_peak_to_mean:
        return AutoChoice("load_balancing",
                          f"net load is peaky: peak {f['net_load_peak_kw']:.1f} kW is {f['peak_to_mean']:.1f} × "
                          f"the mean import {f['mean_import_kw']:.1f} kW (threshold {t.min_peak_to_mean:g} ×), "
                          f"with no price spread or PV surplus to use", f)
    return AutoChoice("self_consumption",
                      "no price spread, PV surplus or load peak stands out: self-consumption is the safe default", f)

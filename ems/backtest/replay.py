"""Replaying a real year step by step with different battery controllers, and what each one costs.

Controllers (each produces per-step flows over the whole period, same signs and units as the optimizer):
- `no_battery`: the site as it is; the yardstick for savings.
- `greedy`: what a stock hybrid inverter does — PV surplus into the battery, the battery covers the
  load, never charges from or discharges into the grid (`ems.optimizer.plan.greedy_self_consumption_flows`).
- `ems`: the EMS as the runtime runs it — receding horizon (`RecedingHorizon`): a plan when the next
  day's prices are published (13:00) reaching to the end of the known prices, intraday replans every
  few hours, each plan step turned into a battery request by the real-time layer (`ems.optimizer.realtime`)
  and clamped to the battery's limits. With perfect forecasts (`ems`), or planning on a forecaster's
  forecasts: the EMS's own (`ems_forecast`) or seasonal naive (`ems_naive`), see `forecasters`.
- `optimum`: perfect foresight — the least cost with every price, load and PV value known in
  advance: the upper bound of what any controller could save with this battery, tariff and data
  (week windows with 3 days of lookahead, within cents of one exact LP over the period; see
  `run_perfect_foresight`).

All controllers share the physics and the rules no controller may break: SoC window, power limits,
grid-connection and feed-in limits, and PV that can only be exported at a negative price is curtailed
(the inverter's export limiter) — so savings measure the battery and its control, nothing else.

Money, per step: import × consumer price − export × feed-in price + degradation × energy discharged.
The consumer price is (market + |market|·surcharge % + surcharge + grid fee) × (1 + VAT), the formula
of `ems.forecast.prices.consumer_price_eur_per_kwh`. Energy left in the battery at the end of the
period is credited at `Site.final_energy_value_eur_per_kwh` (default 0: the period ends), against
what it held at the start; the optimum uses the same value, and EMS plans that reach the end of the
data are told so (they would otherwise keep energy for a future the accounting never sees).

The parts live in their own modules: the site, tariff, planning policy and forecaster hook
(`scenario`), the per-step realisation all controllers share (`realise`), the EMS (`receding`), the
optimum (`optimum`) and the figures (`results`). This module runs them together (`run_backtest`) and
keeps every name importable from `ems.backtest.replay`.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from ..optimizer import PlanInputs
from ..optimizer.inputs import MAX_STEPS, PlanInputError
from ..optimizer.plan import Flows, greedy_self_consumption_flows, no_battery_flows
from .data import BacktestData
from .optimum import (OPTIMUM_LOOKAHEAD_H, OPTIMUM_MIP_REL_GAP, OPTIMUM_TIME_LIMIT_S, OPTIMUM_WINDOW_H,
                      run_perfect_foresight)
from .realise import SOC_TOL_KWH, empty_flows
from .receding import known_until_ts, run_receding_horizon
from .results import (CONTROLLER_TITLES, BacktestResult, ControllerRun, ForecastErrors, ForecastFigures,
                      PeriodFigures, forecast_summary, month_labels, period_figures, summarise)
from .scenario import (Forecast, Forecaster, Progress, RecedingHorizon, Site, Tariff, chunk_inputs,
                       site_prices)

__all__ = [
    "CONTROLLER_TITLES", "OPTIMUM_LOOKAHEAD_H", "OPTIMUM_MIP_REL_GAP", "OPTIMUM_TIME_LIMIT_S", "OPTIMUM_WINDOW_H",
    "SOC_TOL_KWH", "BacktestResult", "ControllerRun", "Forecast", "ForecastErrors", "ForecastFigures", "Forecaster",
    "PeriodFigures", "Progress",
    "RecedingHorizon", "Site", "Tariff", "known_until_ts", "month_labels", "period_figures", "run_backtest",
    "run_greedy", "run_no_battery", "run_perfect_foresight", "run_receding_horizon", "summarise",
]


# -- the controllers without a plan ---------------------------------------------------------------

def _chained(data: BacktestData, site: Site, flows_of: Callable[[PlanInputs], Flows], name: str) -> ControllerRun:
    """A stateless-per-step controller over the whole period, in chunks a PlanInputs allows,
    carrying the stored energy from one chunk to the next."""
    t0 = time.perf_counter()
    pi, pe = site_prices(data, site)
    out = empty_flows(data.n)
    energy = site.start_energy_kwh
    cap = site.bess.capacity_kwh
    for first in range(0, data.n, MAX_STEPS):
        stop = min(data.n, first + MAX_STEPS)
        flows = flows_of(chunk_inputs(data, site, first, stop, 100.0 * energy / cap, pi, pe))
        for key in out:
            out[key][first:stop] = getattr(flows, key)
        energy = float(flows.soc_kwh[-1])
    return ControllerRun(name, Flows(**out), time.perf_counter() - t0)


def run_no_battery(data: BacktestData, site: Site) -> ControllerRun:
    return _chained(data, site, no_battery_flows, "no_battery")


def run_greedy(data: BacktestData, site: Site) -> ControllerRun:
    return _chained(data, site, greedy_self_consumption_flows, "greedy")


# -- all of them ----------------------------------------------------------------------------------

def run_backtest(data: BacktestData, site: Site = Site(), policy: RecedingHorizon = RecedingHorizon(), *,
                 forecaster: Optional[Forecaster] = None, optimum: bool = True, exact_optimum: bool = False,
                 extra_policies: Optional[dict[str, RecedingHorizon]] = None,
                 progress: Optional[Progress] = None, perfect: bool = True,
                 forecasters: Optional[dict[str, Forecaster]] = None) -> BacktestResult:
    """All controllers over `data`: no battery, greedy, the EMS with perfect forecasts (`perfect`),
    the EMS with each of `forecasters`' forecasts (run name → forecaster: `ems_forecast` for the own,
    `ems_naive` for seasonal naive; `forecaster` is short for {"ems_forecast": forecaster}), any
    `extra_policies` (name → policy, e.g. the day-at-a-time reference), and the perfect-foresight
    optimum (`optimum`; `exact_optimum`: one LP over the whole period, see `run_perfect_foresight`)."""
    problems = site.check() + policy.check()
    if problems:
        raise PlanInputError(problems[0][0], problems[0][1])
    t0 = time.perf_counter()
    runs: dict[str, ControllerRun] = {"no_battery": run_no_battery(data, site), "greedy": run_greedy(data, site)}
    if perfect:
        runs["ems"] = run_receding_horizon(data, site, policy, name="ems", progress=progress)
    chosen = dict(forecasters or {})
    if forecaster is not None:
        chosen.setdefault("ems_forecast", forecaster)
    for run_name, fc in chosen.items():
        runs[run_name] = run_receding_horizon(data, site, policy, forecaster=fc, name=run_name, progress=progress)
    for extra_name, extra in (extra_policies or {}).items():
        runs[extra_name] = run_receding_horizon(data, site, extra, name=extra_name, progress=progress)
    if optimum:
        if progress is not None:
            progress("optimum", 0.0)
        best = run_perfect_foresight(data, site, exact=exact_optimum)
        if best is not None:
            runs["optimum"] = best
        if progress is not None:
            progress("optimum", 1.0)
    index, labels, figures = summarise(data, site, runs)
    return BacktestResult(data, site, policy, runs, labels, index, figures, time.perf_counter() - t0,
                          forecast_summary(runs, index, labels))

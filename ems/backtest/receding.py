"""The EMS in a backtest: receding-horizon planning as the runtime does it, living with the real data."""
from __future__ import annotations

import logging
import time
from datetime import datetime, time as dtime, timedelta
from typing import Optional

import numpy as np

from ..optimizer import PlanInputs, choose_strategy, fallback_self_consumption_plan, optimize
from ..optimizer.inputs import MAX_STEPS, PlanInputError
from ..optimizer.plan import Flows, Plan
from ..localtime import hhmm_to_minutes, site_zone
from .data import BacktestData
from .realise import empty_flows, realise_step
from .results import ControllerRun, ForecastErrors
from .scenario import (Forecast, Forecaster, Progress, RecedingHorizon, Site, chunk_inputs, site_export_cap_kw,
                       site_prices)

log = logging.getLogger(__name__)


def _local_midnight_after(ts: float, days: int) -> float:
    local = datetime.fromtimestamp(ts, site_zone())
    return datetime.combine(local.date() + timedelta(days=days), dtime(0), site_zone()).timestamp()


def known_until_ts(ts: float, policy: RecedingHorizon) -> float:
    """End of the prices known at instant `ts`: tomorrow's end after publication, else today's end
    (`calendar_day`: always today's end)."""
    if policy.horizon == "calendar_day":
        return _local_midnight_after(ts, 1)
    local = datetime.fromtimestamp(ts, site_zone())
    published = local.hour * 60 + local.minute >= hhmm_to_minutes(policy.publication_hhmm)
    return _local_midnight_after(ts, 2 if published else 1)


def _check_forecast(fc: Forecast, n: int) -> Forecast:
    arrays = {}
    for name in ("load_kw", "pv_kw", "market_price_eur_per_kwh"):
        arr = np.asarray(getattr(fc, name), dtype=float).reshape(-1)
        if len(arr) != n or not np.all(np.isfinite(arr)):
            raise PlanInputError(f"forecast.{name}", f"must be {n} finite values (got {len(arr)})")
        arrays[name] = arr
    arrays["load_kw"] = np.maximum(arrays["load_kw"], 0.0)
    arrays["pv_kw"] = np.maximum(arrays["pv_kw"], 0.0)
    return Forecast(**arrays)


def run_receding_horizon(data: BacktestData, site: Site, policy: RecedingHorizon = RecedingHorizon(), *,
                         forecaster: Optional[Forecaster] = None, name: Optional[str] = None,
                         progress: Optional[Progress] = None) -> ControllerRun:
    """The EMS over the whole period, planning as `policy` says and living with the real data.

    Without a `forecaster` every plan sees the real load, PV and prices of its horizon (perfect
    forecasts: what the planner can do at best); with one, plans see its forecasts. A failed solve
    is replaced by the fallback plan (greedy self-consumption), as the runtime does, and counted.
    """
    name = name or ("ems_forecast" if forecaster is not None else "ems")
    problems = policy.check() + site.check()
    if problems:
        raise PlanInputError(problems[0][0], problems[0][1])
    t0 = time.perf_counter()
    n, step_s, dt_h = data.n, data.step_s, data.step_s / 3600.0
    bess = site.bess
    pi, pe = site_prices(data, site)
    starts = data.step_starts_s()
    known_end = np.array([known_until_ts(t, policy) for t in starts])
    new_prices = np.concatenate(([True], known_end[1:] != known_end[:-1]))
    every_steps = None if policy.replan_every_h is None else max(1, int(round(policy.replan_every_h * 3600 / step_s)))
    max_steps = MAX_STEPS if policy.max_horizon_h is None else \
        max(1, min(MAX_STEPS, int(round(policy.max_horizon_h * 3600 / step_s))))
    export_cap = site_export_cap_kw(site)
    out = empty_flows(n)
    energy = site.start_energy_kwh
    plan: Optional[Plan] = None
    plan_first = last_replan = 0
    peak_w: Optional[float] = None
    plans = failed = 0
    strategy_steps: dict[str, int] = {}
    errors = ForecastErrors.empty(n) if forecaster is not None else None
    next_progress = 0.0
    for k in range(n):
        offset = k - plan_first
        planned_energy = None if plan is None or offset <= 0 or offset > len(plan.steps) else \
            plan.steps[offset - 1].soc_pct * bess.capacity_kwh / 100.0
        replan = (plan is None or new_prices[k] or offset >= len(plan.steps)
                  or (every_steps is not None and k - last_replan >= every_steps)
                  or (planned_energy is not None
                      and abs(planned_energy - energy) > policy.soc_deviation_pct * bess.capacity_kwh / 100.0))
        if plan is None or replan:  # `replan` holds when there is no plan; this says so to the type checker
            stop = min(n, k + max_steps, k + int(round((known_end[k] - starts[k]) / step_s)))
            plan = _plan(data, site, policy, forecaster, k, stop, energy, pi, pe, errors)
            plans += 1
            failed += 0 if plan.status == "optimal" else 1
            plan_first = last_replan = k
            offset = 0
            peak_w = max((s.grid_power_w for s in plan.steps), default=None)
        step = plan.steps[offset]
        strategy = plan.strategy
        strategy_steps[strategy] = strategy_steps.get(strategy, 0) + 1
        c, d, energy, imp, exp_, cur = realise_step(strategy, step, peak_w, float(starts[k]), float(data.load_kw[k]),
                                                    float(data.pv_kw[k]), energy, bess, dt_h, export_cap, float(pe[k]))
        out["charge_kw"][k], out["discharge_kw"][k], out["soc_kwh"][k] = c, d, energy
        out["import_kw"][k], out["export_kw"][k], out["curtail_kw"][k] = imp, exp_, cur
        if progress is not None and k / n >= next_progress:
            progress(name, k / n)
            next_progress += 0.05
    if progress is not None:
        progress(name, 1.0)
    note = f"{plans} plans" + (f", {failed} failed (fallback used)" if failed else "")
    if errors is not None:
        log_ = getattr(forecaster, "log", None)
        errors.models.update(getattr(log_, "models", {}) or {})
    return ControllerRun(name, Flows(**out), time.perf_counter() - t0, plans, failed, strategy_steps, note, errors)


def _plan(data: BacktestData, site: Site, policy: RecedingHorizon, forecaster: Optional[Forecaster], first: int,
          stop: int, energy_kwh: float, pi: np.ndarray, pe: np.ndarray,
          errors: Optional[ForecastErrors] = None) -> Plan:
    """One planning run from step `first` to `stop` (exclusive), from the stored energy now. The
    forecaster sees the data before `first` only; what it forecast is scored into `errors`."""
    start_ts = data.start_ts + first * data.step_s
    soc0_pct = min(100.0, max(0.0, 100.0 * energy_kwh / site.bess.capacity_kwh))
    # A plan reaching the end of the data is told that the period ends there, and what energy left
    # over is worth then (as the optimum is): otherwise it would keep energy for a future that the
    # accounting never sees.
    terminal = site.final_energy_value_eur_per_kwh if stop >= data.n else policy.terminal_value_eur_per_kwh
    load, pv = data.load_kw[first:stop], data.pv_kw[first:stop]
    imp_price, exp_price = pi[first:stop], pe[first:stop]
    try:
        if forecaster is not None:
            fc = _check_forecast(forecaster.forecast(data.slice(0, first), start_ts, start_ts, data.step_s,
                                                     stop - first, data.market_price_eur_per_kwh[first:stop].copy()),
                                 stop - first)
            load, pv = fc.load_kw, fc.pv_kw
            if errors is not None:
                errors.add(first, load, pv, data.load_kw[first:stop], data.pv_kw[first:stop])
            imp_price = site.tariff.import_price_eur_per_kwh(fc.market_price_eur_per_kwh)
            exp_price = site.tariff.export_price_eur_per_kwh(fc.market_price_eur_per_kwh)
        inputs = PlanInputs(start_ts=start_ts, step_s=data.step_s, import_price_eur_per_kwh=imp_price,
                            export_price_eur_per_kwh=exp_price, load_kw=load, pv_kw=pv, soc0_pct=soc0_pct,
                            bess=site.bess, grid=site.grid,
                            terminal_soc_value_eur_per_kwh=terminal)
    except Exception as err:  # a bad forecast must not end the replay: plan on the real data, count it
        log.warning("forecast for %s unusable (%s): greedy fallback for this run",
                    datetime.fromtimestamp(start_ts, site_zone()), err)
        inputs = chunk_inputs(data, site, first, stop, soc0_pct, pi, pe)
        return fallback_self_consumption_plan(inputs)
    if policy.strategy == "auto":
        choice = choose_strategy(inputs)
        plan = optimize(inputs, choice.strategy, reason=choice.reason, figures=choice.figures,
                        time_limit_s=policy.time_limit_s)
    else:
        plan = optimize(inputs, policy.strategy, reason="fixed strategy", time_limit_s=policy.time_limit_s)
    return plan if plan.ok else fallback_self_consumption_plan(inputs, plan)

"""The perfect-foresight optimum: the least cost with every price, load and PV value known in advance."""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import replace
from datetime import datetime
from typing import Optional

import numpy as np

from ..config.schema import BessConfig
from ..optimizer import PlanInputs, optimize
from ..optimizer.inputs import MAX_STEPS
from ..optimizer.model import binary_steps_from_weights, build_model, extract_flows, to_highs
from ..optimizer.plan import Flows, Plan
from ..optimizer.strategies import get_strategy
from ..localtime import site_zone
from .data import BacktestData
from .realise import empty_flows, follow_flows
from .results import ControllerRun
from .scenario import Site, chunk_inputs, site_prices

log = logging.getLogger(__name__)

OPTIMUM_TIME_LIMIT_S = 600.0
OPTIMUM_WINDOW_H = 7 * 24.0
OPTIMUM_LOOKAHEAD_H = 72.0
"""The optimum is solved in windows of a week, each seeing 3 more days: a 15-min window is then
960 steps, whose MIP (binaries on money-pump steps) stays near 65 MB peak RSS; a month-long
window's MIP needs ~150 MB, a year-long one ~570 MB (measured: bench/bench_backtest.py, backtest notes)."""
OPTIMUM_MIP_REL_GAP = 1e-4  # the year MIP (binaries on money-pump steps only) proves 1e-4 in seconds, 1e-6 in a minute


def plan_flows(plan: Plan, bess: BessConfig) -> Flows:
    """Flows in kW / kWh back from a plan's rows (W, %)."""
    def col(name: str) -> np.ndarray:
        return np.array([getattr(st, name) for st in plan.steps], dtype=float) / 1000.0
    grid = col("grid_power_w")
    soc = np.array([st.soc_pct for st in plan.steps], dtype=float) * bess.capacity_kwh / 100.0
    return Flows(col("charge_w"), col("discharge_w"), soc, np.maximum(grid, 0.0), np.maximum(-grid, 0.0),
                 col("pv_curtailed_w"))


def run_perfect_foresight(data: BacktestData, site: Site, *, exact: bool = False,
                          window_h: float = OPTIMUM_WINDOW_H, lookahead_h: float = OPTIMUM_LOOKAHEAD_H,
                          time_limit_s: float = OPTIMUM_TIME_LIMIT_S) -> Optional[ControllerRun]:
    """The least cost a controller knowing all prices, load and PV in advance could reach.

    Default: chained windows of `window_h` (a week), each solved by `optimize` with `lookahead_h`
    (3 days) beyond it in view and the SoC carried over — small in memory (a 15-min year peaks
    near 70 MB) and within cents of the exact optimum (`bench/bench_backtest.py` measures the
    difference). A period that fits in one window plus its lookahead is solved in one LP, exactly.
    `exact=True` solves one LP over the whole period however long: the true bound, but a 15-min
    year needs ~230 MB (LP) to ~570 MB (with money-pump binaries) — not on a gateway running the
    EMS. None if a solve fails (the report then says so; there is no stand-in).
    """
    t0 = time.perf_counter()
    if exact:
        return _exact_optimum(data, site, time_limit_s, t0)
    pi, pe = site_prices(data, site)
    step_h = data.step_s / 3600.0
    keep = max(1, min(MAX_STEPS, int(round(window_h / step_h))))
    lookahead = min(MAX_STEPS - keep, max(0, int(round(lookahead_h / step_h))))
    out = empty_flows(data.n)
    energy = site.start_energy_kwh
    windows = binaries = 0
    first = 0
    while first < data.n:
        horizon_stop = min(data.n, first + keep + lookahead)
        stop = data.n if horizon_stop == data.n else first + keep
        inputs = chunk_inputs(data, site, first, horizon_stop, 100.0 * energy / site.bess.capacity_kwh, pi, pe)
        if horizon_stop < data.n:  # the lookahead values what is left: the optimizer's default
            inputs = replace(inputs, terminal_soc_value_eur_per_kwh=None)
        plan = optimize(inputs, "arbitrage", reason="perfect foresight", time_limit_s=time_limit_s)
        if plan.status != "optimal":
            log.warning("perfect-foresight window from %s not solved: %s: %s",
                        datetime.fromtimestamp(inputs.start_ts, site_zone()), plan.status, plan.message)
            return None
        energy = follow_flows(data, site, plan_flows(plan, site.bess), first, stop - first, energy, pe, out)
        windows += 1
        first = stop
        binaries += plan.binary_steps
    note = ("one LP, optimal" if windows == 1 else
            f"{windows} windows of {keep * step_h:g} h, each with {lookahead * step_h:g} h lookahead") + \
        (f", {binaries} binary steps" if binaries else "")
    return ControllerRun("optimum", Flows(**out), time.perf_counter() - t0, plans=windows, note=note,
                         strategy_steps={"arbitrage": data.n})


def _period_inputs(data: BacktestData, site: Site) -> PlanInputs:
    """PlanInputs for the whole period, however long.

    PlanInputs refuses horizons beyond a month (MAX_STEPS) to bound the appliance's solve time and
    memory. The exact perfect-foresight LP runs offline and must see the whole period at once to be
    the true bound, so: validate the first step as PlanInputs does, then widen the per-step fields
    to the whole period (already checked in `data.py`: finite values, non-negative powers).
    """
    pi, pe = site_prices(data, site)
    if data.n <= MAX_STEPS:
        return chunk_inputs(data, site, 0, data.n, site.start_soc_pct, pi, pe)
    full = copy.copy(chunk_inputs(data, site, 0, 1, site.start_soc_pct, pi, pe))
    for name, values in (("import_price_eur_per_kwh", pi), ("export_price_eur_per_kwh", pe),
                         ("load_kw", data.load_kw), ("pv_kw", data.pv_kw)):
        object.__setattr__(full, name, tuple(float(v) for v in values))
    return full


def _exact_optimum(data: BacktestData, site: Site, time_limit_s: float, t0: float) -> Optional[ControllerRun]:
    """One LP (a MIP on money-pump steps, see `ems.optimizer.model`) over the whole period."""
    inputs = _period_inputs(data, site)
    strategy = get_strategy("arbitrage")
    weights = strategy.weights(inputs)
    battery_steps, grid_steps = binary_steps_from_weights(weights, inputs)
    battery = set(battery_steps)
    for _ in range(3):  # as `optimize`: binaries where a solution still charges and discharges at once
        model = build_model(inputs, strategy, battery, grid_steps, weights)
        h = to_highs(model.arrays, time_limit_s)
        if model.arrays.num_integer:
            h.setOptionValue("presolve", "on")
            h.setOptionValue("mip_rel_gap", OPTIMUM_MIP_REL_GAP)
        h.run()
        status = h.modelStatusToString(h.getModelStatus())
        if status != "Optimal":
            log.warning("perfect-foresight optimum not solved: HiGHS %s after %.1f s", status, time.perf_counter() - t0)
            return None
        flows = extract_flows(model, np.asarray(h.getSolution().col_value, dtype=float))
        both = np.flatnonzero((flows.charge_kw > 1e-6) & (flows.discharge_kw > 1e-6))
        if len(both) == 0:
            break
        battery |= {int(k) for k in both}
    else:
        log.warning("perfect-foresight optimum keeps charging and discharging at once")
        return None
    out = empty_flows(data.n)
    follow_flows(data, site, flows, 0, data.n, site.start_energy_kwh, site_prices(data, site)[1], out)
    flows = Flows(**out)
    note = "one LP over the whole period"
    if model.arrays.num_integer:
        info = h.getInfo()
        gap_eur = abs(float(info.objective_function_value) - float(info.mip_dual_bound))
        note += f", {model.arrays.num_integer} binary steps, proven within {gap_eur:.4f} €"
    return ControllerRun("optimum", flows, time.perf_counter() - t0, plans=1, note=note,
                         strategy_steps={"arbitrage": data.n})

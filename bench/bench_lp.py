"""The optimizer LP: build + solve time for 96, 192 and 672 quarter-hour steps on real AT prices.

Baselines measured in the same run on the same model: HiGHS's own reported run time for it
(`getRunTime`), the same matrices solved by `scipy.optimize.linprog(method="highs")`, and the same LP
written the usual CVXPY way (vector variables and constraints, solved with CVXPY's HiGHS and its default
conic solver). The MIP figures: a real day with negative prices solved as the optimizer does (binaries
only on the negative-price steps) against the same model without binaries, and binaries forced on every
step (the worst case). Also: peak RSS of a fresh interpreter importing `ems.optimizer`, and whether that
import pulled in scipy or pandas (it must not).

scipy and cvxpy are bench-only extras; a missing one is reported with its exact error, not skipped silently.
"""
from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
import time
from datetime import datetime
from typing import Callable

import numpy as np

from ems.config.schema import BessConfig, GridConnectionConfig
from ems.optimizer import PlanInputs, optimize, resample_mean
from ems.optimizer.model import build_model, extract_flows, solve_model, to_highs
from ems.optimizer.strategies import STRATEGY_NAMES, get_strategy
from ems.resources import data_file
from ems.data.profiles import load_profile, pv_profile
from ems.localtime import site_zone

SIZES = (96, 192, 672)
REPEATS = {96: 40, 192: 25, 672: 10}
CVXPY_REPEATS = {96: 10, 192: 6, 672: 3}
LP_START = datetime(2024, 9, 3, tzinfo=site_zone())  # a week with a wide spread and no negative price
STEP_S = 900
BESS = BessConfig(capacity_kwh=10.0, max_charge_power_kw=5.0, max_discharge_power_kw=5.0)
GRID = GridConnectionConfig(max_power_kw=17.0, max_feedin_kw=6.0)
FEE_EUR_PER_KWH = 0.11


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def read_prices() -> tuple[np.ndarray, np.ndarray]:
    with open(data_file("AT_dayahead_2023_2024.csv"), encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    ts = np.array([datetime.fromisoformat(r[0]).timestamp() for r in rows if r])
    eur_per_kwh = np.array([float(r[1]) / 1000.0 for r in rows if r])
    return ts, eur_per_kwh


def make_inputs(price_ts: np.ndarray, price: np.ndarray, start_ts: float, n: int,
                fee_eur_per_kwh: float = FEE_EUR_PER_KWH, bess: BessConfig = BESS) -> PlanInputs:
    spot = resample_mean(price_ts, price, start_ts, STEP_S, n, interval_s=3600)
    load = load_profile("household", 4000.0)
    pv = pv_profile(8.0)
    starts = start_ts + STEP_S * np.arange(n)
    return PlanInputs(start_ts=start_ts, step_s=STEP_S, import_price_eur_per_kwh=spot + fee_eur_per_kwh,
                      export_price_eur_per_kwh=spot, load_kw=[load.value_at(t) for t in starts],
                      pv_kw=[pv.value_at(t) for t in starts], soc0_pct=50.0, bess=bess, grid=GRID)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(1000.0 * (time.perf_counter() - t0))
    return statistics.median(samples)


def model_path(inp: PlanInputs, battery_steps=(), grid_steps=()) -> float:
    """Build → HiGHS → extract flows: what a planning run costs around the solver."""
    model = build_model(inp, get_strategy("arbitrage"), battery_steps, grid_steps)
    result = solve_model(model)
    extract_flows(model, result.x)
    return result.objective


def highs_own_ms(model, repeats: int, presolve: str = "") -> float:
    """HiGHS's own run time for the model as the optimizer passes it (or with presolve switched back)."""
    samples = []
    for _ in range(repeats + 1):
        h = to_highs(model.arrays)
        if presolve:
            h.setOptionValue("presolve", presolve)
        h.run()
        samples.append(1000.0 * h.getRunTime())
    return statistics.median(samples[1:])


def linprog_figures(model, repeats: int) -> tuple[float, float, float]:
    """(matrix conversion + linprog ms, linprog-only ms, objective) for the same arrays."""
    import scipy.sparse as sp
    from scipy.optimize import linprog

    a = model.arrays

    def matrices():
        A = sp.csr_matrix((a.a_value, a.a_index, a.a_start), shape=(a.num_row, a.num_col))
        eq = a.row_lower == a.row_upper
        up = ~eq & np.isfinite(a.row_upper)
        lo = ~eq & np.isfinite(a.row_lower)
        A_ub = sp.vstack([A[up], -A[lo]]).tocsr()
        b_ub = np.concatenate([a.row_upper[up], -a.row_lower[lo]])
        bounds = np.column_stack([a.col_lower, a.col_upper])
        return dict(c=a.col_cost, A_ub=A_ub, b_ub=b_ub, A_eq=A[eq], b_eq=a.row_lower[eq], bounds=bounds)

    def full():
        return linprog(method="highs", **matrices())

    prepared = matrices()
    result = linprog(method="highs", **prepared)
    if result.status != 0:
        raise RuntimeError(f"linprog: {result.message}")
    return median_ms(full, repeats), median_ms(lambda: linprog(method="highs", **prepared), repeats), float(result.fun)


def cvxpy_model(inp: PlanInputs, model):
    """The same arbitrage LP written as one would in CVXPY (the seed's way), same coefficients."""
    import cvxpy as cp

    n, dt, b = inp.n, inp.dt_h, inp.bess
    cols = model.cols
    cost = model.arrays.col_cost
    lo, hi = model.arrays.col_lower, model.arrays.col_upper
    c, d, s, i, e, u = (cp.Variable(n) for _ in range(6))
    e0 = b.capacity_kwh * inp.soc0_pct / 100
    net = np.asarray(inp.load_kw) - np.asarray(inp.pv_kw)
    prev = cp.hstack([np.array([e0]), s[:-1]])
    constraints = [
        i - e + d - c - u == net,
        s == prev + b.charge_efficiency * dt * c - dt / b.discharge_efficiency * d,
        c >= 0, c <= b.max_charge_power_kw, d >= 0, d <= b.max_discharge_power_kw,
        s >= lo[cols.soc], s <= hi[cols.soc], i >= 0, i <= inp.max_import_kw,
        e >= 0, e <= hi[cols.grid_export], u >= 0, u <= np.asarray(inp.pv_kw),
    ]
    objective = (cost[cols.charge] @ c + cost[cols.discharge] @ d + cost[cols.soc] @ s
                 + cost[cols.grid_import] @ i + cost[cols.grid_export] @ e + cost[cols.curtail] @ u)
    return cp.Problem(cp.Minimize(objective), constraints)


def cvxpy_figures(inp: PlanInputs, model, repeats: int) -> dict[str, float]:
    import cvxpy as cp

    out = {}
    for solver, label in (("HIGHS", "cvxpy"), ("CLARABEL", "cvxpy_clarabel")):
        if solver not in cp.installed_solvers():
            log(f"cvxpy: solver {solver} not installed")
            continue
        objective = []

        def run():
            prob = cvxpy_model(inp, model)
            prob.solve(solver=solver)
            objective.append(prob.value)
        out[label + "_ms"] = median_ms(run, repeats)
        out[label + "_objective"] = float(objective[-1])
    return out


PEAK_RSS = ("import re; print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024, "
            "int('scipy' in sys.modules), int('pandas' in sys.modules))")


def import_footprint() -> dict[str, float]:
    """Peak RSS of a fresh interpreter importing the optimizer, next to numpy + highspy alone.

    VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec and would report the forking parent.
    """
    def peak(imports: str) -> list[str]:
        code = f"import sys; {imports}; {PEAK_RSS}"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()

    optimizer, base = peak("import ems.optimizer"), peak("import numpy, highspy")
    return {"optimizer_import_peak_rss_mb": float(optimizer[0]), "numpy_highspy_import_peak_rss_mb": float(base[0]),
            "optimizer_import_pulls_scipy": float(optimizer[1]), "optimizer_import_pulls_pandas": float(optimizer[2])}


def negative_price_day(price_ts: np.ndarray, price: np.ndarray) -> float:
    """Local midnight of the 2024 day with the most negative hours (the MIP's real-world case)."""
    counts: dict[datetime, int] = {}
    for t, p in zip(price_ts, price):
        local = datetime.fromtimestamp(t, site_zone())
        if local.year == 2024 and p < 0:
            key = local.replace(hour=0, minute=0, second=0)
            counts[key] = counts.get(key, 0) + 1
    day = max(sorted(counts), key=lambda k: counts[k])
    log(f"negative-price day: {day.date()} ({counts[day]} negative hours)")
    return day.timestamp()


def main() -> None:
    figures: dict[str, float] = {}
    price_ts, price = read_prices()
    figures.update(import_footprint())

    for n in SIZES:
        inp = make_inputs(price_ts, price, LP_START.timestamp(), n)
        model = build_model(inp, get_strategy("arbitrage"))
        assert model.arrays.num_integer == 0, "benchmark week must be a pure LP"
        objective = model_path(inp)
        reps = REPEATS[n]
        p = f"lp_{n}"
        figures[f"{p}_columns"] = model.arrays.num_col
        figures[f"{p}_rows"] = model.arrays.num_row
        figures[f"{p}_steps_ms"] = median_ms(lambda: model_path(inp), reps)
        figures[f"{p}_build_ms"] = median_ms(lambda: build_model(inp, get_strategy("arbitrage")), reps)
        figures[f"{p}_optimize_ms"] = median_ms(lambda: optimize(inp, "arbitrage"), reps)
        figures[f"{p}_highs_solve_ms"] = highs_own_ms(model, reps)
        figures[f"{p}_vs_highs_ratio"] = figures[f"{p}_steps_ms"] / figures[f"{p}_highs_solve_ms"]
        figures[f"{p}_highs_default_options_solve_ms"] = highs_own_ms(model, reps, presolve="on")
        try:
            with_matrices, only, lp_obj = linprog_figures(model, reps)
            figures[f"{p}_linprog_ms"] = with_matrices
            figures[f"{p}_linprog_solve_only_ms"] = only
            figures[f"{p}_linprog_objective_diff_eur"] = abs(lp_obj - objective)
            figures[f"{p}_linprog_speedup"] = with_matrices / figures[f"{p}_steps_ms"]
        except Exception as err:
            log(f"linprog failed for {n} steps: {type(err).__name__}: {err}")
        try:
            cv = cvxpy_figures(inp, model, CVXPY_REPEATS[n])
            for key in ("cvxpy", "cvxpy_clarabel"):
                if f"{key}_ms" in cv:
                    figures[f"{p}_{key}_ms"] = cv[f"{key}_ms"]
                    figures[f"{p}_{key}_speedup"] = cv[f"{key}_ms"] / figures[f"{p}_steps_ms"]
                    figures[f"{p}_{key}_objective_diff_eur"] = abs(cv[f"{key}_objective"] - objective)
        except Exception as err:
            log(f"cvxpy failed for {n} steps: {type(err).__name__}: {err}")
        log(f"{n} steps: " + ", ".join(f"{k}={v:.3f}" for k, v in figures.items() if k.startswith(p + "_")))

    inp96 = make_inputs(price_ts, price, LP_START.timestamp(), 96)
    for name in STRATEGY_NAMES:
        figures[f"lp_96_{name}_optimize_ms"] = median_ms(lambda: optimize(inp96, name), REPEATS[96])

    # How often binaries are needed at all: where burning energy through the losses pays, i.e. the
    # import price is below −degradation·η/(1 − η) (module doc of ems.optimizer.model).
    eta = BESS.charge_efficiency * BESS.discharge_efficiency
    threshold = -BESS.degradation_cost_eur_per_kwh * eta / (1 - eta)
    figures["burn_threshold_import_eur_per_kwh"] = threshold
    figures["at_2023_2024_hours"] = float(len(price))
    figures["at_2023_2024_hours_spot_negative"] = float(np.sum(price < 0))
    figures["at_2023_2024_hours_needing_binaries_11ct_fee"] = float(np.sum(price + FEE_EUR_PER_KWH < threshold))
    figures["at_2023_2024_hours_needing_binaries_no_fee"] = float(np.sum(price < threshold))
    # MIP on a real day: the 2024 day with the most negative hours, spot-only import price and zero
    # degradation cost, so every negative step gets a binary (as optimize does), against the same
    # model without binaries.
    free_cycling = BessConfig(capacity_kwh=10.0, max_charge_power_kw=5.0, max_discharge_power_kw=5.0,
                              degradation_cost_eur_per_kwh=0.0)
    neg = make_inputs(price_ts, price, negative_price_day(price_ts, price), 96, fee_eur_per_kwh=0.0,
                      bess=free_cycling)
    plan = optimize(neg, "arbitrage")
    assert plan.status == "optimal", plan.message
    negative_steps = [k for k, pr in enumerate(neg.import_price_eur_per_kwh) if pr < 0]
    figures["mip_96_negprice_binaries"] = float(plan.binary_steps)
    figures["mip_96_negprice_ms"] = median_ms(lambda: model_path(neg, negative_steps), REPEATS[96])
    figures["mip_96_negprice_optimize_ms"] = median_ms(lambda: optimize(neg, "arbitrage"), REPEATS[96])
    figures["lp_96_negprice_relaxed_ms"] = median_ms(lambda: model_path(neg), REPEATS[96])
    figures["mip_96_negprice_vs_lp_ratio"] = figures["mip_96_negprice_ms"] / figures["lp_96_negprice_relaxed_ms"]
    # Worst case: a binary on every step of the LP week.
    for n in SIZES:
        inp = make_inputs(price_ts, price, LP_START.timestamp(), n)
        every = range(n)
        model = build_model(inp, get_strategy("arbitrage"), every)
        result = solve_model(model, time_limit_s=120.0)
        figures[f"mip_{n}_all_steps_status_optimal"] = float(result.status == "optimal")
        figures[f"mip_{n}_all_steps_ms"] = median_ms(lambda: model_path(inp, every), max(3, REPEATS[n] // 4))
        figures[f"mip_{n}_all_steps_vs_lp_ratio"] = figures[f"mip_{n}_all_steps_ms"] / figures[f"lp_{n}_steps_ms"]
        log(f"MIP all {n} steps: {figures[f'mip_{n}_all_steps_ms']:.2f} ms ({result.status})")

    print(json.dumps({k: round(v, 4) for k, v in figures.items()}))


if __name__ == "__main__":
    main()

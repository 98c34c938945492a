"""The backtest on the real Austrian year: how close the EMS's receding-horizon planning comes to perfect foresight.

Data: AT day-ahead prices 2024, the BDEW H25 household (4,000 kWh/a), 8 kWp PV (bundled per-kWp shape), a
10 kWh / 5 kW battery (95 % each way, SoC 10–95 %, 2 ct/kWh wear), the CLI's default tariff (market + 1.5 ct,
no grid fee, 20 % VAT; export at the market price). Perfect forecasts for load and PV; prices known only as far
as published (next day from 13:00).

Baselines measured in the same run: the perfect-foresight optimum (week windows with 3 days lookahead: the
100 % mark; checked against one exact LP over the whole year, in a child process for its memory), the
stock inverter's greedy self-consumption, and a planner that plans each calendar day on its own at midnight
(the naive ~95 % reference). Then what the EMS's parameters change: replan cadence (every 15 min / 1 h /
4 h / only on new prices), a 24 h horizon cap, the terminal SoC value, auto strategy selection — and the same
comparison with an Austrian household grid fee (10.95 ct/kWh), where self-consumption is worth far more.
`ems backtest` itself (defaults, with the HTML report) is timed and its peak RSS taken in a child process.

Forecasts (`backtest_fc_<dataset>_*`): the EMS planning on its own forecasts (the runtime's forecasters,
refitted every 6 h from the data before each fit, in a serving child process) and on seasonal-naive ones
(load last week, PV yesterday), each as % of the optimum next to perfect forecasts, on the bundled year
(H25 household), the generated noisy household (CREST) and the generated small business (50 MWh, 30 kWp,
40 kWh / 20 kW); their forecast MAE and bias; the own forecasts' fits, fit time and the child's peak RSS;
auto against arbitrage (with perfect forecasts, and with naive ones: `auto_naive_vs_arbitrage_naive_pct`,
where auto's choices rest on forecasts that miss); and what arbitrage's real-time rule (hold the grid at 0 W on
the plan's balancing steps) is worth: the naive-forecast run with the earlier rule, always the planned
battery power (`naive_follow_plan`). Each dataset runs in its own child process, two at a time.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from typing import Any

from ems.backtest import RecedingHorizon, Site, Tariff, load_backtest_data, run_backtest
from ems.backtest.replay import (run_greedy, run_no_battery, run_perfect_foresight, run_receding_horizon,
                                 summarise)
from ems.resources import data_file

PRICES = "AT_dayahead_2023_2024.csv"
LOAD = "household_H25_2024_4000kWh_15min.csv"
PV = "pv_per_kwp_2023_2024_hourly.csv"
PV_KWP = 8.0
AT_HOUSEHOLD_GRID_FEE_EUR_PER_KWH = 0.1095  # DOMAIN.md: average end of 2024
DAY_AT_A_TIME = RecedingHorizon(horizon="calendar_day", replan_every_h=None)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


PEAK_RSS = ("import re; print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024, "
            "flush=True)")


def child(code: str) -> tuple[list[str], float]:
    """Run `code` in a fresh interpreter; its stdout lines and the wall time. Peak RSS is per process
    (VmHWM), so each memory figure gets its own child."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=1200)
    return proc.stdout.strip().splitlines(), time.perf_counter() - t0


def cli_figures() -> dict[str, float]:
    """`ems backtest --forecasts perfect --out DIR` on the bundled AT year, as an installer runs it (the default
    adds own and naive forecasts: their runtime is `backtest_fc_bundled_runtime_s`)."""
    with tempfile.TemporaryDirectory() as out:
        code = (f"import sys; from ems.backtest.cli import main; rc = main(['--forecasts', 'perfect', '--out', {out!r}]); "
                f"assert rc == 0, rc; {PEAK_RSS}")
        lines, wall_s = child(code)
    return {"backtest_cli_runtime_s": wall_s, "backtest_cli_peak_rss_mb": float(lines[-1])}


def exact_optimum_figures() -> dict[str, float]:
    """The optimum as one LP (MIP) over the whole year: savings, time and memory, for comparison."""
    code = ("import time; from ems.backtest import Site, load_backtest_data, run_perfect_foresight; "
            "from ems.backtest.replay import run_no_battery, summarise; from ems.resources import data_file; "
            f"d = load_backtest_data(data_file({PRICES!r}), data_file({LOAD!r}), data_file({PV!r}), step_s=900, "
            f"pv_kwp={PV_KWP!r}); s = Site(); t0 = time.perf_counter(); r = run_perfect_foresight(d, s, exact=True); "
            "t = time.perf_counter() - t0; "
            "f = summarise(d, s, {'no_battery': run_no_battery(d, s), 'optimum': r})[2]['optimum'][-1]; "
            f"print(r.note, flush=True); print(t, flush=True); print(f.savings_eur, flush=True); {PEAK_RSS}")
    lines, _ = child(code)
    log(f"exact optimum: {lines[-4]}")
    return {"backtest_optimum_exact_runtime_s": float(lines[-3]), "backtest_optimum_exact_savings_eur": float(lines[-2]),
            "backtest_optimum_exact_peak_rss_mb": float(lines[-1])}


FORECAST_DATASETS = {
    # name: (load file, forecast profile, annual kWh, PV kWp, battery kWh, battery kW)
    "bundled": (LOAD, "household", 4000.0, PV_KWP, 10.0, 5.0),
    "noisy_household": ("household_crest_2024_4000kWh_15min.csv", "household", 4000.0, PV_KWP, 10.0, 5.0),
    "noisy_business": ("business_stochastic_2024_50000kWh_15min.csv", "commercial", 50000.0, 30.0, 40.0, 20.0),
}


def forecast_child(name: str) -> dict[str, float]:
    """One dataset's forecast figures (runs in a child process: `bench_backtest.py --forecasts NAME`)."""
    from ems.backtest.forecasters import ForecastSite, NaiveForecaster, OwnForecaster
    from ems.config.schema import BessConfig
    from ems.optimizer.strategies import STRATEGIES, Request
    from ems.optimizer.strategies.arbitrage import Arbitrage

    load, profile, annual, kwp, cap, power = FORECAST_DATASETS[name]
    data = load_backtest_data(data_file(PRICES), data_file(load), data_file(PV), step_s=900, pv_kwp=kwp)
    site = Site(bess=BessConfig(capacity_kwh=cap, max_charge_power_kw=power, max_discharge_power_kw=power))
    fsite = ForecastSite(load_profile=profile, annual_load_kwh=annual, pv_kwp=kwp)
    out: dict[str, float] = {}
    p = f"backtest_fc_{name}"
    t0 = time.perf_counter()
    with OwnForecaster(fsite) as own:
        result = run_backtest(data, site, RecedingHorizon(),
                              forecasters={"ems_forecast": own, "ems_naive": NaiveForecaster(fsite)})
        out[f"{p}_own_fits"] = float(own.fits)
        out[f"{p}_own_fit_s"] = own.fit_s
        out[f"{p}_own_ms_per_fit"] = 1000.0 * own.fit_s / max(1, own.fits)
        out[f"{p}_own_child_peak_rss_mb"] = float(own.peak_rss_mb or 0.0)
        out[f"{p}_own_fit_errors"] = float(own.fit_errors)
    out[f"{p}_runtime_s"] = time.perf_counter() - t0
    for run, key in (("ems", "perfect"), ("ems_forecast", "own"), ("ems_naive", "naive")):
        total = result.total(run)
        out[f"{p}_{key}_pct_of_optimum"] = float(total.pct_of_optimum or 0.0)
        out[f"{p}_{key}_savings_eur"] = total.savings_eur
        out[f"{p}_{key}_plans"] = float(result.runs[run].plans)
    out[f"{p}_optimum_savings_eur"] = result.total("optimum").savings_eur
    out[f"{p}_own_minus_naive_points"] = out[f"{p}_own_pct_of_optimum"] - out[f"{p}_naive_pct_of_optimum"]
    first_month = result.figures["ems_forecast"][0].pct_of_optimum
    out[f"{p}_own_first_month_pct_of_optimum"] = float(first_month or 0.0)
    for run, key in (("ems_forecast", "own"), ("ems_naive", "naive")):
        f = result.forecasts[run][-1]
        out[f"{p}_{key}_load_mae_kw"] = float(f.load_mae_kw or 0.0)
        out[f"{p}_{key}_load_bias_kw"] = float(f.load_bias_kw or 0.0)
        out[f"{p}_{key}_pv_mae_kw"] = float(f.pv_mae_kw or 0.0)
        out[f"{p}_{key}_pv_bias_kw"] = float(f.pv_bias_kw or 0.0)
    log(f"{name}: " + ", ".join(f"{k}={v:.1f}" for k, v in result.runs["ems_forecast"].forecast_errors.models.items()))

    # Auto against arbitrage on this dataset: with perfect forecasts, and with seasonal-naive ones (auto's
    # choice then rests on forecasts that miss, as at a real site; naive, not own, to spare a second year of fits).
    # The bundled year's perfect-forecast auto run is the main part's (`backtest_auto_vs_arbitrage_pct`).
    runs = {"no_battery": result.runs["no_battery"], "optimum": result.runs["optimum"], "ems": result.runs["ems"],
            "ems_naive": result.runs["ems_naive"],
            "ems_auto_naive": run_receding_horizon(data, site, RecedingHorizon(strategy="auto"),
                                                   forecaster=NaiveForecaster(fsite), name="ems_auto_naive")}
    if name != "bundled":
        runs["ems_auto"] = run_receding_horizon(data, site, RecedingHorizon(strategy="auto"), name="ems_auto")
    variants: dict[str, Any] = {}
    if name == "noisy_household":
        class FollowPlan(Arbitrage):
            def realtime(self, meter: Any, step: Any, intent: Any) -> Request:  # the earlier rule, always
                return Request(float(step.bess_power_w), "arbitrage: planned battery power")

        saved = STRATEGIES["arbitrage"]
        STRATEGIES["arbitrage"] = FollowPlan()
        try:  # seasonal naive forecasts: the rule's worth without the cost of a year of fits
            variants["naive_follow_plan"] = run_receding_horizon(data, site, RecedingHorizon(),
                                                                 forecaster=NaiveForecaster(fsite),
                                                                 name="naive_follow_plan")
        finally:
            STRATEGIES["arbitrage"] = saved
    runs.update(variants)
    _, _, table = summarise(data, site, runs)
    if "ems_auto" in table:
        out[f"{p}_auto_vs_arbitrage_pct"] = 100.0 * table["ems_auto"][-1].savings_eur / table["ems"][-1].savings_eur
        out[f"{p}_auto_pct_of_optimum"] = float(table["ems_auto"][-1].pct_of_optimum or 0.0)
    out[f"{p}_auto_naive_vs_arbitrage_naive_pct"] = (100.0 * table["ems_auto_naive"][-1].savings_eur
                                                     / table["ems_naive"][-1].savings_eur)
    out[f"{p}_auto_naive_peak_shaving_share_pct"] = (100.0 * result_steps(runs["ems_auto_naive"], "peak_shaving")
                                                     / data.n)
    for v in variants:
        out[f"{p}_{v}_pct_of_optimum"] = float(table[v][-1].pct_of_optimum or 0.0)
    return out


def result_steps(run: Any, strategy: str) -> int:
    """Steps a run spent under `strategy` (auto's choices)."""
    return int(run.strategy_steps.get(strategy, 0))


def forecast_figures() -> dict[str, float]:
    """Every dataset of FORECAST_DATASETS in a child process, two at a time."""
    out: dict[str, float] = {}
    pending = list(FORECAST_DATASETS)
    running: list[tuple[str, subprocess.Popen[str]]] = []
    while pending or running:
        while pending and len(running) < 2:
            name = pending.pop(0)
            running.append((name, subprocess.Popen([sys.executable, __file__, "--forecasts", name], text=True,
                                                   stdout=subprocess.PIPE, stderr=sys.stderr)))
        name, proc = running.pop(0)
        stdout, _ = proc.communicate(timeout=1700)
        if proc.returncode != 0:
            raise RuntimeError(f"forecast backtest {name} failed ({proc.returncode})")
        out.update(json.loads(stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    if sys.argv[1:2] == ["--forecasts"]:
        print(json.dumps({k: round(float(v), 4) for k, v in forecast_child(sys.argv[2]).items()}))
        return
    t_start = time.perf_counter()
    children = subprocess.Popen([sys.executable, __file__, "--forecasts-all"], text=True, stdout=subprocess.PIPE,
                                stderr=sys.stderr) if "--no-forecasts" not in sys.argv else None
    figures: dict[str, float] = {}
    t0 = time.perf_counter()
    data = load_backtest_data(data_file(PRICES), data_file(LOAD), data_file(PV), step_s=900, pv_kwp=PV_KWP)
    figures["backtest_read_csv_s"] = time.perf_counter() - t0
    figures["backtest_steps"] = float(data.n)
    site = Site()

    # What `ems backtest` does by default, timed end to end (no battery, greedy, EMS, optimum).
    t0 = time.perf_counter()
    result = run_backtest(data, site, RecedingHorizon())
    figures["backtest_runtime_s"] = time.perf_counter() - t0 + figures["backtest_read_csv_s"]
    runs = dict(result.runs)
    figures["backtest_ems_runtime_s"] = runs["ems"].runtime_s
    figures["backtest_ems_plans"] = float(runs["ems"].plans)
    figures["backtest_ems_failed_plans"] = float(runs["ems"].failed_plans)
    figures["backtest_ems_ms_per_plan"] = 1000.0 * runs["ems"].runtime_s / runs["ems"].plans
    figures["backtest_optimum_runtime_s"] = runs["optimum"].runtime_s
    log(f"default backtest: {figures['backtest_runtime_s']:.1f} s; optimum: {runs['optimum'].note}")

    variants = {
        "day_at_a_time": DAY_AT_A_TIME,
        "ems_replan_15min": RecedingHorizon(replan_every_h=0.25),
        "ems_replan_1h": RecedingHorizon(replan_every_h=1.0),
        "ems_replan_on_prices_only": RecedingHorizon(replan_every_h=None),
        "ems_horizon_24h": RecedingHorizon(max_horizon_h=24.0),
        "ems_terminal_value_0": RecedingHorizon(terminal_value_eur_per_kwh=0.0),
        "day_at_a_time_terminal_value_0": replace(DAY_AT_A_TIME, terminal_value_eur_per_kwh=0.0),
        "ems_auto": RecedingHorizon(strategy="auto"),
    }
    for name, policy in variants.items():
        runs[name] = run_receding_horizon(data, site, policy, name=name)
        figures[f"backtest_{name}_runtime_s"] = runs[name].runtime_s
        log(f"{name}: {runs[name].runtime_s:.1f} s, {runs[name].note}")
    _, _, table = summarise(data, site, runs)
    for name in runs:
        total = table[name][-1]
        figures[f"backtest_{name}_savings_eur"] = total.savings_eur
        if name not in ("no_battery", "optimum"):
            figures[f"backtest_{name}_pct_of_optimum"] = total.pct_of_optimum
        figures[f"backtest_{name}_cycles"] = total.cycles
    figures["backtest_no_battery_cost_eur"] = table["no_battery"][-1].cost_eur
    figures["backtest_ems_vs_greedy_savings_ratio"] = \
        figures["backtest_ems_savings_eur"] / figures["backtest_greedy_savings_eur"]
    figures["backtest_ems_self_consumption_pct"] = table["ems"][-1].self_consumption_pct
    figures["backtest_greedy_self_consumption_pct"] = table["greedy"][-1].self_consumption_pct
    figures["backtest_ems_worst_month_pct_of_optimum"] = min(m.pct_of_optimum for m in table["ems"][:-1])
    figures["backtest_auto_vs_arbitrage_pct"] = 100.0 * table["ems_auto"][-1].savings_eur / table["ems"][-1].savings_eur
    auto_steps = runs["ems_auto"].strategy_steps
    figures["backtest_ems_auto_self_consumption_share_pct"] = 100.0 * auto_steps.get("self_consumption", 0) / data.n

    # The same with an Austrian household grid fee: self-consumption is then worth ~25 ct/kWh, not ~3.
    fee_site = replace(site, tariff=Tariff(grid_fee_eur_per_kwh=AT_HOUSEHOLD_GRID_FEE_EUR_PER_KWH))
    fee_runs = {"no_battery": run_no_battery(data, fee_site), "greedy": run_greedy(data, fee_site),
                "ems": run_receding_horizon(data, fee_site, RecedingHorizon()),
                "day_at_a_time": run_receding_horizon(data, fee_site, DAY_AT_A_TIME, name="day_at_a_time"),
                "optimum": run_perfect_foresight(data, fee_site)}
    _, _, fee_table = summarise(data, fee_site, fee_runs)
    for name in ("greedy", "ems", "day_at_a_time", "optimum"):
        figures[f"backtest_gridfee_{name}_savings_eur"] = fee_table[name][-1].savings_eur
    for name in ("greedy", "ems", "day_at_a_time"):
        figures[f"backtest_gridfee_{name}_pct_of_optimum"] = fee_table[name][-1].pct_of_optimum
    figures["backtest_gridfee_ems_vs_greedy_savings_ratio"] = (figures["backtest_gridfee_ems_savings_eur"]
                                                               / figures["backtest_gridfee_greedy_savings_eur"])
    figures.update(cli_figures())
    figures.update(exact_optimum_figures())
    if children is not None:
        stdout, _ = children.communicate(timeout=1700)
        if children.returncode != 0:
            raise RuntimeError("forecast backtests failed")
        figures.update(json.loads(stdout.strip().splitlines()[-1]))
    figures["backtest_optimum_windows_minus_exact_savings_eur"] = (figures["backtest_optimum_savings_eur"]
                                                                   - figures["backtest_optimum_exact_savings_eur"])
    figures["bench_backtest_s"] = time.perf_counter() - t_start
    for key in sorted(figures):
        log(f"  {key:<52} {figures[key]:12.3f}")
    print(json.dumps({k: round(float(v), 4) for k, v in figures.items()}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--forecasts-all"]:
        print(json.dumps({k: round(float(v), 4) for k, v in forecast_figures().items()}))
    else:
        main()

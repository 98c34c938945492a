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
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

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
    """`ems backtest --out DIR` with its defaults (the bundled AT year), as an installer runs it."""
    with tempfile.TemporaryDirectory() as out:
        code = (f"import sys; from ems.backtest.cli import main; rc = main(['--out', {out!r}]); "
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


def main() -> None:
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
    figures["backtest_optimum_windows_minus_exact_savings_eur"] = (figures["backtest_optimum_savings_eur"]
                                                                   - figures["backtest_optimum_exact_savings_eur"])
    for key in sorted(figures):
        log(f"  {key:<52} {figures[key]:12.3f}")
    print(json.dumps({k: round(float(v), 4) for k, v in figures.items()}))


if __name__ == "__main__":
    main()

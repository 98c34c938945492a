"""What a backtest reports: each controller's run, and its money and energy per month and in total."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Optional

import numpy as np

from ..optimizer.plan import Flows
from ..localtime import site_zone
from .data import BacktestData
from .scenario import RecedingHorizon, Site, site_prices

CONTROLLER_TITLES = {
    "no_battery": "No battery",
    "greedy": "Stock inverter (greedy self-consumption)",
    "ems": "EMS, perfect forecasts",
    "ems_forecast": "EMS, own forecasts",
    "ems_naive": "EMS, seasonal-naive forecasts",
    "day_at_a_time": "EMS, one day at a time",
    "optimum": "Perfect-foresight optimum",
}


EMS_RUNS = ("ems_forecast", "ems_naive", "ems")
"""The EMS's runs by forecasts, the realistic one first: the headline of a report is the first present."""


# -- runs -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ForecastErrors:
    """Errors of what a forecaster issued, per target step, summed over every plan whose horizon held
    that step (so over issue times and lead times): Σ|f − a|, Σ(f − a) for load and PV (kW), and how many.
    `models` counts the plans per forecast model ("load:median_days_14")."""

    load_abs_kw: np.ndarray
    load_err_kw: np.ndarray
    pv_abs_kw: np.ndarray
    pv_err_kw: np.ndarray
    count: np.ndarray
    models: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def empty(n: int) -> "ForecastErrors":
        return ForecastErrors(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n))

    def add(self, first: int, load_kw: np.ndarray, pv_kw: np.ndarray, actual_load_kw: np.ndarray,
            actual_pv_kw: np.ndarray) -> None:
        sl = slice(first, first + len(load_kw))
        self.load_abs_kw[sl] += np.abs(load_kw - actual_load_kw)
        self.load_err_kw[sl] += load_kw - actual_load_kw
        self.pv_abs_kw[sl] += np.abs(pv_kw - actual_pv_kw)
        self.pv_err_kw[sl] += pv_kw - actual_pv_kw
        self.count[sl] += 1


@dataclass(frozen=True)
class ForecastFigures:
    """Forecast error over a month or the total: MAE and bias (forecast − actual), kW."""

    label: str
    load_mae_kw: Optional[float]
    load_bias_kw: Optional[float]
    pv_mae_kw: Optional[float]
    pv_bias_kw: Optional[float]


def forecast_figures(errors: ForecastErrors, month_index: np.ndarray, labels: tuple[str, ...]) -> list[ForecastFigures]:
    """Per month (of the target step) and in total (last)."""
    months = len(labels)

    def per(values: np.ndarray) -> np.ndarray:
        return np.bincount(month_index, weights=values, minlength=months)

    sums = [per(a) for a in (errors.load_abs_kw, errors.load_err_kw, errors.pv_abs_kw, errors.pv_err_kw)]
    count = per(errors.count)

    def row(label: str, k: int | slice) -> ForecastFigures:
        c = float(np.sum(count[k]))
        if c <= 0:
            return ForecastFigures(label, None, None, None, None)
        la, le, pa, pe = (float(np.sum(s[k])) / c for s in sums)
        return ForecastFigures(label, la, le, pa, pe)

    return [row(label, m) for m, label in enumerate(labels)] + [row("total", slice(None))]

@dataclass(frozen=True)
class ControllerRun:
    """One controller over the whole period: per-step flows (kW, SoC in kWh at step end) and how
    it got there (`plans` solved, `failed_plans` replaced by the fallback, `strategy_steps` =
    steps executed under each strategy, `runtime_s` wall time)."""

    name: str
    flows: Flows
    runtime_s: float = 0.0
    plans: int = 0
    failed_plans: int = 0
    strategy_steps: dict[str, int] = field(default_factory=dict)
    note: str = ""
    forecast_errors: Optional[ForecastErrors] = None

    @property
    def title(self) -> str:
        return CONTROLLER_TITLES.get(self.name, self.name)


# -- money and figures ----------------------------------------------------------------------------

@dataclass(frozen=True)
class PeriodFigures:
    """One controller over one month (`label` "2024-03") or the whole period ("total").

    `cost_eur` = `bill_eur` (imports − exports) + `wear_eur` (degradation) − `final_credit_eur`
    (energy left at the end, see `Site`); `savings_eur` is against no battery; `pct_of_optimum` is
    the savings as % of the perfect-foresight optimum's (None when there is no optimum or it saves
    nothing). `cycles` = energy discharged ÷ capacity; `self_consumption_pct` = share of the PV
    produced that was used on site (neither exported nor curtailed).
    """

    label: str
    cost_eur: float
    bill_eur: float
    wear_eur: float
    final_credit_eur: float
    import_kwh: float
    export_kwh: float
    pv_kwh: float
    curtailed_kwh: float
    discharged_kwh: float
    cycles: float
    self_consumption_pct: float
    savings_eur: float = 0.0
    pct_of_optimum: Optional[float] = None


def month_labels(data: BacktestData) -> tuple[np.ndarray, tuple[str, ...]]:
    """Per step the index of its local calendar month, and the month labels ("2024-01", …)."""
    labels: list[str] = []
    index = np.empty(data.n, dtype=np.int64)
    first = 0
    while first < data.n:
        local = datetime.fromtimestamp(data.start_ts + first * data.step_s, site_zone())
        nxt = datetime(local.year + local.month // 12, local.month % 12 + 1, 1, tzinfo=site_zone()).timestamp()
        stop = min(data.n, int(math.ceil((nxt - data.start_ts) / data.step_s)))
        index[first:stop] = len(labels)
        labels.append(f"{local.year}-{local.month:02d}")
        first = stop
    return index, tuple(labels)


def period_figures(data: BacktestData, site: Site, run: ControllerRun,
                   month_index: np.ndarray, labels: tuple[str, ...]) -> list[PeriodFigures]:
    """Per month and in total (last); savings and % of optimum are filled in by `summarise`."""
    pi, pe = site_prices(data, site)
    dt = data.step_s / 3600.0
    f = run.flows
    months = len(labels)

    def per_month(values: np.ndarray) -> np.ndarray:
        return np.bincount(month_index, weights=values, minlength=months)

    bill = per_month(dt * (pi * f.import_kw - pe * f.export_kw))
    discharged = per_month(dt * f.discharge_kw)
    wear = site.bess.degradation_cost_eur_per_kwh * discharged
    credit = np.zeros(months)
    if data.n:
        credit[-1] = site.final_energy_value_eur_per_kwh * (float(f.soc_kwh[-1]) - site.start_energy_kwh)
    imp, exp_ = per_month(dt * f.import_kw), per_month(dt * f.export_kw)
    pv = per_month(dt * data.pv_kw)
    curtailed = per_month(dt * f.curtail_kw)
    pv_out = np.maximum(data.pv_kw - f.curtail_kw, 0.0)
    pv_exported = per_month(dt * np.minimum(f.export_kw, pv_out))
    cap = site.bess.capacity_kwh

    def figures(label: str, k: int | slice) -> PeriodFigures:
        b, w, cr = float(np.sum(bill[k])), float(np.sum(wear[k])), float(np.sum(credit[k]))
        pv_kwh = float(np.sum(pv[k]))
        used = pv_kwh - float(np.sum(curtailed[k])) - float(np.sum(pv_exported[k]))
        return PeriodFigures(label, b + w - cr, b, w, cr, float(np.sum(imp[k])), float(np.sum(exp_[k])), pv_kwh,
                             float(np.sum(curtailed[k])), float(np.sum(discharged[k])),
                             float(np.sum(discharged[k])) / cap,
                             100.0 * used / pv_kwh if pv_kwh > 1e-9 else 0.0)

    return [figures(label, m) for m, label in enumerate(labels)] + [figures("total", slice(None))]


@dataclass(frozen=True)
class BacktestResult:
    """Everything a report needs: the data, the set-up, each controller's run and its figures
    (`figures[name]`: one PeriodFigures per month, then the total)."""

    data: BacktestData
    site: Site
    policy: RecedingHorizon
    runs: dict[str, ControllerRun]
    labels: tuple[str, ...]
    month_index: np.ndarray
    figures: dict[str, list[PeriodFigures]]
    runtime_s: float
    forecasts: dict[str, list[ForecastFigures]] = field(default_factory=dict)

    def total(self, name: str) -> PeriodFigures:
        return self.figures[name][-1]

    @property
    def ems_runs(self) -> list[str]:
        """The EMS runs present, the realistic forecasts first."""
        return [n for n in EMS_RUNS if n in self.runs]

    @property
    def headline(self) -> str:
        """The run a report leads with: the EMS with its own forecasts where present, else the stock inverter."""
        runs = self.ems_runs
        return runs[0] if runs else "greedy"


def forecast_summary(runs: dict[str, ControllerRun], month_index: np.ndarray,
                     labels: tuple[str, ...]) -> dict[str, list[ForecastFigures]]:
    """Forecast errors per run that planned on forecasts."""
    return {name: forecast_figures(run.forecast_errors, month_index, labels)
            for name, run in runs.items() if run.forecast_errors is not None}


def summarise(data: BacktestData, site: Site, runs: dict[str, ControllerRun]) -> tuple[
        np.ndarray, tuple[str, ...], dict[str, list[PeriodFigures]]]:
    """Figures per controller, with savings against `no_battery` and % of `optimum` where present."""
    index, labels = month_labels(data)
    raw = {name: period_figures(data, site, run, index, labels) for name, run in runs.items()}
    base = raw.get("no_battery")
    best = raw.get("optimum")
    out: dict[str, list[PeriodFigures]] = {}
    for name, rows in raw.items():
        filled = []
        for i, row in enumerate(rows):
            savings = base[i].cost_eur - row.cost_eur if base is not None else 0.0
            pct = None
            if best is not None and base is not None and name != "no_battery":
                best_savings = base[i].cost_eur - best[i].cost_eur
                if best_savings > 1e-6:
                    pct = 100.0 * savings / best_savings
            filled.append(replace(row, savings_eur=savings, pct_of_optimum=pct))
        out[name] = filled
    return index, labels, out

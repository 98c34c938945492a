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
    "day_at_a_time": "EMS, one day at a time",
    "optimum": "Perfect-foresight optimum",
}


# -- runs -----------------------------------------------------------------------------------------

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

    def total(self, name: str) -> PeriodFigures:
        return self.figures[name][-1]


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

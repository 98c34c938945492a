"""The forecasters a backtest can plan with: the EMS's own (`OwnForecaster`) and seasonal naive (`NaiveForecaster`).

Both implement `scenario.Forecaster`: at every planning run they see the data *before* the issue
time only (`history`) and forecast the plan's horizon; the replay lives with the real values.

`OwnForecaster` is the runtime's forecast code on the runtime's path: the history is turned into the
rows the history store would return (`load_power_w`, `pv_power_w` per 15 minutes, the last
`HISTORY_DAYS`), then `ems.forecast.load.forecast_load` and `ems.forecast.pv.forecast_pv`, refitted
every 6 hours as `ForecastService` does (`refit_every_h`), with their fits in a child process
(`ems.forecast.worker`, one serving child for the whole replay so the year does not spend its time
importing pandas). A new site starts from nothing, as an installed one
does: the standard profile, then the model ladder as history accumulates. Weather forecasts are
not part of a backtest (none are stored for past years), so PV is the history-based model.

`NaiveForecaster` is the yardstick: load = same time last week (yesterday in the first week, the
standard profile on the first day), PV = same time yesterday (zero on the first day).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import numpy as np

from ..forecast.load import HISTORY_DAYS as LOAD_HISTORY_DAYS
from ..forecast.load import STEP_S as FORECAST_STEP_S
from ..forecast.load import forecast_load, history_from_rows, standard_profile_kw
from ..forecast.pv import HISTORY_DAYS as PV_HISTORY_DAYS
from ..forecast.pv import forecast_pv, pv_request
from ..forecast.series import Series
from ..forecast.worker import ServingWorker
from ..optimizer.inputs import resample_mean
from .data import BacktestData
from .scenario import Forecast

log = logging.getLogger(__name__)

DAY_S = 86400
WEEK_S = 7 * DAY_S
HISTORY_DAYS = max(LOAD_HISTORY_DAYS, PV_HISTORY_DAYS)

LoadKind = Literal["household", "commercial"]


@dataclass(frozen=True)
class ForecastSite:
    """What an installer would configure for the forecasts (`forecast.*` in ems.yaml): the standard
    profile and annual energy the load forecast starts from, and the PV array. The defaults match the
    bundled data: a 4,000 kWh household and the German national PV shape (centre of Germany, 30°, south)."""

    load_profile: LoadKind = "household"
    annual_load_kwh: float = 4000.0
    latitude_deg: float = 51.0
    longitude_deg: float = 10.4
    tilt_deg: float = 30.0
    azimuth_deg: float = 180.0
    pv_kwp: float = 8.0


def history_rows(history: BacktestData, issue_ts: float, days: int = HISTORY_DAYS) -> list[dict[str, Any]]:
    """The last `days` of the history as the store's 15-minute rows ({"ts", "load_power_w", "pv_power_w"}),
    each backtest step spread over the quarter-hours it covers. Nothing at or after `issue_ts`."""
    first = max(0, int((issue_ts - days * DAY_S - history.start_ts) // history.step_s))
    per_step = max(1, history.step_s // FORECAST_STEP_S)
    rows = []
    for k in range(first, history.n):
        step_ts = history.start_ts + k * history.step_s
        load_w, pv_w = 1000.0 * float(history.load_kw[k]), 1000.0 * float(history.pv_kw[k])
        for q in range(per_step):
            ts = step_ts + q * FORECAST_STEP_S
            if ts < issue_ts:
                rows.append({"ts": ts, "load_power_w": load_w, "pv_power_w": pv_w})
    return rows


def _on_plan_steps(start_ts: float, step_s: int, n: int, series_start: float, values: Any) -> np.ndarray:
    """A 15-minute forecast averaged onto the plan's steps (it covers them: the fit asked for enough)."""
    ts = series_start + FORECAST_STEP_S * np.arange(len(values))
    out = resample_mean(ts, np.asarray(values, dtype=float), start_ts, step_s, n, interval_s=FORECAST_STEP_S)
    return np.nan_to_num(out, nan=0.0)


@dataclass
class ForecastLog:
    """Which models a forecaster's forecasts came from ("load:daytype_median_8" → plans), for the report."""

    models: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, model: str) -> None:
        key = f"{kind}:{model}"
        self.models[key] = self.models.get(key, 0) + 1


REFIT_EVERY_H = 6.0
"""As the runtime: `forecast.refit_interval_h` (default 6 h) between fits; plans in between use the last fit."""
FIT_HORIZON_H = 48.0 + REFIT_EVERY_H
"""As the runtime: a fit covers `forecast.horizon_h` (48 h) plus the refit interval."""


class OwnForecaster:
    """The runtime's load and PV forecasts (module doc). Use as a context manager: it owns the child.

    Like `ForecastService`, it refits every `refit_every_h` (0: at every planning run) and plans in
    between read the last fit; a fit sees only the data before its own time, which is at or before
    the issue time of every plan that reads it."""

    name = "own"

    def __init__(self, site: ForecastSite = ForecastSite(), worker: Optional[ServingWorker] = None,
                 refit_every_h: float = REFIT_EVERY_H):
        self.site = site
        self._owns_worker = worker is None
        self._worker = worker or ServingWorker()
        self.log = ForecastLog()
        self.fit_errors = 0
        self.refit_s = 3600.0 * refit_every_h
        self.refits = 0
        self._last: Optional[tuple[float, Series, Series]] = None

    def __enter__(self) -> "OwnForecaster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the child, if this forecaster started it (a worker handed in belongs to the caller)."""
        if self._owns_worker:
            self._worker.close()

    @property
    def peak_rss_mb(self) -> Optional[float]:
        return self._worker.peak_rss_mb

    @property
    def fit_s(self) -> float:
        return self._worker.fit_s

    @property
    def fits(self) -> int:
        return self._worker.fits

    def _fit(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._worker.fit(request)

    def _refit(self, history: BacktestData, fit_ts: float, end_ts: float) -> tuple[float, Series, Series]:
        """Load and PV fitted on the history before `fit_ts` (on the 15-min grid), covering to `end_ts` at least."""
        site = self.site
        steps = int(np.ceil(max(end_ts - fit_ts, FIT_HORIZON_H * 3600.0) / FORECAST_STEP_S))
        rows = history_rows(history, fit_ts)
        load, load_error = forecast_load(history_from_rows(rows, fit_ts), fit_ts, steps, self._fit, site.load_profile,
                                         site.annual_load_kwh)
        request = pv_request(fit_ts, steps, latitude_deg=site.latitude_deg, longitude_deg=site.longitude_deg,
                             tilt_deg=site.tilt_deg, azimuth_deg=site.azimuth_deg, kwp=site.pv_kwp,
                             history_rows=rows)
        pv, pv_error = forecast_pv(request, self._fit)
        self.fit_errors += bool(load_error) + bool(pv_error)
        self.refits += 1
        return fit_ts, load, pv

    def forecast(self, history: BacktestData, issue_ts: float, start_ts: float, step_s: int, n: int,
                 known_market_price_eur_per_kwh: np.ndarray) -> Forecast:
        now = min(issue_ts, start_ts)
        end = start_ts + n * step_s
        last = self._last
        if last is None or now - last[0] >= self.refit_s or now < last[0] or last[1].end_ts < end:
            last = self._last = self._refit(history, now - now % FORECAST_STEP_S, end)
        _, load, pv = last
        self.log.count("load", load.model)
        self.log.count("pv", pv.model)
        return Forecast(_on_plan_steps(start_ts, step_s, n, load.start_ts, load.values),
                        _on_plan_steps(start_ts, step_s, n, pv.start_ts, pv.values),
                        np.asarray(known_market_price_eur_per_kwh, dtype=float))


class NaiveForecaster:
    """Seasonal naive (module doc): the yardstick every forecaster must beat."""

    name = "naive"

    def __init__(self, site: ForecastSite = ForecastSite()):
        self.site = site
        self.log = ForecastLog()

    def forecast(self, history: BacktestData, issue_ts: float, start_ts: float, step_s: int, n: int,
                 known_market_price_eur_per_kwh: np.ndarray) -> Forecast:
        targets = start_ts + step_s * np.arange(n)
        end = min(history.end_ts, issue_ts)

        def back(values: np.ndarray, period_s: int) -> Optional[np.ndarray]:
            """values at the targets moved back by whole periods until they lie before `end`."""
            if history.n == 0 or end - history.start_ts < period_s:
                return None
            lag = period_s * np.ceil((targets - end + history.step_s) / period_s)
            lag = np.maximum(lag, period_s)
            idx = ((targets - lag - history.start_ts) // history.step_s).astype(int)
            if np.any(idx < 0):
                return None
            return values[np.minimum(idx, history.n - 1)]

        load = back(history.load_kw, WEEK_S)
        if load is None:
            load = back(history.load_kw, DAY_S)
            self.log.count("load", "naive_day" if load is not None else "standard_profile")
        else:
            self.log.count("load", "naive_week")
        if load is None:
            quarter = standard_profile_kw(start_ts - start_ts % FORECAST_STEP_S,
                                          int(np.ceil(n * step_s / FORECAST_STEP_S)) + 1,
                                          self.site.load_profile, self.site.annual_load_kwh)
            load = _on_plan_steps(start_ts, step_s, n, start_ts - start_ts % FORECAST_STEP_S, quarter)
        pv = back(history.pv_kw, DAY_S)
        self.log.count("pv", "naive_day" if pv is not None else "none")
        return Forecast(np.asarray(load, dtype=float), np.zeros(n) if pv is None else np.asarray(pv, dtype=float),
                        np.asarray(known_market_price_eur_per_kwh, dtype=float))

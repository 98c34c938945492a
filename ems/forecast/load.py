"""Load forecast from the EMS's own history: Holt-Winters with daily and weekly seasonality.

The model ladder, by how much history there is (15-minute averages of `load_power_w`):
- ≥ 14 days: `holt_winters_daily_weekly` — additive Holt-Winters (statsmodels) with a daily season on the
  series less a weekly day-of-week profile (the mean of the complete weeks), so weekends look like
  weekends while the daily shape still adapts day by day. Quantiles from 200 simulated future paths
  with bootstrapped residuals.
- 2 … 14 days: `holt_winters_daily` — the same without the weekly profile.
- 1 … 2 days: `seasonal_persistence` — the last 24 hours repeated.
- < 1 day: `standard_profile` — the BDEW standard load profile for the date, scaled to
  `forecast.annual_load_kwh`.
Seasons are counted on local wall-clock time (see `series.to_wall_clock_grid`), so the model keeps the
morning peak at 07:00 across daylight-saving changes. Fits import statsmodels (pandas, ~150 MB), so
`fit_load` runs in the short-lived worker process; everything else here is light and pure.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .series import (DAY_S, MARKET_TZ, NAN, QUARTER_HOUR_S, Series, fill_gaps, from_wall_clock_grid, is_missing,
                     regular_from_rows, to_wall_clock_grid, wall_clock_s)

if TYPE_CHECKING:  # the bundled profiles are read on first use
    from ..data.profiles import LoadKind

log = logging.getLogger(__name__)

STEP_S = QUARTER_HOUR_S
SLOTS_PER_DAY = DAY_S // STEP_S
SLOTS_PER_WEEK = 7 * SLOTS_PER_DAY
HISTORY_DAYS = 28
"""Four weeks: enough for the weekly profile to average out single odd days, short enough to follow the season."""
WEEKLY_MIN_DAYS = 14
DAILY_MIN_DAYS = 2
PERSISTENCE_MIN_DAYS = 1
MIN_COVERAGE = 0.6
SIMULATIONS = 200

RunFit = Callable[[dict[str, Any]], dict[str, Any]]


def model_for(days: float) -> str:
    """The ladder above, as a pure function of the usable days of history."""
    if days >= WEEKLY_MIN_DAYS:
        return "holt_winters_daily_weekly"
    if days >= DAILY_MIN_DAYS:
        return "holt_winters_daily"
    if days >= PERSISTENCE_MIN_DAYS:
        return "seasonal_persistence"
    return "standard_profile"


@dataclass(frozen=True)
class LoadHistory:
    """Load in kW on the local wall-clock grid, trimmed to start at the first measured interval."""

    wall_start: float
    values_kw: tuple[float, ...]

    @property
    def usable_days(self) -> float:
        """Days of history, discounted for gaps; a history mostly made of gaps counts as none."""
        n = len(self.values_kw)
        if n == 0:
            return 0.0
        measured = sum(1 for v in self.values_kw if not is_missing(v))
        coverage = measured / n
        return 0.0 if coverage < MIN_COVERAGE else measured / SLOTS_PER_DAY

    @property
    def wall_end(self) -> float:
        return self.wall_start + len(self.values_kw) * STEP_S


def history_from_rows(rows: Sequence[dict[str, Any]], forecast_start_ts: float, days: int = HISTORY_DAYS,
                      key: str = "load_power_w") -> LoadHistory:
    """History rows ({"ts", "load_power_w"}, any spacing) before `forecast_start_ts` → LoadHistory."""
    start = forecast_start_ts - days * DAY_S
    utc = regular_from_rows(rows, key, start, forecast_start_ts, STEP_S, scale=1e-3)
    wall_start, wall = to_wall_clock_grid(start, STEP_S, utc, MARKET_TZ)
    first = next((i for i, v in enumerate(wall) if not is_missing(v)), len(wall))
    return LoadHistory(wall_start + first * STEP_S, tuple(wall[first:]))


def wall_horizon(history_wall_end: float, start_ts: float, steps: int) -> int:
    """How many wall-clock slots after the history to forecast so that `steps` UTC intervals from
    `start_ts` are covered (a 25-hour day needs 4 slots fewer, a 23-hour day 4 more)."""
    last_ts = start_ts + (steps - 1) * STEP_S
    return max(0, int((math.floor(wall_clock_s(last_ts) / STEP_S) * STEP_S - history_wall_end) // STEP_S) + 1)


def seasonal_persistence(values: Sequence[float], horizon: int, period: int = SLOTS_PER_DAY) -> list[float]:
    """The last `period` values repeated (gaps filled from neighbours first)."""
    filled = fill_gaps(list(values)[-period:], period)
    return [filled[i % period] for i in range(horizon)]


def standard_profile_kw(start_ts: float, steps: int, kind: LoadKind, annual_kwh: float) -> list[float]:
    """The bundled BDEW profile (household or commercial) at each interval's midpoint, scaled to annual_kwh."""
    from ..data.profiles import load_profile
    profile = load_profile(kind, annual_kwh)
    return [max(0.0, profile.value_at(start_ts + i * STEP_S + STEP_S / 2)) for i in range(steps)]


# -- the fit (worker process) ---------------------------------------------------------------------

def fit_load(request: dict[str, Any]) -> dict[str, Any]:
    """Fit and forecast on a wall-clock grid. Request: {"values": [kW | null], "horizon": n, "seed": int}.
    Returns {"model", "point", "p10", "p90"} (lists of n kW values). Imports statsmodels: worker only."""
    import warnings

    import numpy as np
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    values = [NAN if v is None else float(v) for v in request["values"]]
    horizon = int(request["horizon"])
    seed = int(request.get("seed", 1))
    day, week = SLOTS_PER_DAY, SLOTS_PER_WEEK
    usable = LoadHistory(0.0, tuple(values)).usable_days
    model = model_for(usable)
    if model not in ("holt_winters_daily_weekly", "holt_winters_daily"):
        raise ValueError(f"{usable:.1f} days of history are too few for Holt-Winters (need {DAILY_MIN_DAYS})")
    y = np.asarray(fill_gaps(values, day), dtype=float)
    n = len(y)
    offsets = np.zeros(week)
    if model == "holt_winters_daily_weekly":
        k = n // week
        y = y[n - k * week:]
        n = len(y)
        profile = y.reshape(k, week).mean(axis=0)
        offsets = profile - np.tile(profile.reshape(7, day).mean(axis=0), 7)
        y = y - np.tile(offsets, k)
    else:
        y = y[n - (n // day) * day:]
        n = len(y)
    # Positions continue the history: forecast step i has weekly phase (n + i) mod week, and n is whole weeks.
    future_offsets = offsets[(n + np.arange(horizon)) % week] if model == "holt_winters_daily_weekly" \
        else np.zeros(horizon)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; the result is checked below
        fit = ExponentialSmoothing(y, seasonal="add", seasonal_periods=day,
                                   initialization_method="heuristic").fit()
        point = np.asarray(fit.forecast(horizon)) + future_offsets
        try:
            paths = np.asarray(fit.simulate(horizon, repetitions=SIMULATIONS, error="add",
                                            random_errors="bootstrap", random_state=seed))
            paths = paths.reshape(horizon, -1) + future_offsets[:, None]
            p10, p90 = np.percentile(paths, 10, axis=1), np.percentile(paths, 90, axis=1)
        except Exception:  # simulation is a nicety; residual quantiles are the fallback
            resid = np.asarray(fit.resid)
            p10 = point + np.percentile(resid, 10)
            p90 = point + np.percentile(resid, 90)
    if not np.all(np.isfinite(point)):
        raise ValueError("Holt-Winters produced non-finite values")
    clip = lambda a: [round(max(0.0, float(v)), 6) for v in a]  # load is never negative
    return {"model": model, "point": clip(point), "p10": clip(np.minimum(p10, point)),
            "p90": clip(np.maximum(p90, point))}


# -- orchestration (parent process) ---------------------------------------------------------------

def forecast_load(history: LoadHistory, start_ts: float, steps: int, run_fit: RunFit | None,
                  profile_kind: LoadKind = "household", annual_kwh: float = 4000.0) -> tuple[Series, str | None]:
    """A load forecast (kW, 15-min) for `steps` intervals from `start_ts` (on the 15-minute grid, right
    after the history). `run_fit` runs `fit_load` (in the worker); it may raise, and then the next model
    down the ladder is used. Returns the series and the fit error, if any."""
    days = history.usable_days
    model = model_for(days)
    error = None
    wall_steps = wall_horizon(history.wall_end, start_ts, steps)
    wall_values: list[float] | None = None
    quantiles: dict[str, list[float]] = {}
    if model.startswith("holt_winters") and run_fit is not None:
        request = {"kind": "load", "values": [None if is_missing(v) else v for v in history.values_kw],
                   "horizon": wall_steps}
        try:
            result = run_fit(request)
            if len(result["point"]) != wall_steps:
                raise ValueError(f"fit returned {len(result['point'])} values for {wall_steps}")
            wall_values = [float(v) for v in result["point"]]
            quantiles = {q: [float(v) for v in result[q]] for q in ("p10", "p90")}
            model = str(result["model"])
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            log.warning("load model fit failed, using seasonal persistence: %s", error)
            model = "seasonal_persistence"
    elif model.startswith("holt_winters"):
        model = "seasonal_persistence"
    if wall_values is None and model == "seasonal_persistence" and days >= PERSISTENCE_MIN_DAYS:
        wall_values = seasonal_persistence(history.values_kw, wall_steps)
    if wall_values is None:
        values = standard_profile_kw(start_ts, steps, profile_kind, annual_kwh)
        return Series(start_ts, STEP_S, tuple(values), "kw", "standard_profile", "standard_profile"), error
    # The wall grid starts right after the history; map each UTC interval back onto its local slot.
    pick = lambda vs: from_wall_clock_grid(history.wall_end, STEP_S, vs, start_ts, steps, MARKET_TZ)
    return Series(start_ts, STEP_S, tuple(pick(wall_values)), "kw", "history", model, (),
                  {q: tuple(pick(v)) for q, v in quantiles.items()}), error

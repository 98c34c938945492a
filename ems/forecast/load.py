"""Load forecast from the EMS's own history: the candidate that erred least on the site's recent past.

The ladder, by how much history there is (15-minute averages of `load_power_w`, on the local
wall-clock grid so that 07:00 stays 07:00 across daylight-saving changes):
- ≥ 2 days: `fit_load` (in the worker process) scores every candidate of `load_models` — seasonal
  naive day and week, medians and means of the last days and of the last days of the same day type,
  the same weekdays, the scaled standard profile while the history is short — by rolling-origin
  day-ahead error on the history alone, and forecasts with the best (or the mean of the best three).
  The model name is the candidate's (`daytype_median_8`, `combined` …). Quantiles p10/p90 come
  from that candidate's own errors in the evaluation window, per hour of the day.
- 1 … 2 days, or if the fit fails: `seasonal_persistence` — the last 24 hours repeated.
- < 1 day: `standard_profile` — the BDEW standard load profile for the date, scaled to
  `forecast.annual_load_kwh`.
The choice is by mean absolute error, so on a spiky household load it is a median and runs low on
energy (bias −0.15 kW on the generated household); correcting that bias per hour cost MAE (0.80 → 0.89
× naive) and gained 0.4 points of savings in the backtest, so the point forecast stays the MAE one.
Holt-Winters (statsmodels, the earlier model) is a candidate only when a request asks for it
(`"holt_winters": true`, the bench does): it lost to seasonal naive on every bundled dataset
(bench/bench_forecast.py) and costs ~150 MB and 3 s of imports per fit.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from .series import (DAY_S, MARKET_TZ, NAN, QUARTER_HOUR_S, Series, fill_gaps, from_wall_clock_grid, is_missing,
                     regular_from_rows, to_wall_clock_grid, utc_offset_s, wall_clock_s)

if TYPE_CHECKING:  # the bundled profiles are read on first use
    from ..data.profiles import LoadKind

log = logging.getLogger(__name__)

STEP_S = QUARTER_HOUR_S
SLOTS_PER_DAY = DAY_S // STEP_S
SLOTS_PER_WEEK = 7 * SLOTS_PER_DAY
HISTORY_DAYS = 28
"""Four weeks: two to learn from and two more to score the candidates on, short enough to follow the season."""
PERSISTENCE_MIN_DAYS = 1
FIT_MIN_DAYS = 2
"""From two days on there is a day to learn from and a day to score on."""
PROFILE_CANDIDATE_DAYS = 14
"""Below this much history the standard profile is offered as a candidate (a new site's best prior)."""
MIN_COVERAGE = 0.6
HW_MIN_DAYS = 2
"""Holt-Winters needs two daily seasons; with two weeks it also removes the weekly profile."""

RunFit = Callable[[dict[str, Any]], dict[str, Any]]


def model_for(days: float) -> str:
    """The ladder above, as a pure function of the usable days of history ("fit": choose in the worker)."""
    if days >= FIT_MIN_DAYS:
        return "fit"
    return "seasonal_persistence" if days >= PERSISTENCE_MIN_DAYS else "standard_profile"


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


def standard_profile_on_wall_grid(wall_start: float, slots: int, kind: LoadKind, annual_kwh: float) -> list[float]:
    """The standard profile at the midpoint of each wall-clock slot (the instant with that local time)."""
    from ..data.profiles import load_profile
    profile = load_profile(kind, annual_kwh)
    out = []
    for i in range(slots):
        wall_mid = wall_start + i * STEP_S + STEP_S / 2
        guess = wall_mid - utc_offset_s(wall_mid - 3 * 3600, MARKET_TZ)
        out.append(max(0.0, profile.value_at(guess)))
    return out


# -- the fit (worker process) ---------------------------------------------------------------------

def holt_winters_point(values: Any, horizon: int) -> Any:
    """Additive Holt-Winters with a daily season on the series less its weekly day-of-week profile
    (the earlier default model; statsmodels, so worker only). numpy array of `horizon` kW."""
    import warnings

    import numpy as np
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    day, week = SLOTS_PER_DAY, SLOTS_PER_WEEK
    y = np.asarray(values, dtype=float)
    n = len(y)
    offsets = np.zeros(week)
    k = n // week
    weekly = k >= 2
    if weekly:
        y = y[n - k * week:]
        profile = y.reshape(k, week).mean(axis=0)
        offsets = profile - np.tile(profile.reshape(7, day).mean(axis=0), 7)
        y = y - np.tile(offsets, k)
    else:
        y = y[n - (n // day) * day:]
    n = len(y)
    future = offsets[(n + np.arange(horizon)) % week] if weekly else np.zeros(horizon)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; the result is checked by the caller
        fit = ExponentialSmoothing(y, seasonal="add", seasonal_periods=day, initialization_method="heuristic").fit()
        return np.asarray(fit.forecast(horizon)) + future


def fit_load(request: dict[str, Any]) -> dict[str, Any]:
    """Choose and forecast on the wall-clock grid. Request: {"values": [kW | null] (the history),
    "horizon": n, "wall_start": s (wall-clock seconds of the first value), optional "profile": [kW]
    (the standard profile for history + horizon), optional "holt_winters": bool}.
    Returns {"model", "point", "p10", "p90", "scores": {candidate: MAE kW}, "bias_kw", "mae_kw",
    "naive_mae_kw"} — lists of `horizon` kW. numpy only unless Holt-Winters is asked for."""
    import numpy as np

    from . import load_models as lm

    values = [NAN if v is None else float(v) for v in request["values"]]
    horizon = int(request["horizon"])
    usable = LoadHistory(0.0, tuple(values)).usable_days
    if usable < PERSISTENCE_MIN_DAYS:
        raise ValueError(f"{usable:.1f} days of history are too few to choose a model (need {PERSISTENCE_MIN_DAYS})")
    n = len(values)
    y = np.concatenate([np.asarray(fill_gaps(values, SLOTS_PER_DAY), dtype=float), np.full(horizon, np.nan)])
    types = lm.day_types(float(request.get("wall_start", 0.0)), n + horizon)
    profile = request.get("profile")
    prof = np.asarray(profile, dtype=float) if profile is not None and len(profile) == n + horizon else None
    ctx = lm.Context(y, types, prof)
    candidates = dict(lm.CANDIDATES)
    if request.get("holt_winters"):
        candidates["holt_winters"] = lambda c, o, h: holt_winters_point(c.y[:o], h) if o >= HW_MIN_DAYS * 96 else None
    scores = lm.score_candidates(ctx, n, candidates)
    if not scores.mae:
        raise ValueError(f"no candidate can be scored on {usable:.1f} days of history")
    model = lm.choose(scores, candidates)
    point = lm.forecast_with(model, scores, ctx, n, horizon, candidates)
    if not np.all(np.isfinite(point)):
        raise ValueError(f"{model} produced non-finite values")
    # Quantiles: the chosen candidate's own errors in the window. Origins sit at the forecast's time
    # of day, so error column c is the time of day of lead j when c = j mod 96; grouped by the hour.
    err = scores.errors[model]
    group = np.arange(SLOTS_PER_DAY) // 4
    lo = np.array([np.percentile(err[:, group == g], 10) for g in range(24)])
    hi = np.array([np.percentile(err[:, group == g], 90) for g in range(24)])
    lead_group = group[np.arange(horizon) % SLOTS_PER_DAY]
    p10, p90 = point - hi[lead_group], point - lo[lead_group]  # err = forecast − actual
    clip = lambda a: [round(max(0.0, float(v)), 6) for v in a]  # load is never negative
    naive = [scores.mae[k] for k in lm.NAIVE if k in scores.mae]
    return {"model": model, "point": clip(point), "p10": clip(np.minimum(p10, point)),
            "p90": clip(np.maximum(p90, point)), "scores": {k: round(v, 6) for k, v in scores.mae.items()},
            "mae_kw": round(scores.mae[model], 6), "bias_kw": round(scores.bias[model], 6),
            "naive_mae_kw": round(min(naive), 6) if naive else None}


# -- orchestration (parent process) ---------------------------------------------------------------

def forecast_load(history: LoadHistory, start_ts: float, steps: int, run_fit: RunFit | None,
                  profile_kind: LoadKind = "household", annual_kwh: float = 4000.0,
                  holt_winters: bool = False) -> tuple[Series, str | None]:
    """A load forecast (kW, 15-min) for `steps` intervals from `start_ts` (on the 15-minute grid, right
    after the history). `run_fit` runs `fit_load` (in the worker); it may raise, and then the last day
    is repeated. Returns the series and the fit error, if any."""
    days = history.usable_days
    model = model_for(days)
    error = None
    wall_steps = wall_horizon(history.wall_end, start_ts, steps)
    wall_values: Optional[list[float]] = None
    quantiles: dict[str, list[float]] = {}
    if model == "fit" and run_fit is not None:
        request: dict[str, Any] = {"kind": "load", "values": [None if is_missing(v) else v for v in history.values_kw],
                                   "horizon": wall_steps, "wall_start": history.wall_start}
        if holt_winters:
            request["holt_winters"] = True
        if days < PROFILE_CANDIDATE_DAYS:
            request["profile"] = standard_profile_on_wall_grid(history.wall_start, len(history.values_kw) + wall_steps,
                                                               profile_kind, annual_kwh)
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
    elif model == "fit":
        model = "seasonal_persistence"
    if wall_values is None and model == "seasonal_persistence":
        wall_values = seasonal_persistence(history.values_kw, wall_steps)
    if wall_values is None:
        values = standard_profile_kw(start_ts, steps, profile_kind, annual_kwh)
        return Series(start_ts, STEP_S, tuple(values), "kw", "standard_profile", "standard_profile"), error
    # The wall grid continues the history; map each UTC interval back onto its local slot. A forecast
    # starting inside the repeated autumn hour reads its first hour from the history (the same wall-clock
    # slots, measured an hour ago).
    past = fill_gaps(list(history.values_kw), SLOTS_PER_DAY)
    pick = lambda vs: from_wall_clock_grid(history.wall_start, STEP_S, past + list(vs), start_ts, steps, MARKET_TZ)
    return Series(start_ts, STEP_S, tuple(pick(wall_values)), "kw", "history", model, (),
                  {q: tuple(pick(v)) for q, v in quantiles.items()}), error

"""Load forecast candidates and the rolling-origin choice between them (numpy only, pure).

Why several models: a household's load is mostly noise around a daily routine, a business's is a
weekday schedule, and a standard profile repeats exactly every week — no one model wins on all three
(bench/bench_forecast.py). So every fit scores every candidate on the site's own recent past and
forecasts with the one (or the mean of the few) that erred least there. The seasonal-naive
baselines are candidates themselves, so the choice cannot be worse than them over that window
unless the recent past stops predicting the near future.

Everything runs on the local wall-clock grid (`series.to_wall_clock_grid`: 96 slots every local
day), so a slot is a time of day whatever the season. Rolling origin: origin k lies k days before
the end of the history, at the same time of day as the forecast's own origin; each candidate is
computed from the values before that origin only and scored on the 24 hours after it.

Candidates (`CANDIDATES`; `y` the gap-filled history, `o` the origin index, j the lead in slots):
- `naive_day`: the last value at the same time of day (yesterday's).
- `naive_week`: the same time last week.
- `median_days_7`, `median_days_14`, `mean_days_7`: median / mean of the last N days at that time of
  day (a median wins on MAE for spiky loads: a kettle does not come back at the same minute).
- `daytype_median_4`, `daytype_median_8`, `daytype_mean_4`: the same over the last N days of the same
  day type (working day, Saturday, Sunday or Austrian public holiday) within four weeks: the
  calendar regression of a business's schedule without fitting anything.
- `weekday_mean_3`: the mean of the last 3 same weekdays (of those there are, from one week on).
- `profile_scaled`: the standard profile (when the request carries one) scaled to the recent level.
- `combined`: the mean of the three best single candidates' forecasts (scored like the others).
The averages need 3 days and take what there is until N days exist; the scoring window is two weeks,
or half the history while it is shorter. Holt-Winters (statsmodels) is added by `load.fit_load` when
a request asks for it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Callable, Optional

import numpy as np

SLOTS_PER_DAY = 96
SLOTS_PER_WEEK = 7 * SLOTS_PER_DAY
EVAL_DAYS = 14
"""Origins scored per fit: two weeks weigh each weekday twice and still follow the season."""
DAYTYPE_LOOKBACK_DAYS = 28
COMBINE_TOP = 3
WORKDAY, SATURDAY, SUNDAY_OR_HOLIDAY = 0, 1, 2

Candidate = Callable[["Context", int, int], Optional[np.ndarray]]


# -- the calendar ---------------------------------------------------------------------------------

def _easter(year: int) -> date:
    """Gregorian Easter Sunday (the anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month = (h + ell - 7 * m + 114) // 31
    day = (h + ell - 7 * m + 114) % 31 + 1
    return date(year, month, day)


@lru_cache(maxsize=16)
def austrian_holidays(year: int) -> frozenset[date]:
    """Austrian public holidays: on these days a business is closed and a household lives a Sunday."""
    easter = _easter(year)
    fixed = [(1, 1), (1, 6), (5, 1), (8, 15), (10, 26), (11, 1), (12, 8), (12, 25), (12, 26)]
    moving = [easter + timedelta(days=d) for d in (1, 39, 50, 60)]  # Easter and Whit Monday, Ascension, Corpus Christi
    return frozenset([date(year, m, d) for m, d in fixed] + moving)


def day_type(day: date) -> int:
    if day.weekday() == 6 or day in austrian_holidays(day.year):
        return SUNDAY_OR_HOLIDAY
    return SATURDAY if day.weekday() == 5 else WORKDAY


def day_types(wall_start_s: float, n_slots: int) -> np.ndarray:
    """Day type of every slot of a wall-clock grid starting at `wall_start_s` (local wall-clock seconds)."""
    first_day = math.floor(wall_start_s / 86400.0)
    last_day = math.floor((wall_start_s + (n_slots - 1) * 900.0) / 86400.0) if n_slots else first_day
    epoch = date(1970, 1, 1)
    types = np.array([day_type(epoch + timedelta(days=d)) for d in range(first_day, last_day + 1)], dtype=np.int8)
    slot_day = ((wall_start_s + 900.0 * np.arange(n_slots)) // 86400.0).astype(np.int64) - first_day
    return types[slot_day]


# -- candidates -----------------------------------------------------------------------------------

class Context:
    """What every candidate may read: the filled series `y` (history, then NaN for the future), the
    day type of every slot, and the standard profile on the same grid (or None)."""

    def __init__(self, y: np.ndarray, types: np.ndarray, profile: Optional[np.ndarray]):
        self.y = y
        self.types = types
        self.profile = profile


def _nanmedian(a: np.ndarray, axis: int) -> np.ndarray:
    """Median of each row ignoring NaN (NaN where a row has none). Rows only (axis 1): a sort puts NaN
    last, so the middle of the finite part is picked directly — numpy's nanmedian goes through masked
    arrays for small rows and costs ten times as much."""
    assert axis == 1
    s = np.sort(a, axis=1)
    k = np.sum(np.isfinite(a), axis=1)
    lo = np.maximum((k - 1) // 2, 0)[:, None]
    hi = np.maximum(k // 2, 0)[:, None]
    out = 0.5 * (np.take_along_axis(s, lo, axis=1) + np.take_along_axis(s, hi, axis=1))[:, 0]
    out[k == 0] = np.nan
    return out


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    """Mean of each row ignoring NaN (NaN where a row has none)."""
    ok = np.isfinite(a)
    k = ok.sum(axis=axis)
    total = np.where(ok, a, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(k > 0, total / np.maximum(k, 1), np.nan)


def _same_slot(ctx: Context, o: int, h: int, period: int, count: int) -> np.ndarray:
    """(h × count) values at the same phase of `period` before origin `o`: for lead j the most recent
    `count` values y[o + j − period·m], m ≥ 1 + j // period (so only values before `o`); NaN before the start."""
    j = np.arange(h)
    m0 = j // period + 1
    idx = (o + j)[:, None] - period * (m0[:, None] + np.arange(count)[None, :])
    out = np.full(idx.shape, np.nan)
    ok = idx >= 0
    out[ok] = ctx.y[idx[ok]]
    return out


def naive_day(ctx: Context, o: int, h: int) -> Optional[np.ndarray]:
    return _same_slot(ctx, o, h, SLOTS_PER_DAY, 1)[:, 0] if o >= SLOTS_PER_DAY else None


def naive_week(ctx: Context, o: int, h: int) -> Optional[np.ndarray]:
    return _same_slot(ctx, o, h, SLOTS_PER_WEEK, 1)[:, 0] if o >= SLOTS_PER_WEEK else None


MIN_DAYS_FOR_AVERAGES = 3
"""An average of the last N days (or day-type days) needs at least this many days; until N exist it
takes what there is, so a new site has more than yesterday to go on."""


def _days(count: int, how: Callable[..., np.ndarray]) -> Candidate:
    def candidate(ctx: Context, o: int, h: int) -> Optional[np.ndarray]:
        if o < MIN_DAYS_FOR_AVERAGES * SLOTS_PER_DAY:
            return None
        return how(_same_slot(ctx, o, h, SLOTS_PER_DAY, count), axis=1)
    return candidate


def _daytype(count: int, how: Callable[..., np.ndarray]) -> Candidate:
    def candidate(ctx: Context, o: int, h: int) -> Optional[np.ndarray]:
        if o < MIN_DAYS_FOR_AVERAGES * SLOTS_PER_DAY:
            return None
        values = _same_slot(ctx, o, h, SLOTS_PER_DAY, DAYTYPE_LOOKBACK_DAYS)
        j = np.arange(h)
        m0 = j // SLOTS_PER_DAY + 1
        idx = (o + j)[:, None] - SLOTS_PER_DAY * (m0[:, None] + np.arange(DAYTYPE_LOOKBACK_DAYS)[None, :])
        past_type = np.where(idx >= 0, ctx.types[np.maximum(idx, 0)], -1)
        same = (past_type == ctx.types[o + j][:, None]) & np.isfinite(values)
        take = same & (np.cumsum(same, axis=1) <= count)
        picked = np.where(take, values, np.nan)
        enough = take.sum(axis=1) >= 2
        # Too few days of this type yet (the first holidays): the recent days of any type.
        fallback = _nanmedian(values[:, :7], axis=1)
        return np.where(enough, how(picked, axis=1), fallback)
    return candidate


def weekday_mean_3(ctx: Context, o: int, h: int) -> Optional[np.ndarray]:
    if o < SLOTS_PER_WEEK:
        return None
    return _nanmean(_same_slot(ctx, o, h, SLOTS_PER_WEEK, 3), axis=1)


def profile_scaled(ctx: Context, o: int, h: int) -> Optional[np.ndarray]:
    """The standard profile, scaled by the ratio of the last (up to) 7 days' energy to the profile's."""
    if ctx.profile is None or o < SLOTS_PER_DAY:
        return None
    lo = max(0, o - 7 * SLOTS_PER_DAY)
    ref = float(np.sum(ctx.profile[lo:o]))
    level = float(np.sum(ctx.y[lo:o])) / ref if ref > 1e-9 else 1.0
    return ctx.profile[o:o + h] * level


CANDIDATES: dict[str, Candidate] = {
    "naive_day": naive_day,
    "naive_week": naive_week,
    "median_days_7": _days(7, _nanmedian),
    "median_days_14": _days(14, _nanmedian),
    "mean_days_7": _days(7, _nanmean),
    "daytype_median_4": _daytype(4, _nanmedian),
    "daytype_median_8": _daytype(8, _nanmedian),
    "daytype_mean_4": _daytype(4, _nanmean),
    "weekday_mean_3": weekday_mean_3,
    "profile_scaled": profile_scaled,
}
NAIVE = ("naive_day", "naive_week")


# -- the choice -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scores:
    """Rolling-origin MAE and bias (kW) per candidate, each one's errors (forecast − actual, origins × 96)
    and the best single candidates `combined` averages."""

    mae: dict[str, float]
    bias: dict[str, float]
    errors: dict[str, np.ndarray]
    top: tuple[str, ...]


def evaluation_origins(n: int, eval_days: int = EVAL_DAYS) -> list[int]:
    """Origins k = 1 … E days before the end of an n-slot history, each with a day after it: E is
    `eval_days`, or half the history while it is short (the other half is what the candidates learn from)."""
    days = min(eval_days, max(1, n // SLOTS_PER_DAY // 2))
    return [n - k * SLOTS_PER_DAY for k in range(1, days + 1) if n - k * SLOTS_PER_DAY > 0]


def score_candidates(ctx: Context, n: int, candidates: dict[str, Candidate], eval_days: int = EVAL_DAYS) -> Scores:
    """Score every candidate computable at all origins. Only y[:n] is read."""
    origins = evaluation_origins(n, eval_days)
    errors: dict[str, np.ndarray] = {}
    forecasts: dict[str, np.ndarray] = {}
    if not origins:
        return Scores({}, {}, {}, ())
    actual = np.stack([ctx.y[o:o + SLOTS_PER_DAY] for o in origins])
    for name, fn in candidates.items():
        rows = []
        for o in origins:
            f = fn(ctx, o, SLOTS_PER_DAY)
            if f is None or not np.all(np.isfinite(f)):
                break
            rows.append(np.maximum(f, 0.0))
        if len(rows) == len(origins):
            forecasts[name] = np.stack(rows)
            errors[name] = forecasts[name] - actual
    mae = {name: float(np.mean(np.abs(e))) for name, e in errors.items()}
    top = tuple(sorted(mae, key=lambda k: (mae[k], list(candidates).index(k)))[:COMBINE_TOP])
    if len(top) >= 2:
        errors["combined"] = np.mean([forecasts[t] for t in top], axis=0) - actual
        mae["combined"] = float(np.mean(np.abs(errors["combined"])))
    bias = {name: float(np.mean(e)) for name, e in errors.items()}
    return Scores(mae, bias, errors, top)


def choose(scores: Scores, candidates: dict[str, Candidate]) -> str:
    """The candidate with the least MAE; a tie goes to the simpler (earlier listed) one, `combined` last."""
    order = [*candidates, "combined"]
    return min(scores.mae, key=lambda k: (round(scores.mae[k], 9), order.index(k)))


def forecast_with(name: str, scores: Scores, ctx: Context, n: int, horizon: int,
                  candidates: dict[str, Candidate]) -> np.ndarray:
    """The chosen candidate's forecast for `horizon` slots after the history's end (never negative)."""
    if name == "combined":
        parts = [candidates[t](ctx, n, horizon) for t in scores.top]
        values = np.mean([p for p in parts if p is not None], axis=0)
    else:
        out = candidates[name](ctx, n, horizon)
        if out is None:
            raise ValueError(f"candidate {name} cannot forecast from this history")
        values = out
    return np.maximum(np.nan_to_num(np.asarray(values, dtype=float), nan=0.0), 0.0)

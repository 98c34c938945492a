"""PV forecast: the sun's position and a clear-sky model (pvlib) for the site, scaled by weather or history.

Models, best available first, per 15-minute interval:
- `owm_cloud_cover` — with an OpenWeatherMap forecast: clear-sky GHI (Ineichen) reduced by the forecast
  cloud cover (Kasten & Czeplak 1980: GHI = GHI_clear · (1 − 0.75·c^3.4)), split into beam and
  diffuse (Erbs), transposed onto the array (Hay-Davies), cell temperature (Faiman) and PVWatts DC
  power less the PVWatts default system losses; with ≥ 7 days of history times a per-site correction
  per time of day (`site_correction`: the site's output on its clearest days against clear sky, which
  is what orientation errors, shading and soiling change) — `owm_cloud_cover_x_site_correction`.
- ≥ 3 days of PV history: `blend_0.55_naive_profile` — 55 % yesterday's PV, 45 % clear-sky PV times
  the site's ratio of measured to clear-sky energy per time of day over the last 21 days (shading,
  orientation, the season's cloudiness): persistence and climatology each cancel part of the other's
  error. Scored by rolling origin on the site's recent days against `naive_day` (yesterday), which
  is used instead where it erred clearly less there (`NAIVE_GUARD_MARGIN`). Quantiles from the chosen one's own errors. (More
  candidates — see `_all_candidates` — made the choice worse: noise, not skill, picked among them.)
- `clear_sky_x_recent_pr` — 1 … 3 days: clear-sky PV times the recent performance ratio.
- `clear_sky_x_climatology` — no history: clear-sky PV times the month's typical ratio, derived from
  the bundled 2023–2024 PV data at this site's clear-sky output.
Solar geometry is pvlib's: nothing here hand-writes it. pvlib imports pandas, so `fit_pv` runs in the
worker process; `forecast_pv` (parent side) only builds the request and reads the answer.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .series import DAY_S, MARKET_TZ, QUARTER_HOUR_S, Series, is_missing, regular_from_rows

if TYPE_CHECKING:  # numpy is imported lazily, in the worker process only
    import numpy as np
    import numpy.typing as npt

log = logging.getLogger(__name__)

STEP_S = QUARTER_HOUR_S
HISTORY_DAYS = 28
"""Two weeks to learn a profile from and two more to score the candidates on."""
PROFILE_DAYS = 7
PROFILE_MIN_DAYS = 3
EVAL_DAYS = 14
BLEND_PROFILE_DAYS = 21
BLEND_WEIGHT = 0.55
"""Yesterday's share in the blend: 0.55 gave the least day-ahead MAE on the bundled 2024 data (0.4: 0.905,
0.45: 0.899, 0.5: 0.895, 0.55: 0.894 × yesterday's MAE, the blend on its own)."""
NAIVE_GUARD_MARGIN = 0.1
"""Yesterday replaces the blend only where it erred at least this much less (share of the blend's MAE) on
the scored days. Two weeks of day-ahead errors are noisy: taking yesterday whenever it was merely a little
better there swapped a better model for a worse one so often that it cost more than it guarded (the 0.5
blend on the bundled 2024 data: 0.901 × yesterday's MAE with no margin, 0.895 alone; the 0.55 blend with this
margin: 0.896). The guard stays for a site where the profile is plainly wrong (a new obstruction, a changed
array), where yesterday errs far less."""
CORRECTION_MIN_DAYS = 7
CORRECTION_QUANTILE_PCT = 90.0
"""The site's clearest moments per time of day: what its array makes of clear sky."""
DAYLIGHT_FRACTION = 0.05
"""Intervals whose clear-sky output is below this share of kWp carry no usable ratio (dawn, dusk, night)."""
GAMMA_PDC_PER_K = -0.004
"""Power temperature coefficient of crystalline silicon, 1/K."""
MAX_RATIO = 1.3
PERSISTENCE_WEIGHT = 0.5
"""How far the history model's level leans towards the last day's ratio (0 = the week's mean, 1 = the last
day's): 0.5 gave the lowest day-ahead error on the bundled 2024 PV data (see bench/bench_forecast.py)."""
SLOTS_PER_DAY = DAY_S // STEP_S

RunFit = Callable[[dict[str, Any]], dict[str, Any]]


def pv_request(start_ts: float, steps: int, *, latitude_deg: float, longitude_deg: float, tilt_deg: float,
               azimuth_deg: float, kwp: float, history_rows: Sequence[dict[str, Any]] = (),
               weather: Sequence[Any] = ()) -> dict[str, Any]:
    """The worker request: site, target intervals, PV history (kW, 15-min, last HISTORY_DAYS) and weather."""
    hist_start = start_ts - HISTORY_DAYS * DAY_S
    hist = regular_from_rows(history_rows, "pv_power_w", hist_start, start_ts, STEP_S, scale=1e-3)
    return {
        "kind": "pv", "start_ts": start_ts, "steps": steps, "step_s": STEP_S,
        "site": {"latitude_deg": latitude_deg, "longitude_deg": longitude_deg, "tilt_deg": tilt_deg,
                 "azimuth_deg": azimuth_deg, "kwp": kwp},
        "history": {"start_ts": hist_start, "values_kw": [None if is_missing(v) else v for v in hist]},
        "weather": [[p.ts, p.cloud_pct, p.temp_c, p.wind_m_s] for p in weather],
    }


def forecast_pv(request: dict[str, Any], run_fit: RunFit | None) -> tuple[Series, str | None]:
    """PV forecast in kW for the request's intervals. Without PV (kWp 0) it is zero and needs no fit; if
    the fit fails the forecast is zero (the cautious assumption for a plan) and the error is returned."""
    start_ts, steps = float(request["start_ts"]), int(request["steps"])
    if request["site"]["kwp"] <= 0:
        return Series(start_ts, STEP_S, (0.0,) * steps, "kw", "config", "no_pv"), None
    if run_fit is None:
        return Series(start_ts, STEP_S, (0.0,) * steps, "kw", "none", "unavailable"), "no fit runner"
    try:
        result = run_fit(request)
        point = tuple(float(v) for v in result["point"])
        if len(point) != steps:
            raise ValueError(f"fit returned {len(point)} values for {steps}")
        quantiles: dict[str, tuple[float, ...]] = {q: tuple(float(v) for v in result[q])
                                                   for q in ("p10", "p90") if q in result}
        return Series(start_ts, STEP_S, point, "kw", str(result["source"]), str(result["model"]), (),
                      quantiles), None
    except Exception as exc:
        error = str(exc) or type(exc).__name__
        log.warning("PV forecast failed, assuming no PV: %s", error)
        return Series(start_ts, STEP_S, (0.0,) * steps, "kw", "none", "unavailable"), error


# -- the fit (worker process) ---------------------------------------------------------------------

def clear_sky_pv_kw(mid_ts: npt.ArrayLike, site: dict[str, Any], cloud_pct: Any = None, temp_c: Any = None,
                    wind_m_s: Any = None) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64] | None]:
    """DC power (kW) at the instants `mid_ts`: (clear-sky at 25 °C without losses, weather-based or None).

    The clear-sky figure is the yardstick history ratios are taken against; the weather-based one is
    the physical model of the module docstring. numpy arrays out.
    """
    import numpy as np
    import pandas as pd
    from pvlib import irradiance, location, pvsystem, temperature

    times = pd.DatetimeIndex(pd.to_datetime(np.asarray(mid_ts, dtype=float), unit="s", utc=True))
    lat, lon = float(site["latitude_deg"]), float(site["longitude_deg"])
    loc = location.Location(lat, lon, tz="UTC", altitude=location.lookup_altitude(lat, lon))
    solpos = loc.get_solarposition(times)
    cs = loc.get_clearsky(times, model="ineichen", solar_position=solpos)
    dni_extra = irradiance.get_extra_radiation(times)
    tilt, azimuth, pdc0 = float(site["tilt_deg"]), float(site["azimuth_deg"]), float(site["kwp"]) * 1000.0

    def poa(ghi: Any, dni: Any, dhi: Any) -> Any:
        total = irradiance.get_total_irradiance(tilt, azimuth, solpos["apparent_zenith"], solpos["azimuth"],
                                                dni, ghi, dhi, dni_extra=dni_extra, model="haydavies")
        return total["poa_global"].fillna(0.0).clip(lower=0.0)

    clear = pvsystem.pvwatts_dc(poa(cs["ghi"], cs["dni"], cs["dhi"]), 25.0, pdc0, GAMMA_PDC_PER_K) / 1000.0
    clear = np.clip(np.asarray(clear, dtype=float), 0.0, None)
    if cloud_pct is None:
        return clear, None
    cloud = np.clip(np.asarray(cloud_pct, dtype=float), 0.0, 100.0) / 100.0
    ghi = cs["ghi"] * (1.0 - 0.75 * cloud ** 3.4)
    split = irradiance.erbs(ghi, solpos["zenith"], times)
    poa_w = poa(ghi, split["dni"].fillna(0.0), split["dhi"].fillna(0.0))
    air = pd.Series(np.nan_to_num(np.asarray(temp_c, dtype=float), nan=15.0), index=times)
    wind = pd.Series(np.nan_to_num(np.asarray(wind_m_s, dtype=float), nan=1.0), index=times)
    cell = temperature.faiman(poa_w, air, wind)
    losses = pvsystem.pvwatts_losses() / 100.0
    weather = pvsystem.pvwatts_dc(poa_w, cell, pdc0, GAMMA_PDC_PER_K) * (1.0 - losses) / 1000.0
    return clear, np.clip(np.asarray(weather, dtype=float), 0.0, None)


_CLEAR_SKY_DAYS: dict[tuple[float, float, float, float], dict[int, Any]] = {}
CLEAR_SKY_CACHE_DAYS = 800
"""Per array, clear-sky days kept by a serving worker (a backtest's fits overlap by weeks): ~600 kB."""


def clear_sky_on_quarter_hours(mid_ts: Any, site: dict[str, Any]) -> Any:
    """`clear_sky_pv_kw(mid_ts, site)[0]` for midpoints of UTC quarter-hours, computed a UTC day at a time
    and kept per array, so a worker answering many overlapping requests computes each day once. Other
    instants go straight to pvlib."""
    import numpy as np
    mid = np.asarray(mid_ts, dtype=float)
    if len(mid) == 0 or np.any((mid - STEP_S / 2) % STEP_S != 0):
        return clear_sky_pv_kw(mid, site)[0]
    key = (float(site["latitude_deg"]), float(site["longitude_deg"]), float(site["tilt_deg"]),
           float(site["azimuth_deg"]))
    days = _CLEAR_SKY_DAYS.setdefault(key, {})
    day_of = (mid // DAY_S).astype(np.int64)
    missing = [int(d) for d in np.unique(day_of) if int(d) not in days]
    if missing:
        if len(days) + len(missing) > CLEAR_SKY_CACHE_DAYS:
            days.clear()
        grid = (np.asarray(missing, dtype=float)[:, None] * DAY_S + STEP_S * (np.arange(SLOTS_PER_DAY) + 0.5)).ravel()
        values, _ = clear_sky_pv_kw(grid, {**site, "kwp": 1.0})
        for i, d in enumerate(missing):
            days[d] = values[i * SLOTS_PER_DAY:(i + 1) * SLOTS_PER_DAY]
    slot = ((mid % DAY_S) // STEP_S).astype(np.int64)
    needed = np.unique(day_of)
    table = np.stack([days[int(d)] for d in needed])
    per_kwp = table[np.searchsorted(needed, day_of), slot]
    return per_kwp * float(site["kwp"])


def _interp_weather(mid_ts: Any, weather: list[list[Any]]) -> tuple[Any, Any, Any, Any]:
    """Weather columns at `mid_ts` (linear in time); `covered` is False outside the forecast's range."""
    import numpy as np
    w = np.asarray([[p[0], p[1], np.nan if p[2] is None else p[2], np.nan if p[3] is None else p[3]]
                    for p in weather], dtype=float)
    w = w[np.argsort(w[:, 0])]
    covered = (mid_ts >= w[0, 0]) & (mid_ts <= w[-1, 0])

    def col(j: int, default: float) -> Any:
        ok = np.isfinite(w[:, j])
        return np.interp(mid_ts, w[ok, 0], w[ok, j]) if ok.any() else np.full(len(mid_ts), default)
    return covered, col(1, 50.0), col(2, 15.0), col(3, 1.0)


def climatology_ratio(month: int, site: dict[str, Any]) -> float:
    """The month's typical measured/clear-sky energy ratio: the bundled per-kWp PV data (2023–2024)
    against this site's clear-sky output for the same hours. Cached per month and array: a worker
    that serves many fits (the backtest's) reads the year once."""
    return _climatology_ratio(month, float(site["latitude_deg"]), float(site["longitude_deg"]),
                              float(site["tilt_deg"]), float(site["azimuth_deg"]))


@lru_cache(maxsize=64)
def _climatology_ratio(month: int, latitude_deg: float, longitude_deg: float, tilt_deg: float,
                       azimuth_deg: float) -> float:
    from datetime import datetime

    import numpy as np

    from ..data import read_series
    from ..data.profiles import PV_FILE

    # The file's timestamps are Europe/Vienna local time (ems/data/SOURCES.md): its months are MARKET_TZ's.
    ts, kw = [], []
    for start, value in zip(*read_series(PV_FILE)):
        if datetime.fromtimestamp(start, MARKET_TZ).month == month:
            ts.append(start + 1800.0)
            kw.append(value)
    site = {"latitude_deg": latitude_deg, "longitude_deg": longitude_deg, "tilt_deg": tilt_deg,
            "azimuth_deg": azimuth_deg, "kwp": 1.0}
    clear, _ = clear_sky_pv_kw(ts, site)
    total = float(np.sum(clear))
    return float(np.clip(np.sum(kw) / total, 0.05, 1.0)) if total > 0 else 0.5


def _same_slot(values: Any, o: int, h: int, count: int) -> Any:
    """(h × count): for lead j after origin `o`, the last `count` values at the same slot of the day
    before `o` (NaN before the start) — only values before the origin."""
    import numpy as np
    j = np.arange(h)
    idx = (o + j)[:, None] - SLOTS_PER_DAY * ((j // SLOTS_PER_DAY + 1)[:, None] + np.arange(count)[None, :])
    out = np.full(idx.shape, np.nan)
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    return out


def _profile_ratio(pv: Any, clear: Any, o: int, h: int, days: int, kwp: float) -> Any:
    """Per lead: measured / clear-sky energy at that time of day over the last `days` days before `o`."""
    import numpy as np
    p = _same_slot(pv, o, h, days)
    c = _same_slot(clear, o, h, days)
    ok = np.isfinite(p) & np.isfinite(c)
    num = np.where(ok, p, 0.0).sum(axis=1)
    den = np.where(ok, c, 0.0).sum(axis=1)
    overall = _day_ratios(pv, clear, o, days, kwp)
    level = float(np.mean(overall)) if len(overall) else 0.5
    ratio = np.where(den > DAYLIGHT_FRACTION * kwp * max(1, days // 3), num / np.maximum(den, 1e-12), level)
    return np.clip(ratio, 0.0, MAX_RATIO)


def _day_ratios(pv: Any, clear: Any, o: int, days: int, kwp: float) -> list[float]:
    """Measured / clear-sky energy of each of the last `days` 24-hour windows before `o` (most recent
    last), daylight intervals with a measurement only; windows with too few measurements are skipped."""
    import numpy as np
    out = []
    for k in range(days, 0, -1):
        lo, hi = o - k * SLOTS_PER_DAY, o - (k - 1) * SLOTS_PER_DAY
        if lo < 0:
            continue
        p, c = pv[lo:hi], clear[lo:hi]
        daylight = c > DAYLIGHT_FRACTION * kwp
        sel = daylight & np.isfinite(p)
        if sel.sum() >= 0.5 * max(1, daylight.sum()) and c[sel].sum() > 0:
            out.append(min(MAX_RATIO, float(p[sel].sum() / c[sel].sum())))
    return out


def _all_candidates(kwp: float) -> dict[str, Callable[[Any, Any, int, int], Any]]:
    """name → f(pv, clear, origin, horizon): forecasts from the values before the origin only (None
    when the history before it is too short)."""
    import numpy as np

    def naive_day(pv: Any, clear: Any, o: int, h: int) -> Any:
        if o < SLOTS_PER_DAY:
            return None
        out = _same_slot(pv, o, h, 1)[:, 0]
        return np.where(np.isfinite(out), out, 0.0)

    def profile(days: int) -> Callable[[Any, Any, int, int], Any]:
        def f(pv: Any, clear: Any, o: int, h: int) -> Any:
            if o < PROFILE_MIN_DAYS * SLOTS_PER_DAY:
                return None
            return clear[o:o + h] * _profile_ratio(pv, clear, o, h, days, kwp)
        return f

    def leaning(pv: Any, clear: Any, o: int, h: int) -> Any:
        if o < PROFILE_MIN_DAYS * SLOTS_PER_DAY:
            return None
        ratios = _day_ratios(pv, clear, o, PROFILE_DAYS, kwp)
        mean = float(np.mean(ratios)) if ratios else 0.0
        lean = (ratios[-1] / mean) ** PERSISTENCE_WEIGHT if ratios and mean > 0 else 1.0
        return clear[o:o + h] * _profile_ratio(pv, clear, o, h, PROFILE_DAYS, kwp) * lean

    blend_profile = profile(BLEND_PROFILE_DAYS)

    def blend(w: float) -> Callable[[Any, Any, int, int], Any]:
        def f(pv: Any, clear: Any, o: int, h: int) -> Any:
            a, b = naive_day(pv, clear, o, h), blend_profile(pv, clear, o, h)
            return None if a is None or b is None else w * a + (1.0 - w) * b
        return f

    out: dict[str, Callable[[Any, Any, int, int], Any]] = {"naive_day": naive_day}
    for days in (7, 14, BLEND_PROFILE_DAYS):
        out[f"clear_sky_x_profile_{days}d"] = profile(days)
    out["clear_sky_x_history_profile"] = leaning
    for w in sorted({0.3, 0.5, BLEND_WEIGHT, 0.7}):
        out[f"blend_{w:g}_naive_profile"] = blend(w)
    return out


def _pv_candidates(kwp: float) -> dict[str, Callable[[Any, Any, int, int], Any]]:
    """The candidates a fit chooses between."""
    every = _all_candidates(kwp)
    # Offered: the blend, and yesterday as the guard (`NAIVE_GUARD_MARGIN`). Choosing among more (the
    # profiles over 7/14/21 days, the leaning profile, other blend weights) by recent error was worse on
    # the bundled 2024 data (0.956 × yesterday's MAE against 0.903 for the 0.5 blend alone): with two
    # weeks to score on, the choice among similar candidates follows noise. `all_pv_candidates` keeps them.
    return {k: every[k] for k in ("naive_day", f"blend_{BLEND_WEIGHT:g}_naive_profile")}


def all_pv_candidates(kwp: float) -> dict[str, Callable[[Any, Any, int, int], Any]]:
    """Every PV candidate tried (for the bench and its record), of which `_pv_candidates` offers two."""
    return _all_candidates(kwp)


def choose_pv_model(pv: Any, clear: Any, n: int, horizon: int, kwp: float) -> tuple[str, Any, Any, dict[str, float]]:
    """Rolling-origin choice on the history `pv[:n]` (kW, NaN = missing; `clear` covers history and
    horizon): (model, point, errors of the chosen one (origins × 96), MAE per candidate)."""
    import numpy as np
    days = int(np.isfinite(pv[:n]).sum()) // SLOTS_PER_DAY
    origins = [n - k * SLOTS_PER_DAY for k in range(1, min(EVAL_DAYS, max(1, days // 2)) + 1)]
    origins = [o for o in origins if o > 0]
    candidates = _pv_candidates(kwp)
    errors: dict[str, Any] = {}
    for name, fn in candidates.items():
        rows = []
        for o in origins:
            f = fn(pv, clear, o, SLOTS_PER_DAY)
            actual = pv[o:o + SLOTS_PER_DAY]
            if f is None:
                break
            rows.append(np.where(np.isfinite(actual), np.clip(f, 0.0, None) - actual, np.nan))
        if origins and len(rows) == len(origins):
            errors[name] = np.stack(rows)
    mae = {k: float(np.nanmean(np.abs(e))) for k, e in errors.items() if np.isfinite(e).any()}
    if not mae:
        raise ValueError("no PV candidate can be scored on this history")
    blend = f"blend_{BLEND_WEIGHT:g}_naive_profile"
    if blend in mae and (mae.get("naive_day", np.inf) >= (1.0 - NAIVE_GUARD_MARGIN) * mae[blend]):
        model = blend
    else:
        order = list(candidates)
        model = min(mae, key=lambda k: (round(mae[k], 9), order.index(k)))
    point = candidates[model](pv, clear, n, horizon)
    return model, np.clip(np.asarray(point, dtype=float), 0.0, None), errors[model], mae


def site_correction(pv: Any, clear: Any, mid_ts: Any, kwp: float, step_s: int = STEP_S) -> Any:
    """Per UTC slot of the day (index (ts % day) // step): the site's p90 ratio of measured to clear-sky
    power over its history (`pv`, `clear` at the instants `mid_ts`), relative to what the weather model
    assumes of a clear sky (its PVWatts losses): 1 = as modelled. None with fewer than
    CORRECTION_MIN_DAYS days of measurements."""
    import warnings

    import numpy as np
    from pvlib import pvsystem

    if int(np.isfinite(pv).sum()) < CORRECTION_MIN_DAYS * SLOTS_PER_DAY:
        return None
    slots = DAY_S // step_s
    slot = ((np.asarray(mid_ts) % DAY_S) // step_s).astype(int)
    with np.errstate(all="ignore"):
        r = np.where((clear > DAYLIGHT_FRACTION * kwp) & np.isfinite(pv), pv / np.maximum(clear, 1e-12), np.nan)
    q = np.full(slots, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for s_ in range(slots):
            values = r[slot == s_]
            if np.isfinite(values).sum() >= CORRECTION_MIN_DAYS:
                q[s_] = np.nanpercentile(values, CORRECTION_QUANTILE_PCT)
    modelled = 1.0 - pvsystem.pvwatts_losses() / 100.0
    overall = float(np.nanmedian(q)) if np.isfinite(q).any() else modelled
    q = np.where(np.isfinite(q), q, overall)
    return np.clip(q / modelled, 0.2, MAX_RATIO)


def fit_pv(request: dict[str, Any]) -> dict[str, Any]:
    """Worker entry: {"model", "source", "point", ["p10", "p90"], "ratio", ["scores"]} for the request's intervals.

    The history grid (`history.start_ts`) and the forecast's `start_ts` are on the same 15-minute grid,
    the history ending where the forecast starts."""
    from datetime import datetime, timezone

    import numpy as np

    site = request["site"]
    start_ts, steps, step_s = float(request["start_ts"]), int(request["steps"]), int(request["step_s"])
    kwp = float(site["kwp"])
    mid = start_ts + step_s * (np.arange(steps) + 0.5)
    hist = request.get("history") or {"start_ts": start_ts, "values_kw": []}
    h_vals = np.asarray([np.nan if v is None else v for v in hist["values_kw"]], dtype=float)
    h_mid = float(hist["start_ts"]) + step_s * (np.arange(len(h_vals)) + 0.5)
    weather = request.get("weather") or []
    covered, cloud, temp, wind = (_interp_weather(mid, weather) if weather
                                  else (np.zeros(steps, bool), None, None, None))

    both = np.concatenate([h_mid, mid])
    clear_all = clear_sky_on_quarter_hours(both, site) if step_s == STEP_S else clear_sky_pv_kw(both, site)[0]
    clear_h, clear = clear_all[:len(h_mid)], clear_all[len(h_mid):]
    n = len(h_vals)
    usable_days = int(np.isfinite(h_vals).sum()) // SLOTS_PER_DAY
    ratios = _day_ratios(h_vals, clear_h, n, n // SLOTS_PER_DAY, kwp) if n else []
    result: dict[str, Any] = {"source": "history"}
    correction = None
    if usable_days >= PROFILE_MIN_DAYS and ratios:
        pv_all = np.concatenate([h_vals, np.full(steps, np.nan)])
        model, point, err, mae = choose_pv_model(pv_all, clear_all, n, steps, kwp)
        result.update(model=model, ratio=float(np.mean(ratios)), scores={k: round(v, 6) for k, v in mae.items()})
        group = np.arange(SLOTS_PER_DAY) // 4
        with np.errstate(all="ignore"):
            lo = np.array([np.nanpercentile(err[:, group == g], 10) if np.isfinite(err[:, group == g]).any() else 0.0
                           for g in range(24)])
            hi = np.array([np.nanpercentile(err[:, group == g], 90) if np.isfinite(err[:, group == g]).any() else 0.0
                           for g in range(24)])
        lead = group[np.arange(steps) % SLOTS_PER_DAY]
        result["p10"] = np.minimum(point, point - hi[lead]).tolist()  # err = forecast − actual
        result["p90"] = np.maximum(point, point - lo[lead]).tolist()
        correction = site_correction(h_vals, clear_h, h_mid, kwp, step_s)
    elif ratios:
        pr = float(np.mean(ratios))
        point = clear * pr
        result.update(model="clear_sky_x_recent_pr", ratio=pr)
    else:
        month = datetime.fromtimestamp(start_ts + steps * step_s / 2, timezone.utc).month
        pr = climatology_ratio(month, site)
        point = clear * pr
        result.update(model="clear_sky_x_climatology", ratio=pr, source="bundled")
    if weather and covered.any():
        _, physical = clear_sky_pv_kw(mid, site, cloud, temp, wind)
        assert physical is not None  # given cloud cover, the weather model always runs
        name = "owm_cloud_cover"
        if correction is not None:
            slot = ((mid % DAY_S) // step_s).astype(int)
            physical = physical * correction[slot]
            name += "_x_site_correction"
        point = np.where(covered, physical, point)
        for q in ("p10", "p90"):
            if q in result:
                result[q] = np.where(covered, physical, np.asarray(result[q])).tolist()
        result["model"] = name + ("" if covered.all() else f"+{result['model']}")
        result["source"] = "openweathermap"
    result["point"] = [round(float(v), 6) for v in np.clip(point, 0.0, kwp * MAX_RATIO)]
    for q in ("p10", "p90"):
        if q in result:
            result[q] = [round(float(v), 6) for v in np.clip(result[q], 0.0, kwp * MAX_RATIO)]
    return result

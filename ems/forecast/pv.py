"""PV forecast: the sun's position and a clear-sky model (pvlib) for the site, scaled by weather or history.

Models, best available first, per 15-minute interval:
- `owm_cloud_cover` — with an OpenWeatherMap forecast: clear-sky GHI (Ineichen) reduced by the forecast
  cloud cover (Kasten & Czeplak 1980: GHI = GHI_clear · (1 − 0.75·c^3.4)), split into beam and
  diffuse (Erbs), transposed onto the array (Hay-Davies), cell temperature (Faiman) and PVWatts DC
  power less the PVWatts default system losses.
- `clear_sky_x_history_profile` — ≥ 3 days of PV history: clear-sky PV times the site's own ratio of
  measured to clear-sky energy per time of day over the last week (it learns shading, soiling,
  orientation errors and the season's typical cloudiness), its level leaning halfway towards the last
  day's (weather persists); quantiles from the spread of daily ratios.
- `clear_sky_x_recent_pr` — ≥ 1 day: clear-sky PV times the recent performance ratio.
- `clear_sky_x_climatology` — no history: clear-sky PV times the month's typical ratio, derived from
  the bundled 2023–2024 PV data at this site's clear-sky output.
Solar geometry is pvlib's: nothing here hand-writes it. pvlib imports pandas, so `fit_pv` runs in the
worker process; `forecast_pv` (parent side) only builds the request and reads the answer.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .series import DAY_S, MARKET_TZ, QUARTER_HOUR_S, Series, is_missing, regular_from_rows

if TYPE_CHECKING:  # numpy is imported lazily, in the worker process only
    import numpy as np
    import numpy.typing as npt

log = logging.getLogger(__name__)

STEP_S = QUARTER_HOUR_S
HISTORY_DAYS = 14
PROFILE_DAYS = 7
PROFILE_MIN_DAYS = 3
DAYLIGHT_FRACTION = 0.05
"""Intervals whose clear-sky output is below this share of kWp carry no usable ratio (dawn, dusk, night)."""
GAMMA_PDC_PER_K = -0.004
"""Power temperature coefficient of crystalline silicon, 1/K."""
MAX_RATIO = 1.3
PERSISTENCE_WEIGHT = 0.5
"""How far the history model's level leans towards the last day's ratio (0 = the week's mean, 1 = the last
day's): 0.5 gave the lowest day-ahead error on the bundled 2024 PV data (see bench/bench_forecast.py)."""

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
    against this site's clear-sky output for the same hours."""
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
    clear, _ = clear_sky_pv_kw(ts, {**site, "kwp": 1.0})
    total = float(np.sum(clear))
    return float(np.clip(np.sum(kw) / total, 0.05, 1.0)) if total > 0 else 0.5


def fit_pv(request: dict[str, Any]) -> dict[str, Any]:
    """Worker entry: {"model", "source", "point", ["p10", "p90"], "ratio"} for the request's intervals."""
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
    clear_all, _ = clear_sky_pv_kw(both, site)
    clear_h, clear = clear_all[:len(h_mid)], clear_all[len(h_mid):]

    # Daily ratios of measured to clear-sky energy (UTC days; only daylight intervals with a measurement).
    usable = np.isfinite(h_vals) & (clear_h > DAYLIGHT_FRACTION * kwp)
    day_of = ((h_mid - float(hist["start_ts"])) // DAY_S).astype(int) if len(h_mid) else np.zeros(0, int)
    ratios = []
    for d in np.unique(day_of[usable]) if usable.any() else []:
        in_day = day_of == d
        daylight = in_day & (clear_h > DAYLIGHT_FRACTION * kwp)
        sel = in_day & usable
        if sel.sum() >= 0.5 * max(1, daylight.sum()):
            ratios.append((d, float(np.sum(h_vals[sel]) / np.sum(clear_h[sel]))))
    ratios = [(d, min(r, MAX_RATIO)) for d, r in ratios]
    result: dict[str, Any] = {"source": "history"}
    if len(ratios) >= PROFILE_MIN_DAYS:
        recent_days = {d for d, _ in ratios[-PROFILE_DAYS:]}
        recent = usable & np.isin(day_of, list(recent_days))
        slot_h = ((h_mid % DAY_S) // step_s).astype(int)
        slot_f = ((mid % DAY_S) // step_s).astype(int)
        overall = float(np.sum(h_vals[recent]) / np.sum(clear_h[recent]))
        profile = np.full(DAY_S // step_s, overall)
        for s in np.unique(slot_h[recent]):
            sel = recent & (slot_h == s)
            if sel.sum() >= 2:
                profile[s] = min(MAX_RATIO, float(np.sum(h_vals[sel]) / np.sum(clear_h[sel])))
        # Weather persists for a day or so: lean the level geometrically towards the last day's ratio.
        last_day = ratios[-1][1] / float(np.mean([x for _, x in ratios[-PROFILE_DAYS:]]))
        point = clear * profile[slot_f] * last_day ** PERSISTENCE_WEIGHT
        r = np.asarray([x for _, x in ratios])
        mean = float(np.mean(r))
        result.update(model="clear_sky_x_history_profile", ratio=overall)
        if mean > 0:
            result["p10"] = (point * np.percentile(r, 10) / mean).tolist()
            result["p90"] = (point * np.percentile(r, 90) / mean).tolist()
    elif ratios:
        pr = float(np.mean([x for _, x in ratios]))
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
        point = np.where(covered, physical, point)
        for q in ("p10", "p90"):
            if q in result:
                result[q] = np.where(covered, physical, np.asarray(result[q])).tolist()
        result["model"] = "owm_cloud_cover" + ("" if covered.all() else f"+{result['model']}")
        result["source"] = "openweathermap"
    result["point"] = [round(float(v), 6) for v in np.clip(point, 0.0, kwp * MAX_RATIO)]
    for q in ("p10", "p90"):
        if q in result:
            result[q] = [round(float(v), 6) for v in np.clip(result[q], 0.0, kwp * MAX_RATIO)]
    return result


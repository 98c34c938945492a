"""Forecast quality and cost on the data in ems/data/: rolling-origin day-ahead errors of the load and PV
forecasts next to seasonal-naive persistence on the same days, and fit time and memory.

Load: each origin is a local midnight; the model sees the 28 days before it and forecasts the next 96
quarter-hours (`forecast_load` with `fit_load`, as the worker runs it). Series: the noisy generated years
(`household_crest`: the CREST/richardsonpy household; `business_stochastic`: the small-business model of
tools/gen_load_data.py), the BDEW H25 household and G25 commercial profiles (2024), and the household
profile plus the simulator's appliance switching (what the demo's history holds). Baselines: the same
time last week (weekly naive) and yesterday repeated (daily naive); `_ratio` = model MAE ÷ the better
of the two (target ≤ 0.9). Holt-Winters (the earlier model, statsmodels) is scored on every third origin.
PV: the bundled per-kWp German PV shape (2024) as a site's history (28 days before each origin), a
day-ahead forecast without weather, compared hourly with the data; baseline: yesterday's PV.
Cost: the worker child process (import + fit, as the service runs it): wall time, fit time and peak RSS;
and, next to a bare interpreter, the peak RSS of a process that imports only `ems.forecast.service` and of
one that imports the runtime and refreshes load and PV through the child (`ems_after_refresh_peak_rss_mb`:
what the appliance pays, against its 80 MB budget; pandas, statsmodels and pvlib never enter it).
Errors are kW (load) and kW per kWp (PV).
"""
from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime

from ems.forecast.load import fit_load, forecast_load, history_from_rows, holt_winters_point
from ems.forecast.pv import fit_pv, pv_request
from ems.forecast.series import MARKET_TZ, local_midnight_ts
from ems.forecast.worker import run_worker
from ems.sim.plant import load_noise_w
from ems.data.profiles import load_profile, pv_profile

STEP = 900
LOAD_ORIGIN_EVERY_DAYS = int(os.environ.get("BENCH_LOAD_EVERY_DAYS", "6"))
PV_ORIGIN_EVERY_DAYS = int(os.environ.get("BENCH_PV_EVERY_DAYS", "1"))
GERMANY = {"latitude_deg": 51.0, "longitude_deg": 10.4, "tilt_deg": 30.0, "azimuth_deg": 180.0}


class Score:
    def __init__(self) -> None:
        self.abs_sum = 0.0
        self.sq_sum = 0.0
        self.n = 0

    def add(self, forecast: list[float], actual: list[float]) -> None:
        for f, a in zip(forecast, actual):
            self.abs_sum += abs(f - a)
            self.sq_sum += (f - a) ** 2
            self.n += 1

    def mae(self) -> float:
        return round(self.abs_sum / self.n, 5)

    def rmse(self) -> float:
        return round(math.sqrt(self.sq_sum / self.n), 5)


GENERATED = {"household_crest": "household_crest_2024_4000kWh_15min.csv",
             "business_stochastic": "business_stochastic_2024_50000kWh_15min.csv"}
PROFILE_OF = {"household": ("household", 4000.0), "household_sim": ("household", 4000.0),
              "household_crest": ("household", 4000.0), "commercial": ("commercial", 50000.0),
              "business_stochastic": ("commercial", 50000.0)}


def load_series(kind: str, noisy: bool) -> dict[int, float]:
    """kW per 15-min interval start over local 2024: a generated noisy year, or the bundled profile
    (± simulator noise)."""
    if kind in GENERATED:
        from ems.data import read_series
        ts, kw = read_series(GENERATED[kind])
        return {int(t): float(v) for t, v in zip(ts, kw)}
    profile = load_profile("household" if kind == "household_sim" else kind, 4000 if kind != "commercial" else 50000)
    start = local_midnight_ts(datetime(2024, 1, 1, tzinfo=MARKET_TZ).timestamp())
    end = datetime(2025, 1, 1, tzinfo=MARKET_TZ).timestamp()
    out = {}
    for t in range(int(start), int(end), STEP):
        kw = profile.value_at(t + STEP / 2)
        if noisy:
            kw = max(0.0, kw + load_noise_w(t + STEP / 2, 1) / 1000.0)
        out[t] = kw
    return out


def bench_load(kind: str, noisy: bool) -> dict[str, float]:
    data = load_series(kind, noisy)
    first = min(data)
    model, week, day, hw, hw_week, hw_day = Score(), Score(), Score(), Score(), Score(), Score()
    fit_times = []
    models: dict[str, int] = {}
    origins = 0
    profile_kind, annual = PROFILE_OF[kind]
    day0 = datetime(2024, 2, 5, tzinfo=MARKET_TZ).timestamp()
    origin = day0
    while origin + 2 * 86400 < max(data):
        rows = [{"ts": t, "load_power_w": data[t] * 1000} for t in range(int(origin - 28 * 86400), int(origin), STEP)
                if t >= first]
        history = history_from_rows(rows, origin)
        t0 = time.perf_counter()
        series, error = forecast_load(history, origin, 96, fit_load, profile_kind, annual)
        fit_times.append(time.perf_counter() - t0)
        if error:
            raise RuntimeError(error)
        models[series.model] = models.get(series.model, 0) + 1
        actual = [data[int(t)] for t in series.timestamps()]
        weekly = [data[int(t) - 7 * 86400] for t in series.timestamps()]
        daily = [data[int(t) - 86400] for t in series.timestamps()]
        model.add(list(series.values), actual)
        week.add(weekly, actual)
        day.add(daily, actual)
        if origins % 3 == 0:  # Holt-Winters on the same history, for the record (0.2 s a fit)
            filled = [v if v == v else 0.0 for v in history.values_kw]
            point = holt_winters_point(filled, len(series.values))
            hw.add([max(0.0, float(v)) for v in point], actual)
            hw_week.add(weekly, actual)
            hw_day.add(daily, actual)
        origins += 1
        origin = local_midnight_ts(origin, days=LOAD_ORIGIN_EVERY_DAYS)
    p = f"load_{kind}"
    print(f"load {kind}: models chosen {models}", file=sys.stderr)
    best_naive = min(week.mae(), day.mae())
    return {f"{p}_model_mae_kw": model.mae(), f"{p}_model_rmse_kw": model.rmse(),
            f"{p}_naive_week_mae_kw": week.mae(), f"{p}_naive_week_rmse_kw": week.rmse(),
            f"{p}_naive_day_mae_kw": day.mae(), f"{p}_naive_day_rmse_kw": day.rmse(),
            f"{p}_model_to_best_naive_ratio": round(model.mae() / best_naive, 4) if best_naive > 0 else 0.0,
            f"{p}_holt_winters_mae_kw": hw.mae(),
            f"{p}_holt_winters_to_best_naive_ratio": round(hw.mae() / min(hw_week.mae(), hw_day.mae()), 4),
            f"{p}_origins": origins, f"{p}_fit_inprocess_ms": round(statistics.median(fit_times) * 1000, 1)}


def bench_pv() -> dict[str, float]:
    profile = pv_profile(1.0)
    hourly = {}
    start = datetime(2023, 12, 1, tzinfo=MARKET_TZ).timestamp()
    for t in range(int(start), int(datetime(2025, 1, 1, tzinfo=MARKET_TZ).timestamp()), 3600):
        hourly[t] = profile.value_at(t)  # an hour's mean power, kW/kWp (the file's samples)
    model_score, recent_score, clim_score, naive_score = Score(), Score(), Score(), Score()
    fit_times = []
    models: dict[str, int] = {}
    origins = 0
    origin = datetime(2024, 1, 20, tzinfo=MARKET_TZ).timestamp()
    while origin + 2 * 86400 < max(hourly):
        rows = [{"ts": t + k * STEP, "pv_power_w": hourly[t] * 1000} for t in range(int(origin - 28 * 86400),
                                                                                  int(origin), 3600)
                for k in range(4)]
        hours = [t for t in range(int(origin), int(local_midnight_ts(origin, days=1)), 3600)]
        actual = [hourly[t] for t in hours]
        steps = len(hours) * 4

        def hourly_of(result: dict[str, object]) -> list[float]:
            pts = result["point"]
            return [sum(pts[4 * i: 4 * i + 4]) / 4 for i in range(len(hours))]  # type: ignore[index]

        t0 = time.perf_counter()
        res = fit_pv(pv_request(origin, steps, kwp=1.0, history_rows=rows, **GERMANY))
        fit_times.append(time.perf_counter() - t0)
        models[res["model"]] = models.get(res["model"], 0) + 1
        model_score.add(hourly_of(res), actual)
        recent = fit_pv(pv_request(origin, steps, kwp=1.0, history_rows=rows[-2 * 96:], **GERMANY))
        assert recent["model"] == "clear_sky_x_recent_pr", recent["model"]
        recent_score.add(hourly_of(recent), actual)
        if origins % 3 == 0:  # the climatology model reads a year of data per call: sample it
            clim = fit_pv(pv_request(origin, steps, kwp=1.0, **GERMANY))
            clim_score.add(hourly_of(clim), actual)
        naive_score.add([hourly.get(t - 86400, 0.0) for t in hours], actual)
        origins += 1
        origin = local_midnight_ts(origin, days=PV_ORIGIN_EVERY_DAYS)
    print(f"pv: models chosen {models}", file=sys.stderr)
    return {"pv_model_mae_kw_per_kwp": model_score.mae(), "pv_model_rmse_kw_per_kwp": model_score.rmse(),
            "pv_recent_pr_mae_kw_per_kwp": recent_score.mae(), "pv_recent_pr_rmse_kw_per_kwp": recent_score.rmse(),
            "pv_climatology_mae_kw_per_kwp": clim_score.mae(), "pv_climatology_rmse_kw_per_kwp": clim_score.rmse(),
            "pv_naive_day_mae_kw_per_kwp": naive_score.mae(), "pv_naive_day_rmse_kw_per_kwp": naive_score.rmse(),
            "pv_model_to_naive_ratio": round(model_score.mae() / naive_score.mae(), 4),
            "pv_origins": origins, "pv_fit_inprocess_ms": round(statistics.median(fit_times) * 1000, 1)}


def bench_worker() -> dict[str, float]:
    """The child process as the service runs it: import + fit, three runs each, medians."""
    origin = datetime(2024, 6, 20, tzinfo=MARKET_TZ).timestamp()
    lp, pp = load_profile("household", 4000), pv_profile(8.0)
    rows = [{"ts": t, "load_power_w": (lp.value_at(t + 450) + load_noise_w(t + 450, 1) / 1000) * 1000,
             "pv_power_w": pp.value_at(t + 450) * 1000} for t in range(int(origin - 28 * 86400), int(origin), STEP)]
    history = history_from_rows(rows, origin)
    load_req = {"kind": "load", "values": [None if v != v else v for v in history.values_kw], "horizon": 2 * 96 + 24,
                "wall_start": history.wall_start}
    hw_req = {**load_req, "holt_winters": True}
    pv_req = pv_request(origin, 2 * 96 + 24, kwp=8.0, history_rows=rows, **GERMANY)
    clim_req = pv_request(origin, 2 * 96 + 24, kwp=8.0, **GERMANY)
    out: dict[str, float] = {}
    for name, req in (("load", load_req), ("load_with_hw", hw_req), ("pv_history", pv_req),
                      ("pv_climatology", clim_req)):
        runs = [run_worker(req, timeout_s=300)["_worker"] for _ in range(3)]
        for key, unit in (("wall_s", "worker_wall_s"), ("fit_s", "worker_fit_s"), ("peak_rss_mb", "worker_peak_rss_mb")):
            out[f"{name}_{unit}"] = round(statistics.median(r[key] for r in runs), 3)
    return out


PARENT_REFRESH = """
import ems.runtime
from datetime import datetime
from ems.data.profiles import load_profile, pv_profile
from ems.forecast.load import forecast_load, history_from_rows
from ems.forecast.pv import forecast_pv, pv_request
from ems.forecast.series import MARKET_TZ
from ems.forecast.worker import run_worker
origin = datetime(2024, 6, 20, tzinfo=MARKET_TZ).timestamp()
lp, pp = load_profile("household", 4000), pv_profile(8.0)
rows = [{"ts": t, "load_power_w": lp.value_at(t + 450) * 1000, "pv_power_w": pp.value_at(t + 450) * 1000}
        for t in range(int(origin - 28 * 86400), int(origin), 900)]
load, e1 = forecast_load(history_from_rows(rows, origin), origin, 216, run_worker)
pv, e2 = forecast_pv(pv_request(origin, 216, kwp=8.0, history_rows=rows, latitude_deg=51.0, longitude_deg=10.4,
                                tilt_deg=30.0, azimuth_deg=180.0), run_worker)
assert not e1 and not e2, (e1, e2)
import sys
assert not {"pandas", "statsmodels", "pvlib"} & set(sys.modules), "heavy imports in the EMS process"
"""
"""The EMS process's side of a forecast refresh: the runtime's modules imported, a load and a PV fit through
the child (`run_worker`, as `ForecastService` does), the answers read. Its peak RSS is what the appliance
pays for forecasts; the child's own peak is `*_worker_peak_rss_mb`."""


def rss_of(code: str) -> float:
    probe = code + "\nprint([int(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:')][0])"
    return round(float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()[-1]), 1)


def main() -> None:
    results: dict[str, float] = {}
    t0 = time.perf_counter()
    for kind, noisy in (("household_crest", False), ("business_stochastic", False), ("household", False),
                        ("commercial", False), ("household_sim", True)):
        results.update(bench_load(kind, noisy))
        print(f"load {kind}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    results.update(bench_pv())
    print(f"pv: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    results.update(bench_worker())
    results["bare_python_peak_rss_mb"] = rss_of("pass")
    results["service_import_peak_rss_mb"] = rss_of("import ems.forecast.service")
    results["ems_after_refresh_peak_rss_mb"] = rss_of(PARENT_REFRESH)
    results["bench_forecast_s"] = round(time.perf_counter() - t0, 1)
    width = max(len(k) for k in results)
    for k, v in results.items():
        print(f"  {k:<{width}}  {v}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

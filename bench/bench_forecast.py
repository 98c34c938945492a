"""Forecast quality and cost on the real data in ems/data/: rolling-origin day-ahead errors of the load and
PV forecasts next to seasonal-naive persistence on the same days, and fit time and memory per model.

Load: each origin is a local midnight; the model sees the 28 days before it and forecasts the next 96
quarter-hours. Series: the BDEW H25 household and G25 commercial profiles (2024), and the household
profile plus the simulator's appliance switching (what the demo's history holds). Baselines: the same
time last week (weekly naive) and yesterday repeated (daily naive).
PV: the bundled per-kWp German PV shape (2024) as a site's history (14 days before each origin), a
day-ahead forecast without weather, compared hourly with the data; baseline: yesterday's PV.
Cost: the worker child process (import + fit, as the service runs it): wall time, fit time and peak RSS;
and the RSS of a process that imports only `ems.forecast.service` (what the appliance pays) next to a
bare interpreter. Errors are kW (load) and kW per kWp (PV).
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

from ems.forecast.load import fit_load, forecast_load, history_from_rows
from ems.forecast.pv import fit_pv, pv_request
from ems.forecast.series import MARKET_TZ, local_midnight_ts
from ems.forecast.worker import run_worker
from ems.sim.plant import load_noise_w
from ems.data.profiles import load_profile, pv_profile

STEP = 900
LOAD_ORIGIN_EVERY_DAYS = int(os.environ.get("BENCH_LOAD_EVERY_DAYS", "6"))
PV_ORIGIN_EVERY_DAYS = int(os.environ.get("BENCH_PV_EVERY_DAYS", "4"))
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


def load_series(kind: str, noisy: bool) -> dict[int, float]:
    """kW per 15-min interval start over local 2024, from the bundled profile (± simulator noise)."""
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
    model, week, day = Score(), Score(), Score()
    fit_times = []
    origins = 0
    day0 = datetime(2024, 2, 5, tzinfo=MARKET_TZ).timestamp()
    origin = day0
    while origin + 2 * 86400 < max(data):
        rows = [{"ts": t, "load_power_w": data[t] * 1000} for t in range(int(origin - 28 * 86400), int(origin), STEP)
                if t >= first]
        history = history_from_rows(rows, origin)
        t0 = time.perf_counter()
        series, error = forecast_load(history, origin, 96, fit_load)
        fit_times.append(time.perf_counter() - t0)
        if error:
            raise RuntimeError(error)
        actual = [data[int(t)] for t in series.timestamps()]
        model.add(list(series.values), actual)
        week.add([data[int(t) - 7 * 86400] for t in series.timestamps()], actual)
        day.add([data[int(t) - 86400] for t in series.timestamps()], actual)
        origins += 1
        origin = local_midnight_ts(origin, days=LOAD_ORIGIN_EVERY_DAYS)
    p = f"load_{kind}"
    return {f"{p}_hw_mae_kw": model.mae(), f"{p}_hw_rmse_kw": model.rmse(),
            f"{p}_naive_week_mae_kw": week.mae(), f"{p}_naive_week_rmse_kw": week.rmse(),
            f"{p}_naive_day_mae_kw": day.mae(), f"{p}_naive_day_rmse_kw": day.rmse(),
            f"{p}_origins": origins, f"{p}_fit_inprocess_ms": round(statistics.median(fit_times) * 1000, 1)}


def bench_pv() -> dict[str, float]:
    profile = pv_profile(1.0)
    hourly = {}
    start = datetime(2024, 1, 1, tzinfo=MARKET_TZ).timestamp()
    for t in range(int(start), int(datetime(2025, 1, 1, tzinfo=MARKET_TZ).timestamp()), 3600):
        hourly[t] = profile.value_at(t)  # an hour's mean power, kW/kWp (the file's samples)
    history_score, recent_score, clim_score, naive_score = Score(), Score(), Score(), Score()
    fit_times = []
    origins = 0
    origin = datetime(2024, 1, 20, tzinfo=MARKET_TZ).timestamp()
    while origin + 2 * 86400 < max(hourly):
        rows = [{"ts": t + k * STEP, "pv_power_w": hourly[t] * 1000} for t in range(int(origin - 14 * 86400),
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
        assert res["model"] == "clear_sky_x_history_profile", res["model"]
        history_score.add(hourly_of(res), actual)
        recent = fit_pv(pv_request(origin, steps, kwp=1.0, history_rows=rows[-2 * 96:], **GERMANY))
        assert recent["model"] == "clear_sky_x_recent_pr", recent["model"]
        recent_score.add(hourly_of(recent), actual)
        if origins % 3 == 0:  # the climatology model reads a year of data per call: sample it
            clim = fit_pv(pv_request(origin, steps, kwp=1.0, **GERMANY))
            clim_score.add(hourly_of(clim), actual)
        naive_score.add([hourly.get(t - 86400, 0.0) for t in hours], actual)
        origins += 1
        origin = local_midnight_ts(origin, days=PV_ORIGIN_EVERY_DAYS)
    return {"pv_history_profile_mae_kw_per_kwp": history_score.mae(),
            "pv_history_profile_rmse_kw_per_kwp": history_score.rmse(),
            "pv_recent_pr_mae_kw_per_kwp": recent_score.mae(), "pv_recent_pr_rmse_kw_per_kwp": recent_score.rmse(),
            "pv_climatology_mae_kw_per_kwp": clim_score.mae(), "pv_climatology_rmse_kw_per_kwp": clim_score.rmse(),
            "pv_naive_day_mae_kw_per_kwp": naive_score.mae(), "pv_naive_day_rmse_kw_per_kwp": naive_score.rmse(),
            "pv_origins": origins, "pv_fit_inprocess_ms": round(statistics.median(fit_times) * 1000, 1)}


def bench_worker() -> dict[str, float]:
    """The child process as the service runs it: import + fit, three runs each, medians."""
    origin = datetime(2024, 6, 20, tzinfo=MARKET_TZ).timestamp()
    lp, pp = load_profile("household", 4000), pv_profile(8.0)
    rows = [{"ts": t, "load_power_w": (lp.value_at(t + 450) + load_noise_w(t + 450, 1) / 1000) * 1000,
             "pv_power_w": pp.value_at(t + 450) * 1000} for t in range(int(origin - 28 * 86400), int(origin), STEP)]
    history = history_from_rows(rows, origin)
    load_req = {"kind": "load", "values": [None if v != v else v for v in history.values_kw], "horizon": 2 * 96 + 24}
    pv_req = pv_request(origin, 2 * 96 + 24, kwp=8.0, history_rows=rows, **GERMANY)
    clim_req = pv_request(origin, 2 * 96 + 24, kwp=8.0, **GERMANY)
    out: dict[str, float] = {}
    for name, req in (("load_hw", load_req), ("pv_history", pv_req), ("pv_climatology", clim_req)):
        runs = [run_worker(req, timeout_s=300)["_worker"] for _ in range(3)]
        for key, unit in (("wall_s", "worker_wall_s"), ("fit_s", "worker_fit_s"), ("peak_rss_mb", "worker_peak_rss_mb")):
            out[f"{name}_{unit}"] = round(statistics.median(r[key] for r in runs), 3)
    return out


def rss_of(code: str) -> float:
    probe = code + "\nprint([int(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:')][0])"
    return round(float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()[-1]), 1)


def main() -> None:
    results: dict[str, float] = {}
    t0 = time.perf_counter()
    for kind, noisy in (("household", False), ("commercial", False), ("household_sim", True)):
        results.update(bench_load(kind, noisy))
        print(f"load {kind}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    results.update(bench_pv())
    print(f"pv: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    results.update(bench_worker())
    results["bare_python_peak_rss_mb"] = rss_of("pass")
    results["service_import_peak_rss_mb"] = rss_of("import ems.forecast.service")
    results["bench_forecast_s"] = round(time.perf_counter() - t0, 1)
    width = max(len(k) for k in results)
    for k, v in results.items():
        print(f"  {k:<{width}}  {v}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

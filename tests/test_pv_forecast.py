"""PV forecast: pvlib clear-sky and sun position in the worker, history ratios, and the OpenWeatherMap
client against a local server serving its real JSON format."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ems.forecast.prices import FetchError
from ems.forecast.pv import BLEND_WEIGHT, forecast_pv, pv_request
from ems.forecast.series import MARKET_TZ
from ems.forecast.weather import OpenWeatherMapClient, WeatherFeed, WeatherPoint, parse_owm_forecast
from ems.forecast.worker import run_worker
from ems.data.profiles import pv_profile
from support import PayloadServer, local_ts, owm_payload

VIENNA = {"latitude_deg": 48.2, "longitude_deg": 16.37, "tilt_deg": 30.0, "azimuth_deg": 180.0}
GERMANY = {"latitude_deg": 51.0, "longitude_deg": 10.4, "tilt_deg": 30.0, "azimuth_deg": 180.0}  # the PV data's
STEP = 900


def fit(request: dict[str, Any]) -> dict[str, Any]:
    return run_worker(request, timeout_s=60)


def at_local_hour(series: Any, hour: int, minute: int = 0) -> float:
    for ts, v in zip(series.timestamps(), series.values):
        local = datetime.fromtimestamp(ts, MARKET_TZ)
        if (local.hour, local.minute) == (hour, minute):
            return v
    raise KeyError(hour)


def test_no_history_no_weather_is_zero_at_night_and_positive_at_noon_in_june() -> None:
    start = local_ts(2024, 6, 21)
    series, error = forecast_pv(pv_request(start, 96, kwp=8.0, **VIENNA), fit)
    assert error is None and series.model == "clear_sky_x_climatology" and series.step_s == STEP
    assert at_local_hour(series, 2) == 0.0 and at_local_hour(series, 23) == 0.0
    noon = at_local_hour(series, 13)
    assert 2.0 < noon < 8.0
    assert max(series.values) <= 8.0 * 1.3


def test_a_north_facing_steep_array_makes_less_in_winter_than_a_south_facing_one() -> None:
    start = local_ts(2024, 12, 15)
    south, _ = forecast_pv(pv_request(start, 96, kwp=10.0, **VIENNA), fit)
    north, _ = forecast_pv(pv_request(start, 96, kwp=10.0, **{**VIENNA, "tilt_deg": 60.0, "azimuth_deg": 0.0}), fit)
    assert sum(north.values) < 0.5 * sum(south.values)


def test_no_pv_configured_is_zero_without_a_fit() -> None:
    def must_not_run(_request: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("no fit needed without PV")
    series, error = forecast_pv(pv_request(local_ts(2024, 6, 21), 96, kwp=0.0, **VIENNA), must_not_run)
    assert error is None and series.model == "no_pv" and set(series.values) == {0.0}


def test_history_teaches_the_site_its_performance_and_gives_quantiles() -> None:
    start = local_ts(2024, 6, 21)
    profile = pv_profile(8.0)  # real German PV shape (per kWp) as this site's measured history
    rows = [{"ts": t, "pv_power_w": profile.value_at(t + STEP / 2) * 1000}
            for t in range(int(start - 28 * 86400), int(start), STEP)]
    series, error = forecast_pv(pv_request(start, 96, kwp=8.0, history_rows=rows, **VIENNA), fit)
    assert error is None and series.source == "history"
    assert series.model in (f"blend_{BLEND_WEIGHT:g}_naive_profile", "naive_day")
    actual_kwh = sum(profile.value_at(t + STEP / 2) for t in series.timestamps()) / 4
    forecast_kwh = sum(series.values) / 4
    assert 0.6 * actual_kwh < forecast_kwh < 1.5 * actual_kwh
    assert all(lo <= v <= hi for lo, v, hi in zip(series.quantiles["p10"], series.values, series.quantiles["p90"]))
    # A site that produced half as much learns half the forecast.
    half = [{**r, "pv_power_w": r["pv_power_w"] / 2} for r in rows]
    halved, _ = forecast_pv(pv_request(start, 96, kwp=8.0, history_rows=half, **VIENNA), fit)
    assert sum(halved.values) == pytest.approx(forecast_kwh * 4 / 2, rel=0.02)


def test_weather_forecast_from_the_local_owm_server_turns_clouds_into_less_pv(server: PayloadServer,
                                                                               tmp_path: Path) -> None:
    start = local_ts(2024, 6, 21)
    client = OpenWeatherMapClient("key123", server.url.rsplit("/v1", 1)[0] + "/data/2.5", timeout_s=2.0, attempts=1)
    results = {}
    for clouds in (0.0, 100.0):
        server.serve(owm_payload(start - 3 * 3600, clouds))
        points = client.fetch(48.2, 16.37)
        series, error = forecast_pv(pv_request(start, 96, kwp=8.0, weather=points, **VIENNA), fit)
        assert error is None and series.model == "owm_cloud_cover" and series.source == "openweathermap"
        results[clouds] = series
    q = server.queries[-1]
    assert q["appid"] == "key123" and q["units"] == "metric" and q["lat"] == "48.2000"
    assert at_local_hour(results[0.0], 2) == 0.0
    assert at_local_hour(results[100.0], 13) < 0.5 * at_local_hour(results[0.0], 13)
    assert at_local_hour(results[0.0], 13) > 4.0


def test_weather_covers_only_its_range_and_history_fills_the_rest() -> None:
    start = local_ts(2024, 6, 21)
    short = [WeatherPoint(start - 3600 + i * 10800, 0.0, 20.0, 2.0) for i in range(5)]  # ~12 h of weather
    series, _ = forecast_pv(pv_request(start, 2 * 96, kwp=8.0, weather=short, **VIENNA), fit)
    assert series.model == "owm_cloud_cover+clear_sky_x_climatology"
    assert at_local_hour(series, 13) > 0  # and tomorrow still has a forecast:
    assert max(series.values[96:]) > 1.0


def test_owm_errors_and_bad_payloads_are_reported_and_the_old_forecast_kept(server: PayloadServer,
                                                                             tmp_path: Path) -> None:
    start = local_ts(2024, 6, 21)
    base = server.url.rsplit("/v1", 1)[0] + "/data/2.5"
    feed = WeatherFeed(OpenWeatherMapClient("k", base, timeout_s=2.0, attempts=1), tmp_path / "weather.json",
                       48.2, 16.37)
    server.serve(owm_payload(start, 40.0))
    assert feed.refresh(start)
    assert len(feed.points(start)) == 16
    server.serve({"cod": 401, "message": "Invalid API key. Please see https://openweathermap.org/faq#error401"},
                 status=401)
    assert not feed.refresh(start + 3600)
    assert "HTTP 401" in (feed.status.last_error or "") and feed.status.online is False
    server.serve(b'{"cod":"200","list":[{"dt": 1')
    assert not feed.refresh(start + 7200)
    assert len(feed.points(start)) == 16
    # A restart while offline still has the last good forecast from disk.
    again = WeatherFeed(OpenWeatherMapClient("k", "http://127.0.0.1:9", timeout_s=0.5, attempts=1),
                        tmp_path / "weather.json", 48.2, 16.37)
    assert len(again.points(start)) == 16 and not again.refresh(start)


def test_owm_entries_without_clouds_are_skipped_and_an_error_document_is_an_error() -> None:
    payload = owm_payload(local_ts(2024, 6, 21), 20.0, n=4)
    del payload["list"][1]["clouds"]
    payload["list"][2]["clouds"]["all"] = 170
    points = parse_owm_forecast(json.dumps(payload).encode())
    assert [p.cloud_pct for p in points] == [20.0, 20.0]
    with pytest.raises(FetchError, match="error 429"):
        parse_owm_forecast(b'{"cod": 429, "message": "too many requests"}')
    with pytest.raises(FetchError, match="no usable entry"):
        parse_owm_forecast(b'{"cod": "200", "list": [{"dt": "soon"}]}')


def test_a_failed_pv_fit_assumes_no_pv_and_says_why() -> None:
    series, error = forecast_pv(pv_request(local_ts(2024, 6, 21), 96, kwp=8.0, **VIENNA),
                                lambda req: run_worker(req, timeout_s=0.01))
    assert series.model == "unavailable" and set(series.values) == {0.0}
    assert error is not None and "timed out" in error


def test_weather_forecast_learns_the_sites_afternoon_shade_from_history() -> None:
    start = local_ts(2024, 6, 21)
    profile = pv_profile(8.0)

    def measured_w(t: float, shaded: bool) -> float:
        hour = datetime.fromtimestamp(t, MARKET_TZ).hour
        return profile.value_at(t + STEP / 2) * 1000 * (0.3 if shaded and hour >= 15 else 1.0)

    clear_sky = [WeatherPoint(start - 3600 + i * 10800, 0.0, 20.0, 2.0) for i in range(10)]
    forecasts = {}
    for shaded in (False, True):
        rows = [{"ts": t, "pv_power_w": measured_w(t, shaded)} for t in range(int(start - 28 * 86400), int(start), STEP)]
        forecasts[shaded], error = forecast_pv(pv_request(start, 96, kwp=8.0, history_rows=rows, weather=clear_sky,
                                                          **GERMANY), fit)
        assert error is None and forecasts[shaded].model == "owm_cloud_cover_x_site_correction"
    morning, afternoon = (10, 0), (16, 0)
    assert at_local_hour(forecasts[True], *morning) == pytest.approx(at_local_hour(forecasts[False], *morning), rel=0.05)
    assert at_local_hour(forecasts[True], *afternoon) < 0.5 * at_local_hour(forecasts[False], *afternoon)


def test_yesterday_takes_over_only_where_it_is_clearly_better_than_the_blend() -> None:
    """A site whose output changed ten days ago (a new obstruction) is forecast from yesterday, which knows the
    change; a site with day-to-day cloud is forecast with the blend, which errs less there than yesterday."""
    from ems.forecast.pv import SLOTS_PER_DAY, choose_pv_model

    days = 28
    slot = np.arange((days + 1) * SLOTS_PER_DAY) % SLOTS_PER_DAY
    clear = 8.0 * np.clip(np.sin(np.pi * (slot - 24) / 48), 0.0, None)  # 06:00–18:00, 8 kW at noon
    future = np.full(SLOTS_PER_DAY, np.nan)
    n = days * SLOTS_PER_DAY
    shaded = np.where(np.arange(len(clear)) >= (days - 10) * SLOTS_PER_DAY, 0.4, 0.9)
    model, point, _, mae = choose_pv_model(np.concatenate([(clear * shaded)[:n], future]), clear, n, SLOTS_PER_DAY, 8.0)
    assert model == "naive_day" and mae["naive_day"] < mae[f"blend_{BLEND_WEIGHT:g}_naive_profile"]
    assert point == pytest.approx(0.4 * clear[:SLOTS_PER_DAY], abs=1e-9)
    cloudy = np.repeat(np.random.default_rng(1).uniform(0.2, 1.0, days + 1), SLOTS_PER_DAY)
    model, _, _, mae = choose_pv_model(np.concatenate([(clear * cloudy)[:n], future]), clear, n, SLOTS_PER_DAY, 8.0)
    assert model == f"blend_{BLEND_WEIGHT:g}_naive_profile" and mae[model] < mae["naive_day"]

"""The forecast service as the runtime runs it: a supervised asyncio task over the real config store,
history store, worker process and a local aWATTar server; snapshots for `/api/forecast` and the optimizer."""
from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from ems.clock import LoopTimers
from ems.clock import ScaledClock
from ems.config.schema import EmsConfig
from ems.config.store import ConfigStore
from ems.config.validate import parse_config, to_plain
from ems.forecast.load_models import CANDIDATES
from ems.forecast.pv import BLEND_WEIGHT
from ems.forecast.series import local_midnight_ts
from ems.forecast.service import ForecastService, ForecastSnapshot
from ems.history import HistoryStore
from ems.data.profiles import load_profile, pv_profile
from support import PayloadServer, awattar_day, owm_payload

NOW = local_midnight_ts(1718841600.0) + 14 * 3600  # 2024-06-20 14:00 CEST: tomorrow's prices are published
OFFLINE_URL = "http://127.0.0.1:9/v1/marketdata"


def hourly_prices(start_ts: float, days: int) -> dict[str, Any]:
    """aWATTar JSON for `days` local days from `start_ts`, with negative prices around noon."""
    data = []
    for d in range(days):
        day = local_midnight_ts(start_ts, days=d)
        hours = int((local_midnight_ts(day, days=1) - day) // 3600)
        data += awattar_day(day, [(-8.0 if 12 <= h < 15 else 90.0 + h) for h in range(hours)])["data"]
    return {"object": "list", "data": data}


def config_store(tmp_path: Path, **forecast: Any) -> ConfigStore:
    cfg = parse_config(EmsConfig, {"forecast": {"pv_peak_kwp": 8.0, "vat_pct": 20.0, **forecast}})
    return ConfigStore(tmp_path / "ems.yaml", cfg)


def history_with(tmp_path: Path, days: int) -> HistoryStore:
    store = HistoryStore(tmp_path / "history.db")
    load, pv = load_profile("household", 4000), pv_profile(8.0)
    start = int(NOW - days * 86400)
    store.write_telemetry([{"ts": float(t), "load_power_w": load.value_at(t) * 1000, "pv_power_w": pv.value_at(t) * 1000}
                           for t in range(start, int(NOW), 300)])
    return store


async def run_until(service: ForecastService, done: Callable[[ForecastSnapshot], bool],
                    timeout_s: float = 300.0) -> ForecastSnapshot:
    """Run the service until the snapshot satisfies `done` (bounded), then stop it as the supervisor would.
    The bound only stops a hung test: the fits run in niced child processes (pandas and pvlib imported
    afresh each time), which on a busy 2-core machine took longer than 40 s; the config's own fit
    timeout (120 s) decides what counts as a failed fit."""
    task = asyncio.create_task(service.run())
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            snap = service.snapshot()
            if done(snap):
                return snap
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        raise AssertionError(f"forecast service did not get there in {timeout_s} s: {service.to_json()['status']}")
    finally:
        task.cancel()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)


def no_nan_json(snap: ForecastSnapshot) -> dict[str, Any]:
    return json.loads(json.dumps(snap.to_json(), allow_nan=False))


class FixedClock(LoopTimers):
    speed = 1.0

    def __init__(self, now: float):
        self.t = now

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return time.monotonic()


CANDIDATE_NAMES = (*CANDIDATES, "combined")


def test_service_publishes_market_prices_and_models_fitted_on_history(tmp_path: Path, server: PayloadServer) -> None:
    server.serve(hourly_prices(local_midnight_ts(NOW, days=-7), 9))
    store = config_store(tmp_path, price_source="awattar_at", awattar_base_url=server.url, horizon_h=48,
                         price_surcharge_pct=3.0, grid_fee_eur_per_kwh=0.08)
    service = ForecastService(store, history_with(tmp_path, 20), FixedClock(NOW), tmp_path / "data")
    snap = asyncio.run(run_until(service, lambda s: s.pv is not None and s.load is not None
                                 and s.load.source == "history" and s.price is not None and s.price.source == "awattar_at"
                                 and not s.price.is_forecast[0]))
    price = snap.price
    assert price is not None and snap.consumer_price is not None and snap.load is not None and snap.pv is not None
    assert price.known_until_ts == local_midnight_ts(NOW, days=2)  # today and the published tomorrow
    assert price.end_ts >= NOW + 48 * 3600 and price.is_forecast[-1]  # beyond: a seasonal forecast
    noon_tomorrow = price.index_of(local_midnight_ts(NOW, days=1) + 12.5 * 3600)
    assert price.values[noon_tomorrow] == pytest.approx(-0.008)
    assert snap.consumer_price.values[noon_tomorrow] == pytest.approx((-0.008 + 0.008 * 0.03 + 0.08) * 1.2)
    assert snap.load.model in CANDIDATE_NAMES and snap.load.step_s == 900
    assert snap.load.start_ts == NOW and snap.load.end_ts >= NOW + 48 * 3600
    assert snap.pv.model in (f"blend_{BLEND_WEIGHT:g}_naive_profile", "naive_day")
    midnight = snap.pv.index_of(local_midnight_ts(NOW, days=1) + 1800)
    assert snap.pv.values[midnight] == 0.0 and max(snap.pv.values) > 1.0
    body = no_nan_json(snap)
    assert body["status"]["price"]["online"] is True and body["status"]["load"]["history_days"] >= 19
    assert body["status"]["pv"]["peak_rss_mb"] > 0
    assert body["load"]["quantiles"].keys() == {"p10", "p90"}
    assert (tmp_path / "data" / "forecast" / "prices_awattar_at_at.json").exists()


def test_with_no_network_and_no_history_every_forecast_still_exists_and_says_why(tmp_path: Path) -> None:
    store = config_store(tmp_path, price_source="awattar_de", awattar_base_url=OFFLINE_URL, http_timeout_s=0.5)
    service = ForecastService(store, HistoryStore(tmp_path / "history.db"), FixedClock(NOW), tmp_path / "data")
    snap = asyncio.run(run_until(service, lambda s: s.pv is not None and s.price is not None
                                 and (s.status.get("price") or {}).get("online") is False))
    assert snap.price is not None and all(snap.price.is_forecast)
    assert "bundled_history" in snap.price.model and not any(math.isnan(v) for v in snap.price.values)
    status = no_nan_json(snap)["status"]
    assert "cannot connect" in status["price"]["last_error"] and status["price"]["last_success_ts"] is None
    assert snap.load is not None and snap.load.model == "standard_profile"
    assert snap.pv is not None and snap.pv.model == "clear_sky_x_climatology" and max(snap.pv.values) > 0


def test_prices_arrive_on_a_retry_after_the_server_recovers(tmp_path: Path, server: PayloadServer) -> None:
    server.serve(b"maintenance", status=503, content_type="text/plain")
    store = config_store(tmp_path, price_source="awattar_at", awattar_base_url=server.url, refit_interval_h=168)
    clock = ScaledClock(NOW, speed=120.0)  # a 60 s retry backoff passes in half a second
    service = ForecastService(store, None, clock, tmp_path / "data", min_fetch_interval_s=0.0)

    async def scenario() -> ForecastSnapshot:
        failed = await run_until(service, lambda s: (s.status.get("price") or {}).get("consecutive_failures", 0) >= 1)
        assert "HTTP 503" in failed.status["price"]["last_error"]
        server.serve(hourly_prices(local_midnight_ts(NOW, days=-7), 9))
        return await run_until(service, lambda s: s.price is not None and not s.price.is_forecast[0])

    snap = asyncio.run(scenario())
    assert snap.status["price"]["online"] is True and snap.status["price"]["consecutive_failures"] == 0
    assert len(server.queries) >= 2


def test_a_config_change_switches_the_price_source_while_running(tmp_path: Path) -> None:
    store = config_store(tmp_path, price_source="awattar_at", awattar_base_url=OFFLINE_URL, http_timeout_s=0.5)
    service = ForecastService(store, None, FixedClock(NOW), tmp_path / "data")

    async def scenario() -> ForecastSnapshot:
        store.set_dispatch(asyncio.get_running_loop().call_soon_threadsafe)
        first = await run_until(service, lambda s: (s.status.get("price") or {}).get("online") is False)
        assert first.price is not None and first.price.source == "awattar_at"
        section = to_plain(store.config.forecast)
        store.update_section("forecast", {**section, "price_source": "bundled", "price_country": "DE"})
        return await run_until(service, lambda s: s.price is not None and s.price.source == "bundled"
                               and not s.price.is_forecast[0])

    snap = asyncio.run(scenario())
    assert snap.status["price"]["online"] is True
    assert snap.price is not None and snap.price.known_until_ts == local_midnight_ts(NOW, days=2)


def test_with_an_openweathermap_key_the_pv_forecast_follows_the_weather(tmp_path: Path, server: PayloadServer) -> None:
    server.serve(owm_payload(NOW - 3 * 3600, 100.0, n=40))  # five days of overcast
    base = server.url.rsplit("/v1", 1)[0] + "/data/2.5"
    store = config_store(tmp_path, price_source="bundled", use_weather=True, openweathermap_api_key="k",
                         openweathermap_base_url=base)
    service = ForecastService(store, None, FixedClock(NOW), tmp_path / "data")
    snap = asyncio.run(run_until(service, lambda s: s.pv is not None and s.pv.source == "openweathermap"))
    assert snap.pv is not None and snap.pv.model == "owm_cloud_cover"
    assert snap.status["weather"]["online"] is True and snap.status["weather"]["points"] == 40
    assert server.queries[-1]["appid"] == "k"
    overcast_noon = snap.pv.values[snap.pv.index_of(local_midnight_ts(NOW, days=1) + 13 * 3600)]
    assert 0.0 < overcast_noon < 0.3 * 8.0
    assert (tmp_path / "data" / "forecast" / "weather.json").exists()

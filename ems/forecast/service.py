"""The forecast subsystem: keeps prices, load and PV forecasts current and hands out immutable snapshots.

`ForecastService.run()` is one supervised asyncio task. It refreshes prices hourly, at the expected
publication of the next day and with backoff after failures; refreshes the weather every 3 hours when
configured; refits the load and PV models every `forecast.refit_interval_h` in the worker process; and
rebuilds the snapshot every quarter-hour. Nothing blocking runs on the event loop: network, disk,
history queries and fits go to executor threads (fits further to a child process). `snapshot()` is
safe from any thread (web handlers, the optimizer).
"""
from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..backoff import backoff_delay
from ..clock import track_blocking_work
from .load import HISTORY_DAYS as LOAD_HISTORY_DAYS
from .load import forecast_load, history_from_rows, standard_profile_kw
from .load import STEP_S
from .prices import BundledPriceSource, PriceFeed, consumer_price_eur_per_kwh, country_of, make_price_source
from .pv import forecast_pv, pv_request
from .series import DAY_S, Series, floor_to
from .weather import REFRESH_S as WEATHER_REFRESH_S
from .weather import OpenWeatherMapClient, WeatherFeed
from .worker import run_worker

if TYPE_CHECKING:
    from ..clock import Clock
    from ..config import ConfigStore
    from ..config.schema import ForecastConfig
    from ..history import HistoryStore

log = logging.getLogger(__name__)

Worker = Callable[[dict[str, Any], float], dict[str, Any]]

REBUILD_S = float(STEP_S)
"""The snapshot is rebuilt every quarter-hour of plant time so it always starts at the current interval."""
KEPT = " (previous fit kept)"
MIN_REAL_SLEEP_S = 1.0
MAX_REAL_SLEEP_S = 30.0
MIN_REAL_S_BETWEEN_FETCHES = 120.0
"""However fast the simulated clock runs, a network source is asked at most this often (fair use)."""


def in_daemon_thread(fn: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
    """Run a long blocking call (network with retries, a model fit) in a daemon thread.

    Unlike the loop's default executor, a daemon thread never holds up shutdown: a stop does not wait
    for a slow server's timeout. The result comes back to the loop thread-safely (or is dropped if the
    loop has closed meanwhile).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def deliver(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:  # handed to the awaiting coroutine, which decides
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(deliver, result, error)
        except RuntimeError:  # the loop closed while we worked
            pass

    threading.Thread(target=target, name=f"forecast-{getattr(fn, '__name__', 'call')}", daemon=True).start()
    track_blocking_work(future)
    return future


@dataclass(frozen=True)
class ModelStatus:
    """How a load or PV forecast was made, for the forecasts page and the logs."""

    model: str = "pending"
    source: str = "none"
    fitted_ts: float | None = None
    fit_s: float | None = None
    peak_rss_mb: float | None = None
    history_days: float | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ForecastSnapshot:
    """Everything the optimizer and `GET /api/forecast` need, consistent at `created_ts`.

    `price` is the net market price (€/kWh), `consumer_price` what a kWh from the grid costs with
    surcharges, grid fee and VAT; `load` and `pv` are kW (both ≥ 0) on 15-minute intervals. Any of
    them is None only before the service has run once.
    """

    created_ts: float
    horizon_h: float
    price: Series | None = None
    consumer_price: Series | None = None
    load: Series | None = None
    pv: Series | None = None
    status: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        part = lambda s: None if s is None else s.to_json()
        return {"ts": self.created_ts, "horizon_h": self.horizon_h, "price": part(self.price),
                "consumer_price": part(self.consumer_price), "load": part(self.load), "pv": part(self.pv),
                "status": self.status}


class ForecastService:
    def __init__(self, config: "ConfigStore", history: "HistoryStore | None", clock: "Clock", data_dir: Path,
                 worker: Worker = run_worker, min_fetch_interval_s: float = MIN_REAL_S_BETWEEN_FETCHES):
        self._config = config
        self._history = history
        self._clock = clock
        self._dir = Path(data_dir) / "forecast"
        self._worker = worker
        self._min_fetch_interval_s = min_fetch_interval_s
        self._lock = threading.Lock()
        self._snapshot = ForecastSnapshot(clock.now(), float(config.config.forecast.horizon_h),
                                          status={"price": None, "load": ModelStatus().to_json(),
                                                  "pv": ModelStatus().to_json(), "weather": None})
        self._feed: PriceFeed | None = None
        self._weather: WeatherFeed | None = None
        self._load: Series | None = None
        self._pv: Series | None = None
        self._load_status = ModelStatus()
        self._pv_status = ModelStatus()
        self._config_dirty = True
        self._next_price_ts = -math.inf
        self._next_weather_ts = -math.inf
        self._next_refit_ts = -math.inf
        self._next_rebuild_ts = -math.inf
        self._last_network_fetch_mono = -math.inf
        self._last_weather_fetch_mono = -math.inf
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        config.subscribe("forecast", self._on_config)

    # -- public ---------------------------------------------------------------------------------
    def snapshot(self) -> ForecastSnapshot:
        """The latest forecasts (immutable); safe to call from any thread."""
        with self._lock:
            return self._snapshot

    def to_json(self) -> dict[str, Any]:
        """The body of `GET /api/forecast`."""
        return self.snapshot().to_json()

    async def run(self) -> None:
        """Run until cancelled (a supervisor subsystem)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        refit: asyncio.Task[None] | None = None
        try:
            while True:
                now = self._clock.now()
                if self._config_dirty:
                    await self._apply_config(now)
                if now >= self._next_price_ts and self._may_fetch():
                    await self._refresh_prices(now)
                if self._weather is not None and now >= self._next_weather_ts and \
                        self._clock.monotonic() - self._last_weather_fetch_mono >= self._min_fetch_interval_s:
                    await self._refresh_weather(now)
                if now >= self._next_refit_ts and (refit is None or refit.done()):
                    self._next_refit_ts = now + self._cfg().refit_interval_h * 3600.0
                    refit = asyncio.create_task(self._refit(now), name="forecast_refit")
                    refit.add_done_callback(self._refit_done)
                if now >= self._next_rebuild_ts or self._wake.is_set():
                    self._wake.clear()
                    await self._loop.run_in_executor(None, self._rebuild, self._clock.now())
                    self._next_rebuild_ts = floor_to(now, STEP_S) + REBUILD_S
                due = min(self._next_price_ts, self._next_refit_ts, self._next_rebuild_ts,
                          self._next_weather_ts if self._weather is not None else math.inf)
                await self._sleep(due - self._clock.now())
        finally:
            if refit is not None and not refit.done():
                refit.cancel()

    # -- config ---------------------------------------------------------------------------------
    def _cfg(self) -> "ForecastConfig":
        return self._config.config.forecast

    def _horizon_s(self) -> float:
        cfg = self._config.config
        return max(cfg.forecast.horizon_h, cfg.strategy.horizon_h) * 3600.0

    def _on_config(self, _config: Any) -> None:
        self._config_dirty = True
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _apply_config(self, now: float) -> None:
        """(Re)create the price and weather feeds from the config and make everything due now."""
        self._config_dirty = False
        cfg = self._cfg()
        loop = asyncio.get_running_loop()
        self._feed = await loop.run_in_executor(None, self._make_price_feed, cfg)
        self._weather = None
        if cfg.use_weather and cfg.openweathermap_api_key:
            self._weather = await loop.run_in_executor(None, self._make_weather_feed, cfg)
        elif cfg.use_weather:
            log.warning("forecast.use_weather is on but forecast.openweathermap_api_key is not set: "
                        "PV forecast from history")
        self._next_price_ts = self._next_weather_ts = self._next_refit_ts = self._next_rebuild_ts = now
        self._last_network_fetch_mono = self._last_weather_fetch_mono = -math.inf
        log.info("forecasts: prices from %s, weather %s, refit every %g h", self._feed.source.name,
                 "on" if self._weather else "off", cfg.refit_interval_h)

    def _make_price_feed(self, cfg: "ForecastConfig") -> PriceFeed:
        country = country_of(cfg.price_source, cfg.price_country)
        source = make_price_source(cfg.price_source, country, awattar_base_url=cfg.awattar_base_url,
                                   entsoe_base_url=cfg.entsoe_base_url, entsoe_token=cfg.entsoe_token,
                                   timeout_s=cfg.http_timeout_s)
        # Only downloaded prices are worth a file; bundled ones are re-read at no cost (and no SD-card wear).
        cache = self._dir / f"prices_{source.name}_{country.lower()}.json" if source.is_network else None
        return PriceFeed(source, cache, BundledPriceSource(country), cfg.publication_time)

    def _make_weather_feed(self, cfg: "ForecastConfig") -> WeatherFeed:
        client = OpenWeatherMapClient(cfg.openweathermap_api_key or "", cfg.openweathermap_base_url,
                                      cfg.http_timeout_s)
        return WeatherFeed(client, self._dir / "weather.json", cfg.latitude_deg, cfg.longitude_deg)

    # -- prices and weather ---------------------------------------------------------------------
    def _may_fetch(self) -> bool:
        """Network sources are never asked more often than MIN_REAL_S_BETWEEN_FETCHES real seconds."""
        feed = self._feed
        if feed is None or not feed.source.is_network:
            return True
        return self._clock.monotonic() - self._last_network_fetch_mono >= self._min_fetch_interval_s

    async def _refresh_prices(self, now: float) -> None:
        feed = self._feed
        assert feed is not None
        if feed.source.is_network:
            self._last_network_fetch_mono = self._clock.monotonic()
        # The source's own timeouts bound the call; this outer bound covers its retries as well.
        limit_s = 4 * self._cfg().http_timeout_s + 30.0
        try:
            ok = await asyncio.wait_for(in_daemon_thread(feed.refresh, now), limit_s)
        except asyncio.TimeoutError:
            ok = feed.record_failure(now, f"no answer within {limit_s:g} s")
        self._next_price_ts = feed.next_refresh_ts(self._clock.now())
        if ok:
            self._wake_rebuild()

    async def _refresh_weather(self, now: float) -> None:
        feed = self._weather
        assert feed is not None
        if feed.status.consecutive_failures:
            backoff = backoff_delay(feed.status.consecutive_failures - 1, 300.0, WEATHER_REFRESH_S)
        else:
            backoff = WEATHER_REFRESH_S
        self._last_weather_fetch_mono = self._clock.monotonic()
        ok = await in_daemon_thread(feed.refresh, now)
        self._next_weather_ts = now + (WEATHER_REFRESH_S if ok else backoff)
        if ok:
            self._next_refit_ts = min(self._next_refit_ts, now)  # a new weather forecast means a new PV forecast

    def _wake_rebuild(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- models ---------------------------------------------------------------------------------
    def _fit(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._worker(request, self._cfg().fit_timeout_s)

    def _history_rows(self, start_ts: float, days: int) -> list[dict[str, Any]]:
        if self._history is None:
            return []
        try:
            return self._history.state_history(start_ts - days * DAY_S, start_ts, days * DAY_S // STEP_S)
        except Exception as exc:  # a locked or damaged history must not stop the forecasts
            log.warning("cannot read history for the forecasts: %s", exc)
            return []

    async def _refit(self, now: float) -> None:
        cfg = self._cfg()
        loop = asyncio.get_running_loop()
        start = floor_to(now, STEP_S)
        steps = int((self._horizon_s() + cfg.refit_interval_h * 3600.0) // STEP_S)
        weather = self._weather.points(start) if self._weather is not None else []
        # Reading and regridding weeks of history is pure Python work: keep it off the event loop.
        history, request = await loop.run_in_executor(None, self._prepare_fits, cfg, start, steps, weather)

        t0 = time.monotonic()
        self._last_rss_mb = None
        load, error = await in_daemon_thread(forecast_load, history, start, steps, self._fit_recording,
                                             cfg.load_profile, cfg.annual_load_kwh)
        load_status = ModelStatus(load.model, load.source, now, round(time.monotonic() - t0, 3),
                                  self._last_rss_mb, round(history.usable_days, 2), error)
        t0 = time.monotonic()
        self._last_rss_mb = None
        pv, pv_error = await in_daemon_thread(forecast_pv, request, self._fit_recording)
        pv_status = ModelStatus(pv.model, pv.source, now, round(time.monotonic() - t0, 3), self._last_rss_mb,
                                None, pv_error)
        if pv_error and self._pv is not None and self._pv.end_ts > now + STEP_S:
            pv_status = ModelStatus(self._pv_status.model.removesuffix(KEPT) + KEPT, self._pv.source,
                                    self._pv_status.fitted_ts, None, None, None, pv_error)
            pv = self._pv
        with self._lock:
            self._load, self._load_status = load, load_status
            self._pv, self._pv_status = pv, pv_status
        log.info("forecasts refitted: load %s (%s), PV %s (%s)", load.model, error or "ok", pv.model,
                 pv_error or "ok")
        self._wake_rebuild()

    def _prepare_fits(self, cfg: "ForecastConfig", start: float, steps: int,
                      weather: list[Any]) -> tuple[Any, dict[str, Any]]:
        """History rows → the load history and the PV request (executor thread)."""
        rows = self._history_rows(start, LOAD_HISTORY_DAYS)
        history = history_from_rows(rows, start)
        request = pv_request(start, steps, latitude_deg=cfg.latitude_deg, longitude_deg=cfg.longitude_deg,
                             tilt_deg=cfg.pv_tilt_deg, azimuth_deg=cfg.pv_azimuth_deg, kwp=cfg.pv_peak_kwp,
                             history_rows=rows, weather=weather)
        return history, request

    _last_rss_mb: float | None = None

    def _fit_recording(self, request: dict[str, Any]) -> dict[str, Any]:
        """The worker call, remembering the child's peak memory for the status."""
        result = self._fit(request)
        self._last_rss_mb = (result.get("_worker") or {}).get("peak_rss_mb")
        return result

    @staticmethod
    def _refit_done(task: "asyncio.Task[None]") -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("forecast refit failed", exc_info=task.exception())

    # -- snapshot -------------------------------------------------------------------------------
    def _rebuild(self, now: float) -> None:
        """Build a new snapshot from the current parts (executor thread: pure Python, a few ms)."""
        cfg = self._cfg()
        start = floor_to(now, STEP_S)
        end = start + self._horizon_s()
        price = consumer = None
        price_status = None
        if self._feed is not None:
            price = self._feed.outlook(start, end)
            consumer = price.map_values(lambda v: consumer_price_eur_per_kwh(
                v, cfg.price_surcharge_pct, cfg.price_surcharge_eur_per_kwh, cfg.grid_fee_eur_per_kwh, cfg.vat_pct))
            consumer = consumer.replace(model=f"{price.model}+tariff")
            price_status = {**self._feed.status.to_json(), "next_refresh_ts": self._next_price_ts}
        with self._lock:
            load, pv = self._load, self._pv
            load_status, pv_status = self._load_status, self._pv_status
        if load is None or load.end_ts <= start:
            values = standard_profile_kw(start, int((end - start) // STEP_S), cfg.load_profile, cfg.annual_load_kwh)
            load = Series(start, STEP_S, tuple(values), "kw", "standard_profile", "standard_profile")
        else:
            load = load.slice(start, end)
        pv = None if pv is None else pv.slice(start, end)
        snapshot = ForecastSnapshot(
            now, (end - start) / 3600.0, price, consumer, load, pv,
            {"price": price_status, "load": load_status.to_json(), "pv": pv_status.to_json(),
             "weather": None if self._weather is None else self._weather.status.to_json()})
        with self._lock:
            self._snapshot = snapshot

    # -- time -----------------------------------------------------------------------------------
    async def _sleep(self, plant_s: float) -> None:
        """Wait `plant_s` of plant time (as real seconds at the clock's speed), or until woken."""
        speed = float(getattr(self._clock, "speed", 1.0)) or 1.0
        real_s = min(MAX_REAL_SLEEP_S, max(MIN_REAL_SLEEP_S, plant_s / speed))
        assert self._wake is not None
        await self._clock.wait(self._wake, real_s)

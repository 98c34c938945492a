"""OpenWeatherMap 5-day / 3-hour forecast: cloud cover, air temperature and wind for the PV forecast.

Only used when `forecast.use_weather` is on and an API key is set. The client blocks (urllib, call it
from a worker thread); the last good forecast is kept on disk so a restart while offline still has it.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from .prices.http import FetchError, http_get, with_retries

log = logging.getLogger(__name__)

OWM_BASE_URL = "https://api.openweathermap.org/data/2.5"
REFRESH_S = 3 * 3600.0
"""OpenWeatherMap recomputes its forecast every 3 hours; more often only spends the free quota."""


@dataclass(frozen=True)
class WeatherPoint:
    """Forecast conditions at an instant (epoch seconds)."""

    ts: float
    cloud_pct: float
    temp_c: float | None = None
    wind_m_s: float | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _object(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one (a missing or malformed section)."""
    return value if isinstance(value, dict) else {}


def parse_owm_forecast(payload: bytes, source: str = "openweathermap") -> list[WeatherPoint]:
    """Parse `/forecast` JSON (units=metric): {"cod":"200","list":[{"dt": s, "main":{"temp": °C},
    "clouds":{"all": %}, "wind":{"speed": m/s}}, …]}. Entries without time or cloud cover are skipped
    (logged); an error document ({"cod": 401, "message": …}) or no usable entry raises FetchError."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FetchError(source, f"response is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise FetchError(source, "response is not a JSON object")
    if str(doc.get("cod", "200")) != "200":
        raise FetchError(source, f"error {doc.get('cod')}: {str(doc.get('message', ''))[:200]}", retryable=False)
    items = doc.get("list")
    if not isinstance(items, list):
        raise FetchError(source, "response has no 'list' (not the OpenWeatherMap forecast format)")
    points, skipped = [], 0
    for item in items:
        if not isinstance(item, dict):
            skipped += 1
            continue
        ts = _number(item.get("dt"))
        clouds = _object(item.get("clouds"))
        cloud = _number(clouds.get("all"))
        if ts is None or cloud is None or not 0 <= cloud <= 100:
            skipped += 1
            continue
        main = _object(item.get("main"))
        wind = _object(item.get("wind"))
        temp = _number(main.get("temp"))
        speed = _number(wind.get("speed"))
        points.append(WeatherPoint(ts, cloud, temp if temp is not None and -80 < temp < 70 else None,
                                   speed if speed is not None and 0 <= speed < 100 else None))
    if skipped:
        log.warning("%s: skipped %d of %d forecast entries without time or cloud cover", source, skipped, len(items))
    if items and not points:
        raise FetchError(source, f"no usable entry in {len(items)}")
    return sorted(points, key=lambda p: p.ts)


class OpenWeatherMapClient:
    def __init__(self, api_key: str, base_url: str | None = None, timeout_s: float = 10.0, attempts: int = 3,
                 backoff_s: float = 1.0):
        if not api_key:
            raise ValueError("an OpenWeatherMap API key is required (forecast.openweathermap_api_key)")
        self.name = "openweathermap"
        self.api_key = api_key
        self.base_url = (base_url or OWM_BASE_URL).rstrip("/")
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s

    def url(self, latitude_deg: float, longitude_deg: float) -> str:
        query = urllib.parse.urlencode({"lat": f"{latitude_deg:.4f}", "lon": f"{longitude_deg:.4f}",
                                        "appid": self.api_key, "units": "metric"})
        return f"{self.base_url}/forecast?{query}"

    def fetch(self, latitude_deg: float, longitude_deg: float) -> list[WeatherPoint]:
        url = self.url(latitude_deg, longitude_deg)
        payload = with_retries(lambda: http_get(url, self.timeout_s, self.name), self.attempts, self.backoff_s)
        return parse_owm_forecast(payload, self.name)


@dataclass
class WeatherStatus:
    source: str = "openweathermap"
    online: bool | None = None
    last_success_ts: float | None = None
    last_error: str | None = None
    last_error_ts: float | None = None
    consecutive_failures: int = 0
    points: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class WeatherFeed:
    """The client, its last good forecast (also on disk) and a status. `refresh` blocks."""

    def __init__(self, client: OpenWeatherMapClient, cache_path: Path | None, latitude_deg: float,
                 longitude_deg: float):
        self.client = client
        self.cache_path = cache_path
        self.latitude_deg = latitude_deg
        self.longitude_deg = longitude_deg
        self.status = WeatherStatus(client.name)
        self._points: list[WeatherPoint] = []
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        if self.cache_path is None or not self.cache_path.exists():
            return
        try:
            doc = json.loads(self.cache_path.read_text(encoding="utf-8"))
            self._points = [WeatherPoint(*p) for p in doc["points"]]
            self.status.last_success_ts = doc.get("fetched_ts")
            self.status.points = len(self._points)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("weather cache %s unreadable, ignoring it: %s", self.cache_path, exc)

    def refresh(self, now_ts: float) -> bool:
        try:
            points = self.client.fetch(self.latitude_deg, self.longitude_deg)
        except FetchError as exc:
            self.status.online = False
            self.status.last_error = exc.message
            self.status.last_error_ts = now_ts
            self.status.consecutive_failures += 1
            log.warning("weather forecast failed, keeping the last one: %s", exc)
            return False
        with self._lock:
            self._points = points
        self.status.online = True
        self.status.last_success_ts = now_ts
        self.status.consecutive_failures = 0
        self.status.points = len(points)
        if self.cache_path is not None:
            doc = {"fetched_ts": now_ts, "points": [[p.ts, p.cloud_pct, p.temp_c, p.wind_m_s] for p in points]}
            try:
                write_atomic(self.cache_path, json.dumps(doc).encode("utf-8"))
            except OSError as exc:
                log.warning("cannot write weather cache %s: %s", self.cache_path, exc)
        return True

    def points(self, since_ts: float) -> list[WeatherPoint]:
        """Forecast points from 3 h before `since_ts` on (enough to interpolate the first interval)."""
        with self._lock:
            return [p for p in self._points if p.ts >= since_ts - 3 * 3600]

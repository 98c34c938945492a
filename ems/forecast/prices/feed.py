"""The price feed: when to fetch (publication times, backoff), the outlook beyond the published
horizon (seasonal forecast), the consumer price, and `PriceFeed` tying a source to its cache and status."""
from __future__ import annotations

import logging
import math
import threading
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence
from zoneinfo import ZoneInfo

from ...backoff import backoff_delay
from ..series import (DAY_S, HOUR_S, MARKET_TZ, NAN, QUARTER_HOUR_S, Series, is_missing, local_midnight_ts,
                      local_time_ts, quantile, wall_clock_s)
from .awattar import AwattarSource
from .bundled import BundledPriceSource
from .cache import PriceCache
from .entsoe import EntsoeSource
from .http import FetchError
from .intervals import SLOT_S, Country, PriceSource

log = logging.getLogger(__name__)

HISTORY_DAYS = 7
"""Days of past prices the seasonal forecast looks at (and the fetch back-fills on a fresh cache)."""
CACHE_KEEP_DAYS = 35
MIN_SEASONAL_SAMPLES = 3


# -- pure price maths -----------------------------------------------------------------------------

def expected_known_until_ts(now_ts: float, publication_hhmm: str, tz: ZoneInfo = MARKET_TZ) -> float:
    """End of what the day-ahead market has published by `now_ts`: the end of tomorrow once today's
    auction results are out (after `publication_hhmm` local), else the end of today."""
    published = now_ts >= local_time_ts(now_ts, publication_hhmm, tz)
    return local_midnight_ts(now_ts, tz, days=2 if published else 1)


def fetch_window(now_ts: float, cache: PriceCache, publication_hhmm: str,
                 tz: ZoneInfo = MARKET_TZ) -> tuple[float, float]:
    """What to ask a source for: today (local) to the published horizon, reaching back HISTORY_DAYS when
    the cache lacks the past week (the seasonal forecast needs it)."""
    today = local_midnight_ts(now_ts, tz)
    week_ago = local_midnight_ts(now_ts, tz, days=-HISTORY_DAYS)
    start = week_ago if cache.days_known(week_ago, today) < HISTORY_DAYS - 1 else today
    return start, expected_known_until_ts(now_ts, publication_hhmm, tz)


def next_refresh_ts(now_ts: float, consecutive_failures: int, known_until_ts: float, publication_hhmm: str,
                    tz: ZoneInfo = MARKET_TZ, interval_s: float = HOUR_S, retry_published_s: float = 600.0,
                    max_backoff_s: float = 1800.0) -> float:
    """When to fetch again: hourly; at publication time; every `retry_published_s` while the published
    next day has not arrived; after a failure with exponential backoff (60 s … max_backoff_s)."""
    candidates = [now_ts + interval_s]
    if consecutive_failures > 0:
        candidates.append(now_ts + backoff_delay(consecutive_failures - 1, 60.0, max_backoff_s))
    publication = local_time_ts(now_ts, publication_hhmm, tz)
    if now_ts < publication:
        candidates.append(publication)
    elif known_until_ts < expected_known_until_ts(now_ts, publication_hhmm, tz) and consecutive_failures == 0:
        candidates.append(now_ts + retry_published_s)
    return min(candidates)


def seasonal_price_forecast(history: dict[int, float], targets: Sequence[float], step_s: int,
                            tz: ZoneInfo = MARKET_TZ, days: int = HISTORY_DAYS,
                            max_lookback_days: int = 28) -> tuple[list[float], list[float], list[float], int]:
    """Median price of the same local time of day over the `days` most recent days in `history`
    (15-min slot → €/MWh), with the 10 % and 90 % quantiles of those days as the spread.

    Works on wall-clock time, so a forecast across a daylight-saving change still puts the evening
    peak at 18:00 local. Returns (p50, p10, p90, fewest days found for a target); NaN where fewer than
    MIN_SEASONAL_SAMPLES days are found.
    """
    by_wall: dict[float, float] = {wall_clock_s(s, tz): p for s, p in history.items()}
    p50, p10, p90 = [], [], []
    fewest = days
    for t in targets:
        wall = wall_clock_s(t, tz)
        samples = []
        for d in range(1, max_lookback_days + 1):
            slots = [by_wall.get(wall - d * DAY_S + k) for k in range(0, step_s, SLOT_S)]
            found = [v for v in slots if v is not None]
            if len(found) == len(slots):
                samples.append(sum(found) / len(found))
                if len(samples) == days:
                    break
        fewest = min(fewest, len(samples))
        if len(samples) < MIN_SEASONAL_SAMPLES:
            p50.append(NAN)
            p10.append(NAN)
            p90.append(NAN)
            continue
        samples.sort()
        p50.append(quantile(samples, 0.5))
        p10.append(quantile(samples, 0.1))
        p90.append(quantile(samples, 0.9))
    return p50, p10, p90, fewest


def price_outlook(known: dict[int, tuple[float, int]], history: dict[int, tuple[float, int]], start_ts: float,
                  end_ts: float, source: str, tz: ZoneInfo = MARKET_TZ) -> Series:
    """Market price in €/kWh for [start_ts, end_ts): published prices where known, a seasonal forecast
    elsewhere (flagged), on the step of the published data (1 h, or 15 min once any quarter-hour is known).

    Both mappings are slot → (€/MWh, published step); `history` feeds the forecast and should include `known`.
    """
    steps = {step for s, (_, step) in known.items() if start_ts - DAY_S <= s < end_ts}
    if not steps:  # nothing published for the window: follow the most recent history
        recent = sorted(history)[-4 * 24:]
        steps = {history[s][1] for s in recent} or {HOUR_S}
    step_s = QUARTER_HOUR_S if min(steps) < HOUR_S else HOUR_S
    first = math.floor(start_ts / step_s) * step_s
    targets = [float(t) for t in range(int(first), int(end_ts), step_s)]
    values, flags = [], []
    missing_targets = []
    for t in targets:
        slots = [known.get(int(t) + k) for k in range(0, step_s, SLOT_S)]
        found = [s for s in slots if s is not None]
        if len(found) == len(slots):
            values.append(sum(s[0] for s in found) / len(found))
            flags.append(False)
        else:
            values.append(NAN)
            flags.append(True)
            missing_targets.append(t)
    p10 = list(values)
    p90 = list(values)
    model = "market"
    if missing_targets:
        prices = {slot: p for slot, (p, _) in history.items()}
        f50, f10, f90, _ = seasonal_price_forecast(prices, missing_targets, step_s, tz)
        lookup = {t: (a, b, c) for t, a, b, c in zip(missing_targets, f50, f10, f90)}
        for i, t in enumerate(targets):
            if t in lookup:
                values[i], p10[i], p90[i] = lookup[t]
        model = ("market+" if len(missing_targets) < len(targets) else "") + f"seasonal_median_{HISTORY_DAYS}d"
    kwh = lambda vs: tuple(NAN if is_missing(v) else v / 1000.0 for v in vs)
    return Series(first, step_s, kwh(values), "eur_per_kwh", source, model, tuple(flags),
                  {"p10": kwh(p10), "p90": kwh(p90)} if missing_targets else {})


def consumer_price_eur_per_kwh(market_eur_per_kwh: float, surcharge_pct: float, surcharge_eur_per_kwh: float,
                               grid_fee_eur_per_kwh: float, vat_pct: float) -> float:
    """What a kWh bought from the grid costs: (market + |market|·surcharge % + surcharge + grid fee) × (1 + VAT).

    The percentage surcharge is taken on the magnitude of the market price, so a negative price never
    earns the supplier's margin back (the cautious reading: tariff sheets differ on this).
    """
    net = market_eur_per_kwh + abs(market_eur_per_kwh) * surcharge_pct / 100.0 + surcharge_eur_per_kwh \
        + grid_fee_eur_per_kwh
    return net * (1.0 + vat_pct / 100.0)


# -- the feed -------------------------------------------------------------------------------------

@dataclass
class PriceStatus:
    """What a user needs to see when prices look wrong: is it online, since when, and why not."""

    source: str
    online: bool | None = None
    last_attempt_ts: float | None = None
    last_success_ts: float | None = None
    last_error: str | None = None
    last_error_ts: float | None = None
    consecutive_failures: int = 0
    known_until_ts: float | None = None
    last_received: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class PriceFeed:
    """A source plus its cache and status. `refresh` blocks (call it from a worker thread); the other
    methods are cheap and thread-safe."""

    def __init__(self, source: PriceSource, cache_path: Path | None, fallback: BundledPriceSource,
                 publication_hhmm: str = "13:00", tz: ZoneInfo = MARKET_TZ):
        self.source = source
        self.fallback = fallback
        self.publication_hhmm = publication_hhmm
        self.tz = tz
        self.cache = PriceCache(cache_path)
        self.cache.load()
        self.status = PriceStatus(source.name)
        self._lock = threading.Lock()

    def refresh(self, now_ts: float) -> bool:
        """Fetch the current window; on any failure keep the cached prices and record why. True on success."""
        with self._lock:
            start, end = fetch_window(now_ts, self.cache, self.publication_hhmm, self.tz)
        self.status.last_attempt_ts = now_ts
        try:
            intervals = self.source.fetch(start, end)
        except FetchError as exc:
            return self.record_failure(now_ts, exc.message)
        except Exception as exc:  # a source bug must not stop the feed; the traceback goes to the log
            log.exception("price source %s failed", self.source.name)
            return self.record_failure(now_ts, f"internal error: {exc}")
        with self._lock:
            changed = self.cache.merge(intervals)
            self.cache.prune(local_midnight_ts(now_ts, self.tz, days=-CACHE_KEEP_DAYS))
            known_until = self.cache.covered_until(local_midnight_ts(now_ts, self.tz))
            try:
                if changed:
                    self.cache.save()
            except OSError as exc:
                log.warning("cannot write price cache %s: %s", self.cache.path, exc)
        self.status.online = True
        self.status.last_success_ts = now_ts
        self.status.consecutive_failures = 0
        self.status.last_received = len(intervals)
        self.status.known_until_ts = known_until
        if not intervals:
            log.info("%s: no prices for %s … %s yet", self.source.name, _fmt(start), _fmt(end))
        else:
            log.info("%s: %d prices, %d slots new or changed, known until %s", self.source.name, len(intervals),
                     changed, _fmt(known_until))
        return True

    def record_failure(self, now_ts: float, message: str) -> bool:
        """Note a failed refresh (the cached prices stay); returns False for the caller's convenience."""
        self.status.online = False
        self.status.last_error = message
        self.status.last_error_ts = now_ts
        self.status.consecutive_failures += 1
        log.warning("%s: price fetch failed (%d in a row), keeping cached prices: %s", self.source.name,
                    self.status.consecutive_failures, message)
        return False

    def next_refresh_ts(self, now_ts: float) -> float:
        with self._lock:
            known_until = self.cache.covered_until(local_midnight_ts(now_ts, self.tz))
        return next_refresh_ts(now_ts, self.status.consecutive_failures, known_until, self.publication_hhmm, self.tz)

    def outlook(self, start_ts: float, end_ts: float) -> Series:
        """Market prices (€/kWh) for [start_ts, end_ts): cached where published, seasonal forecast beyond.

        Where the cache lacks the past week (first start, offline) the bundled prices of those days
        stand in as history, and the model name says so.
        """
        with self._lock:
            known = dict(self.cache.slots)
        hist_start = local_midnight_ts(start_ts, self.tz, days=-HISTORY_DAYS)
        history = dict(known)
        cache = PriceCache(None)
        cache.slots = known
        used_bundled = False
        if cache.days_known(hist_start, end_ts) < MIN_SEASONAL_SAMPLES + 1:
            used_bundled = True
            for iv in self.fallback.fetch(hist_start, end_ts):
                for slot in range(iv.start_ts, iv.end_ts, SLOT_S):
                    history.setdefault(slot, (iv.price_eur_per_mwh, iv.step_s))
        series = price_outlook(known, history, start_ts, end_ts, self.source.name, self.tz)
        if used_bundled and any(series.is_forecast):
            series = series.replace(model=series.model + "(bundled_history)")
        return series


def _fmt(ts: float) -> str:
    return datetime.fromtimestamp(ts, MARKET_TZ).strftime("%Y-%m-%d %H:%M %Z")


def make_price_source(kind: str, country: Country, *, awattar_base_url: str | None = None,
                      entsoe_base_url: str | None = None, entsoe_token: str | None = None,
                      timeout_s: float = 10.0) -> PriceSource:
    """The configured source; `entsoe` without a token falls back to bundled data (logged)."""
    if kind == "awattar_at":
        return AwattarSource("AT", awattar_base_url, timeout_s)
    if kind == "awattar_de":
        return AwattarSource("DE", awattar_base_url, timeout_s)
    if kind == "entsoe":
        if entsoe_token:
            return EntsoeSource(entsoe_token, country, entsoe_base_url, timeout_s)
        log.warning("price_source entsoe needs forecast.entsoe_token; using the bundled prices instead")
    return BundledPriceSource(country)


def country_of(kind: str, price_country: Country) -> Country:
    """aWATTar sources imply their country; the others use forecast.price_country."""
    implied: dict[str, Country] = {"awattar_at": "AT", "awattar_de": "DE"}
    return implied.get(kind, price_country)

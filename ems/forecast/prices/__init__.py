"""Day-ahead market prices: sources (aWATTar, ENTSO-E, bundled data), a disk cache, and the price outlook.

A source returns priced intervals exactly as the market published them (the step is each interval's
end − start, never assumed). `PriceFeed` keeps them in a cache file by quarter-hour slot, knows when
the next day should be published (~12:55 CET, fetched after `publication_time`), and records a status
a user can read when offline. Beyond the known horizon `price_outlook` fills in a seasonal forecast
from recent prices (the bundled 2023–2024 data where the cache is short), marked as forecast.
Network calls use only `urllib` and block: call `PriceFeed.refresh` from a worker thread.

Modules: `http` (GET with a total timeout, retries, `FetchError`), `intervals` (what a source returns),
`awattar`, `entsoe` and `bundled` (the sources), `cache` (slots on disk) and `feed` (fetch schedule,
outlook, consumer price, `PriceFeed`). Everything is importable from here, as before the split.
"""
from __future__ import annotations

from .awattar import AWATTAR_BASE_URLS, AwattarSource, parse_awattar
from .bundled import BUNDLED_FILES, BundledPriceSource
from .cache import PriceCache
from .entsoe import ENTSOE_BASE_URL, ENTSOE_ZONES, EntsoeSource, parse_entsoe
from .feed import (CACHE_KEEP_DAYS, HISTORY_DAYS, MIN_SEASONAL_SAMPLES, PriceFeed, PriceStatus,
                   consumer_price_eur_per_kwh, country_of, expected_known_until_ts, fetch_window, make_price_source,
                   next_refresh_ts, price_outlook, seasonal_price_forecast)
from .http import MAX_RESPONSE_BYTES, USER_AGENT, FetchError, http_get, with_retries
from .intervals import PRICE_LIMIT_EUR_PER_MWH, SLOT_S, Country, PriceInterval, PriceSource

__all__ = [
    "AWATTAR_BASE_URLS", "BUNDLED_FILES", "CACHE_KEEP_DAYS", "ENTSOE_BASE_URL", "ENTSOE_ZONES", "HISTORY_DAYS",
    "MAX_RESPONSE_BYTES", "MIN_SEASONAL_SAMPLES", "PRICE_LIMIT_EUR_PER_MWH", "SLOT_S", "USER_AGENT",
    "AwattarSource", "BundledPriceSource", "Country", "EntsoeSource", "FetchError", "PriceCache", "PriceFeed",
    "PriceInterval", "PriceSource", "PriceStatus",
    "consumer_price_eur_per_kwh", "country_of", "expected_known_until_ts", "fetch_window", "http_get",
    "make_price_source", "next_refresh_ts", "parse_awattar", "parse_entsoe", "price_outlook",
    "seasonal_price_forecast", "with_retries",
]

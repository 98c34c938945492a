"""The soak's day-ahead market: an aWATTar-format price server on 127.0.0.1 that can fail on purpose.

The EMS fetches prices exactly as on site (`forecast.price_source: awattar_at` with `awattar_base_url`
pointing here), so a feed outage goes through its real HTTP client, retries, cache and fallbacks. Prices
are the bundled real AT day-ahead prices of the same calendar position, except on negative-price days,
whose midday hours are pushed far below zero (a sunny spring Sunday in 2024 looked like that). Like the
real market it publishes day D's prices at `publication_hhmm` (local) on day D-1 and never the future
beyond that. Outage modes: `refused` (nothing listens) and `bad_payload` (a proxy's error page, 200 OK).

`market_eur_per_mwh(ts)` is the truth the soak prices its savings with.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import urllib.parse
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from zoneinfo import ZoneInfo

from ..forecast.prices.bundled import BundledPriceSource

log = logging.getLogger(__name__)

MARKET_TZ = ZoneInfo("Europe/Vienna")
HOUR_S = 3600
NEGATIVE_HOURS = range(9, 17)  # local hours pushed negative on a negative-price day
NEGATIVE_PRICE_EUR_PER_MWH = -120.0
OUTAGE_MODES = ("refused", "bad_payload")


class PriceMarket:
    """Hourly market prices (€/MWh) at any instant: bundled data, negative days applied."""

    def __init__(self, country: str = "AT"):
        self._bundled = BundledPriceSource("DE" if country == "DE" else "AT")
        self.negative_days: set[date] = set()
        self._cache: dict[int, float] = {}

    def market_eur_per_mwh(self, ts: float) -> float:
        hour = int(math.floor(ts / HOUR_S) * HOUR_S)
        price = self._cache.get(hour)
        if price is None:
            price = self._bundled.fetch(hour, hour + 1)[0].price_eur_per_mwh
            local = datetime.fromtimestamp(hour, MARKET_TZ)
            if local.date() in self.negative_days and local.hour in NEGATIVE_HOURS:
                price = min(price, NEGATIVE_PRICE_EUR_PER_MWH + (local.hour - 12) ** 2 * 4.0)
            if len(self._cache) > 20_000:
                self._cache.clear()
            self._cache[hour] = price
        return price

    def forget(self, day: date) -> None:
        """Drop cached hours of `day` (its negative marking changed)."""
        start = int(datetime.combine(day, datetime.min.time(), MARKET_TZ).timestamp())
        for hour in range(start - HOUR_S, start + 26 * HOUR_S, HOUR_S):
            self._cache.pop(hour, None)


def published_until_ts(now_ts: float, publication_hhmm: str) -> float:
    """End of what the day-ahead market has published at `now_ts` (local midnight after tomorrow
    once today's results are out, else after today)."""
    local = datetime.fromtimestamp(now_ts, MARKET_TZ)
    hh, mm = (int(x) for x in publication_hhmm.split(":"))
    days = 2 if (local.hour, local.minute) >= (hh, mm) else 1
    midnight = datetime.combine(local.date() + timedelta(days=days), datetime.min.time(), MARKET_TZ)
    return midnight.timestamp()


class PriceServer:
    """`with PriceServer(market, now) as server:` serves `server.base_url` (aWATTar /v1/marketdata).

    `now` is the plant clock (read from the server's thread: the last virtual instant). `outage(mode)`
    starts an outage, `outage(None)` ends it. `requests` and `failed` count what the EMS asked.
    """

    def __init__(self, market: PriceMarket, now: Callable[[], float], publication_hhmm: str = "12:55"):
        self.market = market
        self.now = now
        self.publication_hhmm = publication_hhmm
        self.mode: str | None = None
        self.requests = 0
        self.failed = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/marketdata"

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the http.server API names it
                server._answer(self)

            def log_message(self, format: str, *args: Any) -> None:  # the http.server API names it
                log.debug("price server: %s", format % args)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="soak-prices", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def outage(self, mode: str | None) -> None:
        """Start (`refused`, `bad_payload`) or end (None) an outage."""
        if mode is not None and mode not in OUTAGE_MODES:
            raise ValueError(f"unknown outage mode {mode!r} (allowed: {', '.join(OUTAGE_MODES)})")
        if mode == "refused" and self._httpd is not None:
            self.stop()  # the port stays known: nothing listens on it until the outage ends
        elif self.mode == "refused" and mode != "refused":
            self.start()
        self.mode = mode

    def __enter__(self) -> "PriceServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        self.requests += 1
        if self.mode == "bad_payload":
            self.failed += 1
            body = b"<html><body>502 Bad Gateway (upstream timed out)</body></html>"
            self._send(handler, 200, body, "text/html")
            return
        query = urllib.parse.parse_qs(urllib.parse.urlparse(handler.path).query)
        now = self.now()
        try:
            start_ms = int(query.get("start", [int(now * 1000)])[0])
            end_ms = int(query.get("end", [int((now + 86400) * 1000)])[0])
        except ValueError:
            self._send(handler, 400, b'{"error": "start and end must be integers (ms)"}', "application/json")
            return
        start = int(math.floor(start_ms / 1000 / HOUR_S) * HOUR_S)
        end = min(end_ms / 1000, published_until_ts(now, self.publication_hhmm))
        data = [{"start_timestamp": t * 1000, "end_timestamp": (t + HOUR_S) * 1000,
                 "marketprice": round(self.market.market_eur_per_mwh(t), 2), "unit": "Eur/MWh"}
                for t in range(start, int(end), HOUR_S)]
        self._send(handler, 200, json.dumps({"object": "list", "data": data}).encode(), "application/json")

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

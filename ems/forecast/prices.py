"""Day-ahead market prices: sources (aWATTar, ENTSO-E, bundled data), a disk cache, and the price outlook.

A source returns priced intervals exactly as the market published them (the step is each interval's
end − start, never assumed). `PriceFeed` keeps them in a cache file by quarter-hour slot, knows when
the next day should be published (~12:55 CET, fetched after `publication_time`), and records a status
a user can read when offline. Beyond the known horizon `price_outlook` fills in a seasonal forecast
from recent prices (the bundled 2023–2024 data where the cache is short), marked as forecast.
Network calls use only `urllib` and block: call `PriceFeed.refresh` from a worker thread.
"""
from __future__ import annotations

import http.client
import json
import logging
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal, Protocol, Sequence
from zoneinfo import ZoneInfo

from ..atomic import write_atomic
from .series import (DAY_S, HOUR_S, MARKET_TZ, NAN, QUARTER_HOUR_S, Series, is_missing, local_midnight_ts,
                     local_time_ts, quantile, wall_clock_s)

log = logging.getLogger(__name__)

Country = Literal["AT", "DE"]

AWATTAR_BASE_URLS: dict[str, str] = {"AT": "https://api.awattar.at/v1/marketdata",
                                     "DE": "https://api.awattar.de/v1/marketdata"}
ENTSOE_BASE_URL = "https://web-api.tp.entsoe.eu/api"
ENTSOE_ZONES: dict[str, str] = {"AT": "10YAT-APG------L", "DE": "10Y1001A1001A82H"}  # DE = DE-LU bidding zone
BUNDLED_FILES: dict[str, str] = {"AT": "AT_dayahead_2023_2024.csv", "DE": "DE-LU_dayahead_2023_2024.csv"}

SLOT_S = QUARTER_HOUR_S
"""The cache's grid: the market's finest time unit (15 min since 2025-10-01); an hourly price fills 4 slots."""
PRICE_LIMIT_EUR_PER_MWH = 10_000.0
"""Prices beyond ±this are rejected as garbage (EPEX harmonised limits are −500 … +4,000 €/MWh)."""
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
USER_AGENT = "phoenyra-ems (+https://phoenyra.example/ems)"

HISTORY_DAYS = 7
"""Days of past prices the seasonal forecast looks at (and the fetch back-fills on a fresh cache)."""
CACHE_KEEP_DAYS = 35
MIN_SEASONAL_SAMPLES = 3


class FetchError(Exception):
    """A download or payload that cannot be used. `retryable` is False where a retry cannot help (HTTP 4xx)."""

    def __init__(self, source: str, message: str, retryable: bool = True):
        self.source = source
        self.message = message
        self.retryable = retryable
        super().__init__(f"{source}: {message}")


@dataclass(frozen=True)
class PriceInterval:
    """One published price: [start_ts, end_ts) in epoch seconds, net market price in €/MWh (may be negative)."""

    start_ts: int
    end_ts: int
    price_eur_per_mwh: float

    @property
    def step_s(self) -> int:
        return self.end_ts - self.start_ts


class PriceSource(Protocol):
    """Day-ahead prices for a window. `fetch` blocks (network or disk) and raises FetchError."""

    name: str
    is_network: bool

    def fetch(self, start_ts: float, end_ts: float) -> list[PriceInterval]:
        """Intervals overlapping [start_ts, end_ts), as published (empty if none yet)."""


# -- HTTP -----------------------------------------------------------------------------------------

def http_get(url: str, timeout_s: float, source: str, headers: dict[str, str] | None = None,
             max_bytes: int = MAX_RESPONSE_BYTES) -> bytes:
    """GET `url` within `timeout_s` in total (connect + every read), or raise FetchError naming what failed.

    Only answers worth repeating soon (HTTP 5xx, 429, a connection dropped mid-answer) are retryable.
    """
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            chunks, size = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise FetchError(source, f"timed out after {timeout_s:g} s while reading", retryable=False)
                chunk = resp.read(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(source, f"response larger than {max_bytes} bytes", retryable=False)
                chunks.append(chunk)
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) != size:
                raise FetchError(source, f"connection dropped mid-answer (got {size} of {declared} bytes)")
            return b"".join(chunks)
    except urllib.error.HTTPError as exc:
        body = b""
        try:
            body = exc.read(2000)
        except Exception:  # the error body is only for the message
            pass
        text = body.decode("utf-8", "replace").strip().replace("\n", " ")[:200]
        raise FetchError(source, f"HTTP {exc.code} {exc.reason}" + (f": {text}" if text else ""),
                         retryable=exc.code >= 500 or exc.code == 429) from None
    except FetchError:
        raise
    except (ConnectionResetError, http.client.HTTPException) as exc:
        raise FetchError(source, f"connection dropped mid-answer: {type(exc).__name__}: {exc}") from None
    except (TimeoutError, OSError, urllib.error.URLError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        # Unreachable or silent: report offline at once; the caller's schedule retries with backoff.
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            raise FetchError(source, f"timed out after {timeout_s:g} s", retryable=False) from None
        raise FetchError(source, f"cannot connect: {reason}", retryable=False) from None


def with_retries(fn: Callable[[], Any], attempts: int, backoff_s: float,
                 sleep: Callable[[float], None] = time.sleep) -> Any:
    """Call `fn` up to `attempts` times, waiting backoff_s, 2·backoff_s … between retryable failures."""
    for attempt in range(attempts):
        try:
            return fn()
        except FetchError as exc:
            if not exc.retryable or attempt == attempts - 1:
                raise
            log.info("%s (attempt %d of %d, retrying in %.1f s)", exc, attempt + 1, attempts,
                     backoff_s * 2 ** attempt)
            sleep(backoff_s * 2 ** attempt)
    raise AssertionError("unreachable")


def _check_interval(source: str, start_s: float, end_s: float, price: float, problems: list[str],
                    where: str) -> PriceInterval | None:
    if not (math.isfinite(start_s) and math.isfinite(end_s) and math.isfinite(price)):
        problems.append(f"{where}: not a finite number")
        return None
    if end_s <= start_s:
        problems.append(f"{where}: end {end_s:.0f} is not after start {start_s:.0f}")
        return None
    if start_s % SLOT_S or end_s % SLOT_S:
        problems.append(f"{where}: [{start_s:.0f}, {end_s:.0f}) is not on the 15-minute grid")
        return None
    if end_s - start_s > DAY_S:
        problems.append(f"{where}: interval longer than a day")
        return None
    if abs(price) > PRICE_LIMIT_EUR_PER_MWH:
        problems.append(f"{where}: price {price} €/MWh is outside ±{PRICE_LIMIT_EUR_PER_MWH:g}")
        return None
    return PriceInterval(int(start_s), int(end_s), float(price))


def _report(source: str, problems: list[str], kept: int) -> None:
    if problems:
        log.warning("%s: skipped %d bad entr%s (kept %d): %s", source, len(problems),
                    "y" if len(problems) == 1 else "ies", kept, "; ".join(problems[:5]))


# -- aWATTar --------------------------------------------------------------------------------------

def parse_awattar(payload: bytes, source: str = "awattar") -> list[PriceInterval]:
    """Parse aWATTar `/v1/marketdata` JSON: {"object":"list","data":[{"start_timestamp": ms,
    "end_timestamp": ms, "marketprice": €/MWh, "unit": "Eur/MWh"}, …]}.

    Bad entries are skipped and logged; a payload with no usable entry although it had some, or one
    that is not this format at all, raises FetchError (the caller keeps its old data).
    """
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FetchError(source, f"response is not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise FetchError(source, "response has no 'data' list (not the aWATTar marketdata format)")
    problems: list[str] = []
    out: list[PriceInterval] = []
    for i, item in enumerate(doc["data"]):
        where = f"data[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: not an object")
            continue
        start, end, price, unit = (item.get(k) for k in ("start_timestamp", "end_timestamp", "marketprice", "unit"))
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (start, end, price)):
            problems.append(f"{where}: start_timestamp, end_timestamp and marketprice must be numbers")
            continue
        unit_norm = str(unit or "Eur/MWh").replace(" ", "").lower()
        if unit_norm in ("eur/mwh", "€/mwh"):
            factor = 1.0
        elif unit_norm in ("eur/kwh", "€/kwh"):
            factor = 1000.0
        else:
            problems.append(f"{where}: unknown unit {unit!r} (expected Eur/MWh)")
            continue
        interval = _check_interval(source, start / 1000.0, end / 1000.0, price * factor, problems, where)
        if interval is not None:
            out.append(interval)
    _report(source, problems, len(out))
    if doc["data"] and not out:
        raise FetchError(source, f"no usable price in {len(doc['data'])} entries ({problems[0]})")
    return out


class AwattarSource:
    """aWATTar market data (AT or DE). `base_url` may point anywhere (tests use 127.0.0.1)."""

    is_network = True

    def __init__(self, country: Country = "AT", base_url: str | None = None, timeout_s: float = 10.0,
                 attempts: int = 3, backoff_s: float = 1.0):
        self.name = f"awattar_{country.lower()}"
        self.base_url = base_url or AWATTAR_BASE_URLS[country]
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s

    def url(self, start_ts: float, end_ts: float) -> str:
        query = urllib.parse.urlencode({"start": int(start_ts * 1000), "end": int(end_ts * 1000)})
        return f"{self.base_url}{'&' if '?' in self.base_url else '?'}{query}"

    def fetch(self, start_ts: float, end_ts: float) -> list[PriceInterval]:
        url = self.url(start_ts, end_ts)
        payload = with_retries(lambda: http_get(url, self.timeout_s, self.name), self.attempts, self.backoff_s)
        return [p for p in parse_awattar(payload, self.name) if p.end_ts > start_ts and p.start_ts < end_ts]


# -- ENTSO-E --------------------------------------------------------------------------------------

_RESOLUTIONS = {"PT15M": 900, "PT30M": 1800, "PT60M": 3600, "P1D": 86400}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(el: ET.Element, name: str) -> ET.Element | None:
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _text(el: ET.Element | None, *path: str) -> str | None:
    for name in path:
        if el is None:
            return None
        el = _child(el, name)
    return None if el is None or el.text is None else el.text.strip()


def _iso_utc(text: str) -> float:
    """ENTSO-E times: 2024-03-30T23:00Z."""
    return datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M%z").timestamp()


def parse_entsoe(payload: bytes, source: str = "entsoe") -> list[PriceInterval]:
    """Parse an ENTSO-E A44 Publication_MarketDocument (any namespace version).

    Each TimeSeries/Period has a start, a resolution (PT15M or PT60M) and Points (position from 1,
    price.amount in €/MWh). With curve type A03 a point is omitted when the price repeats, so gaps take
    the previous price up to the period's end. An Acknowledgement with reason 999 means "no data yet":
    an empty list. Any other acknowledgement or malformed XML raises FetchError.
    """
    try:
        root = ET.fromstring(payload)
    except ET.ParseError as exc:
        raise FetchError(source, f"response is not XML ({exc})") from None
    kind = _local(root.tag)
    if kind == "Acknowledgement_MarketDocument":
        reasons = [(_text(r, "code") or "", _text(r, "text") or "") for r in _children(root, "Reason")]
        if any(code == "999" for code, _ in reasons):
            return []
        text = "; ".join(f"{c} {t}".strip() for c, t in reasons) or "no reason given"
        raise FetchError(source, f"ENTSO-E refused the request: {text}", retryable=False)
    if kind != "Publication_MarketDocument":
        raise FetchError(source, f"unexpected XML document {kind!r} (expected Publication_MarketDocument)")
    problems: list[str] = []
    intervals: list[PriceInterval] = []
    for ts_i, series in enumerate(_children(root, "TimeSeries")):
        unit = (_text(series, "price_Measure_Unit.name") or "MWH").upper()
        if unit != "MWH":
            problems.append(f"TimeSeries[{ts_i}]: price unit {unit!r} (expected MWH)")
            continue
        for p_i, period in enumerate(_children(series, "Period")):
            where = f"TimeSeries[{ts_i}].Period[{p_i}]"
            start_text = _text(period, "timeInterval", "start")
            end_text = _text(period, "timeInterval", "end")
            resolution = _text(period, "resolution")
            if start_text is None or end_text is None or resolution not in _RESOLUTIONS:
                problems.append(f"{where}: missing timeInterval or unknown resolution {resolution!r}")
                continue
            try:
                start_s, end_s = _iso_utc(start_text), _iso_utc(end_text)
            except ValueError:
                problems.append(f"{where}: bad time {start_text!r}/{end_text!r}")
                continue
            step = _RESOLUTIONS[resolution]
            n = int((end_s - start_s) // step)
            prices: dict[int, float] = {}
            for point in _children(period, "Point"):
                try:
                    pos = int(_text(point, "position") or "")
                    prices[pos] = float(_text(point, "price.amount") or "")
                except ValueError:
                    problems.append(f"{where}: a Point without a numeric position and price.amount")
            if not prices:
                problems.append(f"{where}: no Point")
                continue
            last = None
            for pos in range(1, n + 1):
                last = prices.get(pos, last)
                if last is None:
                    continue
                iv = _check_interval(source, start_s + (pos - 1) * step, start_s + pos * step, last, problems,
                                     f"{where}.Point[{pos}]")
                if iv is not None:
                    intervals.append(iv)
    _report(source, problems, len(intervals))
    if problems and not intervals:
        raise FetchError(source, f"no usable price ({problems[0]})")
    return intervals


class EntsoeSource:
    """EPEX day-ahead prices from the ENTSO-E transparency platform (needs a security token)."""

    is_network = True

    def __init__(self, token: str, country: Country = "AT", base_url: str | None = None, timeout_s: float = 10.0,
                 attempts: int = 3, backoff_s: float = 1.0):
        if not token:
            raise ValueError("an ENTSO-E security token is required (forecast.entsoe_token)")
        self.name = "entsoe"
        self.token = token
        self.zone = ENTSOE_ZONES[country]
        self.base_url = base_url or ENTSOE_BASE_URL
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s

    def url(self, start_ts: float, end_ts: float) -> str:
        fmt = lambda ts: datetime.fromtimestamp(ts, timezone.utc).strftime("%Y%m%d%H%M")  # noqa: E731
        query = urllib.parse.urlencode({"documentType": "A44", "in_Domain": self.zone, "out_Domain": self.zone,
                                        "periodStart": fmt(start_ts), "periodEnd": fmt(end_ts),
                                        "securityToken": self.token})
        return f"{self.base_url}{'&' if '?' in self.base_url else '?'}{query}"

    def fetch(self, start_ts: float, end_ts: float) -> list[PriceInterval]:
        url = self.url(start_ts, end_ts)
        payload = with_retries(lambda: http_get(url, self.timeout_s, self.name), self.attempts, self.backoff_s)
        return [p for p in parse_entsoe(payload, self.name) if p.end_ts > start_ts and p.start_ts < end_ts]


# -- bundled data ---------------------------------------------------------------------------------

class BundledPriceSource:
    """The real AT or DE-LU hourly prices of 2023–2024 shipped in `ems/data/`, mapped onto any date by local
    calendar position (same month, day and hour; as the simulator maps its data). The offline fallback:
    a realistic price shape for the season, not the actual price of the day."""

    is_network = False

    def __init__(self, country: Country = "AT"):
        from ..data.profiles import ProfileSeries  # the calendar mapping of bundled data lives there
        self.name = "bundled"
        self.country = country
        self._profile = ProfileSeries(BUNDLED_FILES[country])

    def fetch(self, start_ts: float, end_ts: float) -> list[PriceInterval]:
        first = int(math.floor(start_ts / HOUR_S) * HOUR_S)
        return [PriceInterval(t, t + HOUR_S, self._profile.value_at(t)) for t in range(first, int(end_ts), HOUR_S)]


# -- cache ----------------------------------------------------------------------------------------

class PriceCache:
    """Known prices by 15-minute slot: slot start → (€/MWh, step of the published interval).

    Newer data replaces older data slot by slot, so a partial download never erases what it lacks.
    Within one batch hourly intervals are applied before quarter-hours, so the finer price wins where
    a source publishes both. Persisted as JSON with an atomic write.
    """

    VERSION = 1

    def __init__(self, path: Path | None):
        self.path = path
        self.slots: dict[int, tuple[float, int]] = {}

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if doc.get("version") != self.VERSION:
                raise ValueError(f"version {doc.get('version')!r}")
            self.slots = {int(s): (float(p), int(step)) for s, p, step in doc["slots"]}
            log.info("price cache %s: %d slots", self.path, len(self.slots))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("price cache %s unreadable, starting empty: %s", self.path, exc)
            self.slots = {}

    def save(self) -> None:
        if self.path is None:
            return
        doc = {"version": self.VERSION, "slots": [[s, p, step] for s, (p, step) in sorted(self.slots.items())]}
        write_atomic(self.path, json.dumps(doc, separators=(",", ":")).encode("utf-8"))

    def merge(self, intervals: Sequence[PriceInterval]) -> int:
        """Store intervals; returns how many slots changed."""
        changed = 0
        for iv in sorted(intervals, key=lambda p: -p.step_s):
            for slot in range(iv.start_ts, iv.end_ts, SLOT_S):
                entry = (iv.price_eur_per_mwh, iv.step_s)
                if self.slots.get(slot) != entry:
                    self.slots[slot] = entry
                    changed += 1
        return changed

    def prune(self, before_ts: float) -> None:
        self.slots = {s: v for s, v in self.slots.items() if s >= before_ts}

    def covered_until(self, from_ts: float) -> float:
        """End of the contiguous known run starting at the slot holding `from_ts` (= from_ts if none)."""
        slot = int(math.floor(from_ts / SLOT_S) * SLOT_S)
        if slot not in self.slots:
            return from_ts
        while slot in self.slots:
            slot += SLOT_S
        return float(slot)

    def days_known(self, start_ts: float, end_ts: float) -> int:
        """Local days in [start_ts, end_ts) with at least 20 hours of prices."""
        per_day: dict[float, int] = {}
        for slot in self.slots:
            if start_ts <= slot < end_ts:
                day = local_midnight_ts(slot)
                per_day[day] = per_day.get(day, 0) + 1
        return sum(1 for n in per_day.values() if n >= 20 * 4)


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
        candidates.append(now_ts + min(max_backoff_s, 60.0 * 2 ** (consecutive_failures - 1)))
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
            if all(v is not None for v in slots):
                samples.append(sum(slots) / len(slots))  # type: ignore[arg-type]
                if len(samples) == days:
                    break
        fewest = min(fewest, len(samples))
        if len(samples) < MIN_SEASONAL_SAMPLES:
            p50.append(NAN), p10.append(NAN), p90.append(NAN)
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
        if all(s is not None for s in slots):
            values.append(sum(s[0] for s in slots) / len(slots))  # type: ignore[index]
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
    kwh = lambda vs: tuple(NAN if is_missing(v) else v / 1000.0 for v in vs)  # noqa: E731
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
    return {"awattar_at": "AT", "awattar_de": "DE"}.get(kind, price_country)  # type: ignore[return-value]


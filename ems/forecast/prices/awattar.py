"""aWATTar market data (AT or DE): JSON, one entry per published interval."""
from __future__ import annotations

import json
import urllib.parse
from typing import TypeGuard

from .http import FetchError, http_get, with_retries
from .intervals import Country, PriceInterval, check_interval, report_skipped

AWATTAR_BASE_URLS: dict[str, str] = {"AT": "https://api.awattar.at/v1/marketdata",
                                     "DE": "https://api.awattar.de/v1/marketdata"}


def _is_number(value: object) -> TypeGuard[float]:
    """A JSON number (int or float, not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
        if not (_is_number(start) and _is_number(end) and _is_number(price)):
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
        interval = check_interval(source, start / 1000.0, end / 1000.0, price * factor, problems, where)
        if interval is not None:
            out.append(interval)
    report_skipped(source, problems, len(out))
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

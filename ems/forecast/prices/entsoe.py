"""ENTSO-E transparency platform: A44 day-ahead price documents (XML), needs a security token."""
from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from .http import FetchError, http_get, with_retries
from .intervals import Country, PriceInterval, check_interval, report_skipped

ENTSOE_BASE_URL = "https://web-api.tp.entsoe.eu/api"
ENTSOE_ZONES: dict[str, str] = {"AT": "10YAT-APG------L", "DE": "10Y1001A1001A82H"}  # DE = DE-LU bidding zone

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
                iv = check_interval(source, start_s + (pos - 1) * step, start_s + pos * step, last, problems,
                                    f"{where}.Point[{pos}]")
                if iv is not None:
                    intervals.append(iv)
    report_skipped(source, problems, len(intervals))
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
        fmt = lambda ts: datetime.fromtimestamp(ts, timezone.utc).strftime("%Y%m%d%H%M")
        query = urllib.parse.urlencode({"documentType": "A44", "in_Domain": self.zone, "out_Domain": self.zone,
                                        "periodStart": fmt(start_ts), "periodEnd": fmt(end_ts),
                                        "securityToken": self.token})
        return f"{self.base_url}{'&' if '?' in self.base_url else '?'}{query}"

    def fetch(self, start_ts: float, end_ts: float) -> list[PriceInterval]:
        url = self.url(start_ts, end_ts)
        payload = with_retries(lambda: http_get(url, self.timeout_s, self.name), self.attempts, self.backoff_s)
        return [p for p in parse_entsoe(payload, self.name) if p.end_ts > start_ts and p.start_ts < end_ts]

"""Day-ahead prices: the aWATTar and ENTSO-E clients against local servers speaking the real formats,
the bundled offline source, the cache, the publication schedule and the seasonal forecast."""
from __future__ import annotations

import csv
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ems.forecast.prices import (AwattarSource, BundledPriceSource, EntsoeSource, FetchError, PriceCache, PriceFeed,
                                 PriceInterval, consumer_price_eur_per_kwh, expected_known_until_ts, next_refresh_ts,
                                 parse_awattar, parse_entsoe, price_outlook)
from ems.forecast.series import MARKET_TZ, Series, local_midnight_ts
from support import PayloadServer, awattar_day, local_ts

ROOT = Path(__file__).resolve().parents[1]


def quiet_awattar(url: str) -> AwattarSource:
    return AwattarSource("AT", url, timeout_s=2.0, attempts=1)


def feed_for(source: Any, tmp_path: Path | None = None) -> PriceFeed:
    return PriceFeed(source, None if tmp_path is None else tmp_path / "prices.json", BundledPriceSource("AT"))


JUNE_20 = local_ts(2024, 6, 20)
DAY_PRICES = [80.0 + 40 * math.sin(2 * math.pi * (h - 6) / 24) for h in range(24)]


# -- aWATTar -------------------------------------------------------------------------------------

def test_awattar_request_uses_millisecond_window_and_prices_arrive_in_eur_per_kwh(server: PayloadServer) -> None:
    prices = [-12.5, *DAY_PRICES[1:]]  # a negative hour, as at night in spring
    server.serve(awattar_day(JUNE_20, prices))
    src = quiet_awattar(server.url)
    intervals = src.fetch(JUNE_20, JUNE_20 + 86400)
    assert server.queries[-1] == {"start": str(int(JUNE_20 * 1000)), "end": str(int((JUNE_20 + 86400) * 1000))}
    assert [iv.price_eur_per_mwh for iv in intervals] == prices

    feed = feed_for(src)
    assert feed.refresh(JUNE_20 + 9 * 3600)
    series = feed.outlook(JUNE_20, JUNE_20 + 86400)
    assert series.step_s == 3600 and series.unit == "eur_per_kwh"
    assert series.values[0] == pytest.approx(-0.0125)
    assert series.values[12] == pytest.approx(prices[12] / 1000)
    assert not any(series.is_forecast)


def test_awattar_quarter_hour_prices_keep_their_15_minute_step(server: PayloadServer) -> None:
    quarter = [50.0 + i for i in range(96)]
    server.serve(awattar_day(JUNE_20, quarter, step_s=900))
    feed = feed_for(quiet_awattar(server.url))
    assert feed.refresh(JUNE_20 + 9 * 3600)
    series = feed.outlook(JUNE_20, JUNE_20 + 86400)
    assert series.step_s == 900 and len(series) == 96
    assert series.values[5] == pytest.approx(0.055)
    hourly = series.resample(3600)
    assert hourly.values[0] == pytest.approx((50 + 51 + 52 + 53) / 4 / 1000)  # the hourly index is the quarters' mean


@pytest.mark.parametrize("day, hours", [((2024, 3, 31), 23), ((2024, 10, 27), 25)])
def test_daylight_saving_days_have_23_and_25_hourly_prices(server: PayloadServer, day: tuple[int, int, int],
                                                           hours: int) -> None:
    start = local_ts(*day)
    end = local_midnight_ts(start, days=1)
    assert (end - start) / 3600 == hours
    server.serve(awattar_day(start, [float(h) for h in range(hours)]))
    feed = feed_for(quiet_awattar(server.url))
    assert feed.refresh(start + 10 * 3600)
    series = feed.outlook(start, end)
    assert len(series) == hours and not any(series.is_forecast)
    assert [round(v * 1000) for v in series.values] == list(range(hours))
    assert series.known_until_ts == end


def test_server_error_keeps_the_cached_prices_and_reports_offline(server: PayloadServer) -> None:
    server.serve(awattar_day(JUNE_20, DAY_PRICES))
    feed = feed_for(quiet_awattar(server.url))
    assert feed.refresh(JUNE_20 + 9 * 3600)
    success_ts = feed.status.last_success_ts

    server.serve(b"upstream down", status=503, content_type="text/plain")
    assert not feed.refresh(JUNE_20 + 10 * 3600)
    assert feed.status.online is False
    assert "HTTP 503" in (feed.status.last_error or "")
    assert feed.status.last_success_ts == success_ts and feed.status.consecutive_failures == 1
    series = feed.outlook(JUNE_20, JUNE_20 + 86400)
    assert not any(series.is_forecast)
    assert series.values[12] == pytest.approx(DAY_PRICES[12] / 1000)


def test_a_server_that_does_not_answer_in_time_is_a_timeout_not_a_hang(server: PayloadServer) -> None:
    server.serve(awattar_day(JUNE_20, DAY_PRICES), delay_s=2.0)
    feed = feed_for(AwattarSource("AT", server.url, timeout_s=0.3, attempts=1))
    assert not feed.refresh(JUNE_20 + 9 * 3600)
    assert "timed out" in (feed.status.last_error or "")


def test_retries_recover_from_a_passing_server_error(server: PayloadServer) -> None:
    server.serve(awattar_day(JUNE_20, DAY_PRICES), fail_first=2)
    src = AwattarSource("AT", server.url, timeout_s=2.0, attempts=3, backoff_s=0.01)
    assert len(src.fetch(JUNE_20, JUNE_20 + 86400)) == 24
    assert len(server.queries) == 3
    server.serve(awattar_day(JUNE_20, DAY_PRICES), fail_first=3)
    with pytest.raises(FetchError, match="HTTP 502"):
        src.fetch(JUNE_20, JUNE_20 + 86400)


def test_a_connection_dropped_mid_answer_is_retried_then_reported(server: PayloadServer) -> None:
    server.serve(awattar_day(JUNE_20, DAY_PRICES))
    feed = feed_for(AwattarSource("AT", server.url, timeout_s=2.0, attempts=2, backoff_s=0.01))
    assert feed.refresh(JUNE_20 + 9 * 3600)
    server.truncate = True  # the body ends 500 bytes short of its Content-Length
    assert not feed.refresh(JUNE_20 + 10 * 3600)
    assert "dropped mid-answer" in (feed.status.last_error or "") and len(server.queries) == 3
    assert feed.outlook(JUNE_20, JUNE_20 + 86400).values[1] == pytest.approx(DAY_PRICES[1] / 1000)


def test_http_client_errors_are_not_retried(server: PayloadServer) -> None:
    server.serve({"error": "bad request"}, status=400)
    src = AwattarSource("AT", server.url, timeout_s=2.0, attempts=3, backoff_s=0.05)
    with pytest.raises(FetchError) as err:
        src.fetch(JUNE_20, JUNE_20 + 86400)
    assert not err.value.retryable and len(server.queries) == 1


def test_malformed_payload_is_logged_and_the_old_prices_stay(server: PayloadServer,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    server.serve(awattar_day(JUNE_20, DAY_PRICES))
    feed = feed_for(quiet_awattar(server.url))
    assert feed.refresh(JUNE_20 + 9 * 3600)
    for bad in (b'{"object":"list","data":[{"start_timestamp": 17', b"<html>maintenance</html>",
                json.dumps({"object": "list", "data": [{"start_timestamp": "x"}]}).encode()):
        server.serve(bad)
        assert not feed.refresh(JUNE_20 + 10 * 3600)
    assert "not JSON" in caplog.text or "no usable price" in caplog.text
    assert feed.outlook(JUNE_20, JUNE_20 + 86400).values[3] == pytest.approx(DAY_PRICES[3] / 1000)


def test_partial_payload_updates_what_it_has_and_keeps_the_rest(server: PayloadServer,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    server.serve(awattar_day(JUNE_20, DAY_PRICES))
    feed = feed_for(quiet_awattar(server.url))
    assert feed.refresh(JUNE_20 + 9 * 3600)
    partial = awattar_day(JUNE_20, [p + 1000 for p in DAY_PRICES])
    del partial["data"][5]["marketprice"]          # a broken entry
    partial["data"][6]["unit"] = "bananas"          # an unknown unit
    partial["data"] = partial["data"][:12]          # and the afternoon missing
    server.serve(partial)
    assert feed.refresh(JUNE_20 + 10 * 3600)
    assert "skipped 2 bad entries" in caplog.text
    values = [v * 1000 for v in feed.outlook(JUNE_20, JUNE_20 + 86400).values]
    assert values[4] == pytest.approx(DAY_PRICES[4] + 1000)   # updated
    assert values[5] == pytest.approx(DAY_PRICES[5])          # kept: its new entry was bad
    assert values[20] == pytest.approx(DAY_PRICES[20])        # kept: not in the new payload


def test_empty_day_is_not_an_error_and_the_gap_is_forecast(server: PayloadServer) -> None:
    server.serve({"object": "list", "data": []})
    feed = feed_for(quiet_awattar(server.url))
    assert feed.refresh(JUNE_20 + 9 * 3600)
    assert feed.status.online and feed.status.last_received == 0
    series = feed.outlook(JUNE_20, JUNE_20 + 86400)
    assert all(series.is_forecast) and "bundled_history" in series.model
    assert not any(math.isnan(v) for v in series.values)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.fixed_dictionaries({}, optional={
    "start_timestamp": st.one_of(st.integers(-2**40, 2**42), st.floats(allow_nan=True), st.text(max_size=3)),
    "end_timestamp": st.one_of(st.integers(-2**40, 2**42), st.none(), st.booleans()),
    "marketprice": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.none()),
    "unit": st.sampled_from(["Eur/MWh", "EUR/kWh", "x", None])}), max_size=8))
def test_any_awattar_payload_parses_or_fails_with_a_fetch_error(entries: list[dict[str, Any]]) -> None:
    try:
        intervals = parse_awattar(json.dumps({"object": "list", "data": entries}).encode())
    except FetchError:
        return
    for iv in intervals:
        assert iv.end_ts > iv.start_ts and iv.start_ts % 900 == 0 and math.isfinite(iv.price_eur_per_mwh)


# -- ENTSO-E --------------------------------------------------------------------------------------

def a44(period_start: str, period_end: str, resolution: str, points: dict[int, float],
        ns: str = "urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:3") -> str:
    pts = "".join(f"<Point><position>{p}</position><price.amount>{v}</price.amount></Point>"
                  for p, v in sorted(points.items()))
    return (f'<?xml version="1.0" encoding="UTF-8"?><Publication_MarketDocument xmlns="{ns}">'
            f"<mRID>1</mRID><type>A44</type><TimeSeries><mRID>1</mRID><businessType>A62</businessType>"
            f"<currency_Unit.name>EUR</currency_Unit.name><price_Measure_Unit.name>MWH</price_Measure_Unit.name>"
            f"<curveType>A03</curveType><Period><timeInterval><start>{period_start}</start><end>{period_end}</end>"
            f"</timeInterval><resolution>{resolution}</resolution>{pts}</Period></TimeSeries>"
            f"</Publication_MarketDocument>")


def test_entsoe_quarter_hours_with_omitted_repeats_and_the_token_in_the_query(server: PayloadServer) -> None:
    # 2025-10-02 local day = 2025-10-01T22:00Z … 2025-10-02T22:00Z; positions 3-4 omitted (A03: same as 2).
    points = {i: 40.0 + i for i in range(1, 97) if i not in (3, 4)}
    server.serve(a44("2025-10-01T22:00Z", "2025-10-02T22:00Z", "PT15M", points), content_type="application/xml")
    src = EntsoeSource("secret-token", "AT", server.url, timeout_s=2.0, attempts=1)
    start = local_ts(2025, 10, 2)
    intervals = src.fetch(start, start + 86400)
    q = server.queries[-1]
    assert q["securityToken"] == "secret-token" and q["documentType"] == "A44"
    assert q["in_Domain"] == q["out_Domain"] == "10YAT-APG------L"
    assert q["periodStart"] == "202510012200" and q["periodEnd"] == "202510022200"
    assert len(intervals) == 96 and all(iv.step_s == 900 for iv in intervals)
    assert [iv.price_eur_per_mwh for iv in intervals[1:5]] == [42.0, 42.0, 42.0, 45.0]


def test_entsoe_hourly_25_hour_day_and_negative_prices() -> None:
    points = {i: (-5.0 if i in (13, 14) else 60.0) for i in range(1, 26)}
    intervals = parse_entsoe(a44("2024-10-26T22:00Z", "2024-10-27T23:00Z", "PT60M", points,
                                 ns="urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:0").encode())
    assert len(intervals) == 25 and intervals[0].start_ts == local_ts(2024, 10, 27)
    assert [iv.price_eur_per_mwh for iv in intervals].count(-5.0) == 2


def test_entsoe_no_data_yet_is_empty_and_a_bad_token_is_a_clear_error(server: PayloadServer) -> None:
    ack = ('<Acknowledgement_MarketDocument xmlns="urn:iec62325.351:tc57wg16:451-1:acknowledgementdocument:7:0">'
           "<mRID>x</mRID><Reason><code>{code}</code><text>{text}</text></Reason></Acknowledgement_MarketDocument>")
    server.serve(ack.format(code=999, text="No matching data found"), content_type="application/xml")
    src = EntsoeSource("t", "DE", server.url, timeout_s=2.0, attempts=1)
    assert src.fetch(JUNE_20, JUNE_20 + 86400) == []
    assert server.queries[-1]["in_Domain"] == "10Y1001A1001A82H"
    server.serve("<html>Unauthorized</html>", status=401, content_type="text/html")
    with pytest.raises(FetchError, match="HTTP 401"):
        src.fetch(JUNE_20, JUNE_20 + 86400)
    with pytest.raises(FetchError, match="not XML"):
        parse_entsoe(b"<Publication_MarketDocument><TimeSeries>")


# -- bundled, cache, schedule ---------------------------------------------------------------------

def bundled_csv_price(country_file: str, stamp: str) -> float:
    with open(ROOT / "ems" / "data" / country_file, encoding="utf-8") as fh:
        for row in csv.reader(fh):
            if row[0] == stamp:
                return float(row[1])
    raise KeyError(stamp)


def test_bundled_prices_map_any_year_onto_the_same_local_calendar_position() -> None:
    src = BundledPriceSource("DE")
    target = local_ts(2026, 6, 20, 12)
    (iv,) = src.fetch(target, target + 3600)
    assert iv.price_eur_per_mwh == bundled_csv_price("DE-LU_dayahead_2023_2024.csv", "2024-06-20T12:00:00+02:00")
    at = BundledPriceSource("AT").fetch(target, target + 3600)[0]
    assert at.price_eur_per_mwh == bundled_csv_price("AT_dayahead_2023_2024.csv", "2024-06-20T12:00:00+02:00")


def test_cache_survives_a_restart_offline_and_a_corrupt_cache_starts_empty(server: PayloadServer,
                                                                         tmp_path: Path) -> None:
    server.serve(awattar_day(JUNE_20, DAY_PRICES))
    assert feed_for(quiet_awattar(server.url), tmp_path).refresh(JUNE_20 + 9 * 3600)
    assert json.loads((tmp_path / "prices.json").read_text())["version"] == 1

    offline = feed_for(AwattarSource("AT", "http://127.0.0.1:9/v1/marketdata", timeout_s=0.5, attempts=1), tmp_path)
    assert not offline.refresh(JUNE_20 + 10 * 3600)
    assert "cannot connect" in (offline.status.last_error or "")
    assert offline.outlook(JUNE_20, JUNE_20 + 86400).values[7] == pytest.approx(DAY_PRICES[7] / 1000)

    (tmp_path / "prices.json").write_text('{"version": 1, "slots": [[1, 2')
    fresh = feed_for(quiet_awattar(server.url), tmp_path)
    assert fresh.cache.slots == {}


def test_next_day_prices_are_fetched_after_publication_with_retries() -> None:
    today = JUNE_20
    morning = today + 9 * 3600
    tomorrow_end = local_midnight_ts(today, days=2)
    assert expected_known_until_ts(morning, "13:00") == local_midnight_ts(today, days=1)
    assert expected_known_until_ts(today + 13.5 * 3600, "13:00") == tomorrow_end
    # Before publication: wake at 13:00 local (rather than only hourly).
    assert next_refresh_ts(today + 12.5 * 3600, 0, local_midnight_ts(today, days=1), "13:00") == today + 13 * 3600
    # Published but not here yet: every 10 minutes; once here: hourly.
    after = today + 13 * 3600 + 60
    assert next_refresh_ts(after, 0, local_midnight_ts(today, days=1), "13:00") == after + 600
    assert next_refresh_ts(after, 0, tomorrow_end, "13:00") == after + 3600
    # Failing: exponential backoff from 60 s, capped.
    assert [next_refresh_ts(after, n, tomorrow_end, "13:00") - after for n in (1, 2, 3)] == [60, 120, 240]
    assert next_refresh_ts(after, 12, tomorrow_end, "13:00") - after == 1800


def test_publication_time_is_local_across_daylight_saving() -> None:
    winter_day = local_ts(2024, 1, 15)
    winter = next_refresh_ts(winter_day + 12.5 * 3600, 0, winter_day, "13:00")
    summer = next_refresh_ts(JUNE_20 + 12.5 * 3600, 0, JUNE_20, "13:00")
    # 13:00 CET is 12:00 UTC in winter; 13:00 CEST is 11:00 UTC in summer.
    assert datetime.fromtimestamp(winter, timezone.utc).hour == 12
    assert datetime.fromtimestamp(summer, timezone.utc).hour == 11


# -- the seasonal forecast ------------------------------------------------------------------------

def seven_days(day0: float, shape: list[float]) -> dict[int, tuple[float, int]]:
    """Hourly slot history: the same local daily shape on each of 7 days before day0."""
    history: dict[int, tuple[float, int]] = {}
    for d in range(-7, 0):
        day = local_midnight_ts(day0, days=d)
        for h in range(int((local_midnight_ts(day, days=1) - day) // 3600)):
            local_hour = datetime.fromtimestamp(day + h * 3600, MARKET_TZ).hour
            for k in range(4):
                history[int(day + h * 3600 + k * 900)] = (shape[local_hour] + d, 3600)  # drifts 1 €/MWh a day
    return history


def test_beyond_the_known_horizon_prices_are_a_flagged_seasonal_forecast() -> None:
    known = {int(JUNE_20 + h * 3600 + k * 900): (DAY_PRICES[h], 3600) for h in range(24) for k in range(4)}
    history = {**seven_days(JUNE_20, DAY_PRICES), **known}
    series = price_outlook(known, history, JUNE_20, JUNE_20 + 2 * 86400, "awattar_at")
    assert len(series) == 48
    assert series.is_forecast == (False,) * 24 + (True,) * 24
    assert series.known_until_ts == JUNE_20 + 86400
    forecast = [v * 1000 for v in series.values[24:]]
    # Daily shape kept: the evening peak hour of the history is the forecast's peak hour.
    assert forecast.index(max(forecast)) == DAY_PRICES.index(max(DAY_PRICES))
    p10, p90 = series.quantiles["p10"][24:], series.quantiles["p90"][24:]
    assert all(lo <= v / 1000 <= hi for lo, v, hi in zip(p10, forecast, p90))
    assert any(hi > lo for lo, hi in zip(p10, p90))
    assert series.quantiles["p10"][:24] == series.values[:24]  # known prices have no spread


def test_seasonal_forecast_keeps_the_evening_peak_at_local_time_across_the_autumn_change() -> None:
    shape = [50.0] * 24
    shape[18] = 300.0  # 18:00 local peak
    day0 = local_ts(2024, 10, 28)  # first full CET day; the history includes CEST days
    series = price_outlook({}, seven_days(day0, shape), day0, local_midnight_ts(day0, days=1), "bundled")
    peak = series.values.index(max(series.values))
    assert datetime.fromtimestamp(series.start_ts + peak * 3600, MARKET_TZ).hour == 18


def test_consumer_price_adds_surcharges_grid_fee_and_vat() -> None:
    # 0.100 market + 3 % + 1.5 ct + 8 ct grid fee, 20 % VAT
    assert consumer_price_eur_per_kwh(0.100, 3, 0.015, 0.08, 20) == pytest.approx((0.1 + 0.003 + 0.095) * 1.2)
    # A negative market price stays a discount, but the supplier's 3 % is still charged on its size.
    assert consumer_price_eur_per_kwh(-0.050, 3, 0.015, 0.08, 20) == pytest.approx((-0.05 + 0.0015 + 0.095) * 1.2)
    assert consumer_price_eur_per_kwh(0.1, 0, 0, 0, 0) == 0.1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-500, 4000, allow_nan=False), min_size=4, max_size=96))
def test_resampling_quarter_hours_to_hours_and_back_keeps_hourly_means(values: list[float]) -> None:
    n = len(values) // 4 * 4
    quarter = Series(JUNE_20, 900, values[:n], "eur_per_kwh", "t", "market", (False,) * n)
    hourly = quarter.resample(3600)
    assert len(hourly) == n // 4
    for i, v in enumerate(hourly.values):
        assert v == pytest.approx(sum(values[4 * i: 4 * i + 4]) / 4)
    back = hourly.resample(900)
    assert len(back) == n and back.resample(3600).values == pytest.approx(hourly.values)


def test_cache_prefers_quarter_hours_over_an_hourly_price_for_the_same_time() -> None:
    cache = PriceCache(None)
    hour = int(JUNE_20)
    cache.merge([PriceInterval(hour + 900 * k, hour + 900 * (k + 1), 10.0 * k) for k in range(4)]
                + [PriceInterval(hour, hour + 3600, 99.0)])
    assert [cache.slots[hour + 900 * k][0] for k in range(4)] == [0.0, 10.0, 20.0, 30.0]
    assert cache.covered_until(hour) == hour + 3600

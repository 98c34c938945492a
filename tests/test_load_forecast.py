"""Load forecast from the EMS's own history: the candidate chosen by recent error in the worker process,
the fallback ladder, the calendar, daylight-saving days and gaps."""
from __future__ import annotations

import math
import random
from datetime import datetime
from typing import Any

import pytest

from ems.forecast.load import (LoadHistory, fit_load, forecast_load, history_from_rows, seasonal_persistence,
                               standard_profile_kw)
from ems.forecast.load_models import CANDIDATES, austrian_holidays, day_type
from ems.forecast.series import MARKET_TZ, from_wall_clock_grid, local_midnight_ts, to_wall_clock_grid
from ems.forecast.worker import WorkerError, run_worker
from support import local_ts

STEP = 900


def pattern_kw(ts: float) -> float:
    """A household-like pattern in local time: night base, 07:00 and 19:00 peaks, a weekend midday bump."""
    local = datetime.fromtimestamp(ts, MARKET_TZ)
    h = local.hour + local.minute / 60
    kw = 0.3 + 0.6 * math.exp(-((h - 7.25) ** 2) / 0.5) + 1.0 * math.exp(-((h - 19) ** 2) / 3)
    if local.weekday() >= 5 and 11 <= h < 14:
        kw += 1.2
    return kw


def rows(start_ts: float, end_ts: float, noise: float = 0.0, seed: int = 7, drop: float = 0.0,
         fn: Any = pattern_kw) -> list[dict[str, Any]]:
    """History rows as the recorder stores them (W), one per 15 minutes, optionally noisy and with gaps."""
    rnd = random.Random(seed)
    out = []
    t = start_ts
    while t < end_ts:
        if rnd.random() >= drop:
            kw = max(0.0, fn(t + STEP / 2) * (1 + noise * rnd.gauss(0, 1)))
            out.append({"ts": t, "load_power_w": kw * 1000})
        t += STEP
    return out


def fit(request: dict[str, Any]) -> dict[str, Any]:
    return run_worker(request, timeout_s=60)


SATURDAY = local_ts(2024, 6, 22)  # the forecast starts on a Saturday at 00:00 local


@pytest.fixture(scope="module")
def four_weeks_noisy() -> tuple[LoadHistory, list[dict[str, Any]]]:
    history_rows = rows(SATURDAY - 28 * 86400, SATURDAY + 2 * 86400, noise=0.25)
    past = [r for r in history_rows if r["ts"] < SATURDAY]
    future = [r for r in history_rows if r["ts"] >= SATURDAY]
    return history_from_rows(past, SATURDAY), future


@pytest.fixture(scope="module")
def hw_forecast(four_weeks_noisy: tuple[LoadHistory, list[dict[str, Any]]]) -> Any:
    history, _ = four_weeks_noisy
    return forecast_load(history, SATURDAY, 2 * 96, fit)


def mae(a: list[float], b: list[float]) -> float:
    return sum(abs(x - y) for x, y in zip(a, b)) / len(a)


MODELS = (*CANDIDATES, "combined")


def test_the_chosen_model_beats_seasonal_naive_on_a_noisy_daily_and_weekly_pattern(four_weeks_noisy: Any,
                                                                                    hw_forecast: Any) -> None:
    history, future = four_weeks_noisy
    series, error = hw_forecast
    assert error is None and series.model in MODELS and series.source == "history"
    actual = [r["load_power_w"] / 1000 for r in future]
    weekly_naive = list(history.values_kw[-7 * 96:][:2 * 96])   # same time last week
    daily_naive = seasonal_persistence(history.values_kw, 2 * 96)  # yesterday repeated
    assert mae(list(series.values), actual) <= mae(weekly_naive, actual)
    assert mae(list(series.values), actual) < mae(daily_naive, actual)


def test_the_weekend_midday_bump_is_forecast_for_saturday(hw_forecast: Any) -> None:
    series, _ = hw_forecast
    by_hour: dict[int, list[float]] = {}
    for ts, v in zip(series.timestamps(), series.values):
        by_hour.setdefault(datetime.fromtimestamp(ts, MARKET_TZ).hour, []).append(v)
    saturday_midday = sum(series.values[11 * 4:14 * 4]) / 12
    saturday_morning = sum(series.values[9 * 4:10 * 4]) / 4
    assert saturday_midday > saturday_morning + 0.6  # the 1.2 kW bump, seen through noise


def test_quantiles_bracket_the_forecast_and_are_not_degenerate(hw_forecast: Any) -> None:
    series, _ = hw_forecast
    p10, p90 = series.quantiles["p10"], series.quantiles["p90"]
    assert all(lo <= v <= hi for lo, v, hi in zip(p10, series.values, p90))
    assert sum(hi - lo for lo, hi in zip(p10, p90)) / len(p10) > 0.05
    assert min(p10) >= 0.0


def test_short_history_walks_down_the_model_ladder_without_a_fit() -> None:
    calls: list[dict[str, Any]] = []

    def recording_fit(request: dict[str, Any]) -> dict[str, Any]:
        calls.append(request)
        return fit(request)

    start = local_ts(2024, 6, 20)
    none, _ = forecast_load(history_from_rows([], start), start, 96, recording_fit)
    assert none.model == "standard_profile" and calls == []
    day_and_half = history_from_rows(rows(start - 36 * 3600, start), start)
    persisted, _ = forecast_load(day_and_half, start, 96, recording_fit)
    assert persisted.model == "seasonal_persistence" and calls == []
    assert persisted.values == pytest.approx([pattern_kw(t + STEP / 2) for t in persisted.timestamps()], rel=1e-6)
    five_days = history_from_rows(rows(start - 5 * 86400, start, noise=0.1), start)
    daily, error = forecast_load(five_days, start, 96, recording_fit)
    assert error is None and daily.model in MODELS and len(calls) == 1
    assert "profile" in calls[0]  # a young site is offered the standard profile as a candidate


def test_standard_profile_scales_with_the_configured_annual_energy() -> None:
    start = local_ts(2024, 1, 10)
    small = standard_profile_kw(start, 96, "household", 2000)
    large = standard_profile_kw(start, 96, "household", 8000)
    assert large == pytest.approx([4 * v for v in small])
    assert 2000 / 8760 * 0.5 < sum(small) / 96 < 2000 / 8760 * 2


def test_a_failed_fit_falls_back_to_persistence_and_reports_why() -> None:
    start = local_ts(2024, 6, 20)
    history = history_from_rows(rows(start - 20 * 86400, start, noise=0.1), start)
    series, error = forecast_load(history, start, 96, lambda req: run_worker(req, timeout_s=0.01))
    assert series.model == "seasonal_persistence"
    assert error is not None and "timed out" in error
    with pytest.raises(WorkerError, match="unknown request kind"):
        run_worker({"kind": "nonsense"}, timeout_s=30)


def test_morning_peak_stays_at_local_time_after_the_autumn_clock_change() -> None:
    start = local_ts(2024, 10, 29)  # history spans the 25-hour day of 27 October
    history = history_from_rows(rows(start - 6 * 86400, start, noise=0.02), start)
    series, error = forecast_load(history, start, 96, fit)
    assert error is None and series.model in MODELS
    peak = max(range(40), key=lambda i: series.values[i])  # the morning (before 10:00)
    local = datetime.fromtimestamp(series.start_ts + peak * STEP, MARKET_TZ)
    assert (local.hour, local.minute) in ((7, 0), (7, 15))


def test_gappy_history_is_filled_but_mostly_missing_history_is_not_trusted() -> None:
    start = local_ts(2024, 6, 20)
    gappy = history_from_rows(rows(start - 20 * 86400, start, drop=0.2, seed=3), start)
    assert 14 < gappy.usable_days < 17
    mostly_gaps = history_from_rows(rows(start - 20 * 86400, start, drop=0.7, seed=3), start)
    assert mostly_gaps.usable_days == 0.0
    series, _ = forecast_load(mostly_gaps, start, 96, None)
    assert series.model == "standard_profile"


@pytest.mark.parametrize("day", [(2024, 3, 31), (2024, 10, 27)])
def test_wall_clock_grid_round_trips_daylight_saving_days(day: tuple[int, int, int]) -> None:
    start = local_ts(*day)
    n = int((local_midnight_ts(start, days=1) - start) // STEP)  # 92 or 100 quarter-hours
    values = [float(i) for i in range(n)]
    wall_start, wall = to_wall_clock_grid(start, STEP, values)
    assert len(wall) == 96  # every local day has 96 wall-clock slots
    back = from_wall_clock_grid(wall_start, STEP, wall, start, n)
    if n == 100:  # the repeated hour reads the averaged slot twice; all other slots are exact
        assert sum(1 for a, b in zip(back, values) if a != b) == 8
    else:
        assert back == values


def test_a_load_that_repeats_every_week_is_forecast_exactly_and_never_worse_than_naive() -> None:
    start = local_ts(2024, 6, 20)
    history = history_from_rows(rows(start - 28 * 86400, start), start)
    answer = fit_load({"values": list(history.values_kw), "horizon": 96, "wall_start": history.wall_start})
    naive = min(answer["scores"][k] for k in ("naive_day", "naive_week"))
    assert answer["mae_kw"] <= naive < 0.2
    assert answer["mae_kw"] == pytest.approx(0.0, abs=1e-9)
    future = [pattern_kw(start + i * STEP + STEP / 2) for i in range(96)]
    assert answer["point"] == pytest.approx(future, abs=1e-6)


def test_the_calendar_knows_austrian_holidays_and_day_types() -> None:
    from datetime import date
    holidays = austrian_holidays(2024)
    assert {date(2024, 4, 1), date(2024, 5, 9), date(2024, 5, 20), date(2024, 5, 30), date(2024, 12, 26)} <= holidays
    assert len(holidays) == 13
    assert [day_type(date(2024, 6, d)) for d in (21, 22, 23)] == [0, 1, 2]  # Friday, Saturday, Sunday
    assert day_type(date(2024, 5, 30)) == 2  # Corpus Christi, a Thursday, lives like a Sunday


def test_holt_winters_can_be_asked_for_as_one_more_scored_candidate() -> None:
    start = local_ts(2024, 6, 20)
    history = history_from_rows(rows(start - 8 * 86400, start, noise=0.2), start)  # 4 origins to score on
    answer = run_worker({"kind": "load", "values": list(history.values_kw), "horizon": 96,
                         "wall_start": history.wall_start, "holt_winters": True}, timeout_s=240)
    assert "holt_winters" in answer["scores"] and len(answer["point"]) == 96


def test_a_forecast_issued_inside_the_repeated_autumn_hour_covers_every_interval() -> None:
    second_pass = local_ts(2024, 10, 27) + 3 * 3600 + 900  # 02:15 CET, the second 02:15 of the day
    assert datetime.fromtimestamp(second_pass, MARKET_TZ).utcoffset().total_seconds() == 3600
    history = history_from_rows(rows(second_pass - 10 * 86400, second_pass, noise=0.05), second_pass)
    series, error = forecast_load(history, second_pass, 96, fit)
    assert error is None and len(series.values) == 96
    assert all(v == v and v >= 0 for v in series.values)  # no NaN: the plan would stop there

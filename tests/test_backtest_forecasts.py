"""The backtest with forecasts: the EMS's own forecasters (the runtime's code, fitted in a child process)
and seasonal naive see only the data before each planning run, and the report shows what they cost."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import date

import numpy as np
import pytest

from ems.backtest import BacktestData, RecedingHorizon, Site, load_backtest_data, run_backtest
from ems.backtest.forecasters import ForecastSite, NaiveForecaster, OwnForecaster, history_rows
from ems.backtest.report import format_table, render_html
from ems.forecast.worker import ServingWorker
from ems.resources import data_file

PRICES = "AT_dayahead_2023_2024.csv"
NOISY = "household_crest_2024_4000kWh_15min.csv"
PV = "pv_per_kwp_2023_2024_hourly.csv"


@pytest.fixture(scope="module")
def five_weeks() -> BacktestData:
    return load_backtest_data(data_file(PRICES), data_file(NOISY), data_file(PV), pv_kwp=8.0,
                              from_day=date(2024, 5, 1), to_day=date(2024, 6, 4))


@pytest.fixture(scope="module")
def worker():
    """One serving child for the module: pvlib and pandas are imported once."""
    with ServingWorker() as child:
        yield child


@pytest.fixture(scope="module")
def own(worker: ServingWorker):
    # A fit at every call: nothing cached between the calls a test compares.
    yield OwnForecaster(ForecastSite(), worker=worker, refit_every_h=0.0)


def changed_from(data: BacktestData, first: int, factor: float = 3.0) -> BacktestData:
    """The same data with every load and PV value from step `first` on changed."""
    load, pv = data.load_kw.copy(), data.pv_kw.copy()
    load[first:] = load[first:] * factor + 0.5
    pv[first:] = pv[first:] * factor + 0.5
    return replace(data, load_kw=load, pv_kw=pv)


ISSUES = [(4, 13), (20, 0), (31, 17)]  # (day, hour) after the start: a young site, a middle one, a month of history


@pytest.mark.parametrize("name", ["own", "naive"])
def test_no_forecaster_sees_the_step_at_its_issue_time_or_later(five_weeks: BacktestData, own: OwnForecaster,
                                                                name: str) -> None:
    forecaster = own if name == "own" else NaiveForecaster()
    data = five_weeks
    for day, hour in ISSUES:
        first = (day * 24 + hour) * 3600 // data.step_s
        issue = data.start_ts + first * data.step_s
        # Longer than a day, as the plans after the 13:00 prices are: a target a whole day after the
        # issue time must not read the value at the issue time (yesterday's PV, the first week's load).
        n = 2 * 96 + 8
        prices = data.market_price_eur_per_kwh[first:first + n]

        # The replay hands over the history before `first`; handed everything, a forecaster must still
        # use nothing from its issue time on.
        base = forecaster.forecast(data, issue, issue, data.step_s, n, prices)
        # One step at the issue time and everything after it changed:
        moved = forecaster.forecast(changed_from(data, first), issue, issue, data.step_s, n, prices)
        assert np.array_equal(base.load_kw, moved.load_kw) and np.array_equal(base.pv_kw, moved.pv_kw)
        # …while the step just before the issue time is seen: the test would catch a one-step shift.
        before = forecaster.forecast(changed_from(data, first - 1, factor=5.0), issue, issue, data.step_s, n, prices)
        assert not np.array_equal(base.load_kw, before.load_kw) or not np.array_equal(base.pv_kw, before.pv_kw)


def test_the_history_handed_to_the_runtime_code_ends_before_the_issue_time(five_weeks: BacktestData) -> None:
    issue = five_weeks.start_ts + 10 * 86400 + 900 * 7
    rows = history_rows(five_weeks, issue)
    assert rows and max(r["ts"] for r in rows) == issue - 900
    hourly = replace(five_weeks, step_s=3600, load_kw=five_weeks.load_kw[::4], pv_kw=five_weeks.pv_kw[::4],
                     market_price_eur_per_kwh=five_weeks.market_price_eur_per_kwh[::4])
    spread = history_rows(hourly, issue)
    assert max(r["ts"] for r in spread) < issue and len({r["ts"] for r in spread}) == len(spread)


def test_the_replay_hands_each_plan_only_the_past() -> None:
    seen: list[tuple[float, float]] = []

    class Spy:
        def forecast(self, history, issue_ts, start_ts, step_s, n, known):
            seen.append((history.end_ts, issue_ts))
            return NaiveForecaster().forecast(history, issue_ts, start_ts, step_s, n, known)

    data = load_backtest_data(data_file(PRICES), data_file(NOISY), data_file(PV), pv_kwp=8.0,
                              from_day=date(2024, 5, 1), to_day=date(2024, 5, 4))
    run_backtest(data, Site(), RecedingHorizon(), forecasters={"ems_naive": Spy()}, perfect=False, optimum=False)
    assert seen and all(end <= issue for end, issue in seen)


def test_own_and_naive_forecasts_are_replayed_beside_perfect_ones_and_reported(five_weeks: BacktestData,
                                                                               worker: ServingWorker) -> None:
    two_weeks = five_weeks.slice(0, 14 * 96)
    own = OwnForecaster(ForecastSite(), worker=worker)  # refits every 6 h, as the runtime
    result = run_backtest(two_weeks, Site(), RecedingHorizon(),
                          forecasters={"ems_forecast": own, "ems_naive": NaiveForecaster()})
    assert own.refits < result.runs["ems_forecast"].plans  # plans between refits read the last fit
    assert {"ems", "ems_forecast", "ems_naive", "optimum"} <= set(result.runs)
    pct = {n: result.total(n).pct_of_optimum for n in ("ems", "ems_forecast", "ems_naive")}
    assert all(p is not None for p in pct.values())
    assert pct["ems"] >= pct["ems_forecast"] - 1.0 and pct["ems"] >= pct["ems_naive"] - 1.0
    assert pct["ems_forecast"] > 50.0
    own_errors, naive_errors = result.forecasts["ems_forecast"][-1], result.forecasts["ems_naive"][-1]
    assert own_errors.load_mae_kw is not None and naive_errors.load_mae_kw is not None
    assert own_errors.load_mae_kw < naive_errors.load_mae_kw  # the noisy household: medians beat last week
    models = result.runs["ems_forecast"].forecast_errors.models
    assert models.get("load:standard_profile", 0) > 0  # a new site starts from the standard profile
    assert any(k.startswith("load:") and k not in ("load:standard_profile", "load:seasonal_persistence")
               for k in models)
    table = format_table(result)
    assert "EMS, own forecasts" in table and "EMS, seasonal-naive forecasts" in table
    assert "Forecast error" in table and "load MAE" in table
    page = render_html(result)
    assert "EMS, own forecasts" in page and "Forecast error per month" in page


def test_cli_forecasts_option_runs_only_the_asked_rows(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ems.backtest.cli", "--forecasts", "naive", "--from", "2024-05-01",
                           "--to", "2024-05-03", "--no-optimum", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "EMS, seasonal-naive forecasts" in proc.stdout
    assert "EMS, perfect forecasts" not in proc.stdout and "EMS, own forecasts" not in proc.stdout
    assert (tmp_path / "report.html").exists()
    bad = subprocess.run([sys.executable, "-m", "ems.backtest.cli", "--forecasts", "psychic"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "psychic" in bad.stderr

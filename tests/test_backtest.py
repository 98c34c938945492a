"""The backtest: reading real-format CSVs, replaying controllers, the money, the report and the CLI.

Small constructed data only (a day or a few, sometimes a month); the real year runs in bench/bench_backtest.py.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ems.backtest import (BacktestData, BacktestDataError, Forecast, RecedingHorizon, Site, Tariff,
                          load_backtest_data, run_backtest, run_greedy, run_no_battery, run_perfect_foresight,
                          run_receding_horizon)
from ems.backtest.cli import add_parser
from ems.backtest.replay import known_until_ts, summarise
from ems.backtest.report import format_table, render_html, write_report
from ems.config.schema import BessConfig, GridConnectionConfig
from ems.localtime import site_zone

TOL = 1e-6
ROUND_TRIP_BATTERY = BessConfig(capacity_kwh=10.0, max_charge_power_kw=5.0, max_discharge_power_kw=5.0,
                                charge_efficiency=0.9, discharge_efficiency=0.9, min_soc_pct=0.0, max_soc_pct=100.0,
                                degradation_cost_eur_per_kwh=0.0)
PLAIN_TARIFF = Tariff(surcharge_eur_per_kwh=0.0, vat_pct=0.0)  # import and export at the market price
PLAIN_SITE = Site(bess=ROUND_TRIP_BATTERY, tariff=PLAIN_TARIFF)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=site_zone())


def write_csv(path: Path, column: str, start: datetime, step_s: int, values: Sequence[float]) -> Path:
    """A file in the bundled format: ISO-8601 with the local UTC offset of each instant."""
    t0 = start.timestamp()
    rows = [f"timestamp,{column}"]
    for k, v in enumerate(values):
        stamp = datetime.fromtimestamp(t0 + k * step_s, site_zone()).isoformat()
        rows.append(f"{stamp},{v}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def make_data(start: datetime, step_s: int, price_eur_per_kwh, load_kw, pv_kw) -> BacktestData:
    n = max(len(np.atleast_1d(v)) for v in (price_eur_per_kwh, load_kw, pv_kw))

    def per_step(v):
        arr = np.atleast_1d(np.asarray(v, dtype=float))
        return np.full(n, float(arr[0])) if len(arr) == 1 else arr
    return BacktestData(start.timestamp(), step_s, per_step(price_eur_per_kwh), per_step(load_kw), per_step(pv_kw),
                        {"prices": "test", "load": "test", "pv": "test"})


def check_physics(data: BacktestData, site: Site, flows) -> None:
    """What every controller's realised flows must obey, within 1e-6."""
    b, dt = site.bess, data.step_s / 3600.0
    c, d, s = flows.charge_kw, flows.discharge_kw, flows.soc_kwh
    balance = flows.import_kw - flows.export_kw - (data.load_kw - data.pv_kw + flows.curtail_kw + c - d)
    assert np.max(np.abs(balance)) < TOL
    previous = np.concatenate(([site.start_energy_kwh], s[:-1]))
    assert np.max(np.abs(s - previous - b.charge_efficiency * c * dt + d * dt / b.discharge_efficiency)) < TOL
    cap, e0 = b.capacity_kwh, site.start_energy_kwh  # a battery starting outside its window only returns to it
    assert np.all(s >= min(cap * b.min_soc_pct / 100, e0) - TOL) and np.all(s <= max(cap * b.max_soc_pct / 100, e0) + TOL)
    assert np.all(c <= b.max_charge_power_kw + TOL) and np.all(d <= b.max_discharge_power_kw + TOL)
    assert not np.any((c > TOL) & (d > TOL)), "charges and discharges in the same step"
    assert not np.any((flows.import_kw > TOL) & (flows.export_kw > TOL))
    assert np.all(flows.curtail_kw <= data.pv_kw + TOL) and np.all(flows.curtail_kw >= -TOL)
    assert np.all(flows.import_kw <= site.grid.max_power_kw + TOL)


# -- hand-checkable days --------------------------------------------------------------------------

@pytest.mark.parametrize("step_s", [3600, 900])
def test_two_price_day_buys_cheap_and_sells_dear_exactly_what_efficiency_allows(step_s):
    hourly = [0.0] * 12 + [0.30] * 12  # €/kWh; the battery is empty at the start, nothing to cover
    data = make_data(local(2024, 6, 3), 3600, hourly, 0.0, 0.0)
    if step_s != 3600:  # hourly prices on a quarter-hour plan
        data = make_data(local(2024, 6, 3), step_s, np.repeat(hourly, 3600 // step_s), 0.0, 0.0)
    result = run_backtest(data, PLAIN_SITE)
    for name in ("ems", "optimum"):
        total = result.total(name)
        # fill 10 kWh (10 / 0.9 from the grid, free), sell 10 × 0.9 kWh at 30 ct
        assert total.import_kwh == pytest.approx(10 / 0.9, abs=TOL)
        assert total.export_kwh == pytest.approx(9.0, abs=TOL)
        assert total.savings_eur == pytest.approx(9.0 * 0.30, abs=TOL)
        assert total.cycles == pytest.approx(0.9, abs=TOL)
    charge_hours = np.flatnonzero(result.runs["ems"].flows.charge_kw > TOL) * step_s / 3600
    assert charge_hours.max() < 12, "charges only in the cheap half"
    assert result.total("greedy").savings_eur == pytest.approx(0.0, abs=TOL), "no PV: nothing for the stock inverter"
    assert result.total("ems").pct_of_optimum == pytest.approx(100.0, abs=1e-4)


def test_stock_inverter_stores_pv_surplus_and_covers_the_evening_load_but_never_uses_the_grid():
    pv = [0.0] * 10 + [3.0] * 4 + [0.0] * 10  # 2 kW surplus over a 1 kW load for 4 h → 8 kWh
    data = make_data(local(2024, 6, 3), 3600, 0.20, 1.0, pv)
    run = run_greedy(data, PLAIN_SITE)
    f = run.flows
    check_physics(data, PLAIN_SITE, f)
    surplus = np.maximum(data.pv_kw - data.load_kw, 0)
    deficit = np.maximum(data.load_kw - data.pv_kw, 0)
    assert np.all(f.charge_kw <= surplus + TOL), "charges from PV surplus only"
    assert np.all(f.discharge_kw <= deficit + TOL), "discharges only into the own load"
    assert np.sum(f.charge_kw) == pytest.approx(8.0)
    assert np.sum(f.discharge_kw) == pytest.approx(8.0 * 0.9 * 0.9), "all of it back to the evening load"
    assert np.all(f.export_kw < TOL), "the battery takes the whole surplus"
    assert np.sum(f.discharge_kw[:10]) == pytest.approx(0.0), "nothing before the sun"


def test_the_ems_uses_tomorrows_prices_published_at_13_and_the_day_at_a_time_planner_cannot():
    day1 = [0.10] * 24
    day2 = [0.40] * 6 + [0.10] * 18  # a dear morning, known from 13:00 the day before
    data = make_data(local(2024, 6, 3), 3600, day1 + day2, 0.0, 0.0)
    day_at_a_time = RecedingHorizon(horizon="calendar_day", replan_every_h=None)
    result = run_backtest(data, PLAIN_SITE, extra_policies={"day_at_a_time": day_at_a_time})
    expected = 9.0 * 0.40 - 10 / 0.9 * 0.10  # fill 10 kWh on day 1 at 10 ct, sell 9 kWh at 40 ct
    assert result.total("ems").savings_eur == pytest.approx(expected, abs=TOL)
    assert result.total("optimum").savings_eur == pytest.approx(expected, abs=TOL)
    assert result.total("day_at_a_time").savings_eur == pytest.approx(0.0, abs=TOL)
    charged_at = np.flatnonzero(result.runs["ems"].flows.charge_kw > TOL)
    assert charged_at.min() >= 13, "not before the prices are published"


def test_without_intraday_replans_the_ems_plans_at_the_start_and_whenever_prices_are_published():
    data = make_data(local(2024, 6, 3), 900, np.tile(np.r_[np.full(48, 0.1), np.full(48, 0.3)], 3), 0.5, 0.0)
    run = run_receding_horizon(data, PLAIN_SITE, RecedingHorizon(replan_every_h=None))
    assert run.plans == 4  # day 1 00:00, then 13:00 on each of the three days
    every_hour = run_receding_horizon(data, PLAIN_SITE, RecedingHorizon(replan_every_h=1.0))
    assert every_hour.plans == 72


def test_prices_known_at_13_reach_to_the_end_of_the_next_day_even_across_dst():
    policy = RecedingHorizon()
    assert known_until_ts(local(2024, 3, 30, 12, 45).timestamp(), policy) == local(2024, 3, 31).timestamp()
    assert known_until_ts(local(2024, 3, 30, 13, 0).timestamp(), policy) == local(2024, 4, 1).timestamp()
    assert local(2024, 4, 1).timestamp() - local(2024, 3, 31).timestamp() == 23 * 3600
    day = RecedingHorizon(horizon="calendar_day")
    assert known_until_ts(local(2024, 10, 27, 22).timestamp(), day) - local(2024, 10, 27).timestamp() == 25 * 3600


# -- properties -----------------------------------------------------------------------------------

prices_st = st.lists(st.floats(-0.3, 0.5), min_size=48, max_size=48)  # below −9 ct: money-pump binaries
power_st = st.lists(st.floats(0.0, 6.0), min_size=48, max_size=48)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prices=prices_st, load=power_st, pv=power_st, soc0=st.floats(10, 90), fee=st.floats(0, 0.2))
def test_random_days_obey_the_physics_and_nothing_beats_the_perfect_foresight_optimum(prices, load, pv, soc0, fee):
    # soc0 inside the SoC window: outside it the optimizer's own rules apply (below min it first
    # recovers from the grid; above max its plans may return up to the start SoC, which the BMS clamp
    # of the replay refuses once the battery has come down), so there is no common yardstick
    data = make_data(local(2024, 5, 6), 3600, prices, load, pv)
    site = Site(bess=replace(ROUND_TRIP_BATTERY, min_soc_pct=10.0, max_soc_pct=90.0, degradation_cost_eur_per_kwh=0.02),
                grid=GridConnectionConfig(max_power_kw=20.0, max_feedin_kw=4.0),
                tariff=Tariff(grid_fee_eur_per_kwh=fee), soc0_pct=soc0, final_energy_value_eur_per_kwh=0.1)
    result = run_backtest(data, site, extra_policies={"day_at_a_time": RecedingHorizon(horizon="calendar_day")})
    for name, run in result.runs.items():
        check_physics(data, site, run.flows)
        assert result.total(name).savings_eur <= result.total("optimum").savings_eur + 1e-6, name
    assert result.total("no_battery").savings_eur == 0.0


def test_the_optimum_over_more_than_a_month_chains_windows_within_cents_of_one_exact_lp():
    rng = np.random.default_rng(7)
    n = 33 * 96  # more than one solve may plan inside the appliance (MAX_STEPS)
    hours = np.arange(n) / 4 % 24
    data = make_data(local(2024, 7, 1), 900, 0.08 + 0.06 * np.sin(hours / 24 * 2 * np.pi) + rng.normal(0, 0.02, n),
                     0.3 + rng.random(n), np.maximum(0, 4 * np.sin((hours - 6) / 12 * np.pi)))
    site = Site(bess=ROUND_TRIP_BATTERY, tariff=Tariff())
    exact = run_perfect_foresight(data, site, exact=True)
    chained = run_perfect_foresight(data, site)
    assert chained.plans == 5 and exact.plans == 1  # weeks from days 0, 7, 14, 21; the last sees days 28–33
    ems = run_receding_horizon(data, site)
    for run in (exact, chained, ems):
        check_physics(data, site, run.flows)
    _, _, table = summarise(data, site, {"no_battery": run_no_battery(data, site), "exact": exact,
                                         "chained": chained, "ems": ems})
    cost = {name: rows[-1].cost_eur for name, rows in table.items()}
    assert cost["exact"] <= cost["chained"] + 1e-6 and cost["exact"] <= cost["ems"] + 1e-6
    assert cost["chained"] - cost["exact"] < 0.01, "a 3-day lookahead loses less than a cent"


# -- forecaster hook ------------------------------------------------------------------------------

class Oracle:
    """Knows the future (for the test only) and checks it is never handed any of it."""

    def __init__(self, truth: BacktestData, pv_factor: float = 1.0, bad_length: bool = False):
        self.truth, self.pv_factor, self.bad_length = truth, pv_factor, bad_length
        self.calls = 0

    def forecast(self, history, issue_ts, start_ts, step_s, n, known_market_price_eur_per_kwh):
        self.calls += 1
        assert history.end_ts <= issue_ts, "the history must end where the forecast starts"
        first = int(round((start_ts - self.truth.start_ts) / step_s))
        sl = slice(first, first + n - (1 if self.bad_length else 0))
        return Forecast(self.truth.load_kw[sl], self.pv_factor * self.truth.pv_kw[sl], known_market_price_eur_per_kwh)


def sunny_days() -> BacktestData:
    hours = np.arange(72) % 24
    pv = np.maximum(0, 5 * np.sin((hours - 6) / 12 * np.pi))
    prices = 0.10 + 0.10 * ((hours >= 17) & (hours < 21))
    return make_data(local(2024, 6, 3), 3600, prices, 0.8, pv)


def test_a_forecaster_that_is_always_right_gives_the_perfect_forecast_result():
    data = sunny_days()
    oracle = Oracle(data)
    result = run_backtest(data, Site(), forecaster=oracle)
    assert oracle.calls == result.runs["ems_forecast"].plans > 0
    assert result.total("ems_forecast").cost_eur == pytest.approx(result.total("ems").cost_eur, abs=TOL)


def test_a_wrong_forecast_is_lived_with_and_a_broken_forecaster_falls_back_without_crashing():
    data = sunny_days()
    site = Site()
    blind = run_receding_horizon(data, site, forecaster=Oracle(data, pv_factor=0.0))
    check_physics(data, site, blind.flows)
    perfect = run_receding_horizon(data, site)
    assert not np.allclose(blind.flows.soc_kwh, perfect.flows.soc_kwh), "plans on the forecast, not the truth"
    broken = run_receding_horizon(data, site, forecaster=Oracle(data, bad_length=True))
    assert broken.failed_plans == broken.plans > 0
    check_physics(data, site, broken.flows)
    assert "ems_forecast" not in run_backtest(data, site).runs, "no forecaster: no stand-in row"


# -- reading files --------------------------------------------------------------------------------

def three_files(tmp_path: Path, start=local(2024, 6, 3), days: int = 2, pv_column: str = "pv_kw"):
    prices = write_csv(tmp_path / "prices.csv", "price_eur_per_mwh", start, 3600, [100.0] * 12 * days + [300.0] * 12 * days)
    load = write_csv(tmp_path / "load.csv", "load_kw", start, 900, [0.5] * 96 * days)
    pv = write_csv(tmp_path / "pv.csv", pv_column, start, 3600, ([0.0] * 10 + [2.0] * 4 + [0.0] * 10) * days)
    return prices, load, pv


def test_files_are_resampled_to_the_plan_step_and_cut_to_their_common_range(tmp_path):
    prices, load, pv = three_files(tmp_path, days=3)
    write_csv(load, "load_w", local(2024, 6, 4), 900, [500.0, 700.0, 900.0, 1100.0] * 96)  # starts a day later
    data = load_backtest_data(prices, load, pv, step_s=900)
    assert data.start_ts == local(2024, 6, 4).timestamp() and data.n == 2 * 96
    assert data.market_price_eur_per_kwh[:4] == pytest.approx([0.1] * 4), "€/MWh → €/kWh, an hour into quarters"
    hourly = load_backtest_data(prices, load, pv, step_s=3600)
    assert hourly.load_kw[0] == pytest.approx(0.8), "W → kW, quarters averaged into the hour"
    assert np.sum(hourly.load_kw) == pytest.approx(np.sum(data.load_kw) / 4)
    one_day = load_backtest_data(prices, load, pv, step_s=900, from_day=date(2024, 6, 5), to_day=date(2024, 6, 5))
    assert one_day.n == 96 and one_day.start_ts == local(2024, 6, 5).timestamp()


def test_dst_days_have_23_and_25_hours_and_keep_their_energy(tmp_path):
    for day, hours in ((date(2024, 3, 31), 23), (date(2024, 10, 27), 25)):
        start = local(day.year, day.month, day.day)
        prices = write_csv(tmp_path / "p.csv", "price_eur_per_kwh", start, 3600, [0.1 + 0.01 * h for h in range(hours)])
        load = write_csv(tmp_path / "l.csv", "load_kw", start, 900, [1.0] * (4 * hours))
        pv = write_csv(tmp_path / "pv.csv", "pv_kw_per_kwp", start, 3600, [0.5] * hours)
        text = prices.read_text()
        assert "+01:00" in text and "+02:00" in text, "the file changes offset within the day"
        data = load_backtest_data(prices, load, pv, step_s=900, pv_kwp=4.0)
        assert data.n == 4 * hours
        assert np.sum(data.load_kw) / 4 == pytest.approx(hours)
        assert np.sum(data.pv_kw) / 4 == pytest.approx(2.0 * hours)
        assert data.market_price_eur_per_kwh[-1] == pytest.approx(0.1 + 0.01 * (hours - 1))
        run = run_receding_horizon(data, PLAIN_SITE, RecedingHorizon(horizon="calendar_day", replan_every_h=None))
        assert run.plans == 1, "one plan covers the whole local day"
        index, labels, _ = summarise(data, PLAIN_SITE, {"no_battery": run_no_battery(data, PLAIN_SITE)})
        assert labels == (f"{day.year}-{day.month:02d}",)


BAD_FILES = [
    ("load_kw\n2024-06-03T00:00:00+02:00,1\n", "header has 1 columns", 1, None),
    ("time,load_kw\n2024-06-03T00:00:00+02:00,1\n2024-06-03T00:15:00+02:00,1\n", "called 'timestamp'", 1, "time"),
    ("timestamp,load_mw\n", "not a load column", 1, "load_mw"),
    ("timestamp,load_kw\n2024-06-03T00:00:00+02:00,1\n2024-06-03T00:15:00+02:00,1\n2024-06-03T00:30:00+02:00,abc\n",
     "'abc' is not a number", 4, "load_kw"),
    ("timestamp,load_kw\n2024-06-03T00:00:00+02:00,1\n2024-06-03T00:15:00,1\n", "no UTC offset", 3, "timestamp"),
    ("timestamp,load_kw\n2024-06-03T00:00:00+02:00,1\n3 June,1\n", "not an ISO-8601", 3, "timestamp"),
    ("timestamp,load_kw\n2024-06-03T00:00:00+02:00,1\n2024-06-03T00:15:00+02:00,-2\n", "non-negative", 3, "load_kw"),
    ("timestamp,load_kw\n2024-06-03T00:00:00+02:00,1\n2024-06-03T00:15:00+02:00,nan\n", "finite", 3, "load_kw"),
    ("timestamp,load_kw\n2024-06-03T00:00:00+02:00,1\n2024-06-03T00:00:00+02:00,1\n", "repeats", 3, "timestamp"),
    ("timestamp,load_kw\n2024-06-03T00:00:00+02:00,1\n2024-06-03T00:15:00+02:00,1\n2024-06-03T00:30:00+02:00,1\n"
     "2024-06-03T01:00:00+02:00,1\n2024-06-03T01:15:00+02:00,1\n", "a gap", 5, "timestamp"),
    ("timestamp,load_kw\n2024-06-03T00:00:00+02:00,1,7\n", "3 fields", 2, None),
    ("", "is empty", 1, None),
]


@pytest.mark.parametrize("text,fragment,line,column", BAD_FILES)
def test_a_bad_file_is_an_error_naming_the_file_the_line_and_the_column(tmp_path, text, fragment, line, column):
    prices, _, pv = three_files(tmp_path)
    bad = tmp_path / "site-load.csv"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(BacktestDataError) as info:
        load_backtest_data(prices, bad, pv)
    err = info.value
    assert fragment in str(err)
    assert err.file == str(bad) and err.line == line and err.column == column
    assert str(err).startswith(f"{bad}:{line}: ")


def test_per_kwp_pv_needs_the_plant_size_and_a_missing_file_is_named(tmp_path):
    prices, load, pv = three_files(tmp_path, pv_column="pv_kw_per_kwp")
    with pytest.raises(BacktestDataError, match="--pv-kwp"):
        load_backtest_data(prices, load, pv)
    assert load_backtest_data(prices, load, pv, pv_kwp=3.0).pv_kw.max() == pytest.approx(6.0)
    with pytest.raises(BacktestDataError, match="no such file") as info:
        load_backtest_data(tmp_path / "nope.csv", load, pv)
    assert info.value.file.endswith("nope.csv")


def test_files_without_a_common_day_say_what_each_covers(tmp_path):
    prices, load, pv = three_files(tmp_path)
    write_csv(load, "load_kw", local(2024, 7, 1), 900, [1.0] * 96)
    with pytest.raises(BacktestDataError, match="no common time range"):
        load_backtest_data(prices, load, pv)


# -- money ----------------------------------------------------------------------------------------

def test_consumer_price_is_the_price_forecasts_formula_and_feed_in_can_be_fixed():
    from ems.forecast.prices import consumer_price_eur_per_kwh

    tariff = Tariff(surcharge_eur_per_kwh=0.015, surcharge_pct=3.0, grid_fee_eur_per_kwh=0.11, vat_pct=20.0)
    market = np.array([-0.2, 0.0, 0.08, 0.5])
    expected = [consumer_price_eur_per_kwh(m, 3.0, 0.015, 0.11, 20.0) for m in market]
    assert tariff.import_price_eur_per_kwh(market) == pytest.approx(expected)
    assert tariff.export_price_eur_per_kwh(market) == pytest.approx(market)
    assert replace(tariff, feed_in_tariff_eur_per_kwh=0.07).export_price_eur_per_kwh(market) == pytest.approx([0.07] * 4)


def test_month_figures_add_up_to_the_total_and_energy_left_at_the_end_is_credited():
    hours = np.arange(24 * 4) % 24
    data = make_data(local(2024, 5, 30), 3600, 0.1 + 0.2 * (hours >= 18), 0.5,
                     np.maximum(0, 4 * np.sin((hours - 6) / 12 * np.pi)))
    site = Site(final_energy_value_eur_per_kwh=0.0)
    result = run_backtest(data, site)
    assert result.labels == ("2024-05", "2024-06")
    for name in result.runs:
        months, total = result.figures[name][:-1], result.figures[name][-1]
        assert sum(m.cost_eur for m in months) == pytest.approx(total.cost_eur)
        assert sum(m.savings_eur for m in months) == pytest.approx(total.savings_eur)
    valued = run_backtest(data, replace(site, final_energy_value_eur_per_kwh=0.3))
    greedy_end_kwh = valued.runs["greedy"].flows.soc_kwh[-1] - site.start_energy_kwh
    assert valued.total("greedy").cost_eur == pytest.approx(result.total("greedy").cost_eur - 0.3 * greedy_end_kwh)
    assert valued.total("optimum").savings_eur >= result.total("optimum").savings_eur - TOL


# -- report and CLI -------------------------------------------------------------------------------

def test_the_html_report_is_self_contained_and_shows_the_three_figures_and_the_totals(tmp_path):
    result = run_backtest(sunny_days(), Site())
    path = write_report(result, tmp_path / "out")
    page = path.read_text(encoding="utf-8")
    for fig in ("fig-monthly-savings", "fig-sample-week", "fig-soc-histogram"):
        assert f'<svg id="{fig}"' in page
    assert "<script" not in page and "src=" not in page and "href=" not in page and "@import" not in page
    assert f"{result.total('ems').savings_eur:.2f}" in page
    assert page.count("<rect") >= len(result.runs) - 1, "bars are drawn"
    table = format_table(result)
    for name in ("No battery", "Stock inverter", "EMS, perfect forecasts", "Perfect-foresight optimum"):
        assert name in table and name in page
    assert render_html(result).startswith("<!DOCTYPE html>")


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = f"import sys; from ems.backtest.cli import main; sys.exit(main({args!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_cli_runs_on_small_files_prints_the_table_and_writes_the_report(tmp_path):
    prices, load, pv = three_files(tmp_path, pv_column="pv_kw_per_kwp")
    proc = run_cli(["--prices", str(prices), "--load", str(load), "--pv", str(pv), "--pv-kwp", "2",
                    "--capacity-kwh", "5", "--power-kw", "2.5", "--efficiency", "95", "--out", str(tmp_path / "r"),
                    "--day-at-a-time"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "EMS, perfect forecasts" in proc.stdout and "EMS, one day at a time" in proc.stdout
    assert "Battery: 5 kWh, 2.5 kW charge" in proc.stdout
    assert (tmp_path / "r" / "report.html").is_file()


def test_cli_with_a_bad_file_exits_2_naming_file_and_line_without_a_traceback(tmp_path):
    prices, load, pv = three_files(tmp_path)
    load.write_text(load.read_text().replace(",0.5\n", ",half\n", 1), encoding="utf-8")
    proc = run_cli(["--prices", str(prices), "--load", str(load), "--pv", str(pv)], tmp_path)
    assert proc.returncode == 2
    assert f"{load}:2: column 'load_kw': 'half' is not a number" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli(["--prices", str(prices), "--load", str(load), "--pv", str(pv), "--min-soc", "90",
                    "--max-soc", "80"], tmp_path)
    assert proc.returncode == 2 and "--min-soc" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli(["--prices", str(prices), "--load", str(load), "--pv", str(pv), "--strategy", "sideways"], tmp_path)
    assert proc.returncode == 2 and "strategy: 'sideways' is not allowed (allowed: auto, arbitrage" in proc.stderr


def test_add_parser_registers_backtest_on_the_ems_command():
    parser = argparse.ArgumentParser(prog="ems")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["backtest", "--capacity-kwh", "12", "--strategy", "auto", "--step-min", "60"])
    assert args.capacity_kwh == 12.0 and args.strategy == "auto" and args.step_min == 60 and callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["backtest", "--capacity-kwh", "-1"])


def test_registering_the_command_does_not_load_numpy_or_highs_into_every_ems_call():
    code = ("import sys, argparse; from ems.backtest.cli import add_parser; "
            "add_parser(argparse.ArgumentParser().add_subparsers()); "
            "print(sorted(m for m in ('numpy', 'highspy', 'ems.optimizer') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"

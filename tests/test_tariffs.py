"""Grid fees and feed-in limits per step, in local (Europe/Vienna) time, and their effect on a plan."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from ems.config.schema import (BessConfig, EmsConfig, FeedinLimitationConfig, FeedinRule, ForecastConfig,
                               GridTariffsConfig, HighLoadWindow, SiteConfig)
from ems.optimizer import optimize, plan_inputs_from_config
from ems.localtime import in_daily_window
from ems.optimizer.tariffs import demand_charge_eur_per_kw, feedin_limit_kw, grid_fee_eur_per_kwh, step_starts_s

VIENNA = ZoneInfo("Europe/Vienna")


def local_day(year: int, month: int, day: int, step_s: int = 900) -> np.ndarray:
    """Step starts covering one local calendar day (23 or 25 h on DST days)."""
    start = datetime(year, month, day, tzinfo=VIENNA).timestamp()
    end = datetime.fromordinal(datetime(year, month, day).toordinal() + 1).replace(tzinfo=VIENNA).timestamp()
    return step_starts_s(start, step_s, int((end - start) // step_s))


def local_hhmm(ts: float) -> str:
    return datetime.fromtimestamp(ts, VIENNA).strftime("%H:%M")


EVENING = HighLoadWindow(start="17:00", end="19:00", multiplier=2.0)


def tariffs(*windows: HighLoadWindow, **kw) -> GridTariffsConfig:
    return GridTariffsConfig(enabled=True, base_tariff_eur_per_kwh=0.10, high_load_windows=tuple(windows), **kw)


@pytest.mark.parametrize("day", [(2024, 3, 30), (2024, 3, 31), (2024, 10, 27), (2024, 6, 1)])
def test_high_load_window_follows_local_wall_clock_across_dst_changes(day):
    starts = local_day(*day)
    fee = grid_fee_eur_per_kwh(tariffs(EVENING), starts)
    high = [local_hhmm(t) for t, f in zip(starts, fee) if f > 0.1 + 1e-12]
    assert high == [f"{h}:{m:02d}" for h in (17, 18) for m in (0, 15, 30, 45)]
    assert np.allclose(fee[fee > 0.1 + 1e-12], 0.20)
    assert np.allclose(fee[fee <= 0.1 + 1e-12], 0.10)


def test_window_months_restrict_it_to_those_months():
    winter = HighLoadWindow(start="17:00", end="19:00", multiplier=1.5, months=(1, 2, 12))
    january = grid_fee_eur_per_kwh(tariffs(winter), local_day(2024, 1, 15))
    june = grid_fee_eur_per_kwh(tariffs(winter), local_day(2024, 6, 15))
    assert january.max() == pytest.approx(0.15) and june.max() == pytest.approx(0.10)


def test_window_past_midnight_and_until_24_00():
    night = HighLoadWindow(start="22:00", end="06:00", multiplier=0.5)
    starts = local_day(2024, 6, 1, step_s=3600)
    fee = grid_fee_eur_per_kwh(tariffs(night), starts)
    cheap_hours = [local_hhmm(t)[:2] for t, f in zip(starts, fee) if f < 0.1]
    assert cheap_hours == ["00", "01", "02", "03", "04", "05", "22", "23"]
    assert in_daily_window(23 * 60 + 59, "20:00", "24:00") and not in_daily_window(0, "20:00", "24:00")
    assert not in_daily_window(600, "10:00", "10:00"), "start == end is an empty window"


def test_overlapping_windows_bill_the_highest_multiplier_and_disabled_tariffs_cost_nothing():
    starts = local_day(2024, 6, 1, step_s=3600)
    both = grid_fee_eur_per_kwh(tariffs(EVENING, HighLoadWindow(start="18:00", end="20:00", multiplier=3.0)), starts)
    by_hour = dict(zip((local_hhmm(t) for t in starts), both))
    assert by_hour["17:00"] == pytest.approx(0.20) and by_hour["18:00"] == pytest.approx(0.30)
    assert by_hour["19:00"] == pytest.approx(0.30) and by_hour["20:00"] == pytest.approx(0.10)
    off = GridTariffsConfig(enabled=False, base_tariff_eur_per_kwh=0.10, high_load_windows=(EVENING,))
    assert np.all(grid_fee_eur_per_kwh(off, starts) == 0.0)


@pytest.mark.parametrize("level,expected", [("NE5", 8.0), ("NE6", 8.0), ("NE7", 0.0)])
def test_demand_charge_only_where_the_network_level_bills_the_monthly_peak(level, expected):
    cfg = GridTariffsConfig(enabled=True, network_level=level, power_price_eur_per_kw_month=8.0)
    assert demand_charge_eur_per_kw(cfg) == expected
    assert demand_charge_eur_per_kw(GridTariffsConfig(enabled=False, network_level="NE5",
                                                      power_price_eur_per_kw_month=8.0)) == 0.0


def test_feedin_limit_off_fixed_and_dynamic_rules_relative_to_pv_peak():
    starts = local_day(2024, 6, 1, step_s=3600)
    assert feedin_limit_kw(FeedinLimitationConfig(enabled=True, mode="off"), 10.0, starts) is None
    assert feedin_limit_kw(FeedinLimitationConfig(enabled=False, mode="fixed"), 10.0, starts) is None
    fixed = feedin_limit_kw(FeedinLimitationConfig(enabled=True, mode="fixed", fixed_limit_pct=70.0), 10.0, starts)
    assert np.allclose(fixed, 7.0)
    rules = (FeedinRule(start="10:00", end="16:00", limit_pct=50.0),
             FeedinRule(start="12:00", end="13:00", limit_pct=0.0))
    dynamic = FeedinLimitationConfig(enabled=True, mode="dynamic", fixed_limit_pct=70.0, dynamic_rules=rules)
    by_hour = dict(zip((local_hhmm(t) for t in starts), feedin_limit_kw(dynamic, 10.0, starts)))
    assert by_hour["09:00"] == pytest.approx(7.0), "outside every rule the fixed limit applies"
    assert by_hour["10:00"] == pytest.approx(5.0) and by_hour["15:00"] == pytest.approx(5.0)
    assert by_hour["12:00"] == 0.0, "overlapping rules: the most restrictive wins"
    assert by_hour["16:00"] == pytest.approx(7.0)


def test_feedin_reference_falls_back_to_the_forecast_peak_then_to_no_feed_in():
    starts = local_day(2024, 6, 1, step_s=3600)
    cfg = FeedinLimitationConfig(enabled=True, mode="fixed", fixed_limit_pct=50.0)
    forecast = np.linspace(0.0, 6.0, len(starts))
    assert np.allclose(feedin_limit_kw(cfg, 0.0, starts, forecast), 3.0)
    assert np.allclose(feedin_limit_kw(cfg, 0.0, starts), 0.0)


def test_grid_fee_window_moves_the_discharge_into_the_high_load_hours():
    # Flat consumer price: without grid fees nothing pays; a ×2 evening fee makes evening import dear.
    cfg = EmsConfig(
        bess=BessConfig(capacity_kwh=10.0, max_charge_power_kw=5.0, max_discharge_power_kw=5.0,
                        degradation_cost_eur_per_kwh=0.0),
        grid_tariffs=tariffs(EVENING), forecast=ForecastConfig(vat_pct=20.0))
    starts = local_day(2024, 6, 1, step_s=3600)
    n = len(starts)
    inp = plan_inputs_from_config(cfg, start_ts=starts[0], step_s=3600, consumer_price_eur_per_kwh=[0.12] * n,
                                  market_price_eur_per_kwh=[0.08] * n, load_kw=[3.0] * n, pv_kw=[0.0] * n,
                                  soc0_pct=10.0, terminal_soc_value_eur_per_kwh=0.0)
    assert inp.import_price_eur_per_kwh[17] == pytest.approx(0.12 + 0.20 * 1.2)
    assert inp.import_price_eur_per_kwh[3] == pytest.approx(0.12 + 0.10 * 1.2)
    assert inp.export_price_eur_per_kwh[3] == pytest.approx(0.08)
    plan = optimize(inp, "arbitrage")
    assert plan.status == "optimal"
    discharging = [local_hhmm(s.ts) for s in plan.steps if s.discharge_w > 1.0]
    assert discharging == ["17:00", "18:00"]
    assert plan.expected_profit_eur > 0


def test_config_feedin_limitation_and_demand_charge_reach_the_plan():
    cfg = EmsConfig(forecast=ForecastConfig(pv_peak_kwp=10.0),
                    feedin_limitation=FeedinLimitationConfig(enabled=True, mode="fixed", fixed_limit_pct=30.0),
                    grid_tariffs=GridTariffsConfig(enabled=True, network_level="NE6", power_price_eur_per_kw_month=6.5))
    starts = local_day(2024, 6, 1, step_s=3600)
    n = len(starts)
    inp = plan_inputs_from_config(cfg, start_ts=starts[0], step_s=3600, consumer_price_eur_per_kwh=[0.2] * n,
                                  market_price_eur_per_kwh=[0.1] * n, load_kw=[0.5] * n, pv_kw=[9.0] * n,
                                  soc0_pct=95.0)
    assert inp.demand_charge_eur_per_kw == 6.5
    plan = optimize(inp, "arbitrage")
    assert plan.status == "optimal"
    assert min(s.grid_power_w for s in plan.steps) >= -3000.0 - 1e-3


def test_windows_and_rules_are_read_in_the_zone_given_and_vienna_by_default():
    london = ZoneInfo("Europe/London")
    starts = local_day(2024, 6, 1, step_s=3600)  # Vienna's day: London is an hour behind
    fee = grid_fee_eur_per_kwh(tariffs(EVENING), starts, zone=london)
    assert [local_hhmm(t) for t, f in zip(starts, fee) if f > 0.1 + 1e-12] == ["18:00", "19:00"]
    assert np.array_equal(grid_fee_eur_per_kwh(tariffs(EVENING), starts, zone=VIENNA),
                          grid_fee_eur_per_kwh(tariffs(EVENING), starts))
    rules = (FeedinRule(start="12:00", end="13:00", limit_pct=0.0),)
    dynamic = FeedinLimitationConfig(enabled=True, mode="dynamic", fixed_limit_pct=70.0, dynamic_rules=rules)
    limit = feedin_limit_kw(dynamic, 10.0, starts, zone=london)
    assert [local_hhmm(t) for t, kw in zip(starts, limit) if kw == 0.0] == ["13:00"]


def test_site_timezone_reaches_the_plan_inputs_and_their_tariff_windows():
    starts = local_day(2024, 6, 1, step_s=3600)
    n = len(starts)

    def inputs(site: SiteConfig):
        cfg = EmsConfig(site=site, grid_tariffs=tariffs(EVENING), forecast=ForecastConfig(vat_pct=0.0))
        return plan_inputs_from_config(cfg, start_ts=starts[0], step_s=3600, consumer_price_eur_per_kwh=[0.1] * n,
                                       market_price_eur_per_kwh=[0.1] * n, load_kw=[1.0] * n, pv_kw=[0.0] * n,
                                       soc0_pct=50.0)
    vienna, london = inputs(SiteConfig()), inputs(SiteConfig(timezone="Europe/London"))
    assert vienna.zone == VIENNA and london.zone == ZoneInfo("Europe/London")
    dear = [k for k in range(n) if vienna.import_price_eur_per_kwh[k] > 0.2 + 1e-12]
    assert dear == [17, 18]
    assert [k for k in range(n) if london.import_price_eur_per_kwh[k] > 0.2 + 1e-12] == [18, 19]

"""The LP optimizer: hand-checkable plans, limits that always hold, explicit failures, the fallback."""
from __future__ import annotations

import json
from dataclasses import replace
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ems.config.schema import BessConfig, GridConnectionConfig
from ems.optimizer import (STRATEGY_NAMES, Plan, PlanInputError, PlanInputs, fallback_self_consumption_plan,
                           leading_finite_steps, optimize, resample_mean)
from ems.optimizer.model import (TIE_BREAK_CURTAIL_EUR_PER_KWH, TIE_BREAK_DISCHARGE_EUR_PER_KWH, build_model,
                                 extract_flows, solve_model)
from ems.optimizer.strategies import get_strategy
from ems.optimizer.strategies.base import Strategy

TOL = 1e-6
START = 1717192800.0  # 2024-06-01 00:00 Europe/Vienna

BATTERY = BessConfig(capacity_kwh=10.0, max_charge_power_kw=5.0, max_discharge_power_kw=5.0,
                     charge_efficiency=0.95, discharge_efficiency=0.95, min_soc_pct=10.0, max_soc_pct=90.0,
                     degradation_cost_eur_per_kwh=0.0)


def inputs(n: int = 24, step_s: int = 3600, price=0.2, export=None, load=1.0, pv=0.0, soc0=50.0,
           bess: BessConfig = BATTERY, grid: GridConnectionConfig = GridConnectionConfig(), **kw) -> PlanInputs:
    def per_step(v):
        return list(v) if np.ndim(v) else [float(v)] * n
    prices = per_step(price)
    return PlanInputs(start_ts=START, step_s=step_s, import_price_eur_per_kwh=prices,
                      export_price_eur_per_kwh=per_step(prices if export is None else export),
                      load_kw=per_step(load), pv_kw=per_step(pv), soc0_pct=soc0, bess=bess, grid=grid, **kw)


def arrays(plan: Plan) -> dict[str, np.ndarray]:
    """Plan rows back in kW / kWh, for checking limits in the model's own units."""
    cols = {name: np.array([getattr(s, name) for s in plan.steps]) for name in
            ("bess_power_w", "charge_w", "discharge_w", "grid_power_w", "pv_power_w", "pv_curtailed_w",
             "load_power_w", "soc_pct")}
    return {k: (v / 1000.0 if k.endswith("_w") else v) for k, v in cols.items()}


def two_price_day(step_s: int) -> tuple[PlanInputs, np.ndarray]:
    hourly = np.array([0.10] * 12 + [0.30] * 12)
    hour_starts = START + 3600.0 * np.arange(24)
    n = 24 * 3600 // step_s
    prices = resample_mean(hour_starts, hourly, START, step_s, n)
    return inputs(n=n, step_s=step_s, price=prices, load=2.0, soc0=10.0,
                  terminal_soc_value_eur_per_kwh=0.0), prices


@pytest.mark.parametrize("step_s", [3600, 900])
def test_two_price_day_charges_cheap_and_discharges_dear_exactly_what_efficiency_allows(step_s):
    inp, prices = two_price_day(step_s)
    plan = optimize(inp, "arbitrage")
    assert plan.status == "optimal", plan.message
    a = arrays(plan)
    dt = step_s / 3600
    cheap, dear = prices < 0.2, prices > 0.2
    assert np.all(a["charge_w"][dear] <= TOL) and np.all(a["discharge_w"][cheap] <= TOL)
    usable_kwh = BATTERY.capacity_kwh * (BATTERY.max_soc_pct - BATTERY.min_soc_pct) / 100
    charged_ac_kwh = a["charge_w"].sum() * dt
    discharged_ac_kwh = a["discharge_w"].sum() * dt
    assert charged_ac_kwh == pytest.approx(usable_kwh / BATTERY.charge_efficiency, abs=1e-6)
    assert discharged_ac_kwh == pytest.approx(usable_kwh * BATTERY.discharge_efficiency, abs=1e-6)
    assert a["soc_pct"].max() == pytest.approx(BATTERY.max_soc_pct, abs=1e-6)
    assert a["soc_pct"][-1] == pytest.approx(BATTERY.min_soc_pct, abs=1e-6)
    # The battery only feeds the own 2 kW load... and the rest goes out at the same dear price.
    assert plan.expected_profit_eur == pytest.approx(0.30 * discharged_ac_kwh - 0.10 * charged_ac_kwh, abs=1e-6)
    assert plan.binary_steps == 0


def test_hourly_prices_on_a_quarter_hour_plan_earn_what_the_hourly_plan_earns():
    hourly_plan = optimize(two_price_day(3600)[0], "arbitrage")
    quarter_plan = optimize(two_price_day(900)[0], "arbitrage")
    assert len(quarter_plan.steps) == 4 * len(hourly_plan.steps)
    assert quarter_plan.expected_profit_eur == pytest.approx(hourly_plan.expected_profit_eur, abs=1e-6)
    # Each hour's four quarter-hour steps carry the hour's price.
    assert [s.import_price_eur_per_kwh for s in quarter_plan.steps[::4]] == \
        [s.import_price_eur_per_kwh for s in hourly_plan.steps]


def test_degradation_cost_above_the_spread_keeps_the_battery_idle():
    inp = replace(two_price_day(3600)[0], bess=replace(BATTERY, degradation_cost_eur_per_kwh=0.25))
    plan = optimize(inp, "arbitrage")
    assert plan.status == "optimal"
    assert np.all(np.abs(arrays(plan)["bess_power_w"]) <= TOL)


def test_resample_mean_spreads_hourly_prices_over_quarter_hours_and_averages_back():
    hour_starts = START + 3600.0 * np.arange(3)
    q = resample_mean(hour_starts, [1.0, 2.0, 4.0], START, 900, 12)
    assert list(q) == [1.0] * 4 + [2.0] * 4 + [4.0] * 4
    hourly = resample_mean(START + 900.0 * np.arange(8), [1, 2, 3, 4, 5, 6, 7, 8], START, 3600, 2)
    assert list(hourly) == [2.5, 6.5]


def test_resample_mean_marks_steps_beyond_the_published_prices_as_missing():
    hour_starts = START + 3600.0 * np.arange(2)
    q = resample_mean(hour_starts, [1.0, 2.0], START + 1800, 900, 8)
    assert leading_finite_steps(q) == 6
    assert np.all(np.isnan(q[6:]))
    gap = resample_mean(START + 3600.0 * np.array([0, 2]), [1.0, 3.0], START, 3600, 3, interval_s=3600)
    assert np.isnan(gap[1]) and gap[0] == 1.0 and gap[2] == 3.0


# --- limits always hold -------------------------------------------------------------------------

@st.composite
def feasible_inputs(draw):
    n = draw(st.integers(2, 40))
    step_s = draw(st.sampled_from([900, 3600]))
    floats = lambda lo, hi: st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    prices = draw(st.lists(floats(-0.2, 0.6), min_size=n, max_size=n))
    fee = draw(floats(0.0, 0.15))
    load = draw(st.lists(floats(0.0, 12.0), min_size=n, max_size=n))
    pv = draw(st.lists(floats(0.0, 15.0), min_size=n, max_size=n))
    min_soc = draw(floats(0.0, 40.0))
    max_soc = draw(floats(min_soc + 5.0, 100.0))
    bess = BessConfig(capacity_kwh=draw(floats(1.0, 40.0)), max_charge_power_kw=draw(floats(0.5, 15.0)),
                      max_discharge_power_kw=draw(floats(0.5, 15.0)), charge_efficiency=draw(floats(0.8, 1.0)),
                      discharge_efficiency=draw(floats(0.8, 1.0)), min_soc_pct=min_soc, max_soc_pct=max_soc,
                      degradation_cost_eur_per_kwh=draw(floats(0.0, 0.05)))
    # An import limit the load alone never exceeds keeps "battery idle" feasible: every plan must solve.
    grid = GridConnectionConfig(max_power_kw=max(load) + draw(floats(0.1, 10.0)),
                                max_feedin_kw=draw(st.one_of(st.none(), floats(0.0, 10.0))))
    feedin = draw(st.one_of(st.none(), st.lists(floats(0.0, 8.0), min_size=n, max_size=n)))
    return PlanInputs(
        start_ts=START, step_s=step_s, import_price_eur_per_kwh=[p + fee for p in prices],
        export_price_eur_per_kwh=prices, load_kw=load, pv_kw=pv,
        soc0_pct=draw(floats(min_soc, max_soc)), bess=bess, grid=grid, feedin_limit_kw=feedin,
        no_export_at_negative_prices=draw(st.booleans()),
        demand_charge_eur_per_kw=draw(st.sampled_from([0.0, 5.0])))


def assert_plan_respects_every_limit(inp: PlanInputs, plan: Plan) -> None:
    a = arrays(plan)
    b = inp.bess
    dt = inp.dt_h
    load, pv = np.array(inp.load_kw), np.array(inp.pv_kw)
    assert np.allclose(a["load_power_w"], load, atol=TOL)
    assert np.all(a["charge_w"] >= -TOL) and np.all(a["charge_w"] <= b.max_charge_power_kw + TOL)
    assert np.all(a["discharge_w"] >= -TOL) and np.all(a["discharge_w"] <= b.max_discharge_power_kw + TOL)
    assert np.all((a["charge_w"] <= TOL) | (a["discharge_w"] <= TOL)), "charge and discharge at once"
    assert np.allclose(a["bess_power_w"], a["discharge_w"] - a["charge_w"], atol=TOL)
    assert np.all(a["pv_curtailed_w"] >= -TOL) and np.all(a["pv_curtailed_w"] <= pv + TOL)
    assert np.allclose(a["pv_power_w"] + a["pv_curtailed_w"], pv, atol=TOL)
    # Energy balance at the grid point: PV + battery + grid = load.
    assert np.allclose(a["pv_power_w"] + a["bess_power_w"] + a["grid_power_w"], load, atol=TOL)
    assert np.all(a["grid_power_w"] <= inp.max_import_kw + TOL)
    assert np.all(-a["grid_power_w"] <= inp.export_limit_kw() + TOL)
    soc_kwh = a["soc_pct"] * b.capacity_kwh / 100
    assert np.all(soc_kwh >= b.capacity_kwh * b.min_soc_pct / 100 - TOL)
    assert np.all(soc_kwh <= b.capacity_kwh * b.max_soc_pct / 100 + TOL)
    previous = np.concatenate([[b.capacity_kwh * inp.soc0_pct / 100], soc_kwh[:-1]])
    expected = previous + dt * (b.charge_efficiency * a["charge_w"] - a["discharge_w"] / b.discharge_efficiency)
    assert np.allclose(soc_kwh, expected, atol=TOL)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inp=feasible_inputs(), strategy=st.sampled_from(STRATEGY_NAMES))
def test_random_prices_and_profiles_never_break_a_bound_a_limit_or_the_balance(inp, strategy):
    plan = optimize(inp, strategy)
    assert plan.status == "optimal", plan.message
    assert len(plan.steps) == inp.n
    assert_plan_respects_every_limit(inp, plan)


def solver_money_eur(inp: PlanInputs, plan: Plan) -> float:
    """The solver's objective in real money: add back the start SoC's value and the peak floor, take
    off the tie-break terms (they are not money)."""
    a = arrays(plan)
    e0 = inp.bess.capacity_kwh * inp.soc0_pct / 100
    tie_break = inp.dt_h * (TIE_BREAK_DISCHARGE_EUR_PER_KWH * a["discharge_w"].sum()
                            + TIE_BREAK_CURTAIL_EUR_PER_KWH * a["pv_curtailed_w"].sum())
    constant = inp.terminal_value_eur_per_kwh() * e0 + inp.demand_charge_eur_per_kw * inp.peak_so_far_kw
    return plan.figures["solver_objective"] + constant - tie_break


@settings(max_examples=40, deadline=None)
@given(inp=feasible_inputs())
def test_arbitrage_is_never_worse_than_no_battery_and_its_money_is_what_the_solver_optimised(inp):
    plan = optimize(inp, "arbitrage")
    assert plan.status == "optimal", plan.message
    assert plan.expected_profit_eur >= -1e-6
    # The reported cost is recomputed from the netted flows; a money pump (import and export at once)
    # or burnt energy that the extraction hid would make it differ from the solver's objective.
    assert plan.objective_eur == pytest.approx(solver_money_eur(inp, plan), abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(inp=feasible_inputs())
def test_fallback_plan_respects_limits_and_never_touches_the_grid_with_the_battery(inp):
    plan = fallback_self_consumption_plan(inp)
    assert plan.fallback and plan.ok and plan.strategy == "self_consumption"
    a = arrays(plan)
    net = np.array(inp.load_kw) - np.array(inp.pv_kw)
    assert np.all(a["charge_w"] <= np.maximum(-net, 0) + TOL), "charged from the grid"
    assert np.all(a["discharge_w"] <= np.maximum(net, 0) + TOL), "discharged into the grid"
    b = inp.bess
    soc = a["soc_pct"]
    assert np.all(soc >= b.min_soc_pct - TOL) and np.all(soc <= b.max_soc_pct + TOL)
    assert np.allclose(a["pv_power_w"] + a["bess_power_w"] + a["grid_power_w"], inp.load_kw, atol=TOL)


# --- negative prices, money pumps and binaries --------------------------------------------------

def negative_price_day() -> PlanInputs:
    prices = [0.2] * 8 + [-0.15] * 8 + [0.3] * 8
    return inputs(n=24, price=prices, export=[p - 0.1 for p in prices], load=1.0, soc0=50.0,
                  terminal_soc_value_eur_per_kwh=0.0)


def test_negative_prices_would_burn_energy_in_a_pure_lp_and_the_plan_does_not():
    inp = negative_price_day()
    arbitrage = get_strategy("arbitrage")
    lp = build_model(inp, arbitrage)
    result = solve_model(lp)
    flows = extract_flows(lp, result.x)
    burning = (flows.charge_kw > 1e-6) & (flows.discharge_kw > 1e-6)
    assert burning.any(), "the LP relaxation no longer burns energy: the binaries may be unnecessary"
    plan = optimize(inp, "arbitrage")
    assert plan.status == "optimal" and plan.binary_steps >= 8
    a = arrays(plan)
    assert not np.any((a["charge_w"] > TOL) & (a["discharge_w"] > TOL))
    negative = np.flatnonzero(np.array(inp.import_price_eur_per_kwh) < 0)
    assert a["soc_pct"][negative[-1]] == pytest.approx(BATTERY.max_soc_pct, abs=1e-6), "paid to charge: full"
    assert a["grid_power_w"][negative].sum() > BATTERY.capacity_kwh * 0.4, "paid to import: draws from the grid"


@pytest.mark.parametrize("price,needs_binaries", [(-0.10, False), (-0.30, True)])
def test_negative_prices_need_binaries_only_below_the_burn_threshold(price, needs_binaries):
    # 2 ct/kWh degradation, 95 % each way: burning pays below −0.02·η/(1 − η) = −18.5 ct/kWh.
    bess = replace(BATTERY, degradation_cost_eur_per_kwh=0.02)
    prices = [0.2] * 4 + [price] * 12 + [0.3] * 8
    inp = inputs(n=24, price=prices, export=[p - 0.1 for p in prices], load=1.0, soc0=50.0, bess=bess,
                 terminal_soc_value_eur_per_kwh=0.0)
    lp = build_model(inp, get_strategy("arbitrage"))
    flows = extract_flows(lp, solve_model(lp).x)
    burns = bool(np.any((flows.charge_kw > 1e-6) & (flows.discharge_kw > 1e-6)))
    assert burns == needs_binaries
    plan = optimize(inp, "arbitrage")
    assert (plan.binary_steps > 0) == needs_binaries
    assert_plan_respects_every_limit(inp, plan)


class _RewardsCharging(Strategy):
    """A strategy term the up-front rule cannot see: every kWh charged earns 1 €."""
    name = "rewards_charging"

    def add_terms(self, builder, inputs, cols):
        builder.add_cost(cols.charge, -1.0 * inputs.dt_h)


def test_strategy_terms_that_reward_burning_get_binaries_after_the_first_solve():
    inp = inputs(n=12, price=0.2, load=1.0, soc0=50.0)
    lp = build_model(inp, _RewardsCharging())
    flows = extract_flows(lp, solve_model(lp).x)
    assert np.any((flows.charge_kw > 1e-6) & (flows.discharge_kw > 1e-6)), "the LP alone burns"
    plan = optimize(inp, _RewardsCharging())
    assert plan.status == "optimal" and plan.binary_steps > 0
    assert_plan_respects_every_limit(inp, plan)


def test_export_paying_more_than_import_costs_is_no_money_pump():
    # A fixed feed-in tariff above a cheap import price: both directions at once would earn forever.
    inp = inputs(n=6, price=0.05, export=0.12, load=1.0, soc0=10.0, terminal_soc_value_eur_per_kwh=0.0,
                 grid=GridConnectionConfig(max_power_kw=20.0))
    lp = build_model(inp, get_strategy("arbitrage"))
    pump = solve_model(lp)
    assert pump.x[lp.cols.grid_import].min() > 1.0 and pump.x[lp.cols.grid_export].min() > 1.0
    plan = optimize(inp, "arbitrage")
    assert plan.status == "optimal"
    assert plan.objective_eur == pytest.approx(solver_money_eur(inp, plan), abs=1e-6)
    # The only profit left is real: what the battery can shift (≤ usable energy × tariff gap).
    usable = BATTERY.capacity_kwh * 0.8
    assert plan.expected_profit_eur <= usable * 0.12 + 1e-6


def test_load_balancing_filling_valleys_never_charges_and_discharges_at_once():
    load = [0.2] * 6 + [6.0] * 6 + [0.2] * 6 + [6.0] * 6
    inp = inputs(n=24, price=0.2, load=load, soc0=90.0)
    plan = optimize(inp, "load_balancing")
    assert plan.status == "optimal"
    assert_plan_respects_every_limit(inp, plan)


# --- SoC outside its window, feed-in, options ---------------------------------------------------

def test_soc_below_min_is_recovered_at_full_charge_power_first():
    bess = replace(BATTERY, min_soc_pct=40.0)  # 4 kWh at 5 kW × 0.95: three full quarter-hours and a bit
    inp = inputs(n=8, step_s=900, price=0.3, load=1.0, soc0=0.0, bess=bess)
    plan = optimize(inp, "arbitrage")
    assert plan.status == "optimal", plan.message
    a = arrays(plan)
    assert np.allclose(a["charge_w"][:3], bess.max_charge_power_kw, atol=1e-6)
    assert np.all(a["soc_pct"][3:] >= bess.min_soc_pct - TOL)


def test_soc_above_max_never_rises_further():
    inp = inputs(n=12, price=[0.05] * 6 + [0.5] * 6, load=1.0, pv=3.0, soc0=97.0)
    plan = optimize(inp, "arbitrage")
    assert plan.status == "optimal"
    assert arrays(plan)["soc_pct"].max() <= 97.0 + TOL


def test_feedin_limit_curtails_pv_that_neither_load_nor_battery_can_take():
    inp = inputs(n=6, price=0.2, export=0.08, load=0.5, pv=12.0, soc0=90.0, feedin_limit_kw=[3.0] * 6)
    plan = optimize(inp, "arbitrage")
    a = arrays(plan)
    assert np.all(-a["grid_power_w"] <= 3.0 + TOL)
    assert a["pv_curtailed_w"].sum() == pytest.approx(6 * (12.0 - 0.5 - 3.0), abs=1e-6)


def test_no_export_at_negative_prices_option_keeps_feed_in_at_zero_there():
    prices = [0.1, -0.05, -0.05, 0.1]
    inp = inputs(n=4, price=[p + 0.1 for p in prices], export=prices, load=0.5, pv=8.0, soc0=90.0,
                 no_export_at_negative_prices=True)
    a = arrays(optimize(inp, "arbitrage"))
    assert np.all(a["grid_power_w"][1:3] >= -TOL)
    assert a["grid_power_w"][0] < -1.0, "positive price: the surplus is exported"


# --- explicit failures, never an exception ------------------------------------------------------

def test_unreachable_terminal_soc_is_infeasible_with_a_message_naming_the_setting():
    inp = inputs(n=1, price=0.2, load=1.0, soc0=10.0, terminal_soc_min_pct=90.0)  # 8 kWh in 1 h at 5 kW
    plan = optimize(inp, "arbitrage")
    assert plan.status == "infeasible" and not plan.ok and plan.steps == ()
    assert "terminal_soc_min_pct" in plan.message and "cannot be reached" in plan.message


def test_terminal_soc_above_max_soc_is_infeasible_without_a_solve():
    plan = optimize(inputs(n=4, terminal_soc_min_pct=95.0), "self_consumption")
    assert plan.status == "infeasible" and "max_soc_pct" in plan.message


def test_soc_below_min_that_the_grid_connection_cannot_recover_is_infeasible():
    inp = inputs(n=8, step_s=900, price=0.2, load=4.0, soc0=0.0, bess=replace(BATTERY, min_soc_pct=40.0),
                 grid=GridConnectionConfig(max_power_kw=6.0))
    plan = optimize(inp, "arbitrage")
    assert plan.status == "infeasible"
    assert "min_soc_pct" in plan.message and "grid import limit" in plan.message


def test_load_beyond_grid_and_battery_is_infeasible_naming_the_time():
    load = [1.0, 1.0, 50.0, 1.0]
    plan = optimize(inputs(n=4, load=load, soc0=50.0), "peak_shaving")
    assert plan.status == "infeasible"
    assert "2024-06-01 02:00" in plan.message and "grid import limit" in plan.message
    fallback = fallback_self_consumption_plan(inputs(n=4, load=load, soc0=50.0), plan)
    assert fallback.ok and fallback.fallback and fallback.status == "infeasible"
    assert plan.message in fallback.reason
    in_utc = optimize(inputs(n=4, load=load, soc0=50.0, zone=ZoneInfo("UTC")), "peak_shaving")
    assert "2024-06-01 00:00" in in_utc.message, "the time is the site's local time (PlanInputs.zone)"


def test_no_time_left_is_a_time_limit_status():
    plan = optimize(inputs(n=96, step_s=900), "arbitrage", time_limit_s=0.0)
    assert plan.status == "time_limit" and "time limit" in plan.message


@settings(max_examples=60, deadline=None)
@given(inp=feasible_inputs(), strategy=st.sampled_from(STRATEGY_NAMES),
       import_kw=st.floats(0.1, 20.0), soc0=st.floats(0.0, 100.0),
       terminal=st.one_of(st.none(), st.floats(0.0, 100.0)))
def test_any_configuration_gives_a_status_never_an_exception(inp, strategy, import_kw, soc0, terminal):
    # Limits that may well be impossible: a small connection, any start SoC, any terminal floor.
    hard = replace(inp, grid=GridConnectionConfig(max_power_kw=import_kw), soc0_pct=soc0, terminal_soc_min_pct=terminal)
    plan = optimize(hard, strategy)
    assert plan.status in ("optimal", "infeasible")
    if plan.status == "infeasible":
        assert plan.message and not plan.steps
        assert fallback_self_consumption_plan(hard, plan).ok
    else:
        assert len(plan.steps) == hard.n


class _Broken(Strategy):
    name = "broken"

    def add_terms(self, builder, inputs, cols):
        raise RuntimeError("strategy bug")


def test_a_crashing_strategy_or_unknown_name_is_an_error_status_not_an_exception():
    plan = optimize(inputs(), _Broken())
    assert plan.status == "error" and "strategy bug" in plan.message
    unknown = optimize(inputs(), "moon_phase")
    assert unknown.status == "error" and "arbitrage" in unknown.message


@pytest.mark.parametrize("field,kwargs,fragment", [
    ("pv_kw", {"pv": [1.0] * 3}, "expected one per step"),
    ("pv_kw", {"pv": [float("nan")] * 24}, "not a finite number"),
    ("load_kw", {"load": [-1.0] * 24}, "must not be negative"),
    ("soc0_pct", {"soc0": 120.0}, "0..100"),
    ("step_s", {"step_s": 900.5}, "whole number"),
    ("step_s", {"step_s": 30}, "60..86400"),
    ("zone", {"zone": "Europe/Vienna"}, "must be a ZoneInfo"),
])
def test_bad_inputs_raise_an_error_naming_the_field(field, kwargs, fragment):
    with pytest.raises(PlanInputError) as err:
        inputs(**kwargs)
    assert err.value.field == field and fragment in str(err.value)


def test_plan_json_is_serialisable_and_step_lookup_finds_the_current_step():
    inp, _ = two_price_day(900)
    plan = optimize(inp, "arbitrage", reason="test")
    doc = json.loads(json.dumps(plan.to_json()))
    assert doc["status"] == "optimal" and doc["reason"] == "test" and len(doc["steps"]) == 96
    assert doc["solver"] == "HiGHS" and doc["solver_version"]
    assert plan.step_at(START + 3 * 900 + 10).ts == START + 3 * 900
    assert plan.step_at(START - 1) is None and plan.step_at(START + 96 * 900) is None

"""Each strategy's defining behaviour against arbitrage on the same inputs, and auto mode's choices."""
from __future__ import annotations

import numpy as np
import pytest

from ems.config import ConfigStore, EmsConfig, parse_yaml_config
from ems.config.schema import BessConfig, GridConnectionConfig
from ems.errors import ConfigError
from ems.optimizer import STRATEGIES, PlanInputs, choose_strategy, get_strategy, optimize
from ems.optimizer.auto import AutoThresholds
from ems.optimizer.planner import Planner, PlanRecord
from ems.optimizer.realtime import realtime_request
from ems.optimizer.strategies import Intent, Meter, PlanStepLike, Request, Strategy
from ems.state import Measurement, PlantState

START = 1717192800.0  # 2024-06-01 00:00 Europe/Vienna
TOL = 1e-6
BATTERY = BessConfig(capacity_kwh=20.0, max_charge_power_kw=8.0, max_discharge_power_kw=8.0,
                     min_soc_pct=10.0, max_soc_pct=90.0, degradation_cost_eur_per_kwh=0.01)


def day(price, load, pv=0.0, export=None, soc0=50.0, grid_kw=40.0, bess=BATTERY, **kw) -> PlanInputs:
    n = 24

    def per_step(v):
        return [float(x) for x in v] if np.ndim(v) else [float(v)] * n
    prices = per_step(price)
    return PlanInputs(start_ts=START, step_s=3600, import_price_eur_per_kwh=prices,
                      export_price_eur_per_kwh=per_step(export) if export is not None else [p - 0.1 for p in prices],
                      load_kw=per_step(load), pv_kw=per_step(pv), soc0_pct=soc0, bess=bess,
                      grid=GridConnectionConfig(max_power_kw=grid_kw), **kw)


def grid_kw(plan) -> np.ndarray:
    return np.array([s.grid_power_w for s in plan.steps]) / 1000.0


def solved(inp: PlanInputs, strategy: str):
    plan = optimize(inp, strategy)
    assert plan.status == "optimal", plan.message
    return plan


HOURS = np.arange(24)
# Cheap at midday, dear at night: the price-optimal plan charges exactly when the load peaks.
MIDDAY_CHEAP = np.where((HOURS >= 10) & (HOURS < 15), 0.12, 0.30)
PEAKY_LOAD = np.where((HOURS >= 11) & (HOURS < 13), 20.0, 4.0)
SOLAR = np.clip(9.0 * np.sin(np.pi * (HOURS - 6) / 14), 0.0, None)
EVENING_DEAR = np.where((HOURS >= 17) & (HOURS < 21), 0.40, np.where(HOURS < 6, 0.12, 0.22))


def test_peak_shaving_lowers_the_maximum_import_that_arbitrage_would_cause():
    inp = day(MIDDAY_CHEAP, PEAKY_LOAD)
    arbitrage, shaving = solved(inp, "arbitrage"), solved(inp, "peak_shaving")
    assert grid_kw(shaving).max() < grid_kw(arbitrage).max() - 1.0
    assert grid_kw(shaving).max() < PEAKY_LOAD.max() - 1.0, "below the peak with no battery too"
    # Peak shaving still cares about money once the peak is down: it is not free to waste.
    assert shaving.expected_profit_eur > -5.0


def test_peak_shaving_uses_the_demand_charge_and_ignores_peaks_below_the_months_peak_so_far():
    inp = day(0.2, PEAKY_LOAD, soc0=10.0, peak_so_far_kw=25.0, demand_charge_eur_per_kw=10.0,
              terminal_soc_value_eur_per_kwh=0.0)
    plan = solved(inp, "arbitrage")
    # The month already peaked at 25 kW: shaving today's 20 kW earns nothing, so nothing is bought for it.
    assert all(s.charge_w <= TOL for s in plan.steps)
    inp_low_floor = day(0.2, PEAKY_LOAD, soc0=10.0, peak_so_far_kw=0.0, demand_charge_eur_per_kw=10.0,
                        terminal_soc_value_eur_per_kwh=0.0)
    assert grid_kw(solved(inp_low_floor, "arbitrage")).max() < PEAKY_LOAD.max() - 1.0


def test_self_consumption_trades_less_with_the_grid_and_never_uses_it_for_the_battery():
    inp = day(EVENING_DEAR, 1.5, pv=SOLAR, soc0=10.0)
    arbitrage, own = solved(inp, "arbitrage"), solved(inp, "self_consumption")
    traded = lambda p: float(np.abs(grid_kw(p)).sum())
    assert traded(own) < traded(arbitrage) - 1.0
    net = np.array(inp.load_kw) - np.array(inp.pv_kw)
    charge = np.array([s.charge_w for s in own.steps]) / 1000
    discharge = np.array([s.discharge_w for s in own.steps]) / 1000
    assert np.all(charge <= np.maximum(-net, 0) + TOL), "self-consumption charged from the grid"
    assert np.all(discharge <= np.maximum(net, 0) + TOL), "self-consumption discharged into the grid"
    assert charge.sum() > 5.0, "PV surplus is stored"


def test_self_consumption_curtails_rather_than_exports_at_negative_prices():
    prices = np.where((HOURS >= 11) & (HOURS < 15), -0.05, 0.2)
    inp = day(prices + 0.1, 0.5, pv=SOLAR, export=prices, soc0=90.0)
    plan = solved(inp, "self_consumption")
    negative = prices < 0
    assert np.all(grid_kw(plan)[negative] >= -TOL)


def test_load_balancing_flattens_the_grid_profile_more_than_arbitrage():
    inp = day(EVENING_DEAR, PEAKY_LOAD)
    arbitrage, balanced = solved(inp, "arbitrage"), solved(inp, "load_balancing")
    spread = lambda p: float(np.ptp(grid_kw(p)))
    assert spread(balanced) < spread(arbitrage) - 1.0
    assert spread(balanced) < float(np.ptp(PEAKY_LOAD)) - 1.0
    assert np.std(grid_kw(balanced)) < np.std(grid_kw(arbitrage))


# --- auto mode ----------------------------------------------------------------------------------

def test_auto_picks_peak_shaving_when_the_forecast_peak_nears_the_grid_limit():
    load = np.where(HOURS == 18, 28.0, 3.0)
    choice = choose_strategy(day(EVENING_DEAR, load, grid_kw=30.0))
    assert choice.strategy == "peak_shaving"
    assert "28.0 kW" in choice.reason and "93 %" in choice.reason and "30 kW" in choice.reason
    assert choice.figures["peak_utilisation_pct"] == pytest.approx(100 * 28 / 30)


def test_auto_picks_arbitrage_when_the_spread_pays_for_a_round_trip():
    choice = choose_strategy(day(EVENING_DEAR, 2.0))
    assert choice.strategy == "arbitrage"
    assert choice.figures["round_trip_gain_eur_per_kwh"] >= AutoThresholds().min_round_trip_gain_eur_per_kwh
    assert "28.0 ct/kWh" in choice.reason  # spread of the 10 %/90 % prices: 40 − 12


@pytest.mark.parametrize("price, load, pv, says", [
    (np.where(HOURS >= 18, 0.21, 0.20), 2.0, SOLAR, "PV surplus"),  # a spread losses eat, PV to store
    (0.2, PEAKY_LOAD, 0.0, "no price spread"),  # peaky, but no demand charge and far from the grid limit
    (0.2, 2.0, 0.0, "no price spread"),
])
def test_auto_never_gives_up_arbitrage_money_without_a_peak_to_guard(price, load, pv, says):
    inp = day(price, load, pv=pv)
    choice = choose_strategy(inp)
    assert choice.strategy == "arbitrage" and says in choice.reason
    best = solved(inp, "arbitrage").objective_eur
    for other in ("self_consumption", "load_balancing"):
        assert solved(inp, other).objective_eur >= best - TOL  # what auto would lose by picking them


def test_auto_picks_peak_shaving_on_a_commercial_site_whose_demand_charge_makes_it_pay():
    # A business: 4 kW base, a 20 kW lunchtime peak, flat prices; the network level bills 12 € per kW of the
    # month's highest quarter-hour. Shaving costs the energy of the losses and earns the demand charge.
    inp = day(0.20, PEAKY_LOAD, demand_charge_eur_per_kw=12.0, peak_so_far_kw=5.0)
    choice = choose_strategy(inp)
    assert choice.strategy == "peak_shaving"
    assert "demand charge 12 €/kW" in choice.reason and "guard" in choice.reason
    assert choice.figures["peak_shaving_extra_cost_eur"] <= choice.figures["peak_guard_value_eur"]
    # The known answer: the battery's usable energy (90 − 10 % of 20 kWh) delivered over the two peak hours.
    usable_kwh = BATTERY.capacity_kwh * (BATTERY.max_soc_pct - BATTERY.min_soc_pct) / 100.0
    assert choice.figures["peak_shaving_peak_kw"] == pytest.approx(20.0 - usable_kwh * BATTERY.discharge_efficiency / 2,
                                                                   abs=0.01)
    # Where the month's peak is already higher than anything forecast, there is nothing to guard.
    assert choose_strategy(day(0.20, PEAKY_LOAD, demand_charge_eur_per_kw=12.0, peak_so_far_kw=25.0)).strategy \
        == "arbitrage"


def test_auto_keeps_arbitrage_when_a_tiny_demand_charge_is_not_worth_the_spread_it_would_give_up():
    choice = choose_strategy(day(MIDDAY_CHEAP, PEAKY_LOAD, demand_charge_eur_per_kw=0.05))
    assert choice.strategy == "arbitrage" and "priced into the arbitrage plan" in choice.reason
    assert choice.figures["peak_shaving_extra_cost_eur"] > choice.figures["peak_guard_value_eur"]


def test_arbitrage_holds_the_grid_where_its_plan_balances_the_site_and_follows_trades_elsewhere():
    rule = STRATEGIES["arbitrage"]

    class Step:
        def __init__(self, bess_w: float, grid_w: float):
            self.bess_power_w, self.grid_power_w = bess_w, grid_w

    more_load = Meter(grid_w=700.0, bess_w=1500.0)  # the plan discharged 1.5 kW for a forecast 1.5 kW: 0.7 kW more
    balancing = rule.realtime(more_load, Step(1500.0, 0.0), Intent("arbitrage", None))
    assert balancing.power_w == pytest.approx(2200.0) and "grid held at 0 W" in balancing.why
    trading = rule.realtime(more_load, Step(-3000.0, 4500.0), Intent("arbitrage", None))  # charging from the grid
    assert trading.power_w == -3000.0 and "planned battery power" in trading.why
    assert rule.realtime(Meter(None, None), Step(1500.0, 0.0), Intent("arbitrage", None)).power_w == 1500.0


def test_auto_choice_is_recorded_on_the_plan():
    inp = day(EVENING_DEAR, 2.0)
    choice = choose_strategy(inp)
    plan = optimize(inp, choice.strategy, reason=choice.reason, figures=choice.figures)
    doc = plan.to_json()
    assert doc["strategy"] == "arbitrage" and doc["reason"] == choice.reason
    assert doc["figures"]["price_spread_eur_per_kwh"] == pytest.approx(0.28)


def test_registry_lists_the_four_strategies_and_rejects_unknown_names():
    assert set(STRATEGIES) == {"arbitrage", "peak_shaving", "self_consumption", "load_balancing"}
    assert all(s.describe()["title"] and s.describe()["description"] for s in STRATEGIES.values())
    with pytest.raises(ValueError, match="allowed: arbitrage, peak_shaving"):
        get_strategy("moon_phase")


class Toy(Strategy):
    """A strategy as a new module would define it: text, (default) LP weights, intent and real-time rule."""

    name = "toy"
    title = "Toy"
    description = "Follows half the planned battery power."

    def intent(self, plan, step: PlanStepLike) -> Intent:
        return Intent(plan.strategy, step, peak_import_w=-1.0)

    def realtime(self, meter: Meter, step: PlanStepLike, intent: Intent) -> Request:
        return Request(step.bess_power_w / 2, f"toy: half the plan ({meter.site_w} W on site, {intent.peak_import_w})")


class FixedClock:
    def __init__(self, now: float):
        self._now = now

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now


def planner_with(plan, tmp_path) -> Planner:
    planner = Planner(ConfigStore(tmp_path / "ems.yaml", EmsConfig()), FixedClock(plan.start_ts + 60), None, None,
                      None, None)
    planner.record = PlanRecord(plan, plan.start_ts, 0.0)
    return planner


def test_a_strategy_registered_in_the_registry_is_known_everywhere(monkeypatch, tmp_path):
    monkeypatch.setitem(STRATEGIES, Toy.name, Toy())
    # The config accepts its name, and lists it among the allowed ones.
    assert parse_yaml_config("strategy: {mode: manual, current: toy}").strategy.current == "toy"
    with pytest.raises(ConfigError, match=r"strategy.current: 'moon_phase' is not allowed \(allowed: arbitrage, "
                                          r"peak_shaving, self_consumption, load_balancing, toy\)"):
        parse_yaml_config("strategy: {mode: manual, current: moon_phase}")
    # GET /api/strategies lists what describe() says.
    assert {"name": "toy", "title": "Toy", "description": "Follows half the planned battery power."} in \
        [s.describe() for s in STRATEGIES.values()]
    # The optimizer plans with it (base weights), the planner asks it for the intent ...
    plan = solved(day(EVENING_DEAR, 2.0), "toy")
    assert plan.strategy == "toy"
    intent = planner_with(plan, tmp_path).intent()
    assert intent.strategy == "toy" and intent.step == plan.steps[0] and intent.peak_import_w == -1.0
    # ... and the real-time layer runs its rule.
    now = plan.start_ts + 60
    state = PlantState().with_updates({"grid.power_w": Measurement(300.0, now, "sim", 5.0),
                                       "bess.power_w": Measurement(0.0, now, "sim", 5.0)})
    request = realtime_request(state, now, intent)
    assert request.power_w == pytest.approx(plan.steps[0].bess_power_w / 2)
    assert request.why == "toy: half the plan (300.0 W on site, -1.0)"


def test_unregistered_names_are_rejected_by_the_config():
    with pytest.raises(ConfigError, match=r"strategy.current: 'toy' is not allowed \(allowed: arbitrage, "
                                          r"peak_shaving, self_consumption, load_balancing\)"):
        parse_yaml_config("strategy: {current: toy}")
    with pytest.raises(ConfigError, match=r"strategy.current: is required when mode is manual \(allowed: arbitrage, "
                                          r"peak_shaving, self_consumption, load_balancing\)"):
        parse_yaml_config("strategy: {mode: manual}")


def test_planner_intent_carries_what_the_strategy_takes_from_the_plan(tmp_path):
    shaving = solved(day(MIDDAY_CHEAP, PEAKY_LOAD), "peak_shaving")
    intent = planner_with(shaving, tmp_path).intent()
    assert intent == Intent("peak_shaving", shaving.steps[0], max(s.grid_power_w for s in shaving.steps))
    arbitrage = solved(day(MIDDAY_CHEAP, PEAKY_LOAD), "arbitrage")
    assert planner_with(arbitrage, tmp_path).intent() == Intent("arbitrage", arbitrage.steps[0], None)

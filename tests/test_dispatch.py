"""The real-time layer: what the battery is asked for, per strategy (each strategy module's `realtime` rule),
given the meter and the plan step."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from ems.optimizer.realtime import Intent, realtime_request
from ems.state import Measurement, PlantState

NOW = 1_700_000_000.0


def plant(grid_w: float | None, bess_w: float | None) -> PlantState:
    updates = {}
    if grid_w is not None:
        updates["grid.power_w"] = Measurement(grid_w, NOW, "sim", 5.0)
    if bess_w is not None:
        updates["bess.power_w"] = Measurement(bess_w, NOW, "sim", 5.0)
    return PlantState().with_updates(updates)


@dataclass(frozen=True)
class Step:
    bess_power_w: float
    grid_power_w: float


@pytest.mark.parametrize("grid_w, bess_w, intent, expected_w", [
    pytest.param(800, 0, Intent(None, None), 800, id="no plan: import 800 W -> discharge 800 W"),
    pytest.param(-2000, 500, Intent(None, None), -1500, id="no plan: export while discharging -> charge the surplus"),
    pytest.param(300, 1000, Intent("self_consumption", Step(0, 0)), 1300, id="self-consumption follows the meter"),
    pytest.param(300, 1000, Intent("arbitrage", Step(-3000, 4000)), -3000,
                 id="arbitrage: planned power, not the meter"),
    pytest.param(6000, 0, Intent("peak_shaving", Step(0, 5000), peak_import_w=4000), 2000,
                 id="peak shaving: import above the plan's peak -> discharge the excess"),
    pytest.param(1000, 0, Intent("peak_shaving", Step(-500, 1500), peak_import_w=4000), -500,
                 id="peak shaving: below the peak -> planned power"),
    pytest.param(2500, 0, Intent("load_balancing", Step(0, 1500)), 1000,
                 id="load balancing: grid held at the plan's grid power"),
])
def test_request_per_strategy(grid_w, bess_w, intent, expected_w):
    assert realtime_request(plant(grid_w, bess_w), NOW, intent).power_w == pytest.approx(expected_w)


def test_unknown_meter_asks_for_nothing_except_a_planned_trade():
    assert realtime_request(plant(None, 0), NOW, Intent(None, None)).power_w == 0.0
    assert realtime_request(plant(None, None), NOW, Intent("arbitrage", Step(2000, 0))).power_w == 2000


def test_stale_meter_counts_as_unknown():
    stale = PlantState().with_updates({"grid.power_w": Measurement(900.0, NOW - 60, "sim", 5.0),
                                       "bess.power_w": Measurement(0.0, NOW, "sim", 5.0)})
    assert realtime_request(stale, NOW, Intent(None, None)).power_w == 0.0


@pytest.mark.parametrize("intent, why", [
    (Intent(None, None), "no plan yet: self-consumption"),
    (Intent("self_consumption", Step(0, 0)), "self-consumption: grid held at 0 W"),
    (Intent("peak_shaving", None), "self-consumption: grid held at 0 W"),
    (Intent("no_such_strategy", Step(0, 0)), "self-consumption: grid held at 0 W"),
    (Intent("arbitrage", Step(-3000, 4000)), "arbitrage: planned battery power"),
    (Intent("peak_shaving", Step(0, 5000), peak_import_w=400), "peak shaving: import held at 400 W"),
    (Intent("peak_shaving", Step(0, 5000)), "peak shaving: planned battery power"),
    (Intent("load_balancing", Step(0, 1500)), "load balancing: grid held at 1500 W"),
])
def test_each_request_says_why(intent, why):
    assert realtime_request(plant(1000, 0), NOW, intent).why == why
    if intent.strategy != "arbitrage":
        assert realtime_request(plant(None, 0), NOW, intent).why == "no fresh meter reading: idle"

"""Energy flows, money per day and plan vs actual, on constructed days whose answers are known by hand,
and the same routes on the running appliance."""
from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from appliance import demo_config, start_ems
from ems.config import EmsConfig
from ems.config.validate import parse_config
from ems.history.analytics import Analytics, local_day_bounds
from ems.history.flows import allocate_w
from ems.history.store import HistoryStore
from support import wait_until

VIENNA = ZoneInfo("Europe/Vienna")
CONFIG = parse_config(EmsConfig, {"site": {"timezone": "Europe/Vienna"}, "bess": {"capacity_kwh": 10.0},
                                  "strategy": {"replan_interval_min": 60}})

# A day by hand, in four local six-hour blocks (signs: battery > 0 discharges, grid > 0 imports):
#   00–06 the battery runs the house (500 W);   06–12 the grid does (1000 W);
#   12–18 PV 4 kW: 1 kW house, 2 kW battery, 1 kW export, 0.2 kW curtailed;
#   18–24 house 2 kW: 1.5 kW battery, 0.5 kW grid.
BLOCKS = [  # (pv, load, battery, grid, curtailed)
    (0.0, 500.0, 500.0, 0.0, 0.0),
    (0.0, 1000.0, 0.0, 1000.0, 0.0),
    (4000.0, 1000.0, -2000.0, -1000.0, 200.0),
    (0.0, 2000.0, 1500.0, 500.0, 0.0),
]
IMPORT_PRICE, EXPORT_PRICE = 0.30, 0.08


def day_rows(day: date, step_s: int = 60) -> list[dict[str, Any]]:
    start, end = local_day_bounds(day, VIENNA)
    rows = []
    ts = start
    while ts < end:
        hour = datetime.fromtimestamp(ts, VIENNA).hour
        pv, load, bess, grid, curtailed = BLOCKS[hour // 6]
        rows.append({"ts": ts, "dt_s": float(step_s), "pv_power_w": pv, "load_power_w": load, "bess_power_w": bess,
                     "grid_power_w": grid, "pv_curtailed_w": curtailed, "soc_pct": 20.0 + hour,
                     "import_price_eur_per_kwh": IMPORT_PRICE, "export_price_eur_per_kwh": EXPORT_PRICE})
        ts += step_s
    return rows


@pytest.fixture
def store(tmp_path: Path):
    s = HistoryStore(tmp_path / "history.db")
    yield s
    s.close()


def test_the_allocation_rule_serves_the_house_from_pv_then_battery_then_grid():
    assert allocate_w(pv=5.0, load=2.0, bess=0.0, grid=-3.0) == {
        "pv_to_load": 2.0, "pv_to_battery": 0.0, "pv_to_grid": 3.0, "battery_to_load": 0.0,
        "battery_to_grid": 0.0, "grid_to_load": 0.0, "grid_to_battery": 0.0}
    flows = allocate_w(pv=2.0, load=1.0, bess=1.0, grid=-2.0)  # PV and battery both export
    assert (flows["pv_to_load"], flows["pv_to_grid"], flows["battery_to_grid"]) == (1.0, 1.0, 1.0)
    flows = allocate_w(pv=0.0, load=1.0, bess=-2.0, grid=3.0)  # the grid charges the battery
    assert (flows["grid_to_load"], flows["grid_to_battery"]) == (1.0, 2.0)


def test_energy_flows_of_a_constructed_day_match_the_hand_calculation(store: HistoryStore):
    day = date(2026, 11, 30)
    store.write_telemetry(day_rows(day))
    lo, hi = local_day_bounds(day, VIENNA)
    body = store.energy_flows(lo, hi)
    assert body["covered_h"] == pytest.approx(24.0)
    assert body["flows_kwh"] == pytest.approx({
        "pv_to_load": 6.0, "pv_to_battery": 12.0, "pv_to_grid": 6.0, "grid_to_load": 6.0 + 3.0,
        "grid_to_battery": 0.0, "battery_to_load": 3.0 + 9.0, "battery_to_grid": 0.0, "pv_curtailed": 1.2})
    assert body["totals_kwh"] == pytest.approx({"pv": 24.0, "load": 27.0, "import": 9.0, "export": 6.0,
                                                "charge": 12.0, "discharge": 12.0})
    # Part of a day: 11:30–12:30 local is half an hour of grid supply and half an hour of PV.
    half = store.energy_flows(lo + 11.5 * 3600, lo + 12.5 * 3600)["flows_kwh"]
    assert (half["grid_to_load"], half["pv_to_load"], half["pv_to_battery"]) == pytest.approx((0.5, 0.5, 1.0))
    # Not on a quarter-hour boundary: the raw rows answer the edges.
    edge = store.energy_flows(lo + 12 * 3600 + 7 * 60, lo + 12 * 3600 + 29 * 60)["flows_kwh"]
    assert edge["pv_to_battery"] == pytest.approx(2.0 * 22 / 60, abs=1e-4)  # kWh to 4 places


def test_daily_analytics_of_a_constructed_month_price_every_sample_against_no_battery(store: HistoryStore):
    days = [date(2026, 11, d) for d in range(1, 31)]
    for day in days:
        store.write_telemetry(day_rows(day))
        lo, _hi = local_day_bounds(day, VIENNA)
        for hour in range(24):  # a run an hour: arbitrage until 18:00, then self-consumption
            store.record_optimization_run(lo + hour * 3600, "arbitrage" if hour < 18 else "self_consumption",
                                          "optimal")
    now = local_day_bounds(days[-1], VIENNA)[1] - 30
    analytics = Analytics(store, lambda: CONFIG, lambda: now)

    daily = analytics.daily(30)
    assert daily["timezone"] == "Europe/Vienna" and [d["date"] for d in daily["days"]] == [d.isoformat() for d in days]
    # By hand: import 9 kWh × 0.30 − export 6 kWh × 0.08 = 2.22 €. Without the battery the grid carries
    # grid + battery: 3 + 6 + 12 kWh imported (6.30 €) and 18 kWh exported (1.44 €) = 4.86 €.
    for d in daily["days"]:
        assert d["covered_h"] == pytest.approx(24.0)
        assert (d["import_kwh"], d["export_kwh"]) == pytest.approx((9.0, 6.0))
        assert d["cost_eur"] == pytest.approx(2.22) and d["cost_no_battery_eur"] == pytest.approx(4.86)
        assert d["savings_eur"] == round(d["cost_no_battery_eur"] - d["cost_eur"], 4) == pytest.approx(2.64)
        assert d["full_cycles"] == pytest.approx((12 + 12) / (2 * 10.0))
        assert d["avg_soc_pct"] == pytest.approx(31.5)
        assert d["self_consumption_pct"] == pytest.approx(75.0)  # (6 + 12) of 24 kWh PV used on site
        assert d["self_sufficiency_pct"] == pytest.approx(100 * (1 - 9 / 27), abs=0.01)
        assert d["priced_pct"] == 100.0
        # (the last day is cut at "now", 30 s before its end)
        assert d["strategy_share_pct"] == pytest.approx({"arbitrage": 75.0, "self_consumption": 25.0}, abs=0.05)

    summary = analytics.summary(30)
    assert summary["days_with_data"] == 30
    assert summary["cost_eur"] == pytest.approx(30 * 2.22) and summary["cost_no_battery_eur"] == pytest.approx(30 * 4.86)
    assert summary["savings_eur"] == pytest.approx(summary["cost_no_battery_eur"] - summary["cost_eur"], abs=1e-4)
    assert summary["avg_daily_savings_eur"] == pytest.approx(2.64)
    assert summary["full_cycles"] == pytest.approx(36.0) and summary["avg_daily_cycles"] == pytest.approx(1.2)
    assert summary["strategy_share_pct"] == pytest.approx({"arbitrage": 75.0, "self_consumption": 25.0}, abs=0.01)
    assert len(summary["last_optimizations"]) == 15

    fewer = analytics.summary(7)  # the last week only
    assert fewer["days_with_data"] == 7 and fewer["cost_eur"] == pytest.approx(7 * 2.22)


def test_a_local_day_across_the_dst_change_has_25_hours():
    lo, hi = local_day_bounds(date(2026, 10, 25), VIENNA)
    assert hi - lo == 25 * 3600


def plan(start_ts: float, bess_w: list[float], grid_w: list[float], import_price: list[float],
         soc: list[float]) -> dict[str, Any]:
    n = len(bess_w)
    return {"start_ts": start_ts, "step_s": 900, "soc0_pct": 50.0, "bess_power_w": bess_w, "soc_pct": soc,
            "grid_power_w": grid_w, "load_power_w": [1000.0] * n, "pv_power_w": [0.0] * n,
            "pv_curtailed_w": [0.0] * n, "import_price_eur_per_kwh": import_price,
            "export_price_eur_per_kwh": [0.08] * n}


def test_plan_vs_actual_compares_each_quarter_with_the_plan_in_force(store: HistoryStore):
    day = date(2026, 11, 30)
    lo, hi = local_day_bounds(day, VIENNA)
    # Morning plan: discharge 1 kW until noon (0.30 €/kWh), then charge 1 kW from the grid (0.10 €/kWh).
    morning = plan(lo, [1000.0] * 48 + [-1000.0] * 48, [0.0] * 48 + [2000.0] * 48, [0.30] * 48 + [0.10] * 48,
                   [50.0 - 0.5 * (k + 1) for k in range(48)] + [26.0 + 0.5 * (k + 1) for k in range(48)])
    # At noon a new plan: hold the battery for the afternoon.
    noon = plan(lo + 12 * 3600, [0.0] * 48, [1000.0] * 48, [0.10] * 48, [26.0] * 48)
    first = store.record_optimization_run(lo - 120, "arbitrage", "optimal", plan=morning)
    second = store.record_optimization_run(lo + 12 * 3600, "arbitrage", "optimal", plan=noon)
    # What happened: the morning as planned, the afternoon as re-planned.
    rows = []
    for i in range(24 * 60):
        morning_half = i < 12 * 60
        rows.append({"ts": lo + 60 * i, "dt_s": 60.0, "load_power_w": 1000.0, "pv_power_w": 0.0,
                     "bess_power_w": 1000.0 if morning_half else 0.0, "grid_power_w": 0.0 if morning_half else 1000.0,
                     "soc_pct": 40.0 if morning_half else 26.0,
                     "import_price_eur_per_kwh": 0.30 if morning_half else 0.10, "export_price_eur_per_kwh": 0.08})
    store.write_telemetry(rows)
    result = Analytics(store, lambda: CONFIG, lambda: hi + 3600).plan_vs_actual(day.isoformat())

    steps = result["steps"]
    assert result["date"] == "2026-11-30" and len(steps) == 96
    assert [s["planned"]["run_id"] for s in steps] == [first] * 48 + [second] * 48
    assert steps[0]["planned"]["soc_pct"] == pytest.approx(49.75)  # the mean over the step: 50 → 49.5
    assert steps[0]["actual"] == pytest.approx({"bess_power_w": 1000.0, "soc_pct": 40.0, "load_power_w": 1000.0,
                                                "pv_power_w": 0.0, "covered_s": 900.0, "cost_eur": 0.0,
                                                "savings_eur": 0.075})
    # Planned savings per morning quarter: no import instead of 0.25 kWh × 0.30 €; afternoon: none.
    summary = result["summary"]
    assert summary["steps_compared"] == 96 and summary["steps_priced"] == 96
    assert summary["planned_savings_eur"] == pytest.approx(48 * 0.075)
    assert summary["realised_savings_eur"] == pytest.approx(48 * 0.075)
    assert summary["realised_pct"] == pytest.approx(100.0)
    assert summary["errors"]["bess_power_w"] == {"mean_abs_error": 0.0, "bias": 0.0}
    assert summary["errors"]["soc_pct"]["mean_abs_error"] > 0  # the SoC readings differ from the plan's

    # Had the morning plan stayed in force, the afternoon charge it promised did not happen: the morning's
    # savings came true but the plan expected them to be spent on recharging (48 × −0.025 €).
    store.record_optimization_run(lo + 12 * 3600, "arbitrage", "optimal", plan=morning)  # a later run, same time
    replayed = Analytics(store, lambda: CONFIG, lambda: hi + 3600).plan_vs_actual(day.isoformat())["summary"]
    assert replayed["planned_savings_eur"] == pytest.approx(48 * 0.075 - 48 * 0.025)
    assert replayed["realised_pct"] == pytest.approx(100 * 3.6 / 2.4)
    assert replayed["errors"]["bess_power_w"] == {"mean_abs_error": 500.0, "bias": 500.0}
    assert Analytics(store, lambda: CONFIG, lambda: hi + 3600).plan_vs_actual(None)["date"] == "2026-12-01"


FAST = demo_config(simulator={"speed": 60.0, "step_s": 0.2},
                   history={"sample_interval_s": 0.2, "flush_interval_s": 0.5})


def test_history_and_analytics_routes_on_the_running_appliance(tmp_path: Path):
    ems = start_ems(tmp_path, FAST)
    try:
        state = wait_until(lambda: (s := ems.get("/api/state")[1]).get("history", {}).get("used_mb") and s, 30)
        assert state["history"]["integrity"] == "ok" and state["history"]["schema_version"] >= 2
        now = state["ts"]

        def ranged():
            body = ems.get(f"/api/history/state?from={now - 600}&to={now + 3600}&points=50&channels=soc_pct,"
                           "grid_power_w")[1]
            return body if body.get("rows") else None

        body = wait_until(ranged, 30)
        assert body["tier"] in ("raw", "1min") and len(body["rows"]) <= 50
        assert {"soc_pct", "soc_pct_min", "soc_pct_max", "grid_power_w_max"} <= set(body["rows"][-1])
        flows = wait_until(lambda: (f := ems.get("/api/history/energy_flows?hours=2")[1])["covered_h"] > 0.05 and f, 30)
        assert set(flows["flows_kwh"]) >= {"pv_to_load", "grid_to_battery", "pv_curtailed"}

        # The planner's runs keep their plans: a quarter hour that has passed is compared with its plan.
        def compared():
            result = ems.get("/api/analytics/plan_vs_actual")[1]
            return result if result["summary"]["steps_compared"] >= 1 else None

        result = wait_until(compared, 90)
        step = next(s for s in result["steps"] if s["planned"] and s["actual"])
        assert step["planned"]["strategy"] and step["actual"]["covered_s"] > 0
        daily = ems.get("/api/analytics/daily?days=2")[1]
        assert len(daily["days"]) == 2 and daily["days"][-1]["covered_h"] > 0
        summary = ems.get("/api/analytics/summary?days=2")[1]
        assert summary["days_with_data"] >= 1 and summary["last_optimizations"]

        for path, field in [("/api/history/state?from=10&to=5", "from"), ("/api/history/state?from=yesterday", "from"),
                            ("/api/history/state?to=2026-01-01T00:00", "to"),
                            ("/api/history/state?channels=soc_pct,nope", "channels"),
                            ("/api/history/energy_flows?hours=0", "hours"), ("/api/analytics/daily?days=0", "days"),
                            ("/api/analytics/summary?days=many", "days"),
                            ("/api/analytics/plan_vs_actual?day=2026-13-01", "day")]:
            status, error = ems.get(path)
            assert status == 400 and error["field"] == field, (path, error)
    finally:
        ems.stop()


def test_a_stale_meter_is_filled_from_the_balance_for_totals_flows_and_money_alike(store: HistoryStore):
    # An hour with the grid meter stale: house 1 kW, no PV, battery idle; the grid must have carried it.
    store.write_telemetry([{"ts": 1_700_001_000.0 + 60 * i, "dt_s": 60.0, "load_power_w": 1000.0, "pv_power_w": 0.0,
                            "bess_power_w": 0.0, "grid_power_w": None, "import_price_eur_per_kwh": 0.30,
                            "export_price_eur_per_kwh": 0.08} for i in range(60)])
    body = store.energy_flows(1_700_001_000.0, 1_700_001_000.0 + 3600)
    assert body["totals_kwh"]["import"] == pytest.approx(1.0) == body["flows_kwh"]["grid_to_load"]
    assert body["cost_eur"] == pytest.approx(0.30)

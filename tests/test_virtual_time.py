"""Hours of plant time in seconds: the real runtime (simulated plant, safety loop, forecasts, planner,
history recorder) on a VirtualClock and a VirtualTimeLoop.

Nothing here is mocked but the passage of time: every subsystem sleeps and waits through the clock, the
loop jumps to the next timer whenever all of them are waiting, and blocking work (LP solves, SQLite
batches, forecast fits) still runs in its threads, during which virtual time passes at the real rate.
"""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import yaml

from ems.clock import VirtualClock, VirtualTimeLoop, run_virtual
from ems.config import ConfigStore
from ems.runtime import Listen, Runtime

START = datetime(2024, 6, 12, 4, 0, tzinfo=timezone.utc).timestamp()  # 06:00 in Vienna: the sun comes up
HOURS = 6


def virtual_config() -> dict:
    return {
        "bess": {"capacity_kwh": 10.0, "max_charge_power_kw": 5.0, "max_discharge_power_kw": 5.0},
        "strategy": {"mode": "auto", "replan_interval_min": 15},
        "forecast": {"price_source": "bundled", "pv_peak_kwp": 8.0},
        "power_control": {"enabled": True, "auto_write": True, "safety_period_s": 5.0},
        "history": {"sample_interval_s": 10.0, "flush_interval_s": 60.0},
        "simulator": {"enabled": True, "serve_modbus": False, "step_s": 5.0, "initial_soc_pct": 30.0,
                      "pv_peak_kwp": 8.0, "start": "2024-06-12T04:00:00Z"},
    }


def test_planner_and_safety_loop_run_six_hours_of_plant_time(tmp_path):
    (tmp_path / "ems.yaml").write_text(yaml.safe_dump(virtual_config()))
    clock = VirtualClock(START)
    seen: dict = {}

    async def main() -> None:
        assert isinstance(asyncio.get_running_loop(), VirtualTimeLoop)
        rt = Runtime(ConfigStore.open(tmp_path / "ems.yaml"), tmp_path, Listen("127.0.0.1", 0), clock=clock)
        await rt.start()
        socs = []
        try:
            for _ in range(HOURS * 4):  # every quarter hour, as a user glancing at the dashboard would
                await clock.sleep(900)
                soc = rt.bus.snapshot().value("battery.soc_pct", clock.now())
                socs.append(soc)
        finally:
            seen.update(cycles=rt.safety.cycles, planner_runs=rt.planner.runs, plan=rt.planner.plan,
                        rows=rt.recorder.rows_written, decision=rt.safety.last_decision, socs=socs,
                        tasks=rt.supervisor.status(), end=clock.now(),
                        stored=rt.history.telemetry_since(START, 10_000))
            await rt.stop()

    started = time.perf_counter()
    run_virtual(main())
    real_s = time.perf_counter() - started
    print(f"{HOURS} h of plant time in {real_s:.1f} s real")

    assert seen["end"] - START >= HOURS * 3600
    # The safety loop ran at its period (5 s) the whole time.
    assert seen["cycles"] >= 0.9 * HOURS * 3600 / 5
    assert seen["decision"].state == "normal", seen["decision"]
    # The planner re-planned on its schedule (every 15 min) and its plan is current.
    assert seen["planner_runs"] >= HOURS * 4 - 1
    assert seen["plan"] is not None and seen["plan"].start_ts >= START + (HOURS - 1) * 3600
    # The battery really moved under the plan (whichever way the strategy chose).
    assert all(s is not None for s in seen["socs"])
    assert max(seen["socs"]) - min(seen["socs"]) > 5
    # History kept one row per sample interval, all flushed to SQLite by the clean stop.
    assert seen["rows"] >= 0.9 * HOURS * 360
    assert len(seen["stored"]) == seen["rows"]
    assert all(t["restarts"] == 0 for t in seen["tasks"].values()), seen["tasks"]

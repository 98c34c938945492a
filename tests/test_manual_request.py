"""A manual battery request (the cloud's or an operator's) replaces the plan for a bounded time, never the limits:
the real runtime on the simulated plant in virtual time."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import yaml

from ems.clock import VirtualClock, run_virtual
from ems.config import ConfigStore
from ems.errors import ApiError
from ems.manual import ManualRequest
from ems.runtime import Listen, Runtime

START = datetime(2024, 6, 12, 10, 0, tzinfo=timezone.utc).timestamp()


def config() -> dict:
    return {
        "bess": {"capacity_kwh": 10.0, "max_charge_power_kw": 5.0, "max_discharge_power_kw": 5.0},
        "forecast": {"price_source": "bundled", "pv_peak_kwp": 8.0},
        "power_control": {"enabled": True, "auto_write": True, "safety_period_s": 5.0},
        "simulator": {"enabled": True, "serve_modbus": False, "step_s": 5.0, "initial_soc_pct": 60.0,
                      "pv_peak_kwp": 8.0, "start": "2024-06-12T10:00:00Z"},
    }


def test_out_of_bounds_requests_are_refused_naming_the_field():
    manual = ManualRequest()
    for power, duration, field in ((6000.0, 60, "power_w"), (1000.0, 0, "duration_s"), (1000.0, 5 * 3600, "duration_s"),
                                   ("lots", 60, "power_w"), (float("nan"), 60, "power_w"), (True, 60, "power_w")):
        with pytest.raises(ApiError) as caught:
            manual.set(power, duration, 0.0, "test", max_power_w=5000.0)
        assert caught.value.field == field and caught.value.status == 400
    assert manual.active(0.0) is None
    manual.set(-2500, 60, 100.0, "test", max_power_w=5000.0)
    assert manual.active(159.0).power_w == -2500.0 and manual.active(160.0) is None  # it expires


def test_a_manual_request_is_followed_until_it_expires_and_a_dso_trip_still_wins(tmp_path):
    (tmp_path / "ems.yaml").write_text(yaml.safe_dump(config()))
    clock = VirtualClock(START)
    seen: dict = {}

    async def main() -> None:
        rt = Runtime(ConfigStore.open(tmp_path / "ems.yaml"), tmp_path, Listen("127.0.0.1", 0), clock=clock)
        await rt.start()
        try:
            await clock.sleep(60)
            rt.request_setpoint(-4000.0, 300, "test")  # charge 4 kW for five minutes
            await clock.sleep(30)
            seen["during"] = rt.safety.last_decision
            assert rt.simulation is not None
            rt.simulation.apply_event(rt.simulation.parse_event({"type": "dso_trip"}))
            await clock.sleep(30)
            seen["tripped"] = rt.safety.last_decision
            rt.simulation.apply_event(rt.simulation.parse_event({"type": "dso_normal"}))
            await clock.sleep(300)
            seen["after"] = rt.safety.last_decision
            seen["manual"] = rt.manual.active(clock.now())
        finally:
            await rt.stop()

    run_virtual(main())
    during, tripped, after = seen["during"], seen["tripped"], seen["after"]
    assert during.requested_w == -4000.0 and during.setpoint_w == pytest.approx(-4000.0)
    assert tripped.requested_w == -4000.0  # still asked for …
    assert tripped.state == "shutdown" and tripped.setpoint_w == 0.0  # … but the DSO's trip decides
    assert seen["manual"] is None and after.requested_w != -4000.0  # expired: the plan's request again

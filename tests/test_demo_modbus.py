"""The demo as shipped: BMS, PCS, meter and DSO box are simulated Modbus TCP servers, polled for real."""
from __future__ import annotations

from appliance import demo_config
from support import wait_until


def test_demo_runs_through_modbus_and_obeys_a_dso_trip(ems_factory):
    # Plant time runs 30x: the DSO box orders a trip after 150 simulated seconds (5 s real).
    ems = ems_factory(demo_config(modbus=True,
                                  simulator={"speed": 30.0, "step_s": 0.2, "start": "2024-06-15T12:00:00+02:00",
                                             "dso_script": [{"at_s": 0, "mode": "normal"},
                                                            {"at_s": 150, "mode": "trip"}]},
                                  strategy={"mode": "manual", "current": "self_consumption"}))

    def online_and_working():
        state = ems.get("/api/state")[1]
        plant = state["plant"]
        online = all(p and p["value"] is True for p in plant["devices"].values())
        soc, bess = plant["battery"]["soc_pct"], plant["bess"]["power_w"]
        moving = bess and bess["value"] is not None and bess["source"] == "modbus" and abs(bess["value"]) > 500
        return state if online and soc and soc["source"] == "modbus" and moving else None

    state = wait_until(online_and_working, 10)
    assert state["plant"]["grid"]["power_w"]["source"] == "modbus"
    assert state["plant"]["dso"]["mode"]["value"] == "normal"
    assert {d["state"] for d in state["devices"].values()} == {"online"}

    def tripped():
        state = ems.get("/api/state")[1]
        pc, plant = state["power_control"], state["plant"]
        bess_w = plant["bess"]["power_w"]["value"]  # measured by the PCS over Modbus
        stopped = bess_w is not None and abs(bess_w) < 1.0
        return state if pc["state"] == "shutdown" and stopped else None

    state = wait_until(tripped, 15)
    assert state["power_control"]["remote_shutdown_requested"] is True
    assert state["power_control"]["effective_setpoint_w"] == 0.0
    assert state["plant"]["dso"]["mode"]["value"] == "trip"
    assert state["plant"]["control"]["remote_shutdown_requested"]["value"] is True
    notes = ems.get("/api/notifications")[1]["notifications"]
    assert any(n["category"] == "dso" and "shutdown" in n["message"] for n in notes)
    assert ems.stop() == 0


def test_sigterm_with_a_modbus_pcs_leaves_it_at_0_w_over_a_live_link(ems_factory):
    ems = ems_factory(demo_config(modbus=True, simulator={"speed": 10.0, "step_s": 0.2,
                                                          "start": "2024-06-15T12:00:00+02:00"},
                                  strategy={"mode": "manual", "current": "self_consumption"}))
    wait_until(lambda: (lambda b: b and b["value"] is not None and abs(b["value"]) > 500)(
        ems.get("/api/state")[1]["plant"]["bess"]["power_w"]), 15)
    assert ems.stop() == 0
    log = "".join(ems.lines)
    assert "safe setpoint written (safety loop stopped)" in log
    assert "could not write the safe setpoint" not in log

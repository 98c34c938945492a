"""Modbus settings API, the connection test, and scripted simulator events — against the running demo."""
from __future__ import annotations

import json

import pytest

from appliance import demo_config, start_ems
from support import wait_until


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cfg = demo_config(modbus=True, simulator={"speed": 10.0, "step_s": 0.2, "start": "2024-06-15T12:00:00+02:00"},
                      strategy={"mode": "manual", "current": "self_consumption"})
    ems = start_ems(tmp_path_factory.mktemp("modbus-api"), cfg)
    wait_until(lambda: all(d["online"] for d in ems.get("/api/state")[1]["devices"].values()), 15)
    yield ems
    ems.stop()


def power_control(ems):
    return ems.get("/api/state")[1]["power_control"]


def test_profiles_are_listed_and_described(demo):
    status, body = demo.get("/api/modbus/profiles")
    keys = {p["key"] for p in body["profiles"]}
    assert status == 200 and {"hithium_ess_5016", "wstech_pcs", "eastron_sdm630", "generic_dso_box"} <= keys
    assert {p["key"]: p["verified"] for p in body["profiles"]}["wstech_pcs"] is False
    status, body = demo.get("/api/modbus/profiles?profile=hithium_ess_5016")
    soc = [r for r in body["profile"]["registers"].values() if r.get("point") == "battery.soc_pct"]
    assert status == 200 and [r["address"] for r in soc] == [4]
    status, body = demo.get("/api/modbus/profiles?profile=nope")
    assert status == 404 and body["field"] == "profile"


def test_connection_test_reads_the_key_registers_of_a_configured_device(demo):
    devices = demo.get("/api/modbus/config")[1]["modbus"]
    bms = next(d for d in devices if d["name"] == "bms")
    status, result = demo.post("/api/modbus/test", json.dumps(bms).encode())
    assert status == 200 and result["ok"] is True, result
    assert result["values"] and result["latency_ms"]["max"] >= result["latency_ms"]["min"] >= 0
    nobody = {**bms, "name": "ghost", "port": 502}  # the Modbus port of the device's host; nothing listens
    status, result = demo.post("/api/modbus/test", json.dumps(nobody).encode())
    assert status == 200 and result["ok"] is False and result["errors"]


@pytest.mark.parametrize("body, field", [
    (b'[{"name": "bms", "role": "battery", "profile": "hithium_ess_5016", "host": "127.0.0.1"}]', "modbus[0].role"),
    (b'[{"name": "bms", "role": "bms", "profile": "no_such_profile", "host": "127.0.0.1"}]', "modbus[0].profile"),
    (b'[{"name": "bms", "role": "bms", "profile": "hithium_ess_5016"}]', "modbus[0].host"),
    (b'{"devices": []}', "modbus"),
])
def test_bad_modbus_config_gets_400_naming_the_field(demo, body, field):
    status, answer = demo.post("/api/modbus/config", body)
    assert status == 400 and answer["field"] == field, answer


def test_dso_limit_device_loss_and_alarm_events_drive_the_safety_loop(demo):
    def state_is(expected, reason):
        pc = power_control(demo)
        return pc if pc["state"] == expected and any(reason in r for r in pc["reasons"]) else None

    status, body = demo.post("/api/simulator/events", b'{"type": "dso_limit", "limit_pct": 30}')
    assert status == 200, body
    pc = wait_until(lambda: state_is("limited", "DSO limit 30 %"), 10)
    assert pc["effective_setpoint_w"] <= 0.3 * 5000 + 1e-6  # discharge at most 30 % of the 5 kW rating
    demo.post("/api/simulator/events", b'{"type": "dso_normal"}')

    assert demo.post("/api/simulator/events", b'{"type": "device_offline", "device": "meter"}')[0] == 200
    pc = wait_until(lambda: state_is("safety", "device offline: meter"), 15)
    assert pc["effective_setpoint_w"] == 0.0
    demo.post("/api/simulator/events", b'{"type": "device_online", "device": "meter"}')
    wait_until(lambda: power_control(demo)["state"] in ("normal", "limited"), 15)

    demo.post("/api/simulator/events", b'{"type": "alarm", "alarm": "insulation resistance low"}')
    pc = wait_until(lambda: state_is("safety", "insulation"), 15)
    assert pc["effective_setpoint_w"] == 0.0
    demo.post("/api/simulator/events", b'{"type": "clear_alarm", "alarm": "insulation resistance low"}')
    wait_until(lambda: power_control(demo)["state"] in ("normal", "limited"), 15)


@pytest.mark.parametrize("body, field", [
    (b'{"type": "meteor"}', "type"),
    (b'{"type": "dso_limit", "limit_pct": 130}', "limit_pct"),
    (b'{"type": "device_offline", "device": "toaster"}', "device"),
    (b'{"type": "alarm", "alarm": "on fire"}', "alarm"),
])
def test_bad_simulator_events_get_400_naming_the_field(demo, body, field):
    status, answer = demo.post("/api/simulator/events", body)
    assert status == 400 and answer["field"] == field


def test_changed_device_settings_apply_without_restart(demo):
    devices = demo.get("/api/modbus/config")[1]["modbus"]
    changed = [{**d, "poll_interval_s": 0.7} if d["name"] == "meter" else d for d in devices]
    status, _ = demo.post("/api/modbus/config", json.dumps(changed).encode())
    assert status == 200
    meter = wait_until(lambda: (lambda m: m if m["poll_interval_s"] == 0.7 and m["online"] else None)(
        demo.get("/api/state")[1]["devices"]["meter"]), 15)
    assert meter["state"] == "online"

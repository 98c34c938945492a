"""Device profiles: the shipped library loads, every mistake in a file is named, the data says what it should."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ems.devices import (active_alarms, decode, decode_values, dso_state, encode, load_library, load_profile,
                         parse_profile, profile_to_json, split_block)
from ems.devices.profile import plant_points
from ems.errors import ProfileError

PROFILES = Path(__file__).resolve().parent.parent / "profiles"
SHIPPED = ("hithium_ess_5016", "wstech_pcs", "eastron_sdm630", "generic_dso_box", "victron_gx_ess",
           "sungrow_sh_hybrid", "sunspec")

BROKEN = """\
meta:
  vendor: ACME
  model: X1
  kind: bms
  source: nowhere
  verified: false
registers:
  soc_pct: {address: 4, function: 4, type: uint16, scael: 0.1}
  voltage_v: {address: 10, function: 4, type: uint32}
  current_a: {address: 11, function: 4, type: uint16}
  temperature_c: {address: 20, function: 4, type: uint17}
  limit_pct: {address: 100, function: 3, type: uint16, access: rw, min: 80, max: 20, scale: 0}
  far: {address: 70000, function: 3, type: uint16}
  status: {address: 12, function: 4, type: uint16, point: battery.soc}
alarms:
  - {register: no_such_register, bit: 0, name: a1, severity: critical, text: x}
  - {register: voltage_v, bit: 0, name: a2, severity: fatal, text: x}
status_codes: {register: stauts, codes: {1: ok}}
controls:
  active_power_set_w: voltage_v
rtc: {year: y, month: m, day: d, hour: h, minute: mi, second: s}
"""


def load_text(tmp_path: Path, text: str, key: str = "acme_x1"):
    path = tmp_path / f"{key}.yaml"
    path.write_text(text, encoding="utf-8")
    return load_profile(path), path


def errors_of(tmp_path: Path, text: str) -> tuple[list[str], Path]:
    path = tmp_path / "acme_x1.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    return [str(p) for p in err.value.problems], path


# --- the shipped library ----------------------------------------------------------------------------------

def test_every_shipped_profile_loads_without_error():
    profiles, errors = load_library(PROFILES)
    assert errors == {}
    assert set(SHIPPED) <= set(profiles)
    for key, profile in profiles.items():
        assert profile.key == key and profile.meta.source
        for block in profile.read_plan():
            c = profile.connection
            limit = c.max_read_bits if block.function in (1, 2) else c.max_read_registers
            assert block.count <= limit <= (2000 if block.function in (1, 2) else 125)


def test_profile_json_is_json_and_loads_back_to_the_same_profile():
    profiles, _ = load_library(PROFILES)
    for key, profile in profiles.items():
        doc = json.loads(json.dumps(profile_to_json(profile)))
        assert doc["key"] == key and (doc["read_plan"] or key == "sunspec")
        doc.pop("key")
        doc.pop("read_plan")
        assert parse_profile(doc, key) == profile, key


def test_hithium_profile_has_the_vendor_facts():
    p = load_profile(PROFILES / "hithium_ess_5016.yaml")
    assert p.meta.kind == "bms" and p.meta.verified
    rtc = [p.registers[n] for n in (p.rtc.year, p.rtc.month, p.rtc.day, p.rtc.hour, p.rtc.minute, p.rtc.second)]
    assert [(r.address, r.function, r.writable) for r in rtc] == [(a, 3, True) for a in range(524, 530)]
    assert encode(p.registers[p.rtc.year], 2026) == [26]
    heartbeat = p.registers[p.controls.heartbeat.register]
    assert (heartbeat.address, heartbeat.function, heartbeat.category) == (530, 3, "heartbeat")
    assert p.status_codes.text(7) == "charging and discharging prohibited"
    assert p.status_codes.text(4) == "unknown status 4"
    points = p.point_registers()
    for point in ("battery.soc_pct", "battery.soh_pct", "battery.voltage_v", "battery.current_a",
                  "battery.temperature_c", "battery.max_charge_power_w", "battery.max_discharge_power_w",
                  "battery.insulation_resistance_kohm", "battery.status_code"):
        assert len(points[point]) == 1, point


def test_hithium_read_plan_is_five_requests_within_its_120_register_limit():
    p = load_profile(PROFILES / "hithium_ess_5016.yaml")
    plan = p.read_plan()
    assert [(b.function, b.address, b.count) for b in plan] == [
        (2, 1, 80), (3, 500, 2), (3, 503, 1), (3, 524, 7), (4, 2, 46)]
    assert all(b.count <= 120 for b in plan)


def test_hithium_captured_block_decodes_to_plant_values():
    """Input registers 2..47 as a BMS at 51.2 % SoC, charging 120.5 A, 'ready' would send them."""
    p = load_profile(PROFILES / "hithium_ess_5016.yaml")
    block = next(b for b in p.read_plan() if b.function == 4)
    words = [0] * block.count
    def put(address, *w):
        words[address - block.address:address - block.address + len(w)] = list(w)
    put(2, 7680)          # 768.0 V
    put(3, 33205)         # 0.1 A/bit - 3200 A -> +120.5 A
    put(4, 51, 98)        # SoC, SoH
    put(18, 0x0001, 0x86A0)  # 100000 * 0.1 kWh
    put(32, 1250, 1000)   # 125.0 kW discharge, 100.0 kW charge
    put(42, 65, 3, 0, 1500, 0, 1)  # 25 °C, ready, others, 1500 kΩ, PCS ok, EMS comm lost
    values = decode_values(p.registers, split_block(block, words))
    assert values["pack_voltage_v"] == pytest.approx(768.0)
    assert values["pack_current_a"] == pytest.approx(120.5)
    assert (values["soc_pct"], values["soh_pct"], values["temperature_c"]) == (51, 98, 25)
    assert values["charged_energy_total_kwh"] == pytest.approx(10000.0)
    assert values["max_discharge_power_w"] == 125_000 and values["max_charge_power_w"] == 100_000
    assert p.status_codes.text(values["system_status"]) == "ready (relays closed, no current)"
    assert [a.name for a in active_alarms(p.alarms, values)] == ["ems_comm_lost"]


def test_hithium_alarm_discrete_inputs_follow_the_vendor_table():
    p = load_profile(PROFILES / "hithium_ess_5016.yaml")
    bits = [0] * 80
    for di in (54, 57):  # charging prohibited, BMS fault summary
        bits[di - 1] = 1
    values = {"system_alarms": decode(p.registers["system_alarms"], bits)}
    active = active_alarms(p.alarms, values)
    assert [(a.name, a.severity) for a in active] == [("charge_prohibited", "critical"), ("bms_fault", "shutdown")]


def test_wstech_profile_says_its_addresses_are_placeholders():
    p = load_profile(PROFILES / "wstech_pcs.yaml")
    assert p.meta.verified is False and "PLACEHOLDER" in p.meta.notes
    c = p.controls
    assert (c.remote_enable.register, c.active_power_set_w.register, c.active_power_limit_pct.register,
            c.heartbeat.register) == ("remote_enable", "active_power_set_w", "active_power_limit_pct", "keep_alive")
    assert encode(p.registers["active_power_limit_pct"], 60) == [600]
    assert p.point_registers()["bess.power_w"][0].name == "ac_power_w"


def test_eastron_total_power_feeds_grid_power_from_float_words():
    p = load_profile(PROFILES / "eastron_sdm630.yaml")
    total = p.registers["power_w"]
    assert (total.address, total.function, total.point) == (0x0034, 4, "grid.power_w")
    assert decode(total, [0xC4FA, 0x0000]) == -2000.0  # exporting 2 kW
    assert len(p.read_plan()) == 3


def test_victron_battery_power_is_inverted_and_phases_sum_into_grid_power():
    p = load_profile(PROFILES / "victron_gx_ess.yaml")
    assert p.connection.unit_id == 100
    assert p.registers["battery_power_w"].sign == -1
    assert [r.address for r in p.point_registers()["grid.power_w"]] == [820, 821, 822]
    setpoint = p.registers[p.controls.grid_power_set_w.register]
    assert (setpoint.address, setpoint.type, setpoint.write_function) == (2700, "int16", 6)
    assert encode(setpoint, -1500) == [0xFA24]
    assert p.controls.comm_loss_timeout_s == 60


def test_sungrow_forced_mode_controls_and_low_word_first_power():
    p = load_profile(PROFILES / "sungrow_sh_hybrid.yaml")
    sp = p.controls.active_power_set_w
    assert (p.registers[p.controls.remote_enable.register].address, p.controls.remote_enable.on_value) == (13049, 2)
    assert (p.registers[sp.direction_register].address, p.registers[sp.register].address) == (13050, 13051)
    assert (sp.charge_value, sp.discharge_value, sp.idle_value) == (0xAA, 0xBB, 0xCC)
    assert p.registers["export_limit_w"].address == 13073 and p.registers["export_limit_enable"].address == 13086
    assert decode(p.registers["battery_power_w"], [0xFA24, 0xFFFF]) == -1500  # charging 1.5 kW
    assert decode(p.registers["meter_power_w"], [0xFFFF, 0x7FFF]) is None
    assert p.status_codes.text(0x4000) == "running in external EMS mode"


# --- DSO mapping ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("inputs,expected", [
    ({}, ("normal", 100.0)),
    ({"relay_k2": True}, ("limit", 30.0)),
    ({"relay_k3": True}, ("limit", 60.0)),
    ({"relay_k1": True}, ("limit", 0.0)),
    ({"relay_k4": True}, ("normal", 100.0)),
    ({"relay_k2": True, "relay_k3": True}, ("limit", 30.0)),  # lowest active step wins
    ({"trip_input": True, "relay_k4": True}, ("trip", 0.0)),
])
def test_dso_box_inputs_map_to_mode_and_limit(inputs, expected):
    p = load_profile(PROFILES / "generic_dso_box.yaml")
    values = {name: False for name in p.registers} | inputs
    assert dso_state(p.dso, values) == expected


def test_dso_unreadable_input_is_unknown_never_unrestricted():
    p = load_profile(PROFILES / "generic_dso_box.yaml")
    values = {name: False for name in p.registers} | {"relay_k2": None}
    assert dso_state(p.dso, values) is None


def test_dso_mapping_is_data_including_inverted_contacts(tmp_path):
    doc = profile_to_json(load_profile(PROFILES / "generic_dso_box.yaml"))
    doc.pop("key"), doc.pop("read_plan")
    doc["dso"] = {"trip": [{"register": "trip_input", "invert": True}],
                  "steps": [{"register": "relay_k1", "limit_pct": 0}, {"register": "relay_k3", "limit_pct": 60}]}
    p = parse_profile(doc, "fnn_box")
    assert dso_state(p.dso, {"trip_input": True, "relay_k1": False, "relay_k3": True}) == ("limit", 60.0)
    assert dso_state(p.dso, {"trip_input": False, "relay_k1": False, "relay_k3": False}) == ("trip", 0.0)


# --- validation -----------------------------------------------------------------------------------------

def test_a_broken_profile_names_the_file_and_every_field(tmp_path):
    problems, path = errors_of(tmp_path, BROKEN)
    text = "\n".join(problems)
    assert all(p.startswith(f"{path}: ") for p in problems)
    expected = [
        "registers.soc_pct.scael: unknown key, did you mean 'scale'? (allowed: address, function, type",
        "registers.temperature_c.type: 'uint17' is not allowed (allowed: int16, uint16, int32, uint32",
        "registers.current_a.address: 11 overlaps registers.voltage_v (addresses 10..11, function 4)",
        "registers.limit_pct.scale: must not be 0",
        "registers.limit_pct.min: 80 is above max 20",
        "registers.far.address: 70000 is out of range (allowed: 0..65535)",
        "registers.status.point: 'battery.soc' is not allowed (allowed: battery.soc_pct",
        "alarms[0].register: unknown register 'no_such_register'",
        "alarms[1].register: register 'voltage_v' is a uint32 (allowed: bool, bitfield)",
        "alarms[1].severity: 'fatal' is not allowed (allowed: info, warning, critical, shutdown)",
        "status_codes.register: unknown register 'stauts', did you mean 'status'?",
        "controls.active_power_set_w.register: register 'voltage_v' is not writable (access r)",
        "rtc.year: unknown register 'y'",
    ]
    for fragment in expected:
        assert fragment in text, f"missing: {fragment}\n--- got:\n{text}"


def test_a_register_that_fails_is_not_reported_again_where_it_is_referenced(tmp_path):
    problems, _ = errors_of(tmp_path, BROKEN.replace("register: no_such_register", "register: temperature_c"))
    assert not any(p.split(": ")[1] == "alarms[0].register" for p in problems), problems


@pytest.mark.parametrize("register,fragment", [
    ("{address: 1, function: 4, type: uint16, access: rw}", "x.access: 'rw' is not allowed for function 4"),
    ("{address: 1, function: 2, type: uint16}", "x.type: uint16 cannot be read from discrete inputs"),
    ("{address: 1, function: 3, type: string}", "x.count: is required for a string"),
    ("{address: 1, function: 3, type: uint32, count: 2}", "x.count: only for string and bitfield"),
    ("{address: 1, function: 3, type: uint16, write_function: 16}", "x.write_function: only for writable registers"),
    ("{address: 1, function: 3, type: uint32, access: rw, write_function: 6}",
     "x.write_function: 6 is not allowed (allowed: 16)"),
    ("{address: 1, function: 3, type: bool, scale: 0.1}", "x.scale: does not apply to a bool"),
    ("{address: 1, function: 3, type: uint16, sign: -1}", "x.sign: only together with point"),
    ("{address: 1, function: 3, type: uint16, min: 0}", "x.min: only for writable registers"),
    ("{address: 65535, function: 3, type: uint32}", "x.address: 65535 + 2 addresses runs past 65535"),
    ("{address: 1, function: 3, type: uint16, scale_register: nope}", "x.scale_register: unknown register 'nope'"),
    ("{address: 1, function: 3, type: uint16, na_values: [0x1FFFF]}", "x.na_values: [131071] do not fit"),
    ("{address: 1, function: 3}", "x.type: is required"),
    ("[1, 2]", "registers.x: must be a mapping (got [1, 2])"),
])
def test_register_mistakes_are_named(tmp_path, register, fragment):
    text = f"meta: {{vendor: a, model: b, kind: meter, source: c, verified: false}}\nregisters:\n  x: {register}\n"
    problems, _ = errors_of(tmp_path, text)
    assert any(fragment in p for p in problems), problems


def test_missing_sections_and_unknown_top_level_keys(tmp_path):
    problems, _ = errors_of(tmp_path, "meta: {vendor: a, kind: robot}\nregister: {}\n")
    text = "\n".join(problems)
    for fragment in ("register: unknown key, did you mean 'registers'?", "registers: is required",
                     "meta.model: is required", "meta.verified: is required",
                     "meta.kind: 'robot' is not allowed (allowed: bms, pcs, meter, dso, inverter)"):
        assert fragment in text, text


def test_duplicate_keys_in_yaml_are_an_error_not_a_silent_override(tmp_path):
    text = ("meta: {vendor: a, model: b, kind: meter, source: c, verified: false}\nregisters:\n"
            "  x: {address: 1, function: 3, type: uint16}\n  x: {address: 2, function: 3, type: uint16}\n")
    problems, _ = errors_of(tmp_path, text)
    assert any("line 4" in p and "duplicate key 'x'" in p for p in problems), problems


def test_invalid_yaml_is_reported_with_its_line(tmp_path):
    problems, _ = errors_of(tmp_path, "meta: {vendor: a\nregisters: [\n")
    assert len(problems) == 1 and "is not valid YAML" in problems[0] and "line" in problems[0]


def test_a_broken_file_does_not_hide_the_good_ones(tmp_path):
    (tmp_path / "good_meter.yaml").write_text((PROFILES / "eastron_sdm630.yaml").read_text(encoding="utf-8"))
    (tmp_path / "bad_meter.yaml").write_text(BROKEN)
    (tmp_path / "notes.md").write_text("not a profile")
    profiles, errors = load_library(tmp_path)
    assert list(profiles) == ["good_meter"]
    assert list(errors) == ["bad_meter"] and "bad_meter.yaml" in str(errors["bad_meter"])


def test_profile_key_comes_from_the_file_name_and_must_be_a_valid_key(tmp_path):
    text = (PROFILES / "eastron_sdm630.yaml").read_text(encoding="utf-8")
    with pytest.raises(ProfileError, match="not a valid profile key"):
        load_text(tmp_path, text, key="Eastron-SDM")
    profile, _ = load_text(tmp_path, text, key="my_meter")
    assert profile.key == "my_meter"


def test_codes_accept_json_string_keys_and_reject_words():
    doc = {"meta": {"vendor": "a", "model": "b", "kind": "meter", "source": "c", "verified": False},
           "registers": {"st": {"address": 1, "function": 4, "type": "uint16"}},
           "status_codes": {"register": "st", "codes": {"1": "ok", "0x10": "hex", "two": "bad"}}}
    with pytest.raises(ProfileError) as err:
        parse_profile(doc, "k")
    assert [str(p) for p in err.value.problems] == [
        "<memory>: status_codes.codes.two: 'two' is not an integer key (allowed: integers, e.g. 3 or 0x0A)"]
    del doc["status_codes"]["codes"]["two"]
    assert dict(parse_profile(doc, "k").status_codes.codes) == {1: "ok", 16: "hex"}


def test_profiles_are_frozen():
    p = load_profile(PROFILES / "eastron_sdm630.yaml")
    with pytest.raises(AttributeError):
        p.key = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.registers["power_w"] = p.registers["power_w"]  # type: ignore[index]


def test_points_are_the_plant_state_points():
    points = plant_points()
    assert {"battery.soc_pct", "bess.power_w", "grid.power_w", "pv.power_w", "load.power_w", "dso.mode",
            "dso.limit_pct"} <= set(points)

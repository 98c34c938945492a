"""Settings as an attacker below admin meets them: secrets stay write-only, safety-relevant keys are for
admins only with hard bounds, and every change is in the append-only audit log (issue 17, classes 1–3)."""
from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
import yaml

from appliance import demo_config
from ems.config import ConfigStore
from ems.config.guard import secret_paths
from ems.config.schema import EmsConfig
from ems.errors import ApiError, ConfigError
from security_rig import Rig

SECRETS = {"mqtt": {"password": "mqtt-pw-Zq8vLx2"},
           "forecast": {"openweathermap_api_key": "owm-key-9f3b1c7e", "entsoe_token": "entsoe-tok-44c2a1"}}


def config_with_secrets() -> dict:
    cfg = demo_config(modbus=True)  # the shipped demo: BMS, PCS, meter and DSO box as Modbus devices
    cfg["mqtt"] = {"broker": "broker.lan", "username": "ems", **SECRETS["mqtt"]}
    cfg["forecast"] = {**cfg["forecast"], **SECRETS["forecast"]}
    return cfg


@pytest.fixture
def rig(tmp_path: Path):
    r = Rig(tmp_path, config_with_secrets())
    r.add_users()
    yield r
    r.close()


def secret_values() -> list[str]:
    return [v for section in SECRETS.values() for v in section.values()]


# -- class 1: secrets are write-only ----------------------------------------------------------------------------

def all_keys(cls, prefix: str = "") -> list[str]:
    import dataclasses
    import typing
    out = []
    for name, hint in typing.get_type_hints(cls).items():
        path = f"{prefix}.{name}" if prefix else name
        out.append(path)
        inner = [a for a in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(a)]
        if inner:
            out += all_keys(inner[0], path)
    return out


def test_the_schema_marks_every_credential_as_secret():
    secret = set(secret_paths(EmsConfig))
    assert {"forecast.openweathermap_api_key", "forecast.entsoe_token", "mqtt.password"} <= secret
    looks_like_one = {k for k in all_keys(EmsConfig)
                      if re.search(r"password|passwd|secret|token|api_key|apikey|credential", k.rsplit(".", 1)[-1])}
    assert looks_like_one <= secret, looks_like_one - secret


def test_config_gets_show_whether_a_secret_is_set_never_its_value(rig: Rig):
    for role in ("viewer", "operator", "admin"):
        status, _, body = rig.call("GET", "/api/mqtt/config", as_role=role)
        assert status == 200 and body["mqtt"]["password"] == {"set": True}
        status, _, body = rig.call("GET", "/api/config/forecast", as_role=role)
        assert body["forecast"]["openweathermap_api_key"] == {"set": True}
        assert body["forecast"]["entsoe_token"] == {"set": True}
        assert not any(s in json.dumps(body) for s in secret_values())


def test_posting_back_what_a_get_showed_keeps_the_secret_and_replace_and_clear_work(rig: Rig):
    _, _, body = rig.call("GET", "/api/mqtt/config", as_role="admin")
    section = {**body["mqtt"], "client_id": "gateway-7"}
    status, _, answer = rig.call("POST", "/api/mqtt/config", section, as_role="admin")
    assert status == 200 and answer["mqtt"]["password"] == {"set": True}
    assert rig.store.config.mqtt.password == "mqtt-pw-Zq8vLx2" and rig.store.config.mqtt.client_id == "gateway-7"

    without = {k: v for k, v in section.items() if k != "password"}
    assert rig.call("POST", "/api/mqtt/config", without, as_role="admin")[0] == 200
    assert rig.store.config.mqtt.password == "mqtt-pw-Zq8vLx2"  # omitted: kept

    assert rig.call("POST", "/api/mqtt/config", {**section, "password": {"replace": "new-pw-71b"}},
                    as_role="admin")[0] == 200
    assert rig.store.config.mqtt.password == "new-pw-71b"
    assert yaml.safe_load(rig.config_path.read_text())["mqtt"]["password"] == "new-pw-71b"

    assert rig.call("POST", "/api/mqtt/config", {**section, "password": {"clear": True}}, as_role="admin")[0] == 200
    assert rig.store.config.mqtt.password is None
    assert rig.call("GET", "/api/mqtt/config", as_role="admin")[2]["mqtt"]["password"] == {"set": False}

    status, _, answer = rig.call("POST", "/api/mqtt/config", {**section, "password": {"show": True}}, as_role="admin")
    assert status == 400 and answer["field"] == "mqtt.password"


def test_the_config_file_holding_secrets_is_readable_by_its_owner_only(rig: Rig, tmp_path: Path):
    assert stat.S_IMODE(rig.config_path.stat().st_mode) == 0o600  # made so when opened
    rig.call("POST", "/api/config/forecast", {**rig.store.section_plain("forecast"), "vat_pct": 19}, as_role="admin")
    for path in (rig.config_path, rig.config_path.with_name("ems.yaml.bak")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((rig.data_dir / "audit.jsonl").stat().st_mode) == 0o600


def test_a_secret_quoted_anywhere_else_is_scrubbed_from_the_response(rig: Rig):
    # A failing weather fetch may quote its URL, key included, in a notification everyone can read.
    rig.notifications.add("warning", "forecast", "GET https://api.example/forecast?appid=owm-key-9f3b1c7e failed")
    status, _, body = rig.call("GET", "/api/notifications", as_role="viewer")
    assert status == 200 and "owm-key-9f3b1c7e" not in json.dumps(body)
    assert "appid=********" in json.dumps(body)


def test_where_a_secret_is_sent_is_for_admins_to_decide(rig: Rig):
    forecast = rig.store.section_plain("forecast")
    status, _, body = rig.call("POST", "/api/config/forecast",
                               {**forecast, "openweathermap_base_url": "https://collector.evil.example"},
                               as_role="operator")
    assert (status, body["field"]) == (403, "forecast.openweathermap_base_url")
    status, _, body = rig.call("POST", "/api/mqtt/config", {**rig.store.section_plain("mqtt"), "broker": "evil.example"},
                               as_role="operator")
    assert (status, body["field"]) == (403, "mqtt.broker")
    status, _, body = rig.call("POST", "/api/config/forecast",
                               {**forecast, "entsoe_base_url": "https://u:p@web-api.tp.entsoe.eu/api"}, as_role="admin")
    assert (status, body["field"]) == (400, "forecast.entsoe_base_url")  # no credentials inside URLs


# -- class 3: safety-relevant keys: admin only, bounded, audited -------------------------------------------------

@pytest.mark.parametrize("section, change, field", [
    ("power_control", {"enabled": False}, "power_control.enabled"),
    ("power_control", {"auto_write": False}, "power_control.auto_write"),
    ("power_control", {"min_insulation_resistance_kohm": 50}, "power_control.min_insulation_resistance_kohm"),
    ("power_control", {"max_battery_temperature_c": 60}, "power_control.max_battery_temperature_c"),
    ("power_control", {"stale_timeout_s": 60}, "power_control.stale_timeout_s"),
    ("grid_connection", {"max_power_kw": 40}, "grid_connection.max_power_kw"),
    ("feedin_limitation", {"enabled": True, "mode": "fixed", "fixed_limit_pct": 100},
     "feedin_limitation.enabled"),
    ("web", {"allow_registration": True}, "web.allow_registration"),
])
def test_an_operator_gets_403_naming_each_safety_relevant_key_and_nothing_changes(rig: Rig, section, change, field):
    before = rig.config_path.read_text()
    status, _, body = rig.call("POST", f"/api/config/{section}", {**rig.store.section_plain(section), **change},
                               as_role="operator")
    assert (status, body["field"]) == (403, field)
    assert "admin" in body["error"]
    assert rig.config_path.read_text() == before and rig.audit.recent() == []


def test_an_operator_still_tunes_what_is_not_safety_relevant(rig: Rig):
    status, _, body = rig.call("POST", "/api/config/grid_connection",
                               {**rig.store.section_plain("grid_connection"), "warn_utilisation_pct": 70},
                               as_role="operator")
    assert status == 200 and body["changed"] == ["grid_connection.warn_utilisation_pct"]
    devices = rig.store.section_plain("modbus")
    slower = [{**d, "poll_interval_s": 1.5} if d["name"] == "meter" else d for d in devices]
    assert rig.call("POST", "/api/modbus/config", slower, as_role="operator")[0] == 200
    [entry_poll, entry_warn] = rig.audit.recent(2)
    assert entry_poll["field"] == "modbus[meter].poll_interval_s" and entry_poll["user"] == "operator1"
    assert entry_warn["field"] == "grid_connection.warn_utilisation_pct"


def test_removing_or_disabling_a_device_such_as_the_dso_box_is_admin_only(rig: Rig):
    devices = rig.store.section_plain("modbus")
    without_dso = [d for d in devices if d["role"] != "dso"]
    status, _, body = rig.call("POST", "/api/modbus/config", without_dso, as_role="operator")
    assert (status, body["field"]) == (403, "modbus[dso]")
    disabled = [{**d, "enabled": False} if d["role"] == "dso" else d for d in devices]
    status, _, body = rig.call("POST", "/api/modbus/config", disabled, as_role="operator")
    assert (status, body["field"]) == (403, "modbus[dso].enabled")


def test_an_admins_safety_change_is_audited_with_who_when_where_and_old_and_new(rig: Rig):
    section = rig.store.section_plain("power_control")
    status, _, body = rig.call("POST", "/api/config/power_control", {**section, "enabled": False,
                                                                     "max_battery_temperature_c": 50},
                               as_role="admin", addr="192.168.1.23")
    assert status == 200 and rig.store.config.power_control.enabled is False
    entries = {e["field"]: e for e in rig.audit.recent()}
    enabled = entries["power_control.enabled"]
    assert (enabled["user"], enabled["role"], enabled["remote_addr"]) == ("admin1", "admin", "192.168.1.23")
    assert (enabled["old"], enabled["new"], enabled["section"]) == (True, False, "power_control")
    assert abs(enabled["ts"] - os.path.getmtime(rig.data_dir / "audit.jsonl")) < 60
    assert (entries["power_control.max_battery_temperature_c"]["old"],
            entries["power_control.max_battery_temperature_c"]["new"]) == (55.0, 50.0)
    notes = [n.message for n in rig.notifications.recent(10)]
    assert "admin1 changed power_control.enabled: true → false" in notes


@pytest.mark.parametrize("change, field", [
    ({"max_battery_temperature_c": 61}, "power_control.max_battery_temperature_c"),
    ({"max_battery_temperature_c": 120}, "power_control.max_battery_temperature_c"),
    ({"min_insulation_resistance_kohm": 0}, "power_control.min_insulation_resistance_kohm"),
    ({"stale_timeout_s": 600}, "power_control.stale_timeout_s"),
])
def test_safety_thresholds_have_hard_bounds_even_for_admins(rig: Rig, change, field):
    status, _, body = rig.call("POST", "/api/config/power_control",
                               {**rig.store.section_plain("power_control"), **change}, as_role="admin")
    assert (status, body["field"]) == (400, field)
    assert "allowed" in body["error"]


def test_secret_changes_are_audited_without_their_values(rig: Rig):
    section = rig.store.section_plain("mqtt")
    rig.call("POST", "/api/mqtt/config", {**section, "password": {"replace": "brand-new-secret-1"}}, as_role="admin")
    [entry] = rig.audit.recent(1)
    assert (entry["field"], entry["old"], entry["new"]) == ("mqtt.password", "set", "changed")
    log_text = (rig.data_dir / "audit.jsonl").read_text()
    assert "brand-new-secret-1" not in log_text and "mqtt-pw-Zq8vLx2" not in log_text


def test_the_audit_log_is_for_admins_and_exports_as_csv_and_json_lines(rig: Rig):
    rig.call("POST", "/api/config/power_control", {**rig.store.section_plain("power_control"), "auto_write": False},
             as_role="admin")
    for role in ("viewer", "operator"):
        assert rig.call("GET", "/api/audit", as_role=role)[0] == 403
        assert rig.call("GET", "/api/audit/export?format=csv", as_role=role)[0] == 403
    status, _, body = rig.call("GET", "/api/audit", as_role="admin")
    assert status == 200 and body["chain"]["ok"] and body["entries"][0]["field"] == "power_control.auto_write"
    status, headers, text = rig.call("GET", "/api/audit/export?format=csv", as_role="admin")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert "attachment" in headers["Content-Disposition"]
    header, row = text.strip().splitlines()
    assert header.startswith("seq,ts,time_utc,user") and "power_control.auto_write" in row and "admin1" in row
    status, headers, entry = rig.call("GET", "/api/audit/export?format=jsonl", as_role="admin")  # one line: JSON
    assert status == 200 and headers["Content-Type"] == "application/x-ndjson" and entry["new"] is False


def test_the_audit_log_is_append_only_and_tampering_shows(rig: Rig):
    section = rig.store.section_plain("power_control")
    rig.call("POST", "/api/config/power_control", {**section, "auto_write": False}, as_role="admin")
    path = rig.data_dir / "audit.jsonl"
    first = path.read_bytes()
    rig.call("POST", "/api/config/power_control", {**section, "auto_write": True}, as_role="admin")
    assert path.read_bytes().startswith(first)  # earlier entries are never rewritten
    assert rig.audit.verify() == {"ok": True, "entries": 2}
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0].replace(b'"new":false', b'"new":true') + lines[1])  # someone edits the file
    verdict = rig.audit.verify()
    assert verdict["ok"] is False and verdict["broken_at_seq"] == 2


def test_a_change_to_nothing_writes_nothing(rig: Rig):
    before = rig.config_path.stat().st_mtime_ns
    status, _, body = rig.call("POST", "/api/config/bess", rig.store.section_plain("bess"), as_role="operator")
    assert status == 200 and body["changed"] == []
    assert rig.config_path.stat().st_mtime_ns == before and rig.audit.recent() == []


# -- the store itself, without the web ----------------------------------------------------------------------------

def test_the_store_refuses_a_non_admin_change_of_an_admin_only_key(tmp_path: Path):
    (tmp_path / "ems.yaml").write_text(yaml.safe_dump(demo_config()))
    store = ConfigStore.open(tmp_path / "ems.yaml")
    with pytest.raises(ApiError) as err:
        store.apply_change("power_control", {**store.section_plain("power_control"), "enabled": False},
                           may_change_admin_only=False, role="operator")
    assert (err.value.status, err.value.field) == (403, "power_control.enabled")
    with pytest.raises(ConfigError):
        store.apply_change("grid_tariffs", {"high_load_windows": [{"start": "17:00"}] * 49})  # at most 48


def test_user_administration_is_audited_too(rig: Rig):
    status, _, body = rig.call("POST", "/api/users", {"username": "olga", "password": "tidal-ferry-9-lantern",
                                                      "role": "operator"}, as_role="admin")
    assert status == 201
    rig.call("PUT", f"/api/users/{body['user']['id']}", {"role": "admin"}, as_role="admin")
    fields = [(e["field"], e["old"], e["new"], e["user"]) for e in rig.audit.recent(5)]
    assert fields[:2] == [("users[olga].role", "operator", "admin", "admin1"),
                          ("users[olga]", None, {"role": "operator"}, "admin1")]


# -- /api/modbus/test is a commissioning tool, not a port scanner ----------------------------------------------------

def device(**over) -> dict:
    return {"name": "probe", "role": "meter", "profile": "eastron_sdm630", "host": "192.168.1.50", "port": 502, **over}


def test_a_connection_test_is_for_admins(rig: Rig):
    status, _, body = rig.call("POST", "/api/modbus/test", device(), as_role="operator")
    assert status == 403 and rig.tested == []


@pytest.mark.parametrize("over, field", [
    ({"host": "203.0.113.7"}, "device.host"),  # the internet
    ({"host": "intranet.example"}, "device.host"),  # a name: not resolved
    ({"port": 22}, "device.host"),  # not a Modbus port
    ({"host": "127.0.0.1", "port": 631}, "device.host"),  # the gateway's own services
    ({"host": "224.0.0.1"}, "device.host"),
    ({"connection_type": "rtu", "host": None, "serial_port": "/etc/passwd"}, "device.serial_port"),
])
def test_a_connection_test_refuses_free_form_targets(rig: Rig, over: dict, field: str):
    status, _, body = rig.call("POST", "/api/modbus/test", device(**over), as_role="admin")
    assert status in (400, 403) and body["field"] == field, body
    assert rig.tested == []


def test_a_connection_test_reaches_configured_devices_and_new_ones_on_the_lan(rig: Rig):
    configured = next(d for d in rig.store.section_plain("modbus") if d["role"] == "bms")
    assert rig.call("POST", "/api/modbus/test", configured, as_role="admin")[0] == 200
    assert rig.call("POST", "/api/modbus/test", device(), as_role="admin")[0] == 200
    assert rig.call("POST", "/api/modbus/test", device(host="fe80::1"), as_role="admin")[0] == 200
    assert [d.host for d in rig.tested] == [configured["host"], "192.168.1.50", "fe80::1"]


def test_refusals_of_settings_and_connection_tests_are_in_the_readers_language(rig: Rig):
    german = {"Accept-Language": "de-AT,de;q=0.9"}
    bess = {**rig.store.section_plain("bess"), "min_soc_pct": 90, "max_soc_pct": 80}
    status, _, body = rig.call("POST", "/api/config/bess", bess, headers=german, as_role="admin")
    assert (status, body["field"]) == (400, "bess.min_soc_pct")
    assert body["problems"] == [{"field": "bess.min_soc_pct", "message": "muss unter max_soc_pct (80) liegen"}]
    site = {**rig.store.section_plain("site"), "timezone": "Vienna"}
    status, _, body = rig.call("POST", "/api/config/site", site, headers=german, as_role="admin")
    assert status == 400 and body["error"] == ("site.timezone: unbekannte Zeitzone 'Vienna' (ein IANA-Name wie "
                                               "Europe/Vienna; meinten Sie Europe/Vienna?)")
    status, _, body = rig.call("POST", "/api/modbus/test", device(host="203.0.113.7"), headers=german, as_role="admin")
    assert (status, body["field"]) == (403, "device.host")
    assert body["error"] == "203.0.113.7 ist keine private oder link-lokale Adresse (möglich: das LAN der Anlage)"
    status, _, body = rig.call("POST", "/api/modbus/test", device(host="203.0.113.7"), as_role="admin")
    assert body["error"] == "203.0.113.7 is not a private or link-local address (allowed: the LAN of the plant)"
    assert rig.tested == []

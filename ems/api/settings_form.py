"""What the settings page shows: the sections in order, and for each key a label, a hint and its unit, in
the reader's language; everything else (type, bounds, choices, admin-only, secret) comes from the schema
(`ems.config.describe`), so a new key needs one line here and nothing in the page's script.

The page posts a whole section to `/api/config/<section>` (validated as a whole file, written atomically,
applied live): this module only describes, it never writes.
"""
from __future__ import annotations

from typing import Any

from .. import i18n
from ..config.describe import describe_section

M = i18n.mark

# section → (title, what it is for, {key: (label, hint or "")}). Keys not listed are not shown.
SECTIONS: dict[str, tuple[str, str, dict[str, tuple[str, str]]]] = {
    "site": (M("Site"), M("Where the plant is: its wall-clock time decides tariff windows, feed-in rules and "
                          "forecasts."), {
        "name": (M("Site name"), M("Shown in the page header, e.g. the address or the customer's name.")),
        "timezone": (M("Time zone"), M("IANA name, e.g. Europe/Vienna")),
    }),
    "strategy": (M("Strategy and planning"), M("What the plan is for, and how often and how far ahead it is "
                                               "made."), {
        "mode": (M("Mode"), M("Auto picks the strategy per plan; manual keeps the one chosen below.")),
        "current": (M("Strategy in manual mode"), ""),
        "replan_interval_min": (M("Replan every"), ""),
        "horizon_h": (M("Planning horizon"), ""),
    }),
    "bess": (M("Battery"), M("The battery's ratings as the plan and the safety loop use them; the BMS's own "
                             "limits apply on top."), {
        "capacity_kwh": (M("Usable capacity"), ""),
        "max_charge_power_kw": (M("Maximum charge power"), ""),
        "max_discharge_power_kw": (M("Maximum discharge power"), ""),
        "charge_efficiency": (M("Charge efficiency"), M("One way, AC to stored energy (0.5–1).")),
        "discharge_efficiency": (M("Discharge efficiency"), M("One way, stored energy to AC (0.5–1).")),
        "min_soc_pct": (M("Minimum state of charge"), M("No discharging at or below it.")),
        "max_soc_pct": (M("Maximum state of charge"), M("No charging at or above it.")),
        "degradation_cost_eur_per_kwh": (M("Wear cost"), M("Per kWh discharged: the plan only cycles the "
                                                           "battery where the spread pays for it.")),
    }),
    "power_control": (M("Power control"), M("The safety loop's settings. Every one of them can loosen a grid "
                                            "or battery safety rule: only administrators change them, after a "
                                            "confirmation, and each change is recorded in the audit log."), {
        "enabled": (M("Power control on"), M("Off: the EMS writes no setpoints and does not act on the grid "
                                             "operator's orders either.")),
        "auto_write": (M("Write setpoints to the inverter"), M("Off: the EMS plans and shows, but does not "
                                                               "control.")),
        "stale_timeout_s": (M("Stale data after"), M("Older readings force the safe state (0 W); at most 60 s.")),
        "setpoint_resend_s": (M("Re-send setpoint every"), M("For inverters with a communication watchdog.")),
        "safety_period_s": (M("Safety loop period"), ""),
        "dso_comm_loss_limit_pct": (M("Limit when the grid operator's box is unreachable"), ""),
        "min_grid_charge_kw_under_dso_limit": (M("Charging kept under a grid operator limit"),
                                               M("§14a EnWG: at least this stays available.")),
        "min_insulation_resistance_kohm": (M("Minimum insulation resistance"),
                                           M("A lower reading forces the safe state; at least 50 kΩ.")),
        "max_battery_temperature_c": (M("Maximum battery temperature"),
                                      M("A higher reading forces the safe state; at most 60 °C.")),
        "safety_alarm_severity": (M("BMS alarms that force the safe state"), M("This severity and higher.")),
        "hardware_watchdog_path": (M("Hardware watchdog device"), M("e.g. /dev/watchdog; empty = not used.")),
    }),
    "grid_connection": (M("Grid connection"), M("The limits of the connection point: the battery acts against "
                                                "the plan to keep them."), {
        "max_power_kw": (M("Maximum import"), ""),
        "max_feedin_kw": (M("Maximum export"), M("Empty = the same as the maximum import.")),
        "monitoring_enabled": (M("Monitor utilisation"), ""),
        "warn_utilisation_pct": (M("Warn above"), ""),
    }),
    "feedin_limitation": (M("Feed-in limitation"), M("Export limits the grid operator sets: fixed, or by time "
                                                     "of day. Loosening one is for administrators."), {
        "enabled": (M("Feed-in limitation on"), ""),
        "mode": (M("Mode"), M("Fixed: one limit all day; dynamic: the rules below.")),
        "fixed_limit_pct": (M("Fixed limit"), M("Also applies outside every time-based rule.")),
        "pv_integration_enabled": (M("Percentages of the PV peak power"),
                                   M("On: of the PV peak power (as in the 70 % rule); off: of the grid "
                                     "connection's export rating.")),
        "dynamic_rules": (M("Time-based rules"), M("Local time; the first matching rule applies.")),
        "dynamic_rules.start": (M("From"), ""),
        "dynamic_rules.end": (M("To"), ""),
        "dynamic_rules.limit_pct": (M("Limit"), ""),
    }),
    "grid_tariffs": (M("Grid tariffs"), M("Time-variable grid fees: the plan prices every quarter hour with "
                                          "them."), {
        "enabled": (M("Grid tariffs on"), ""),
        "network_level": (M("Network level"), ""),
        "base_tariff_eur_per_kwh": (M("Base grid tariff"), ""),
        "power_price_eur_per_kw_month": (M("Demand charge"), M("Per kW of the month's highest quarter hour.")),
        "high_load_windows": (M("High-load windows"), M("Local time; the base tariff times the multiplier.")),
        "high_load_windows.start": (M("From"), ""),
        "high_load_windows.end": (M("To"), ""),
        "high_load_windows.multiplier": (M("Multiplier"), ""),
        "high_load_windows.months": (M("Months"), M("e.g. 1, 2, 12; empty = all months")),
    }),
    "forecast": (M("Prices and forecasts"), M("Where prices come from, how the consumer price is made, and the "
                                              "site's PV and load for the forecasts."), {
        "price_source": (M("Price source"), ""),
        "price_country": (M("Bidding zone"), M("For ENTSO-E and bundled prices.")),
        "entsoe_token": (M("ENTSO-E token"), M("Write-only: stored, never shown again.")),
        "publication_time": (M("Next-day prices expected after"), M("HH:MM, local time.")),
        "price_surcharge_eur_per_kwh": (M("Supplier surcharge"), ""),
        "price_surcharge_pct": (M("Supplier margin"), M("On the market price.")),
        "grid_fee_eur_per_kwh": (M("Flat grid fee"), M("Leave 0 when grid tariffs price the grid.")),
        "vat_pct": (M("VAT"), M("AT 20, DE 19.")),
        "horizon_h": (M("Forecast horizon"), ""),
        "refit_interval_h": (M("Refit models every"), ""),
        "load_profile": (M("Standard load profile"), M("Used until the site has a day of its own history.")),
        "annual_load_kwh": (M("Annual consumption"), M("Scales the standard profile.")),
        "latitude_deg": (M("Latitude"), ""),
        "longitude_deg": (M("Longitude"), ""),
        "pv_peak_kwp": (M("PV peak power"), ""),
        "pv_tilt_deg": (M("PV tilt"), ""),
        "pv_azimuth_deg": (M("PV azimuth"), M("180 = south.")),
        "use_weather": (M("Use weather forecasts"), M("Needs an OpenWeatherMap key.")),
        "openweathermap_api_key": (M("OpenWeatherMap key"), M("Write-only: stored, never shown again.")),
    }),
    "mqtt": (M("MQTT (cloud)"), M("Telemetry to a broker, commands in; while the broker is away, messages wait on "
                                  "the gateway. Test the connection before saving."), {
        "enabled": (M("MQTT on"), ""),
        "broker": (M("Broker"), M("Host name or IP address.")),
        "port": (M("Port"), M("1883 plain, 8883 with TLS.")),
        "tls": (M("TLS"), M("The broker's certificate and host name are verified.")),
        "tls_ca_file": (M("CA file"), M("PEM file on the gateway; empty = the system's CAs.")),
        "tls_cert_file": (M("Client certificate"), M("PEM file, for brokers that ask for one.")),
        "tls_key_file": (M("Client key"), M("PEM file of the client certificate's key.")),
        "username": (M("Username"), ""),
        "password": (M("Password"), M("Write-only: stored, never shown again.")),
        "client_id": (M("Client id"), M("Unique per broker; empty = derived from the site.")),
        "site_id": (M("Site id"), M("Names this site in the topics; empty = from the machine id.")),
        "topic_prefix": (M("Topic prefix"), M("Ending in /; empty = phoenyra/<site id>/.")),
        "publish_interval_s": (M("Telemetry every"), ""),
        "commands_enabled": (M("Accept commands"), M("Strategy, setpoint requests; the safety loop still "
                                                     "decides.")),
        "command_secret": (M("Command secret"), M("Write-only; when set, every command must carry it.")),
        "homeassistant_discovery": (M("Home Assistant discovery"), ""),
    }),
}

# The Modbus devices: a list, edited one device at a time in the wizard (`settings.js`), with a register table
# from the device's profile and a Test that reads it once (`POST /api/modbus/test`).
DEVICES_TITLE = M("Devices (Modbus)")
DEVICES_INTRO = M("The battery's BMS, the inverter (PCS), the grid meter and the grid operator's box: how the EMS "
                  "reaches each one. Test reads a device once and shows what it answers. Which device plays which "
                  "role, and adding or removing one, is for administrators.")
DEVICE_FIELDS: dict[str, tuple[str, str]] = {
    "name": (M("Name"), M("Lower-case letters, digits and _, e.g. bms.")),
    "role": (M("Role"), ""),
    "profile": (M("Device profile"), ""),
    "enabled": (M("In use"), M("Off: the EMS does not poll it.")),
    "connection_type": (M("Connection"), ""),
    "host": (M("IP address or host name"), ""),
    "port": (M("TCP port"), ""),
    "serial_port": (M("Serial port"), M("e.g. /dev/ttyUSB0 (a USB-RS485 adapter) or /dev/ttyAMA0.")),
    "baudrate": (M("Baud rate"), ""),
    "parity": (M("Parity"), ""),
    "stopbits": (M("Stop bits"), ""),
    "unit_id": (M("Unit id"), M("The device's Modbus address (slave id).")),
    "poll_interval_s": (M("Poll every"), ""),
    "timeout_s": (M("Answer timeout"), ""),
    "register_overrides": (M("Register overrides"), M("This site's corrections of the profile: edit a value in "
                                                       "the register table; Reset returns to the profile's.")),
}
DEVICE_CHOICES: dict[str, str] = {
    "bms": M("Battery (BMS)"), "pcs": M("Inverter (PCS)"), "meter": M("Grid meter"),
    "dso": M("Grid operator's box"), "tcp": M("Modbus TCP (network)"), "rtu": M("Modbus RTU (RS-485)"),
    "N": M("none"), "E": M("even"), "O": M("odd"),
}
# The register table's columns (the profile's own field names).
REGISTER_COLUMNS: dict[str, str] = {
    "name": M("Register"), "address": M("Address"), "function": M("Function"), "type": M("Type"),
    "word_order": M("Word order"), "scale": M("Scale"), "offset": M("Offset"), "unit": M("Unit"),
    "category": M("Category"), "value": M("Value read"),
}
DEVICE_TEXTS: dict[str, str] = {
    "add": M("Add device"), "edit": M("Edit"), "remove": M("Remove"), "test": M("Test"), "done": M("Done"),
    "reset": M("Reset"),
    "registers": M("Registers of the profile"), "verified": M("verified on hardware"),
    "unverified": M("not yet verified on hardware"), "sunspec": M("SunSpec models found"),
}


def devices_form(lang: str) -> dict[str, Any]:
    """The Modbus devices part of the settings page, translated."""
    _ = i18n.translator(lang)
    fields = []
    for field in describe_section("modbus"):
        label, hint = DEVICE_FIELDS[field["key"]]
        out = {**field, "label": _(label), "hint": _(hint) if hint else "", "unit": unit_of(field["key"])}
        out.pop("doc", None)
        if field.get("choices"):
            out["choice_labels"] = {str(c): _(DEVICE_CHOICES[str(c)]) if str(c) in DEVICE_CHOICES else str(c)
                                    for c in field["choices"]}
        fields.append(out)
    return {"name": "modbus", "kind": "devices", "title": _(DEVICES_TITLE), "intro": _(DEVICES_INTRO),
            "fields": fields, "columns": {k: _(v) for k, v in REGISTER_COLUMNS.items()},
            "texts": {k: _(v) for k, v in DEVICE_TEXTS.items()}}


# The first-run setup (`/setup`): after an own password, the few settings a site cannot run without, each step
# parts of sections (saved as the settings page saves them). Everything else keeps its default until Settings.
SETUP_STEPS: list[tuple[str, str, str, dict[str, list[str]]]] = [
    ("site", M("Site and PV"), M("Where the plant is and what PV it has: the forecasts start from this."),
     {"site": ["name", "timezone"],
      "forecast": ["latitude_deg", "longitude_deg", "pv_peak_kwp", "pv_tilt_deg", "pv_azimuth_deg"]}),
    ("battery", M("Battery"), M("The ratings from the battery's data sheet."),
     {"bess": ["capacity_kwh", "max_charge_power_kw", "max_discharge_power_kw", "min_soc_pct", "max_soc_pct"]}),
    ("grid", M("Grid connection"), M("The limits of the connection point, from the grid operator's contract."),
     {"grid_connection": ["max_power_kw", "max_feedin_kw"]}),
    ("devices", M("Devices"), M("Add the BMS, the inverter, the meter and the grid operator's box, and test each. "
                                "The built-in simulator stands in until they are there."), {"modbus": []}),
    ("prices", M("Prices"), M("Where day-ahead prices come from: aWATTar for Austria or Germany, ENTSO-E with a "
                              "token, or the bundled prices (offline)."),
     {"forecast": ["price_source", "price_country", "entsoe_token"]}),
]


def setup_steps(lang: str) -> list[dict[str, Any]]:
    _ = i18n.translator(lang)
    return [{"id": step, "title": _(title), "intro": _(intro),
             "parts": [{"section": section, "keys": keys} for section, keys in parts.items()]}
            for step, title, intro, parts in SETUP_STEPS]


# Sections with a connection test: its URL takes the section as the form holds it (unsaved changes included).
TESTS: dict[str, tuple[str, str]] = {"mqtt": ("/api/mqtt/test", M("Test connection"))}

# Keys left to ems.yaml and the API on purpose: service endpoints (for tests and mirrors) and timeouts that
# only a developer has reason to change. Every other key of a shown section must have a label above.
NOT_ON_THE_PAGE: dict[str, set[str]] = {
    "forecast": {"awattar_base_url", "entsoe_base_url", "openweathermap_base_url", "http_timeout_s", "fit_timeout_s"},
    "mqtt": {"keepalive_s", "reconnect_min_s", "reconnect_max_s", "qos", "topics", "command_max_age_s",
             "commands_per_minute", "sources", "homeassistant_prefix", "outbox_max_mb", "outbox_flush_interval_s"},
}

# Names of choices as people read them (the value posted stays the code).
CHOICES: dict[str, str] = {
    "auto": M("automatic"), "manual": M("manual"), "off": M("off"), "fixed": M("fixed"), "dynamic": M("dynamic"),
    "critical": M("critical"), "shutdown": M("shutdown"), "household": M("household"),
    "commercial": M("commercial"), "awattar_at": M("aWATTar Austria"), "awattar_de": M("aWATTar Germany"),
    "entsoe": M("ENTSO-E (token)"), "bundled": M("bundled prices (offline)"),
}

# A key's unit, from the end of its name (the schema names units in keys).
UNITS = (("_eur_per_kw_month", "€/kW/mo"), ("_eur_per_kwh", "€/kWh"), ("_kwh", "kWh"), ("_kwp", "kWp"),
         ("_kw_under_dso_limit", "kW"), ("_kw", "kW"), ("_pct", "%"), ("_kohm", "kΩ"), ("_min", "min"), ("_h", "h"),
         ("_s", "s"), ("_deg", "°"), ("_c", "°C"))


def unit_of(key: str) -> str:
    return next((unit for suffix, unit in UNITS if key.endswith(suffix)), "")


def settings_form(lang: str, strategies: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Every section the page shows, translated: title, intro and its fields with label, hint and unit."""
    _ = i18n.translator(lang)
    sections = []
    for name, (title, intro, keys) in SECTIONS.items():
        if name == "strategy":  # installers set up the devices right after the site
            sections.append(devices_form(lang))
        fields = []
        for field in describe_section(name):
            if field["key"] not in keys:
                continue
            fields.append(_localise(field, name, keys, _, strategies))
        section: dict[str, Any] = {"name": name, "title": _(title), "intro": _(intro), "fields": fields}
        if name in TESTS:
            url, label = TESTS[name]
            section["test"] = {"url": url, "label": _(label)}
        sections.append(section)
    return sections


def _localise(field: dict[str, Any], section: str, keys: dict[str, tuple[str, str]], _: i18n.Translate,
              strategies: list[tuple[str, str]], parent: str = "") -> dict[str, Any]:
    path = f"{parent}.{field['key']}" if parent else field["key"]
    label, hint = keys.get(path, (field["key"], ""))
    out = {**field, "label": _(label), "hint": _(hint) if hint else "", "unit": unit_of(field["key"])}
    out.pop("doc", None)  # the schema's doc is for developers and the API; the page shows the translated hint
    if section == "strategy" and field["key"] == "current":
        out["choices"] = [name for name, _title in strategies]
        out["choice_labels"] = {name: _(title) for name, title in strategies}
    elif field.get("choices"):
        out["choice_labels"] = {str(c): _(CHOICES[str(c)]) if str(c) in CHOICES else str(c) for c in field["choices"]}
    if field.get("item_fields"):
        out["item_fields"] = [_localise(f, section, keys, _, strategies, parent=path) for f in field["item_fields"]]
    return out

"""Home Assistant MQTT discovery: the EMS appears as one device with its key sensors and a strategy select.

Each entity is a retained config message on `<discovery prefix>/<component>/<node id>/<object id>/config`
(HA's documented layout; full key names, no abbreviations). The sensors read the uplink's own topics — the
telemetry, the retained state and plan — through `value_template`s on the JSON keys, so HA needs nothing of its
own; a null (stale) value renders as `None`, which HA shows as unknown. `status` is the availability topic:
the last will marks every entity unavailable when the EMS goes away.

The strategy select publishes `set_strategy` commands. It is offered only while no `command_secret` is set: the
secret would have to sit in the retained config, readable by every subscriber; with a secret the strategy is a
read-only sensor. Turning discovery off publishes an empty retained config for every entity announced before
(which HA takes as "remove"), so nothing is left behind.
"""
from __future__ import annotations

import re
from typing import Any

from ..optimizer.strategies import STRATEGY_NAMES
from .topics import Layout

POWER_CONTROL_STATES = ("normal", "limited", "safety", "shutdown")
_NODE_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def node_id(site_id: str) -> str:
    return "phoenyra_" + _NODE_CHARS.sub("_", site_id)


def _template(key: str) -> str:
    return "{{ value_json." + key + " }}"


def _sensor(object_id: str, name: str, topic: str, key: str, **extra: Any) -> tuple[str, str, dict[str, Any]]:
    return "sensor", object_id, {"name": name, "state_topic": topic, "value_template": _template(key), **extra}


def entities(layout: Layout, telemetry_interval_s: float, select: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(component, object id, entity-specific config) of every entity."""
    expire = max(60, int(3 * telemetry_interval_s))
    power = {"unit_of_measurement": "W", "device_class": "power", "state_class": "measurement",
             "expire_after": expire}
    out = [
        _sensor("soc", "State of charge", layout.telemetry, "soc_pct", unit_of_measurement="%",
                device_class="battery", state_class="measurement", expire_after=expire),
        _sensor("battery_power", "Battery power", layout.telemetry, "battery_power_w", **power),
        _sensor("pv_power", "PV power", layout.telemetry, "pv_power_w", **power),
        _sensor("load_power", "Load power", layout.telemetry, "load_power_w", **power),
        _sensor("grid_power", "Grid power", layout.telemetry, "grid_power_w", **power),
        _sensor("power_control_state", "Power control", layout.state, "power_control_state",
                device_class="enum", options=list(POWER_CONTROL_STATES)),
        _sensor("expected_profit", "Expected profit (24 h)", layout.plan, "expected_profit_24h_eur",
                unit_of_measurement="EUR", device_class="monetary"),
    ]
    strategy_template = "{{ 'auto' if value_json.strategy_mode == 'auto' else value_json.strategy }}"
    if select:
        out.append(("select", "strategy", {
            "name": "Strategy", "state_topic": layout.state, "value_template": strategy_template,
            "command_topic": f"{layout.commands}/set_strategy",
            "command_template": '{"strategy": "{{ value }}"}', "options": ["auto", *STRATEGY_NAMES]}))
    else:
        out.append(("sensor", "strategy", {"name": "Strategy", "state_topic": layout.state,
                                           "value_template": strategy_template}))
    return out


def discovery(layout: Layout, prefix: str, version: str, telemetry_interval_s: float,
              select: bool) -> dict[str, dict[str, Any]]:
    """Discovery topic → config payload, for every entity."""
    node = node_id(layout.site_id)
    device = {"identifiers": [node], "name": f"Phoenyra EMS {layout.site_id}", "manufacturer": "Phoenyra",
              "model": "EMS", "sw_version": version}
    messages = {}
    for component, object_id, config in entities(layout, telemetry_interval_s, select):
        messages[f"{prefix}/{component}/{node}/{object_id}/config"] = {
            **config, "unique_id": f"{node}_{object_id}",
            "availability_topic": layout.status, "payload_available": "online", "payload_not_available": "offline",
            "device": device, "origin": {"name": "Phoenyra EMS", "sw_version": version}}
    return messages

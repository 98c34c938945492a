"""Scripted events in simulator mode (demos, installer training, tests): DSO orders, devices going
offline, BMS alarms — applied to the simulated plant and its simulated Modbus devices, never to hardware.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import ApiError
from .battery import ALARM_BITS
from .plant import PlantSimulator

log = logging.getLogger(__name__)

EVENT_TYPES = ("dso_trip", "dso_limit", "dso_normal", "device_offline", "device_online", "alarm", "clear_alarm")
ALARM_NAMES = {text: bit for bit, text in ALARM_BITS.items()}


@dataclass(frozen=True)
class SimEvent:
    type: str
    limit_pct: float | None = None
    device: str | None = None
    alarm: str | None = None


def parse_event(body: Any, device_names: tuple[str, ...]) -> SimEvent:
    """Validate a JSON body into an event; ApiError 400 naming the field otherwise."""
    if not isinstance(body, Mapping):
        raise ApiError(400, "must be a JSON object", "body")
    kind = body.get("type")
    if kind not in EVENT_TYPES:
        raise ApiError(400, f"must be one of {', '.join(EVENT_TYPES)} (got {str(kind)[:40]!r})", "type")
    if kind == "dso_limit":
        pct = body.get("limit_pct")
        if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 <= pct <= 100:
            raise ApiError(400, f"must be a number from 0 to 100 (got {str(pct)[:40]!r})", "limit_pct")
        return SimEvent(kind, limit_pct=float(pct))
    if kind in ("device_offline", "device_online"):
        device = body.get("device")
        if device not in device_names:
            allowed = ", ".join(device_names) or "none: the simulator is read directly, without Modbus devices"
            raise ApiError(400, f"unknown device {str(device)[:40]!r} (allowed: {allowed})", "device")
        return SimEvent(kind, device=device)
    if kind in ("alarm", "clear_alarm"):
        alarm = body.get("alarm")
        if alarm not in ALARM_NAMES:
            raise ApiError(400, f"unknown alarm {str(alarm)[:40]!r} (allowed: {', '.join(ALARM_NAMES)})", "alarm")
        return SimEvent(kind, alarm=alarm)
    return SimEvent(kind)


def apply_event(event: SimEvent, plant: PlantSimulator, servers: Mapping[str, Any]) -> str:
    """Apply on the event loop (the plant and the device servers belong to it); returns what happened."""
    if event.type == "dso_trip":
        plant.dso.set_state("trip")
    elif event.type == "dso_limit":
        plant.dso.set_state("limit", event.limit_pct if event.limit_pct is not None else 100.0)
    elif event.type == "dso_normal":
        plant.dso.set_state("normal")
    elif event.type == "device_offline":
        assert event.device is not None, "parse_event gives device events a device"
        servers[event.device].go_silent()
    elif event.type == "device_online":
        assert event.device is not None, "parse_event gives device events a device"
        servers[event.device].heal()
    elif event.type in ("alarm", "clear_alarm"):
        assert event.alarm is not None, "parse_event gives alarm events an alarm"
        bit = 1 << ALARM_NAMES[event.alarm]
        battery = plant.battery
        battery.forced_alarm_bits = battery.forced_alarm_bits | bit if event.type == "alarm" \
            else battery.forced_alarm_bits & ~bit
    what = f"simulator event {event.type}" + "".join(
        f" {k}={v}" for k, v in (("limit_pct", event.limit_pct), ("device", event.device), ("alarm", event.alarm))
        if v is not None)
    log.info(what)
    return what

"""The one typed plant state: every value carries its timestamp, source and how long it stays fresh.

A value that is missing (`None`) or stale must be read as "unknown" by every consumer; the safety
loop turns unknown into the safe state. States are immutable: readers in other threads (the web
server) always see a consistent snapshot.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Optional, TypeVar

T = TypeVar("T")
Source = Literal["sim", "modbus", "mqtt", "ems"]


@dataclass(frozen=True, slots=True)
class Measurement(Generic[T]):
    """One value as read from `source` at plant time `ts`; fresh for `max_age_s` seconds."""

    value: T
    ts: float
    source: Source
    max_age_s: float

    def age_s(self, now: float) -> float:
        return max(0.0, now - self.ts)

    def is_stale(self, now: float) -> bool:
        return now - self.ts > self.max_age_s


M = Optional[Measurement]


@dataclass(frozen=True)
class BatteryState:
    soc_pct: M = None
    soh_pct: M = None
    voltage_v: M = None
    current_a: M = None  # > 0 = charging, as BMSs report it
    temperature_c: M = None
    max_charge_power_w: M = None
    max_discharge_power_w: M = None
    max_charge_current_a: M = None
    max_discharge_current_a: M = None
    insulation_resistance_kohm: M = None
    status_code: M = None
    status_text: M = None
    alarms: M = None  # tuple of alarm texts


@dataclass(frozen=True)
class PowerPoint:
    power_w: M = None


@dataclass(frozen=True)
class DsoState:
    mode: M = None  # "normal" | "limit" | "trip"
    limit_pct: M = None


@dataclass(frozen=True)
class DeviceCommState:
    """Whether each device role's Modbus link answers (source "modbus")."""

    bms_online: M = None
    pcs_online: M = None
    meter_online: M = None
    dso_online: M = None


@dataclass(frozen=True)
class ControlState:
    """What the safety loop ordered (source "ems"): the plant-state view of its last decision."""

    remote_shutdown_requested: M = None
    active_power_limit_w: M = None
    power_limit_reason: M = None
    setpoint_w: M = None


@dataclass(frozen=True)
class PlantState:
    battery: BatteryState = field(default_factory=BatteryState)
    bess: PowerPoint = field(default_factory=PowerPoint)  # > 0 = discharging
    pv: PowerPoint = field(default_factory=PowerPoint)
    load: PowerPoint = field(default_factory=PowerPoint)
    grid: PowerPoint = field(default_factory=PowerPoint)  # > 0 = import
    dso: DsoState = field(default_factory=DsoState)
    control: ControlState = field(default_factory=ControlState)
    devices: DeviceCommState = field(default_factory=DeviceCommState)

    def with_updates(self, updates: dict[str, Measurement]) -> "PlantState":
        """A new state with the dotted paths (`battery.soc_pct`) replaced."""
        groups: dict[str, dict[str, Measurement]] = {}
        for path, measurement in updates.items():
            group, _, name = path.partition(".")
            groups.setdefault(group, {})[name] = measurement
        if not groups.keys() <= _field_names(PlantState):
            raise KeyError(f"unknown plant state point in {sorted(updates)}")
        return _replaced(self, {group: _replaced(getattr(self, group), values, updates)
                                 for group, values in groups.items()},
                         updates)

    def value(self, path: str, now: float) -> Any:
        """The value at `path`, or None when it is missing or stale."""
        group, _, name = path.partition(".")
        m = getattr(getattr(self, group), name)
        if m is None or m.is_stale(now):
            return None
        return m.value


_FIELD_NAMES: dict[type, frozenset[str]] = {}


def _field_names(cls: type) -> frozenset[str]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    return names


def _replaced(obj: Any, values: dict[str, Any], updates: dict[str, Measurement]) -> Any:
    """`dataclasses.replace` for the state's frozen groups, without its per-call introspection: every
    reading published goes through here (tens of thousands an hour on the gateway). The groups have no
    `__post_init__`, so copying the fields is all `replace` would do."""
    cls = type(obj)
    if not values.keys() <= _field_names(cls):
        raise KeyError(f"unknown plant state point in {sorted(updates)}")
    new = object.__new__(cls)
    new.__dict__.update(obj.__dict__)
    new.__dict__.update(values)
    return new


UNITS = {"soc_pct": "%", "soh_pct": "%", "voltage_v": "V", "current_a": "A", "temperature_c": "°C",
         "max_charge_power_w": "W", "max_discharge_power_w": "W", "max_charge_current_a": "A",
         "max_discharge_current_a": "A", "insulation_resistance_kohm": "kΩ", "power_w": "W", "limit_pct": "%",
         "active_power_limit_w": "W", "setpoint_w": "W"}


def plant_state_to_json(state: PlantState, now: float) -> dict[str, Any]:
    """JSON for the API: each point as {value, unit, ts, source, age_s, stale} or null."""
    out: dict[str, Any] = {}
    for group in dataclasses.fields(state):
        points: dict[str, dict[str, Any] | None] = {}
        for f in dataclasses.fields(getattr(state, group.name)):
            m = getattr(getattr(state, group.name), f.name)
            if m is None:
                points[f.name] = None
                continue
            value = list(m.value) if isinstance(m.value, tuple) else m.value
            points[f.name] = {"value": value, "unit": UNITS.get(f.name), "ts": round(m.ts, 3),
                              "source": m.source, "age_s": round(m.age_s(now), 3), "stale": m.is_stale(now)}
        out[group.name] = points
    return out

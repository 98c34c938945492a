"""The web boundary: everything the web app may read from or ask of the running EMS, and nothing else.

The Bottle app depends on this façade, not on the runtime: every field is a narrow, typed reader or
command, so a route test builds the app on a fake façade in milliseconds (no sockets, no devices), and
the runtime keeps its internals to itself. Handlers run in web threads: readers return immutable
snapshots; commands that touch the event loop's objects are marshalled onto it by the runtime.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Mapping, Protocol, Sequence, runtime_checkable

from ..audit import AuditLog
from ..config.schema import EmsConfig, ModbusDeviceConfig
from ..config.store import ConfigChange
from ..devices.profile import Profile
from ..notifications import Notifications
from ..optimizer.plan import Plan
from ..state import PlantState
from ..users.auth import Security


class ConfigAccess(Protocol):
    """The live configuration: read a section, validate + save + apply a changed one (ConfigStore)."""

    @property
    def config(self) -> EmsConfig: ...

    def section_plain(self, section: str) -> Any: ...

    def update_section(self, section: str, data: Any) -> EmsConfig: ...


@runtime_checkable
class GuardedConfigAccess(ConfigAccess, Protocol):
    """What the config routes need beyond `ConfigAccess` (ConfigStore has it): a change made as a caller —
    admin-only keys refused to non-admins, the changes handed to `record` (the audit log) — and the stored
    secret values, so no response ever carries one."""

    def apply_change(self, section: str, data: Any, may_change_admin_only: bool = True, role: str = "admin",
                     record: Callable[[ConfigChange], object] | None = None) -> ConfigChange: ...

    def secrets(self) -> list[str]: ...


class HistoryQueries(Protocol):
    """The read side of the history store (per-thread read connections)."""

    def telemetry_since(self, since_ts: float, limit: int) -> list[dict[str, Any]]: ...

    def state_range(self, since_ts: float, until_ts: float, max_points: int,
                    channels: Sequence[str] | None = None) -> dict[str, Any]: ...

    def energy_flows(self, since_ts: float, until_ts: float) -> dict[str, Any]: ...

    def optimization_runs(self, since_ts: float, limit: int = 500) -> list[dict[str, Any]]: ...


class AnalyticsQueries(Protocol):
    """Money and performance per local day, from the history (`ems.history.analytics`)."""

    def daily(self, days: int) -> dict[str, Any]: ...

    def summary(self, days: int) -> dict[str, Any]: ...

    def plan_vs_actual(self, day: str | None) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PlanView:
    """The planner's current plan as the web sees it."""

    plan: Plan | None
    planned_at: float | None
    runs: int
    last_error: str | None


@dataclass(frozen=True)
class RuntimeSnapshot:
    """One consistent reading of the running EMS for `/api/state` and the live events."""

    now: float
    plant: PlantState
    config: EmsConfig
    power_control: Mapping[str, Any]  # the safety loop's last decision and health figures
    devices: Mapping[str, Any]  # device name → poller status
    plan: PlanView
    version: str
    uptime_s: float
    speed: float
    loop_lag_ms: Mapping[str, Any]
    tasks: Mapping[str, Any]
    history_rows_written: int
    history: Mapping[str, Any] = field(default_factory=dict)  # store size, tiers, last integrity check
    mqtt: Mapping[str, Any] = field(default_factory=dict)  # the MQTT uplink: connection, outbox, drops, commands
    latest_notification_id: int = 0  # the newest notification's id: pages fetch the list when it changes


@dataclass(frozen=True)
class SimulatorControl:
    """Scripted events for the simulated plant (demo, training, tests); absent on real hardware."""

    device_names: Callable[[], tuple[str, ...]]
    post_event: Callable[[Any], str]  # validate (ApiError 400) and apply a JSON event; what happened


@dataclass(frozen=True)
class EmsFacade:
    security: Security
    config: ConfigAccess
    notifications: Notifications
    history: HistoryQueries
    analytics: AnalyticsQueries
    now: Callable[[], float]
    snapshot: Callable[[], RuntimeSnapshot]
    plan: Callable[[], PlanView]
    forecast_json: Callable[[], dict[str, Any]]
    profiles: Callable[[], Mapping[str, Profile]]
    test_modbus: Callable[[ModbusDeviceConfig], dict[str, Any]]
    simulator: SimulatorControl | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    # What the dashboard's override banner shows (power-control state, DSO limit, reason codes): the live
    # stream sends a change of it within a quarter second instead of at its next tick (a DSO trip on screen
    # in well under 2 s whatever `web.sse_interval_s` is). Cheap: read every 0.25 s by each stream.
    override_key: Callable[[], Hashable] = lambda: None
    # The append-only audit log of setting changes; None: `audit.jsonl` beside the config file (the runtime
    # passes the one in its data directory).
    audit: AuditLog | None = None

"""What the MQTT service needs from the rest of the EMS, as two small protocols, and the uplink adapter.

The service never reaches into the runtime: it reads what it publishes through an `UplinkSource` and hands
commands to a `CommandPort`, so it can be tested against small real objects, and a command goes through the
same code path as its HTTP twin (`POST /api/strategy`, `/api/strategy/auto`, a manual setpoint,
`/api/notifications/ack`). A command port only *requests*: a setpoint lands where the real-time layer's
request does, and the safety loop clamps it like any other (DSO orders, BMS and grid limits, SoC window).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, Sequence

from ..notifications import Notifications


class UplinkSource(Protocol):
    """Read-only views of the running EMS; called on the event loop, so each must be quick and non-blocking."""

    def state(self) -> Mapping[str, Any]:
        """What `GET /api/state` shows (`ems.api.views.state_json` of a runtime snapshot)."""

    def plan(self) -> Mapping[str, Any]:
        """What `GET /api/plan` shows: {"plan": {...} | None, "planned_at": ts | None, ...}."""

    def notifications_since(self, after_id: int) -> Sequence[Mapping[str, Any]]:
        """Notifications with an id above `after_id`, oldest first, each as `Notification.to_json()`."""


class CommandPort(Protocol):
    """The EMS side of the four commands. Called from an executor thread (a strategy change writes the config
    file); refusals raise `ApiError` (status, message, field) or `ConfigError`, which become error replies.
    Each returns a small JSON-ready result for the reply."""

    def set_strategy(self, name: str) -> Mapping[str, Any]:
        """Manual mode with strategy `name` (already checked against the registry), like `POST /api/strategy`."""

    def set_auto(self) -> Mapping[str, Any]:
        """Automatic strategy selection, like `POST /api/strategy/auto`."""

    def request_setpoint(self, power_w: float, duration_s: float) -> Mapping[str, Any]:
        """A manual battery request (W, > 0 = discharge) for a bounded time; the safety loop still clamps it."""

    def acknowledge(self, notification_id: int) -> Mapping[str, Any]:
        """Mark the notifications up to `notification_id` as seen by the cloud."""


class SnapshotUplink:
    """An `UplinkSource` over the runtime's own readers: `snapshot()` and `plan_view()` as the web façade gets them,
    and the notification log. The JSON is built by `ems.api.views`, so MQTT and `/api/state` never disagree."""

    def __init__(self, snapshot: Callable[[], Any], plan_view: Callable[[], Any], notifications: Notifications):
        self._snapshot = snapshot
        self._plan_view = plan_view
        self._notifications = notifications

    def state(self) -> Mapping[str, Any]:
        from ..api.views import state_json
        return state_json(self._snapshot())

    def plan(self) -> Mapping[str, Any]:
        from ..api.views import plan_json
        return plan_json(self._plan_view())

    def notifications_since(self, after_id: int) -> Sequence[Mapping[str, Any]]:
        recent = self._notifications.recent(500)
        return [n.to_json() for n in reversed(recent) if n.id > after_id]

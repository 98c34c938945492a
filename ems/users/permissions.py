"""The one permission table: which role may do which action. API checks and the UI both read it.

Each route in the web app declares one action (or none, for public pages such as /login); the check is
`allowed(principal.role, action)`. Anything unknown — a role from a hand-edited file, an action with a typo —
is denied, never allowed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping

log = logging.getLogger(__name__)

# What each action covers, so a route author can pick the right one.
ACTIONS: Mapping[str, str] = {
    "read": "see dashboards, telemetry, history, plans, forecasts, settings and notifications",
    "operate": "change the strategy or mode, setpoints, and simulator events",
    "configure": "change plant configuration sections (BESS, Modbus, MQTT, limits, tariffs, ...)",
    "configure_safety": "change safety- and security-relevant settings (power control, auto-write, safety "
                        "thresholds, grid and feed-in limits, device roles, web access, where secrets go); audited",
    "commission": "run connection tests against field devices",
    "audit": "read and export the audit log of setting changes",
    "manage_users": "create, change, disable and delete users; reset passwords; revoke anyone's API tokens",
    "own_account": "see one's own account, change one's own password, manage one's own API tokens",
}

ROLES: tuple[str, ...] = ("admin", "operator", "viewer")

ROLE_ACTIONS: Mapping[str, frozenset[str]] = {
    "admin": frozenset({"read", "operate", "configure", "configure_safety", "commission", "audit", "manage_users",
                        "own_account"}),
    "operator": frozenset({"read", "operate", "configure", "own_account"}),
    "viewer": frozenset({"read", "own_account"}),
}

Via = Literal["session", "token"]


def allowed(role: str, action: str) -> bool:
    """True if `role` may perform `action`; unknown roles and actions are denied (and an unknown action logged)."""
    if action not in ACTIONS:
        log.error("permission check for unknown action %r denied", action)
        return False
    return action in ROLE_ACTIONS.get(role, frozenset())


def actions_for(role: str) -> frozenset[str]:
    """Every action `role` may perform (empty for an unknown role): what the UI should offer."""
    return ROLE_ACTIONS.get(role, frozenset())


def unknown_actions(declared: Iterable[str | None]) -> set[str]:
    """Declared route actions that are not in the table (None means public); for a check at app creation."""
    return {a for a in declared if a is not None and a not in ACTIONS}


@dataclass(frozen=True)
class Principal:
    """Who is making a request, with the role read from the user store for this very request."""

    user_id: int
    username: str
    role: str
    via: Via

    def can(self, action: str) -> bool:
        return allowed(self.role, action)

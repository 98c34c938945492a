"""Users, roles and security: who may log in, how they prove it, and what each role may do.

- `store.UserStore` — accounts in `users.json` (TinyDB, atomic writes), password policy, last-admin guard;
- `passwords` — scrypt hashes with their cost parameters, the password policy, random passwords;
- `sessions.SessionStore` — server-side sessions (cookie), timeouts, CSRF tokens;
- `tokens.TokenStore` — API bearer tokens for machine clients;
- `throttle.LoginThrottle` — failed-login limits per (address, username), per network and per username, with
  trusted pairs so nobody locks a real user out; `throttle.RegistrationLimiter` — sign-ups per network and overall;
- `permissions` — the one role → action table and `Principal`;
- `auth.Security` — request authentication and the account flows that span the stores above.

Nothing here knows about Bottle; the web layer wires `Security` in with a thin plugin.
"""
from __future__ import annotations

from .auth import (CSRF_FORM_FIELD, CSRF_HEADER, SESSION_COOKIE, AuthRequest, AuthResult, Security,
                   SecuritySettings)
from .permissions import ACTIONS, ROLE_ACTIONS, ROLES, Principal, actions_for, allowed
from .storage import StorageCorruptError
from .store import User, UserError, UserStore

__all__ = [
    "ACTIONS", "ROLES", "ROLE_ACTIONS", "CSRF_FORM_FIELD", "CSRF_HEADER", "SESSION_COOKIE", "AuthRequest",
    "AuthResult", "Principal", "Security", "SecuritySettings", "StorageCorruptError", "User", "UserError",
    "UserStore", "actions_for", "allowed",
]

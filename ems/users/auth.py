"""Who is asking, and may they? Request authentication and the account flows, independent of Bottle.

The web layer turns each request into an `AuthRequest` (method, client address, session cookie,
Authorization header, CSRF token from the `X-CSRF-Token` header or the `csrf_token` form field) and acts on
the `AuthResult`: proceed with `result.principal`, or answer `result.status` with `result.message` and
`result.headers()`, and set or clear the session cookie as the result says.

Rules:
- `Authorization: Bearer ems_…` (an API token) wins over a cookie and needs no CSRF token: browsers never
  attach it to a cross-site request on their own.
- With a session cookie, every method other than GET/HEAD/OPTIONS needs the session's CSRF token (403).
- The user is read from the store on every request: a deleted, disabled or demoted user loses their access
  with the next request, and a session from before a password change (`credential_version`) is ended (401).
- Logins are throttled per (address, username), per network and per username (429 with Retry-After; see
  `throttle`); a throttled attempt does not check the password. Self-registration is rate-limited per
  network and overall, and its answer does not say whether a username was taken.
- A password change or reset ends the user's sessions *and* revokes their API tokens: whoever held the old
  credentials holds nothing afterwards.
- Sessions are capped per user (the least recently used goes); there is no global cap that ends anyone's
  session. A cap on the total only refuses *new* logins of non-admins, so a flood of accounts cannot keep an
  admin out.

Time is wall-clock time (`time.time`), never the plant's simulated clock, which may run faster.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .passwords import PasswordHasher, ScryptParams
from .permissions import Principal, Via, actions_for, allowed
from ..atomic import remove_stale_temp_files
from .sessions import Session, SessionLimitError, SessionPolicy, SessionStore, check_csrf
from .store import User, UserError, UserStore
from .throttle import ADDRESS_POLICY, USER_POLICY, LoginThrottle, RegistrationLimiter, ThrottlePolicy
from .tokens import TokenStore

log = logging.getLogger(__name__)

SESSION_COOKIE = "ems_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FORM_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

USERS_FILE = "users.json"
SESSIONS_FILE = "sessions.json"
TOKENS_FILE = "api_tokens.json"


@dataclass(frozen=True)
class AuthRequest:
    """What authentication needs from an HTTP request; `client_addr` is the socket peer (REMOTE_ADDR)."""

    method: str
    client_addr: str
    session_cookie: str | None = None
    authorization: str | None = None
    csrf_token: str | None = None


@dataclass(frozen=True)
class AuthResult:
    """The answer: status 200 with a principal, or 400/401/403/429 with a message for the user."""

    status: int
    message: str = ""
    principal: Principal | None = None
    session: Session | None = None
    field: str | None = None
    # A new session token to send as the cookie (after login).
    set_session_cookie: str | None = dataclasses.field(default=None, repr=False)
    clear_session_cookie: bool = False  # the browser's cookie is dead: delete it
    retry_after_s: int | None = None
    bearer_challenge: bool = False  # a bad API token: answer with WWW-Authenticate: Bearer

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def csrf_token(self) -> str | None:
        """The token pages must embed and scripts must send back in X-CSRF-Token (session logins only)."""
        return self.session.csrf_token if self.session else None

    def headers(self) -> dict[str, str]:
        out = {}
        if self.retry_after_s is not None:
            out["Retry-After"] = str(self.retry_after_s)
        if self.bearer_challenge:
            out["WWW-Authenticate"] = 'Bearer realm="ems", error="invalid_token"'
        return out


@dataclass(frozen=True)
class SecuritySettings:
    session: SessionPolicy = field(default_factory=SessionPolicy)
    address_throttle: ThrottlePolicy = ADDRESS_POLICY
    user_throttle: ThrottlePolicy = USER_POLICY
    token_touch_interval_s: float = 300.0
    scrypt: ScryptParams = field(default_factory=ScryptParams)


def _fail(status: int, message: str, **kw: Any) -> AuthResult:
    return AuthResult(status=status, message=message, **kw)


class Security:
    """Users, sessions, API tokens and login throttling together, with the flows that must touch several."""

    def __init__(self, users: UserStore, sessions: SessionStore, tokens: TokenStore, throttle: LoginThrottle,
                 now: Callable[[], float] = time.time, registrations: RegistrationLimiter | None = None):
        self.users = users
        self.sessions = sessions
        self.tokens = tokens
        self.throttle = throttle
        self.registrations = registrations or RegistrationLimiter()
        self._now = now

    @classmethod
    def open(cls, data_dir: str | os.PathLike[str], now: Callable[[], float] = time.time,
             settings: SecuritySettings = SecuritySettings()) -> "Security":
        """The stores in `data_dir`: users.json, api_tokens.json, sessions.json (each with .bak/.lock)."""
        base = Path(data_dir)
        for name in (USERS_FILE, SESSIONS_FILE, TOKENS_FILE):  # temp files of writers killed mid-write
            remove_stale_temp_files(base, prefix=f".{name}.")
        users = UserStore(base / USERS_FILE, now=now, hasher=PasswordHasher(settings.scrypt))
        sessions = SessionStore(base / SESSIONS_FILE, now=now, policy=settings.session)
        tokens = TokenStore(base / TOKENS_FILE, now=now, touch_interval_s=settings.token_touch_interval_s)
        throttle = LoginThrottle(settings.address_throttle, settings.user_throttle)
        return cls(users, sessions, tokens, throttle, now)

    def close(self) -> None:
        self.sessions.flush()

    # -- every request -------------------------------------------------------------------------------------

    def authenticate(self, req: AuthRequest) -> AuthResult:
        """Who sent `req`: 200 with a principal, 401 (nobody, or dead credentials) or 403 (CSRF)."""
        if req.authorization:
            return self._authenticate_bearer(req.authorization)
        if req.session_cookie:
            return self._authenticate_session(req)
        return _fail(401, "login required")

    def authorize(self, req: AuthRequest, action: str | None) -> AuthResult:
        """`authenticate`, then the permission table for `action` (None: a public route — never refused,
        principal filled in when valid credentials came along)."""
        result = self.authenticate(req)
        if action is None:
            return result if result.ok else AuthResult(200, clear_session_cookie=result.clear_session_cookie)
        if not result.ok:
            return result
        assert result.principal is not None
        if not allowed(result.principal.role, action):
            return _fail(403, f"the role {result.principal.role!r} may not {action.replace('_', ' ')}",
                         principal=result.principal, session=result.session)
        return result

    def _authenticate_bearer(self, header: str) -> AuthResult:
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return _fail(401, "the Authorization header must be 'Bearer <API token>'", bearer_challenge=True)
        token = self.tokens.lookup(credentials.strip())
        if token is None:
            return _fail(401, "unknown or revoked API token", bearer_challenge=True)
        user = self.users.get(token.user_id)
        if user is None or user.disabled:
            return _fail(401, "the API token's user is disabled or deleted", bearer_challenge=True)
        return AuthResult(200, principal=_principal(user, "token"))

    def _authenticate_session(self, req: AuthRequest) -> AuthResult:
        session = self.sessions.lookup(req.session_cookie)
        if session is None:
            return _fail(401, "your session has expired or ended; log in again", clear_session_cookie=True)
        user = self.users.get(session.user_id)
        if user is None or user.disabled or user.credential_version != session.credential_version:
            self.sessions.end_key(session.key)
            return _fail(401, "your session has ended (account changed); log in again", clear_session_cookie=True)
        if req.method.upper() not in SAFE_METHODS and not check_csrf(session, req.csrf_token):
            return _fail(403, f"missing or wrong CSRF token (send it in the {CSRF_HEADER} header); reload the page",
                         field=CSRF_FORM_FIELD)
        return AuthResult(200, principal=_principal(user, "session"), session=session)

    # -- account flows -------------------------------------------------------------------------------------

    def login(self, username: Any, password: Any, client_addr: str,
              old_session_token: str | None = None) -> AuthResult:
        """Check a username and password; on success a new session (the old cookie's session is ended)."""
        for name, value in (("username", username), ("password", password)):
            if not isinstance(value, str) or not value:
                return _fail(400, "is required", field=name)
        now = self._now()
        attempt = self.throttle.acquire(username, client_addr, now)
        if not attempt.allowed:
            log.warning("login for %r from %s throttled (%s)", username[:64], client_addr, attempt.scope)
            return _fail(429, attempt.message, retry_after_s=attempt.retry_after_s)
        try:
            outcome, user = self.users.authenticate(username, password)
        except BaseException:
            self.throttle.release(attempt)
            raise
        if outcome == "wrong":
            self.throttle.record_failure(username, client_addr, self._now(), attempt)
            log.warning("failed login for %r from %s", username[:64], client_addr)
            return _fail(401, "wrong username or password", field="password")
        assert user is not None
        if outcome == "disabled":
            self.throttle.release(attempt)
            return _fail(403, "this account is disabled; ask an administrator", field="username")
        self.throttle.record_success(username, client_addr, self._now(), attempt)
        try:
            token, session = self.sessions.create(user.id, user.credential_version, replace_token=old_session_token,
                                                  privileged=user.role == "admin")
        except SessionLimitError as exc:
            log.warning("login of %r from %s refused: %s", user.username, client_addr, exc)
            return _fail(503, str(exc), retry_after_s=60)
        log.info("user %r logged in from %s", user.username, client_addr)
        return AuthResult(200, principal=_principal(user, "session"), session=session, set_session_cookie=token)

    def register(self, body: Any, client_addr: str) -> tuple[AuthResult, User | None]:
        """Self-registration (a viewer account): 429 beyond the rate limits; 400 naming a bad field; otherwise
        202 — also when the username is taken, so the answer does not reveal which names exist (the account
        exists afterwards only if the name was free: the new user then logs in). The password is hashed
        before the name is looked up, so both cases take the same time."""
        decision = self.registrations.acquire(client_addr, self._now())
        if not decision.allowed:
            log.warning("registration from %s refused: rate limit (%s)", client_addr, decision.scope)
            scope = "from this address" if decision.scope == "address" else "right now"
            return _fail(429, f"too many registrations {scope}; try again in {decision.retry_after_s} s",
                         retry_after_s=decision.retry_after_s), None
        try:
            user = self.users.create_from_json(body, force_role="viewer")
        except UserError as exc:
            if exc.status != 409 or exc.field != "username":
                return _fail(exc.status, exc.message, field=exc.field), None
            log.info("registration from %s for a taken username refused (answered like a success)", client_addr)
            return AuthResult(202, "if the username was free, the account exists now: log in"), None
        return AuthResult(202, "if the username was free, the account exists now: log in"), user

    def logout(self, session_token: str | None) -> AuthResult:
        """End the session of this cookie (its token answers 401 from now on) and clear the cookie."""
        if session_token:
            self.sessions.end(session_token)
        return AuthResult(200, clear_session_cookie=True)

    def change_own_password(self, principal: Principal, current_password: Any, new_password: Any,
                            client_addr: str) -> AuthResult:
        """A user changing their own password: every session of theirs ends; a session caller gets a new one."""
        attempt = self.throttle.acquire(principal.username, client_addr, self._now())
        if not attempt.allowed:
            return _fail(429, attempt.message, retry_after_s=attempt.retry_after_s)
        try:
            user = self.users.change_password(principal.user_id, current_password, new_password)
        except UserError as exc:
            if exc.field == "current_password":
                self.throttle.record_failure(principal.username, client_addr, self._now(), attempt)
            else:
                self.throttle.release(attempt)
            return _fail(exc.status, exc.message, field=exc.field)
        except BaseException:
            self.throttle.release(attempt)
            raise
        self.throttle.release(attempt)
        self._credentials_changed(user.id)
        if principal.via != "session":
            return AuthResult(200, principal=principal)
        token, session = self.sessions.create(user.id, user.credential_version, privileged=user.role == "admin")
        return AuthResult(200, principal=principal, session=session, set_session_cookie=token)

    def set_password(self, user_id: int, new_password: Any) -> User:
        """An admin setting someone's password: that user's sessions end and API tokens are revoked."""
        user = self.users.set_password(user_id, new_password)
        self._credentials_changed(user_id)
        return user

    def reset_password(self, username: str) -> str:
        """A new random password (returned once); that user's sessions end and API tokens are revoked."""
        password = self.users.reset_password(username)
        user = self.users.get_by_username(username)
        if user is not None:
            self._credentials_changed(user.id)
        return password

    def _credentials_changed(self, user_id: int) -> None:
        self.sessions.end_all_for_user(user_id)
        revoked = self.tokens.revoke_all_for_user(user_id)
        if revoked:
            log.info("revoked %d API token(s) of user id %d after a password change", revoked, user_id)

    def update_user(self, user_id: int, changes: Any) -> User:
        """Change name, e-mail, role or disabled flag; disabling ends the user's sessions."""
        user = self.users.update(user_id, changes)
        if user.disabled:
            self.sessions.end_all_for_user(user_id)
        return user

    def delete_user(self, user_id: int) -> User:
        """Delete an account (never the last enabled admin), its sessions and its API tokens."""
        user = self.users.delete(user_id)
        self.sessions.end_all_for_user(user_id)
        self.tokens.revoke_all_for_user(user_id)
        return user

    # -- for the web layer ---------------------------------------------------------------------------------

    def cookie_options(self, secure: bool) -> dict[str, Any]:
        """Keyword arguments for bottle's `response.set_cookie(SESSION_COOKIE, token, **opts)`;
        `secure` when the request came over TLS."""
        return {"httponly": True, "samesite": "lax", "secure": secure, "path": "/",
                "max_age": int(self.sessions.policy.absolute_timeout_s)}

    def whoami(self, result: AuthResult) -> dict[str, Any]:
        """The signed-in user as the user menu shows it, with the actions the UI may offer."""
        principal = result.principal
        if principal is None:
            return {"authenticated": False, "actions": []}
        user = self.users.get(principal.user_id)
        return {"authenticated": True, "user": user.to_json() if user else None, "via": principal.via,
                "role": principal.role, "actions": sorted(actions_for(principal.role)),
                "csrf_token": result.csrf_token}


def _principal(user: User, via: Via) -> Principal:
    return Principal(user_id=user.id, username=user.username, role=user.role, via=via)

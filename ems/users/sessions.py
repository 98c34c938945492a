"""Server-side login sessions: a random cookie token maps to a session kept in memory and in `sessions.json`.

Only the SHA-256 of a token is kept (in memory and on disk), so the file does not contain usable cookies.
A session ends after `idle_timeout_s` without a request or `absolute_timeout_s` after login, whichever comes
first; login always creates a new token (rotation), so a token planted before login is worthless.

Persistence keeps logins across a restart and, more importantly, keeps logouts: a session is written away
at once when it is created or ended, while the "last seen" time of busy sessions is written at most every
`persist_interval_s` (flash wear). After a restart a session may therefore look idle a little longer than it
was — it can only expire earlier, never later. A corrupt file only costs everyone a new login.

Each session carries a random CSRF token that state-changing requests must echo (`check_csrf`).

Limits: a user holds at most `max_per_user` sessions (a new login ends that user's least recently used
one). Nothing ever ends *another* user's session to make room: `max_total` only refuses new sessions of
non-privileged users (`SessionLimitError`) while the store is full of live sessions, so mass accounts ×
logins cannot log the admin out, nor keep an admin from logging in.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..atomic import write_atomic

log = logging.getLogger(__name__)

TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32,128}")
_FILE_VERSION = 1
# A session "seen" further in the future than this is not trusted (the wall clock went backwards).
_MAX_CLOCK_SKEW_S = 300.0


@dataclass(frozen=True)
class SessionPolicy:
    idle_timeout_s: float = 2 * 3600.0
    absolute_timeout_s: float = 24 * 3600.0
    persist_interval_s: float = 60.0
    max_per_user: int = 20
    max_total: int = 5000  # live sessions in all; beyond, only privileged (admin) logins get one


class SessionLimitError(Exception):
    """No room for a new session of a non-privileged user (the store is full of live sessions)."""


@dataclass(frozen=True)
class Session:
    key: str  # SHA-256 hex of the cookie token; the token itself is never stored
    user_id: int
    credential_version: int
    csrf_token: str = field(repr=False)  # kept out of logs
    created_ts: float
    last_seen_ts: float


def session_key(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def check_csrf(session: Session, token: Any) -> bool:
    """True only if `token` is exactly this session's CSRF token (constant-time comparison)."""
    if not isinstance(token, str) or not token:
        return False
    return hmac.compare_digest(session.csrf_token.encode("ascii"), token.encode("utf-8", "surrogatepass"))


class SessionStore:
    """Sessions of all users; `path` None keeps them in memory only. Thread-safe."""

    def __init__(self, path: str | os.PathLike[str] | None, now: Callable[[], float],
                 policy: SessionPolicy = SessionPolicy()):
        self.path = Path(path) if path is not None else None
        self.policy = policy
        self._now = now
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._dirty = False
        self._last_persist_ts = now()
        self._load()

    # -- use -----------------------------------------------------------------------------------------------

    def create(self, user_id: int, credential_version: int, replace_token: str | None = None,
               privileged: bool = False) -> tuple[str, Session]:
        """A new session for a user who just proved who they are; returns (cookie token, session).
        `replace_token` (the cookie the browser sent, if any) is ended: sessions rotate on login.
        SessionLimitError when the store is full and the user is not `privileged` (an admin)."""
        token = secrets.token_urlsafe(32)
        now = self._now()
        session = Session(session_key(token), user_id, credential_version, secrets.token_urlsafe(32), now, now)
        with self._lock:
            if replace_token is not None and TOKEN_RE.fullmatch(replace_token):
                self._sessions.pop(session_key(replace_token), None)
            self._prune(now, user_id, room_for_one=True)
            if not privileged and len(self._sessions) >= self.policy.max_total:
                raise SessionLimitError(f"{len(self._sessions)} sessions are open, the most this EMS keeps; "
                                        "try again later or ask an administrator")
            self._sessions[session.key] = session
        self._persist(force=True)
        return token, session

    def lookup(self, token: Any) -> Session | None:
        """The live session for a cookie token (marking it used now), or None if unknown, ended or expired."""
        if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
            return None
        key = session_key(token)
        now = self._now()
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if not self._alive(session, now):
                del self._sessions[key]
                self._dirty = True
                return None
            session = replace(session, last_seen_ts=max(session.last_seen_ts, now))
            self._sessions[key] = session
            self._dirty = True
        self._persist(force=False)
        return session

    def end(self, token: Any) -> bool:
        """Log out: the token stops working at once (and after a restart). False if it was not live."""
        if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
            return False
        return self.end_key(session_key(token))

    def end_key(self, key: str) -> bool:
        with self._lock:
            found = self._sessions.pop(key, None) is not None
        if found:
            self._persist(force=True)
        return found

    def end_all_for_user(self, user_id: int) -> int:
        """End every session of a user (password changed, account disabled or deleted); returns how many."""
        with self._lock:
            keys = [k for k, s in self._sessions.items() if s.user_id == user_id]
            for key in keys:
                del self._sessions[key]
        if keys:
            self._persist(force=True)
            log.info("ended %d session(s) of user id %d", len(keys), user_id)
        return len(keys)

    def for_user(self, user_id: int) -> list[Session]:
        now = self._now()
        with self._lock:
            return sorted((s for s in self._sessions.values() if s.user_id == user_id and self._alive(s, now)),
                          key=lambda s: s.created_ts)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def flush(self) -> None:
        """Write pending "last seen" times (call on shutdown)."""
        if self._dirty:
            self._persist(force=True)

    # -- internals -----------------------------------------------------------------------------------------

    def _alive(self, session: Session, now: float) -> bool:
        pol = self.policy
        return (now - session.last_seen_ts <= pol.idle_timeout_s
                and now - session.created_ts <= pol.absolute_timeout_s
                and session.last_seen_ts <= now + _MAX_CLOCK_SKEW_S)

    def _prune(self, now: float, user_id: int, room_for_one: bool = False) -> None:
        """Drop expired sessions, then this user's least recently used beyond the per-user cap (leaving room
        for one more when a session is about to be added). Other users' live sessions are never touched."""
        for key in [k for k, s in self._sessions.items() if not self._alive(s, now)]:
            del self._sessions[key]
        keep = self.policy.max_per_user - (1 if room_for_one else 0)
        mine = sorted((s for s in self._sessions.values() if s.user_id == user_id), key=lambda s: s.last_seen_ts)
        for session in mine[:max(0, len(mine) - keep)]:
            del self._sessions[session.key]

    def _persist(self, force: bool) -> None:
        if self.path is None:
            self._dirty = False
            return
        if not force and (not self._dirty or self._now() - self._last_persist_ts < self.policy.persist_interval_s):
            return
        # The write lock orders snapshots and writes, so an older snapshot never overwrites a newer one.
        if not self._write_lock.acquire(blocking=force):
            return
        try:
            with self._lock:
                snapshot = [asdict(s) for s in self._sessions.values()]
                self._dirty = False
                self._last_persist_ts = self._now()
            data = json.dumps({"version": _FILE_VERSION, "sessions": snapshot}, sort_keys=True).encode()
            try:
                write_atomic(self.path, data)
            except OSError as exc:
                self._dirty = True
                log.error("could not save sessions to %s: %s", self.path, exc)
        finally:
            self._write_lock.release()

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot read %s (%s); everyone logs in again", self.path, exc)
            return
        now = self._now()
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != _FILE_VERSION:
                raise ValueError("unknown format")
            for item in data["sessions"]:
                session = Session(key=str(item["key"]), user_id=int(item["user_id"]),
                                  credential_version=int(item["credential_version"]),
                                  csrf_token=str(item["csrf_token"]), created_ts=float(item["created_ts"]),
                                  last_seen_ts=float(item["last_seen_ts"]))
                if self._alive(session, now) and re.fullmatch(r"[0-9a-f]{64}", session.key):
                    self._sessions[session.key] = session
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            self._sessions.clear()
            log.warning("sessions file %s is unusable (%s); everyone logs in again", self.path, exc)
        log.info("restored %d session(s) from %s", len(self._sessions), self.path)

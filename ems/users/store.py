"""The user store: accounts in `users.json` (TinyDB, written atomically), with the rules that keep it usable.

Rules enforced here, whoever calls: usernames are 3–32 of [a-z0-9._-]; roles come from the permission
table; passwords pass the policy and are stored only as scrypt hashes; there is always at least one enabled
admin once there was one (deleting, demoting or disabling the last one is refused); ids are never reused, so
a session or API token of a deleted user can never match a later account.

Every change of credentials (password set, reset or changed; account disabled) increments the user's
`credential_version`. Sessions remember the version they were created with, so they stop working even when
the change was made by another process (`ems user reset-password` while the service runs).

Names and e-mail addresses are stored exactly as given, HTML included: escaping is the view's job.
"""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal, Mapping

from tinydb.table import Document, Table

from ..errors import ApiError
from .passwords import PasswordHasher, check_policy, generate_password
from .permissions import ROLES
from .storage import LockedDB, StorageCorruptError

log = logging.getLogger(__name__)

USERNAME_RE = re.compile(r"[a-z0-9._-]{3,32}")
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_NAME_LEN = 100
MAX_EMAIL_LEN = 254
_USERS = "users"
_META = "meta"
_META_ID = 1
UPDATABLE_FIELDS = ("name", "email", "role", "disabled")


class UserError(ApiError):
    """A user request that cannot be done: 400 bad field (also a wrong current password), 404 unknown user,
    409 conflict (username taken, last admin). An ApiError, so the web layer answers it as JSON as it is."""


@dataclass(frozen=True)
class User:
    """One account as the rest of the EMS sees it: never carries the password hash."""

    id: int
    username: str
    name: str
    email: str
    role: str
    created_ts: float
    last_login_ts: float | None
    disabled: bool
    credential_version: int
    # A generated password nobody chose (the first admin's, `ems user reset-password`): the first login asks
    # for an own one. Records written before this existed have none.
    one_time_credential: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


LoginOutcome = Literal["ok", "wrong", "disabled"]


def normalize_username(raw: Any) -> str:
    """Usernames are case-insensitive: `Admin ` and `admin` are the same account."""
    return raw.strip().lower() if isinstance(raw, str) else ""


def validate_username(raw: Any) -> str:
    if not isinstance(raw, str):
        raise UserError(400, "must be a text string", "username")
    username = normalize_username(raw)
    if not USERNAME_RE.fullmatch(username):
        raise UserError(400, "must be 3–32 characters of a–z, 0–9, '.', '_' or '-' "
                             f"(got {raw[:40]!r})", "username")
    return username


def _validate_name(raw: Any) -> str:
    if not isinstance(raw, str):
        raise UserError(400, "must be a text string", "name")
    if len(raw) > MAX_NAME_LEN:
        raise UserError(400, f"must be at most {MAX_NAME_LEN} characters (got {len(raw)})", "name")
    if any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in raw):
        raise UserError(400, "must not contain control characters or invalid Unicode", "name")
    return raw


def _validate_email(raw: Any) -> str:
    if not isinstance(raw, str):
        raise UserError(400, "must be a text string", "email")
    email = raw.strip()
    if email and (len(email) > MAX_EMAIL_LEN or not EMAIL_RE.fullmatch(email)):
        raise UserError(400, f"is not an e-mail address like name@example.com (got {raw[:40]!r})", "email")
    return email


def _validate_role(raw: Any) -> str:
    if raw not in ROLES:
        raise UserError(400, f"must be one of {', '.join(ROLES)} (got {str(raw)[:40]!r})", "role")
    return raw


def _validate_disabled(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise UserError(400, "must be true or false", "disabled")
    return raw


def _validate_password(password: Any, username: str, field: str = "password") -> str:
    problems = check_policy(password, username)
    if problems:
        raise UserError(400, "; ".join(problems), field)
    return password


def _number(doc: Mapping[str, Any], key: str) -> bool:
    return isinstance(doc.get(key), (int, float)) and not isinstance(doc.get(key), bool)


class UserStore:
    """Accounts in `path` (normally `<data dir>/users.json`). Thread- and process-safe; reads see other writers."""

    def __init__(self, path: str | os.PathLike[str], now: Callable[[], float] = time.time,
                 hasher: PasswordHasher | None = None):
        self._db = LockedDB(path)
        self.path = self._db.path
        self._now = now
        self.hasher = hasher or PasswordHasher()
        self.list_users()  # fail at start, with the file named, if it cannot be used

    # -- reading -------------------------------------------------------------------------------------------

    def _records(self) -> dict[int, dict[str, Any]]:
        table = self._db.read_all().get(_USERS, {})
        records = {}
        for key, doc in table.items():
            try:
                user_id = int(key)
            except ValueError:
                raise StorageCorruptError(self.path, f"user id {key!r} is not a number") from None
            _check_record(self.path, user_id, doc)
            records[user_id] = doc
        return records

    def list_users(self) -> list[User]:
        return [_user(i, doc) for i, doc in sorted(self._records().items())]

    def get(self, user_id: int) -> User | None:
        doc = self._records().get(user_id) if isinstance(user_id, int) else None
        return _user(user_id, doc) if doc is not None else None

    def get_by_username(self, username: str) -> User | None:
        found = self._find(self._records(), normalize_username(username))
        return _user(*found) if found else None

    def require(self, user_id: int) -> User:
        user = self.get(user_id)
        if user is None:
            raise UserError(404, f"no user with id {user_id}", "id")
        return user

    def is_empty(self) -> bool:
        return not self._records()

    def enabled_admin_count(self) -> int:
        return sum(1 for d in self._records().values() if d["role"] == "admin" and not d["disabled"])

    @staticmethod
    def _find(records: Mapping[int, dict[str, Any]], username: str) -> tuple[int, dict[str, Any]] | None:
        for user_id, doc in records.items():
            if doc["username"] == username:
                return user_id, doc
        return None

    # -- changing ------------------------------------------------------------------------------------------

    def create(self, username: Any, password: Any, *, role: Any = "viewer", name: Any = "",
               email: Any = "") -> User:
        """A new account; 400 naming the field for bad input, 409 if the username is taken."""
        username = validate_username(username)
        role, name, email = _validate_role(role), _validate_name(name), _validate_email(email)
        password_hash = self.hasher.hash(_validate_password(password, username))
        with self._db.locked():
            records = self._records()
            if self._find(records, username):
                raise UserError(409, f"username {username!r} is already taken", "username")
            user_id = self._allocate_id(records)
            doc = {"username": username, "name": name, "email": email, "role": role,
                   "created_ts": self._now(), "last_login_ts": None, "disabled": False,
                   "credential_version": 1, "password_hash": password_hash}
            self._users().insert(_document(doc, user_id))
        log.info("user %r (id %d, %s) created", username, user_id, role)
        return _user(user_id, doc)

    def create_from_json(self, body: Any, *, force_role: str | None = None) -> User:
        """`create` from a JSON body {username, password, name?, email?, role?}; `force_role` for
        self-registration (always a viewer, whatever the body says)."""
        if not isinstance(body, Mapping):
            raise UserError(400, "must be a JSON object", "body")
        allowed_keys = {"username", "password", "name", "email"} | (set() if force_role else {"role"})
        unknown = sorted(set(body) - allowed_keys)
        if unknown:
            raise UserError(400, f"unknown field; allowed: {', '.join(sorted(allowed_keys))}", str(unknown[0]))
        for key in ("username", "password"):
            if key not in body:
                raise UserError(400, "is required", key)
        return self.create(body["username"], body["password"], role=force_role or body.get("role", "viewer"),
                           name=body.get("name", ""), email=body.get("email", ""))

    def update(self, user_id: int, changes: Mapping[str, Any]) -> User:
        """Change name, email, role and/or disabled; refuses to leave the store without an enabled admin."""
        if not isinstance(changes, Mapping):
            raise UserError(400, "must be a JSON object", "body")
        validators = {"name": _validate_name, "email": _validate_email, "role": _validate_role,
                      "disabled": _validate_disabled}
        clean = {}
        for key, value in changes.items():
            if key not in validators:
                raise UserError(400, f"cannot be changed here; changeable: {', '.join(UPDATABLE_FIELDS)}",
                                str(key))
            clean[key] = validators[key](value)
        with self._db.locked():
            records = self._records()
            doc = records.get(user_id)
            if doc is None:
                raise UserError(404, f"no user with id {user_id}", "id")
            after = {**doc, **clean}
            self._refuse_losing_last_admin(records, user_id, after)
            if after["disabled"] and not doc["disabled"]:
                after["credential_version"] = doc["credential_version"] + 1
            self._users().update(after, doc_ids=[user_id])
        log.info("user %r (id %d) changed: %s", doc["username"], user_id, ", ".join(sorted(clean)) or "nothing")
        return _user(user_id, after)

    def delete(self, user_id: int) -> User:
        with self._db.locked():
            records = self._records()
            doc = records.get(user_id)
            if doc is None:
                raise UserError(404, f"no user with id {user_id}", "id")
            self._refuse_losing_last_admin(records, user_id, None)
            self._users().remove(doc_ids=[user_id])
        log.info("user %r (id %d) deleted", doc["username"], user_id)
        return _user(user_id, doc)

    def set_password(self, user_id: int, password: Any, field: str = "password", one_time: bool = False) -> User:
        """A new password (admin reset or own change); ends every session via `credential_version`.
        `one_time`: a generated password the user is asked to replace at the first login."""
        user = self.require(user_id)
        password_hash = self.hasher.hash(_validate_password(password, user.username, field))
        with self._db.locked():
            doc = self._records().get(user_id)
            if doc is None:
                raise UserError(404, f"no user with id {user_id}", "id")
            after = {**doc, "password_hash": password_hash, "credential_version": doc["credential_version"] + 1,
                     "one_time_credential": one_time}
            self._users().update(after, doc_ids=[user_id])
        log.info("password of user %r (id %d) changed", doc["username"], user_id)
        return _user(user_id, after)

    def change_password(self, user_id: int, current_password: Any, new_password: Any) -> User:
        """A user changing their own password must prove they know the current one (400 naming current_password if not)."""
        doc = self._records().get(user_id)
        if doc is None:
            raise UserError(404, f"no user with id {user_id}", "id")
        if not isinstance(current_password, str) or not self.hasher.verify(current_password, doc["password_hash"]):
            raise UserError(400, "is not the current password", "current_password")
        return self.set_password(user_id, new_password, field="new_password")

    def reset_password(self, username: str) -> str:
        """Set a new random password for `username` and return it (for `ems user reset-password`)."""
        user = self.get_by_username(username)
        if user is None:
            raise UserError(404, f"no user named {normalize_username(username)!r}", "username")
        password = generate_password()
        self.set_password(user.id, password, one_time=True)
        return password

    def ensure_admin(self) -> str | None:
        """On an empty store, create `admin` with a random password and return it (the caller shows it
        once); otherwise None. There is no fixed default password."""
        password = generate_password()
        password_hash = self.hasher.hash(password)
        with self._db.locked():
            records = self._records()
            if records:
                return None
            user_id = self._allocate_id(records)
            self._users().insert(_document(
                {"username": "admin", "name": "Administrator", "email": "", "role": "admin",
                 "created_ts": self._now(), "last_login_ts": None, "disabled": False,
                 "credential_version": 1, "password_hash": password_hash, "one_time_credential": True}, user_id))
        log.warning("no users existed: created user 'admin' with a random one-time password")
        return password

    def authenticate(self, username: str, password: str) -> tuple[LoginOutcome, User | None]:
        """Check a login. ("ok", user) records the login; ("disabled", user) only with the right password;
        ("wrong", None) for a wrong password or unknown user, which take the same time."""
        found = self._find(self._records(), normalize_username(username))
        if found is None:
            self.hasher.verify_dummy(password if isinstance(password, str) else "")
            return "wrong", None
        user_id, doc = found
        if not isinstance(password, str) or not self.hasher.verify(password, doc["password_hash"]):
            return "wrong", None
        if doc["disabled"]:
            return "disabled", _user(user_id, doc)
        rehash = self.hasher.hash(password) if self.hasher.needs_rehash(doc["password_hash"]) else None
        with self._db.locked():
            current = self._records().get(user_id)
            if current is None or current["credential_version"] != doc["credential_version"]:
                return "wrong", None  # deleted or password changed while we were verifying
            after = {**current, "last_login_ts": self._now()}
            if rehash:
                after["password_hash"] = rehash
            self._users().update(after, doc_ids=[user_id])
        return "ok", _user(user_id, after)

    # -- internals -----------------------------------------------------------------------------------------

    def _users(self) -> Table:
        return self._db.table(_USERS)

    def _allocate_id(self, records: Mapping[int, Any]) -> int:
        """The next never-used id; the counter is written first, so a crash can skip an id, never reuse one."""
        meta_table = self._db.table(_META)
        meta: Mapping[str, Any] = meta_table.get(doc_id=_META_ID) or {}
        counter = meta.get("next_user_id", 1) if isinstance(meta, Mapping) else 1
        user_id = max(int(counter) if isinstance(counter, int) else 1, max(records, default=0) + 1)
        meta_table.upsert(_document({"next_user_id": user_id + 1}, _META_ID))
        return user_id

    @staticmethod
    def _refuse_losing_last_admin(records: Mapping[int, dict[str, Any]], user_id: int,
                                  after: Mapping[str, Any] | None) -> None:
        def enabled_admins(recs: Mapping[int, Mapping[str, Any]]) -> int:
            return sum(1 for d in recs.values() if d["role"] == "admin" and not d["disabled"])

        changed: dict[int, Mapping[str, Any]] = {k: v for k, v in records.items() if k != user_id}
        if after is not None:
            changed[user_id] = after
        if enabled_admins(records) > 0 and enabled_admins(changed) == 0:
            doc = records[user_id]
            field = "id" if after is None else ("disabled" if after["disabled"] else "role")
            raise UserError(409, f"{doc['username']!r} is the last enabled admin; make another user an admin "
                                 "first", field)


def _document(doc: dict[str, Any], doc_id: int) -> Document:
    return Document(doc, doc_id=doc_id)


_FIELDS: dict[str, Callable[[Any], bool]] = {
    "username": lambda v: isinstance(v, str) and bool(USERNAME_RE.fullmatch(v)),
    "name": lambda v: isinstance(v, str),
    "email": lambda v: isinstance(v, str),
    "role": lambda v: isinstance(v, str),
    "disabled": lambda v: isinstance(v, bool),
    "credential_version": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "password_hash": lambda v: isinstance(v, str),
}


def _check_record(path: Any, user_id: int, doc: Any) -> None:
    if not isinstance(doc, Mapping):
        raise StorageCorruptError(path, f"user {user_id} is not an object")
    for key, ok in _FIELDS.items():
        if key not in doc or not ok(doc[key]):
            raise StorageCorruptError(path, f"user {user_id}: field {key!r} is missing or invalid")
    if not isinstance(doc.get("one_time_credential", False), bool):
        raise StorageCorruptError(path, f"user {user_id}: one_time_credential must be true or false")
    if not _number(doc, "created_ts") or not (doc.get("last_login_ts") is None or _number(doc, "last_login_ts")):
        raise StorageCorruptError(path, f"user {user_id}: created_ts/last_login_ts must be numbers")


def _user(user_id: int, doc: Mapping[str, Any]) -> User:
    return User(id=user_id, username=doc["username"], name=doc["name"], email=doc["email"], role=doc["role"],
                created_ts=float(doc["created_ts"]),
                last_login_ts=None if doc["last_login_ts"] is None else float(doc["last_login_ts"]),
                disabled=doc["disabled"], credential_version=doc["credential_version"],
                one_time_credential=bool(doc.get("one_time_credential", False)))

"""API bearer tokens for machine clients: one user may hold several, each named, each revocable.

The plaintext (`ems_…`, 256 random bits) is returned once, at creation; the file (`api_tokens.json`, TinyDB,
written atomically) keeps only its SHA-256 — a fast hash is right here, since the secret is random, not a
password. A token acts with its user's *current* role and stops working when the user is disabled or
deleted (the authenticator checks the user on every request), or when it is revoked.

`last_used_ts` is written at most every `touch_interval_s`, so a client polling every second does not wear
out the flash with one write per request.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

from tinydb.table import Document

from .storage import LockedDB, StorageCorruptError
from .store import UserError

log = logging.getLogger(__name__)

TOKEN_PREFIX = "ems_"
TOKEN_RE = re.compile(r"ems_[A-Za-z0-9_-]{43}")
MAX_NAME_LEN = 64
_TABLE = "tokens"


@dataclass(frozen=True)
class ApiToken:
    """A token as listed: never carries the secret or its hash."""

    id: str
    user_id: int
    name: str
    created_ts: float
    last_used_ts: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("ascii")).hexdigest()


class TokenStore:
    """Tokens in `path` (normally `<data dir>/api_tokens.json`). Thread- and process-safe."""

    def __init__(self, path: str | os.PathLike[str], now: Callable[[], float] = time.time,
                 touch_interval_s: float = 300.0, max_per_user: int = 20):
        self._db = LockedDB(path)
        self.path = self._db.path
        self._now = now
        self.touch_interval_s = touch_interval_s
        self.max_per_user = max_per_user
        self._records()  # fail at start, with the file named, if it cannot be used

    def create(self, user_id: int, name: Any = "API token") -> tuple[str, ApiToken]:
        """A new token for `user_id`; returns (plaintext — shown once, never again —, token)."""
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LEN \
                or any(ord(c) < 32 for c in name):
            raise UserError(400, f"must be 1–{MAX_NAME_LEN} printable characters", "name")
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        doc = {"id": secrets.token_hex(6), "user_id": user_id, "name": name.strip(), "created_ts": self._now(),
               "last_used_ts": None, "sha256": _hash(plaintext)}
        with self._db.locked():
            if sum(1 for d in self._records().values() if d["user_id"] == user_id) >= self.max_per_user:
                raise UserError(409, f"a user may hold at most {self.max_per_user} tokens; revoke one first", "name")
            doc_id = max(self._records(), default=0) + 1  # explicit: TinyDB's cached next id ignores other processes
            self._db.table(_TABLE).insert(Document(doc, doc_id=doc_id))
        log.info("API token %s (%r) created for user id %d", doc["id"], doc["name"], user_id)
        return plaintext, _token(doc)

    def list_for_user(self, user_id: int) -> list[ApiToken]:
        return [_token(d) for d in self._records().values() if d["user_id"] == user_id]

    def list_all(self) -> list[ApiToken]:
        return [_token(d) for d in self._records().values()]

    def get(self, token_id: str) -> ApiToken | None:
        found = self._find_id(token_id)
        return _token(found[1]) if found else None

    def revoke(self, token_id: str, user_id: int | None = None) -> ApiToken:
        """Revoke one token; with `user_id`, only if it is that user's (a user revoking their own).
        404 when there is no such token (or it belongs to someone else: no hint that it exists)."""
        with self._db.locked():
            found = self._find_id(token_id)
            if found is None or (user_id is not None and found[1]["user_id"] != user_id):
                raise UserError(404, f"no API token with id {str(token_id)[:20]!r}", "id")
            self._db.table(_TABLE).remove(doc_ids=[found[0]])
        log.info("API token %s revoked", token_id)
        return _token(found[1])

    def revoke_all_for_user(self, user_id: int) -> int:
        with self._db.locked():
            doc_ids = [i for i, d in self._records().items() if d["user_id"] == user_id]
            if doc_ids:
                self._db.table(_TABLE).remove(doc_ids=doc_ids)
        return len(doc_ids)

    def lookup(self, plaintext: Any) -> ApiToken | None:
        """The token matching a presented secret, or None; records the use (coalesced)."""
        if not isinstance(plaintext, str) or not TOKEN_RE.fullmatch(plaintext):
            return None
        digest = _hash(plaintext)
        match = None
        for doc_id, doc in self._records().items():
            if hmac.compare_digest(doc["sha256"], digest):
                match = doc_id, doc
        if match is None:
            return None
        doc_id, doc = match
        now = self._now()
        if doc["last_used_ts"] is None or now - doc["last_used_ts"] >= self.touch_interval_s:
            with self._db.locked():
                if doc_id in self._records():  # not revoked meanwhile
                    self._db.table(_TABLE).update({"last_used_ts": now}, doc_ids=[doc_id])
            doc = {**doc, "last_used_ts": now}
        return _token(doc)

    def _find_id(self, token_id: Any) -> tuple[int, dict[str, Any]] | None:
        for doc_id, doc in self._records().items():
            if doc["id"] == token_id:
                return doc_id, doc
        return None

    def _records(self) -> dict[int, dict[str, Any]]:
        records = {}
        for key, doc in self._db.read_all().get(_TABLE, {}).items():
            if not (key.isdigit() and isinstance(doc, Mapping) and isinstance(doc.get("id"), str)
                    and isinstance(doc.get("user_id"), int) and isinstance(doc.get("name"), str)
                    and isinstance(doc.get("sha256"), str) and isinstance(doc.get("created_ts"), (int, float))
                    and (doc.get("last_used_ts") is None or isinstance(doc.get("last_used_ts"), (int, float)))):
                raise StorageCorruptError(self.path, f"token record {key!r} is incomplete")
            records[int(key)] = dict(doc)
        return records


def _token(doc: Mapping[str, Any]) -> ApiToken:
    return ApiToken(id=doc["id"], user_id=doc["user_id"], name=doc["name"], created_ts=float(doc["created_ts"]),
                    last_used_ts=None if doc["last_used_ts"] is None else float(doc["last_used_ts"]))

"""The audit log: who changed which setting, when, from where, old → new — append-only, for the grid operator.

One JSON object per line in `audit.jsonl` (in the data directory), written with one `write()` on a file
opened `O_APPEND` and fsynced before the change is applied, never rewritten or truncated by the service.
Each line carries the SHA-256 of the line before it (`prev`), so a line edited, removed or inserted
afterwards breaks the chain, and `verify()` says where. A torn last line (power cut mid-write) is skipped
on reading and the chain continues from the last complete line.

Secrets never reach the log: their changes are recorded as "set" / "not set" / "changed" only
(`ems.config.guard`). The file is created readable by the service's user only.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.jsonl"
GENESIS = "0" * 64
CSV_COLUMNS = ("seq", "ts", "time_utc", "user", "user_id", "role", "via", "remote_addr", "kind", "section", "field",
               "old", "new")
_TAIL_BLOCK = 64 * 1024


@dataclass(frozen=True)
class Actor:
    """Who made a change: the signed-in user (or "system" for the EMS itself) and the socket peer."""

    user: str
    user_id: int | None = None
    role: str = "system"
    via: str = "internal"
    remote_addr: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role in ("admin", "system")


SYSTEM = Actor("system")


class AuditLog:
    """Thread-safe appender and reader of the audit file; `path` None keeps entries in memory (tests)."""

    def __init__(self, path: str | os.PathLike[str] | None, now: Callable[[], float] = time.time):
        self.path = Path(path) if path is not None else None
        self._now = now
        self._lock = threading.Lock()
        self._memory: list[bytes] = []
        self._seq = 0
        self._last_hash = GENESIS
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._terminate_torn_line()
            for raw, line in self._raw_lines():
                self._seq = max(self._seq, int(line.get("seq", 0)))
                self._last_hash = _hash(raw)
            if self.path.exists() and self.path.stat().st_mode & 0o077:
                self.path.chmod(0o600)

    # -- writing --------------------------------------------------------------------------------------

    def record(self, actor: Actor, kind: str, section: str, entries: Iterable[tuple[str, Any, Any]]) -> int:
        """Append one line per (field, old, new); each is on disk (fsync) when this returns. Returns how many."""
        written = 0
        with self._lock:
            fd = None if self.path is None else os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                                                        0o600)
            try:
                for field, old, new in entries:
                    self._seq += 1
                    line = {"seq": self._seq, "ts": round(self._now(), 3), "user": actor.user, "user_id": actor.user_id,
                            "role": actor.role, "via": actor.via, "remote_addr": actor.remote_addr, "kind": kind,
                            "section": section, "field": field, "old": old, "new": new, "prev": self._last_hash}
                    data = _encode(line)
                    if fd is None:
                        self._memory.append(data)
                    else:
                        os.write(fd, data)  # one write of a whole line; O_APPEND puts it at the end, atomically
                        os.fsync(fd)
                    self._last_hash = _hash(data)
                    written += 1
            finally:
                if fd is not None:
                    os.close(fd)
        return written

    # -- reading --------------------------------------------------------------------------------------

    def recent(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest `limit` entries, newest first (reads only the end of a long file)."""
        if self.path is None:
            with self._lock:
                raw = list(self._memory[-limit:])
            return [json.loads(r) for r in reversed(raw)]
        return list(reversed(self._tail(limit)))

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every entry, oldest first (streamed: the file is never read into memory at once)."""
        return self._lines()

    def verify(self) -> dict[str, Any]:
        """Walk the hash chain: {"ok": true, "entries": n} or {"ok": false, "broken_at_seq": s, ...}."""
        prev, count = GENESIS, 0
        for raw, line in self._raw_lines():
            if line.get("prev") != prev:
                return {"ok": False, "entries": count, "broken_at_seq": line.get("seq"),
                        "message": "an entry was changed, removed or inserted before this one"}
            prev = _hash(raw)
            count += 1
        return {"ok": True, "entries": count}

    def export_jsonl(self) -> Iterator[bytes]:
        for raw, _line in self._raw_lines():
            yield raw

    def export_csv(self) -> Iterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        for line in self._lines():
            row = dict(line, time_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(line.get("ts", 0)))))
            writer.writerow([_csv_cell(row.get(c)) for c in CSV_COLUMNS])
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
        if buffer.getvalue():
            yield buffer.getvalue().encode("utf-8")

    # -- internals ------------------------------------------------------------------------------------

    def _lines(self) -> Iterator[dict[str, Any]]:
        for _raw, line in self._raw_lines():
            yield line

    def _raw_lines(self) -> Iterator[tuple[bytes, dict[str, Any]]]:
        """(bytes of the line, entry) for every complete line, oldest first."""
        if self.path is None:
            with self._lock:
                memory = list(self._memory)
            for data in memory:
                yield data, json.loads(data)
            return
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return
        with fh:
            for data in fh:
                entry = _decode(data)
                if entry is not None:
                    yield data, entry

    def _terminate_torn_line(self) -> None:
        """A power cut mid-write can leave a last line without its newline: end it, so the next entry
        starts a line of its own (the torn one is skipped by every reader)."""
        assert self.path is not None
        try:
            with open(self.path, "rb") as fh:
                if fh.seek(0, os.SEEK_END) == 0:
                    return
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) == b"\n":
                    return
        except FileNotFoundError:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            os.write(fd, b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        log.warning("audit log %s ended in an incomplete line (interrupted write); it is skipped", self.path)

    def _tail(self, limit: int) -> list[dict[str, Any]]:
        assert self.path is not None
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return []
        with fh:
            end = fh.seek(0, os.SEEK_END)
            pos, chunk = end, b""
            while pos > 0 and chunk.count(b"\n") <= limit:
                step = min(_TAIL_BLOCK, pos)
                pos -= step
                fh.seek(pos)
                chunk = fh.read(step) + chunk
        pieces = chunk.split(b"\n")
        lines = [p + b"\n" for p in pieces[:-1]]  # the last piece is empty, or a torn line
        if pos > 0:
            lines = lines[1:]  # the first piece may be the end of an earlier line
        found = [e for e in (_decode(line) for line in lines) if e is not None]
        return found[-limit:]


def _encode(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, sort_keys=True, ensure_ascii=True, separators=(",", ":"), default=str) + "\n").encode()


def _decode(data: bytes) -> dict[str, Any] | None:
    if not data.endswith(b"\n") or not data.strip():
        return None  # a torn line, or an empty one
    try:
        entry = json.loads(data)
    except ValueError:
        log.debug("audit log: skipped an incomplete line (interrupted write)")
        return None
    return entry if isinstance(entry, dict) else None


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    # A cell starting with = + - @ would be a formula in a spreadsheet: quote it as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text

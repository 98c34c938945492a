"""Crash-safe TinyDB storage for the user and token files, plus the lock that serialises their writers.

TinyDB's own JSONStorage rewrites the file in place, so a power cut mid-write leaves half a JSON file and
no users. Here every write replaces the whole file atomically (`ems.atomic.write_atomic`, keeping the
previous version as `<file>.bak`), and every read parses the file afresh: the `ems user reset-password`
command runs in another process than the service, and both must see each other's changes.

A file that does not parse is never silently replaced by an empty database (that would recreate `admin`
with a new password and drop every account): loading raises `StorageCorruptError` naming the file and the
backup to restore.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Table

from ..atomic import write_atomic

log = logging.getLogger(__name__)


class StorageCorruptError(Exception):
    """A store file that cannot be used as it is; the message says which file and what to do."""

    def __init__(self, path: Path, problem: str):
        self.path = path
        self.problem = problem
        backup = path.with_name(path.name + ".bak")
        hint = (f"the previous version is in {backup}; stop the EMS and copy it over {path.name} to restore it"
                if backup.exists() else "no backup exists; move the file away to start with an empty store")
        super().__init__(f"{path}: {problem} ({hint})")


class AtomicJSONStorage(Storage):
    """TinyDB storage: read parses the whole file, write replaces it atomically and keeps `.bak`."""

    def __init__(self, path: str | os.PathLike[str], keep_backup: bool = True):
        super().__init__()
        self.path = Path(path)
        self.keep_backup = keep_backup

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if not raw.strip():
            # Our writer never leaves an empty file; an empty one means something else truncated it.
            raise StorageCorruptError(self.path, "file is empty")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise StorageCorruptError(self.path, f"not valid JSON ({exc})") from None
        if not isinstance(data, dict) or not all(isinstance(t, dict) for t in data.values()):
            raise StorageCorruptError(self.path, "expected an object of tables, each an object of documents")
        return data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False)
        write_atomic(self.path, text.encode("utf-8") + b"\n", keep_backup=self.keep_backup)


class LockedDB:
    """A TinyDB on AtomicJSONStorage with one lock for read-modify-write sequences.

    `locked()` holds a thread lock and, at its outermost level, an exclusive `flock` on `<file>.lock`, so a
    check-then-write (for example "is this the last admin?") is not interleaved with another thread's or
    another process's write. Plain reads need no lock: the file is always complete.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = TinyDB(self.path, storage=AtomicJSONStorage)
        self._lock = threading.RLock()
        self._depth = 0
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._remove_leftover_temp_files()

    def table(self, name: str) -> Table:
        # cache_size=0: TinyDB's query cache would hide writes made by another process.
        return self._db.table(name, cache_size=0)

    def read_all(self) -> dict[str, dict[str, Any]]:
        """The whole file as plain data (raises StorageCorruptError when it cannot be used)."""
        return self._db.storage.read() or {}

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._depth = 1
                try:
                    yield
                finally:
                    self._depth = 0
            finally:
                os.close(fd)  # closing releases the flock

    def close(self) -> None:
        self._db.close()

    def _remove_leftover_temp_files(self) -> None:
        """Temp files of writers killed mid-write; safe under the lock, since no writer is active then."""
        with self.locked():
            for leftover in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                leftover.unlink(missing_ok=True)
                log.info("removed %s, left by an interrupted write", leftover.name)

"""Notifications a user should see (crashed subsystem, DSO orders, alarms): a bounded, thread-safe log."""
from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal

log = logging.getLogger(__name__)

Level = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class Notification:
    id: int
    ts: float
    level: Level
    category: str  # e.g. "supervisor", "dso", "safety", "modbus", "optimizer"
    message: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Notifications:
    def __init__(self, now: Callable[[], float], maxlen: int = 500):
        self._now = now
        self._items: deque[Notification] = deque(maxlen=maxlen)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._acked: dict[int, int] = {}

    def add(self, level: Level, category: str, message: str) -> Notification:
        with self._lock:
            item = Notification(next(self._ids), self._now(), level, category, message)
            self._items.append(item)
        getattr(log, "error" if level == "error" else level)("[%s] %s", category, message)
        return item

    def acknowledge(self, user_id: int, up_to_id: int) -> None:
        """A user has seen everything up to `up_to_id` (kept in memory: a restart shows them again)."""
        with self._lock:
            self._acked[user_id] = max(self._acked.get(user_id, 0), up_to_id)

    def acknowledged(self, user_id: int) -> int:
        with self._lock:
            return self._acked.get(user_id, 0)

    def recent(self, limit: int = 50) -> list[Notification]:
        with self._lock:
            return list(self._items)[-limit:][::-1]

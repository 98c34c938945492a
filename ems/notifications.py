"""Notifications a user should see (crashed subsystem, DSO orders, alarms): a bounded, thread-safe log.

Alarms — level error or critical, and every DSO order (category "dso", a trip or a limit) — are kept in a
buffer of their own: a flood of lesser notifications (info, warnings: a burst of sign-ups, config changes)
can only push out other lesser ones, never an alarm. Each buffer is bounded; `recent()` merges them
newest first.

A notification is written in words a site owner understands, in the reader's language: `add()` takes a msgid
(English, `{placeholders}`, marked with `i18n.mark` so the catalog test finds it) and its parameters, and a
`detail`: the technical text (register, point, exception) one click away, never translated. `message` is the
English words with the detail in brackets: what the log and MQTT carry.
"""
from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

from . import i18n

log = logging.getLogger(__name__)

Level = Literal["info", "warning", "error", "critical"]
ALARM_LEVELS = frozenset({"error", "critical"})
ALARM_CATEGORIES = frozenset({"dso"})


def is_alarm(level: str, category: str) -> bool:
    return level in ALARM_LEVELS or category in ALARM_CATEGORIES


@dataclass(frozen=True)
class Notification:
    id: int
    ts: float
    level: Level
    category: str  # e.g. "supervisor", "dso", "safety", "modbus", "optimizer"
    message: str  # English words (detail): for logs and MQTT
    msgid: str = ""
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    detail: str = ""  # the technical text: register, point, exception (not translated)

    def words(self, lang: str = i18n.DEFAULT_LANGUAGE) -> str:
        """The words alone, in `lang`."""
        return i18n.render(self.msgid, self.params, lang) if self.msgid else self.message

    def to_json(self, lang: str | None = None) -> dict[str, Any]:
        """English `message` with the detail (MQTT, logs), or with `lang` the words in that language and the
        detail apart (the pages)."""
        body: dict[str, Any] = {"id": self.id, "ts": self.ts, "level": self.level, "category": self.category,
                                "message": self.message if lang is None else self.words(lang)}
        if lang is not None:
            body["detail"] = self.detail
        return body


class Notifications:
    def __init__(self, now: Callable[[], float], maxlen: int = 500, max_alarms: int = 500):
        self._now = now
        self._items: deque[Notification] = deque(maxlen=maxlen)
        self._alarms: deque[Notification] = deque(maxlen=max_alarms)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._acked: dict[int, int] = {}

    def add(self, level: Level, category: str, msgid: str, detail: str = "", **params: Any) -> Notification:
        """`msgid` (marked with `i18n.mark`) with `params`; `detail` the technical text."""
        words = i18n.render(msgid, params)
        message = f"{words} ({detail})" if detail else words
        with self._lock:
            item = Notification(next(self._ids), self._now(), level, category, message, msgid, dict(params),
                                detail)
            (self._alarms if is_alarm(level, category) else self._items).append(item)
        log_level = {"critical": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING}.get(level,
                                                                                                        logging.INFO)
        log.log(log_level, "[%s] %s", category, message)
        return item

    def latest_id(self) -> int:
        """The id of the newest notification (0: none yet): in every live state, so a page fetches the list
        when it changes instead of polling for it."""
        with self._lock:
            newest = [q[-1].id for q in (self._items, self._alarms) if q]
        return max(newest, default=0)

    def acknowledge(self, user_id: int, up_to_id: int) -> None:
        """A user has seen everything up to `up_to_id` (kept in memory: a restart shows them again)."""
        with self._lock:
            self._acked[user_id] = max(self._acked.get(user_id, 0), up_to_id)

    def acknowledged(self, user_id: int) -> int:
        with self._lock:
            return self._acked.get(user_id, 0)

    def recent(self, limit: int = 50) -> list[Notification]:
        """Up to `limit` notifications, newest first. Alarms get at least half the places (all of them, when
        fewer), so a flood of lesser notifications cannot hide them from the list either."""
        with self._lock:
            alarms, others = list(self._alarms)[-limit:], list(self._items)[-limit:]
        n_alarms = min(len(alarms), max(limit - len(others), limit // 2))
        n_others = min(len(others), limit - n_alarms)
        n_alarms = min(len(alarms), limit - n_others)
        chosen = alarms[len(alarms) - n_alarms:] + others[len(others) - n_others:]
        return sorted(chosen, key=lambda n: n.id, reverse=True)

    def alarms(self, limit: int = 50) -> list[Notification]:
        """The newest `limit` alarms, newest first."""
        with self._lock:
            return list(self._alarms)[-limit:][::-1]

"""Live-event streams (SSE): bounded per user, fair between users — nobody's tabs keep others' live view out.

Each open stream holds a web thread for as long as it runs, so their number is bounded (`capacity`, the
threads the server adds for them). Within that:
- one user holds at most `per_user()` streams; opening one more ends that user's oldest (a reloaded tab
  replaces the tab it was), unless one of theirs is already ending — then the new one is refused
  ("user": answer 429, try again in a moment);
- when all places are taken, a user with fewer streams than the one holding the most takes the oldest
  stream of that user; only when everyone holds the same number is a newcomer refused ("full": 503).
An ended stream stops at its next tick; until then it still counts, so a burst of opens cannot overshoot
the capacity by more than one stream per user.
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from typing import Callable


class Stream:
    """One open stream: the generator runs until `ended` is set (or the EMS stops), then calls `close()`."""

    def __init__(self, slots: "StreamSlots", user_id: int, number: int):
        self._slots = slots
        self.user_id = user_id
        self.number = number
        self.ended = threading.Event()
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._slots._remove(self)


class StreamSlots:
    def __init__(self, capacity: int, per_user: Callable[[], int]):
        self.capacity = capacity
        self._per_user = per_user
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._streams: dict[int, OrderedDict[int, Stream]] = {}

    def open(self, user_id: int) -> Stream | str:
        """A place for a new stream of `user_id`, or why there is none: "user" (this user's limit, one of
        their streams is still ending) or "full" (see the module doc)."""
        with self._lock:
            mine = self._streams.setdefault(user_id, OrderedDict())
            if len(mine) >= max(1, self._per_user()):
                if any(s.ended.is_set() for s in mine.values()):
                    return "user"
                next(iter(mine.values())).ended.set()  # the user's oldest tab gives way
            elif self._total() >= self.capacity and not self._make_room(user_id):
                self._forget_if_empty(user_id)
                return "full"
            stream = Stream(self, user_id, next(self._numbers))
            mine[stream.number] = stream
            return stream

    def counts(self) -> dict[int, int]:
        with self._lock:
            return {uid: len(s) for uid, s in self._streams.items() if s}

    def _forget_if_empty(self, user_id: int) -> None:
        if not self._streams.get(user_id):
            self._streams.pop(user_id, None)
        return None

    def _total(self) -> int:
        return sum(len(s) for s in self._streams.values())

    def _make_room(self, user_id: int) -> bool:
        """End the oldest stream of the user with the most live (not ending) streams, if they hold more than
        `user_id` does; False when no one does."""
        live = {uid: [s for s in streams.values() if not s.ended.is_set()] for uid, streams in self._streams.items()}
        mine = len(live.get(user_id, []))
        richest = max(live, key=lambda uid: len(live[uid]), default=None)
        if richest is None or richest == user_id or len(live[richest]) <= mine + 1:
            return False
        live[richest][0].ended.set()
        return True

    def _remove(self, stream: Stream) -> None:
        with self._lock:
            mine = self._streams.get(stream.user_id)
            if mine is not None:
                mine.pop(stream.number, None)
                if not mine:
                    del self._streams[stream.user_id]

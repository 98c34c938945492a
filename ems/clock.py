"""Injected time: the whole system reads time from a Clock so tests and the simulator can run faster.

`now()` is wall-clock-like epoch seconds (UTC) used for timestamps; `monotonic()` is for intervals.
A ScaledClock starts at a chosen instant and advances `speed` simulated seconds per real second.
"""
from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    speed: float

    def now(self) -> float:
        """Epoch seconds (UTC) of the plant's time."""

    def monotonic(self) -> float:
        """Real seconds, for measuring intervals and lag."""


class ScaledClock:
    """Plant time = start + speed × real time elapsed. speed 1 and no start = the real clock."""

    def __init__(self, start_epoch_s: float | None = None, speed: float = 1.0):
        self.speed = speed
        self._m0 = time.monotonic()
        self._t0 = time.time() if start_epoch_s is None else start_epoch_s

    def now(self) -> float:
        return self._t0 + (time.monotonic() - self._m0) * self.speed

    def monotonic(self) -> float:
        return time.monotonic()

"""The grid operator's (DSO) control box: normal, a feed-in/power limit in %, or a trip.

In the simulator it follows a script so a demo or test can replay a DSO intervention at fixed
simulated times; `set_state()` overrides the script (UI, tests, the Modbus simulator). The box only
reports a state — reacting to it is the EMS's job. Pure: time is passed in.
"""
from __future__ import annotations

import logging
import threading
from typing import Literal, Optional, Sequence

from ..config.schema import DsoScriptStep

log = logging.getLogger(__name__)

DsoMode = Literal["normal", "limit", "trip"]
DSO_MODES = ("normal", "limit", "trip")


def _normalise(mode: str, limit_pct: float) -> tuple[str, float]:
    """normal always means 100 %, trip always 0 %; only "limit" carries its own percentage."""
    if mode not in DSO_MODES:
        raise ValueError(f"unknown DSO mode {mode!r} (allowed: {', '.join(DSO_MODES)})")
    if mode == "normal":
        return mode, 100.0
    if mode == "trip":
        return mode, 0.0
    limit = float(limit_pct)
    if not 0.0 <= limit <= 100.0:
        raise ValueError(f"limit_pct must be 0..100, got {limit_pct}")
    return mode, limit


class DsoBox:
    """Scripted DSO state with a manual override that wins until `clear_override()`."""

    def __init__(self, script: Sequence[DsoScriptStep] = (), start_epoch_s: float = 0.0):
        # Stable sort: of two steps at the same time, the later one in the script applies.
        self._script = tuple(sorted(script, key=lambda s: s.at_s))
        for step in self._script:
            _normalise(step.mode, step.limit_pct)
        self.start_epoch_s = float(start_epoch_s)
        self._override: Optional[tuple[str, float]] = None
        self._lock = threading.Lock()
        self._state: tuple[str, float] = ("normal", 100.0)
        self.update(self.start_epoch_s)

    def scripted_state(self, elapsed_s: float) -> tuple[str, float]:
        """(mode, limit_pct) of the last script step with at_s <= elapsed_s; normal before any."""
        state = ("normal", 100.0)
        for step in self._script:
            if step.at_s > elapsed_s:
                break
            state = _normalise(step.mode, step.limit_pct)
        return state

    def update(self, now_s: float) -> tuple[str, float]:
        """Advance to plant time `now_s` (epoch seconds); returns the effective (mode, limit_pct)."""
        with self._lock:
            state = self._override or self.scripted_state(now_s - self.start_epoch_s)
            if state != self._state:
                log.info("DSO state %s %.0f %% -> %s %.0f %%%s", self._state[0], self._state[1],
                         state[0], state[1], " (override)" if self._override else "")
                self._state = state
            return state

    def set_state(self, mode: DsoMode, limit_pct: float = 100.0) -> None:
        """Manual override of the script; takes effect immediately and at every later update."""
        state = _normalise(mode, limit_pct)
        with self._lock:
            self._override = state
            if state != self._state:
                log.info("DSO state %s %.0f %% -> %s %.0f %% (override)", self._state[0], self._state[1],
                         state[0], state[1])
            self._state = state

    def clear_override(self) -> None:
        """Hand control back to the script (effective from the next update)."""
        with self._lock:
            self._override = None

    @property
    def overridden(self) -> bool:
        return self._override is not None

    @property
    def mode(self) -> str:
        return self._state[0]

    @property
    def limit_pct(self) -> float:
        return self._state[1]

"""A manual battery request for a bounded time (from the cloud over MQTT, or an operator), instead of the plan's.

It is only a *request*: the safety loop takes it exactly like the real-time layer's and still clamps it
to every limit (DSO orders, BMS limits, the grid connection, the feed-in limit, the SoC window), so a
command can never push the battery past what the plant allows. It always expires: a lost cloud link
cannot leave the battery discharging at a fixed power for ever.
"""
from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

from . import i18n
from .errors import ApiError

log = logging.getLogger(__name__)

MAX_DURATION_S = 4 * 3600.0


@dataclass(frozen=True)
class ManualSetpoint:
    power_w: float  # > 0 = discharge
    until_ts: float  # plant time
    source: str  # who asked: "mqtt", a user name …

    def to_json(self) -> dict[str, Any]:
        return {"power_w": self.power_w, "until_ts": round(self.until_ts, 3), "source": self.source}


class ManualRequest:
    """The one manual request in force, or none. Thread-safe: set from web threads, read by the safety loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: ManualSetpoint | None = None

    def set(self, power_w: Any, duration_s: Any, now: float, source: str, max_power_w: float) -> ManualSetpoint:
        """Validate and apply; ApiError 400 naming the field for anything out of bounds."""
        for name, value in (("power_w", power_w), ("duration_s", duration_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ApiError(400, i18n.mark("must be a number (got {got})"), name, got=repr(str(value)[:40]))
        if abs(power_w) > max_power_w:
            raise ApiError(400, i18n.mark("must be within ±{max_w} W (the battery's configured maximum)"), "power_w",
                           max_w=f"{max_power_w:.0f}")
        if not 1.0 <= duration_s <= MAX_DURATION_S:
            raise ApiError(400, i18n.mark("must be between 1 and {max_s} s"), "duration_s", max_s=f"{MAX_DURATION_S:.0f}")
        setpoint = ManualSetpoint(float(power_w), now + float(duration_s), source)
        with self._lock:
            self._current = setpoint
        log.info("manual request %.0f W until %.0f (from %s)", setpoint.power_w, setpoint.until_ts, source)
        return setpoint

    def clear(self) -> None:
        with self._lock:
            self._current = None

    def active(self, now: float) -> ManualSetpoint | None:
        """The request in force at `now`; an expired one is dropped."""
        with self._lock:
            current = self._current
            if current is not None and now >= current.until_ts:
                self._current = current = None
        return current

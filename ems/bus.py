"""The telemetry bus: merges measurements from every source into one PlantState.

Publishing happens on the event loop; `snapshot()` is safe from any thread (the state is immutable and
swapping a reference is atomic). Readers poll the latest state at their own pace (the safety loop each
cycle, the recorder each sample, the web per request), so nobody can grow a backlog.
"""
from __future__ import annotations

import logging

from .state import Measurement, PlantState

log = logging.getLogger(__name__)


class TelemetryBus:
    def __init__(self) -> None:
        self._state = PlantState()
        self.updates = 0

    def snapshot(self) -> PlantState:
        return self._state

    def publish(self, updates: dict[str, Measurement]) -> PlantState:
        """Merge `updates` (dotted paths → measurements) into the state; call on the event loop."""
        self._state = self._state.with_updates(updates)
        self.updates += 1
        return self._state

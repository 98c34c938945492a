"""The telemetry bus: merges measurements from every source into one PlantState and wakes subscribers.

Publishing happens on the event loop; `snapshot()` is safe from any thread (the state is immutable and
swapping a reference is atomic). Subscribers see the latest state, never a backlog: a slow reader
skips intermediate states instead of growing a queue.
"""
from __future__ import annotations

import asyncio
import logging

from .state import Measurement, PlantState

log = logging.getLogger(__name__)


class Subscription:
    """Latest-value channel: `await next()` returns the newest state published since the last call."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._state: PlantState | None = None

    def _offer(self, state: PlantState) -> None:
        self._state = state
        self._event.set()

    async def next(self) -> PlantState:
        await self._event.wait()
        self._event.clear()
        assert self._state is not None
        return self._state


class TelemetryBus:
    def __init__(self) -> None:
        self._state = PlantState()
        self._subscribers: list[Subscription] = []
        self.updates = 0

    def snapshot(self) -> PlantState:
        return self._state

    def publish(self, updates: dict[str, Measurement]) -> PlantState:
        """Merge `updates` (dotted paths → measurements) into the state; call on the event loop."""
        self._state = self._state.with_updates(updates)
        self.updates += 1
        for sub in self._subscribers:
            sub._offer(self._state)
        return self._state

    def subscribe(self) -> Subscription:
        sub = Subscription()
        self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

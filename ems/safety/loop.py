"""The safety loop: the only code that writes a setpoint to the plant.

Every period it takes the latest plant state and the dispatcher's request, lets `rules.decide` make it
safe, writes the result (on change, and at least every `setpoint_resend_s` because inverters fall back
on comm loss), and pets the watchdogs only while that all worked. Any exception in a cycle resolves to
0 W; cancelling the loop (shutdown) leaves the plant at 0 W.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, Protocol

from ..bus import TelemetryBus
from ..clock import Clock
from ..config import ConfigStore
from ..notifications import Notifications
from ..state import PlantState
from .rules import SafetyDecision, decide

log = logging.getLogger(__name__)

SAFE_SETPOINT_W = 0.0


class SetpointSink(Protocol):
    """Where setpoints go: the simulator now, the PCS over Modbus later."""

    async def write_setpoint(self, power_w: float) -> None: ...


Dispatcher = Callable[[PlantState, float], float]


class SafetyLoop:
    def __init__(self, bus: TelemetryBus, clock: Clock, config: ConfigStore, dispatcher: Dispatcher,
                 sink: SetpointSink, notifications: Notifications, pet_watchdog: Callable[[], None]):
        self.bus = bus
        self.clock = clock
        self.config = config
        self.dispatcher = dispatcher
        self.sink = sink
        self.notifications = notifications
        self.pet_watchdog = pet_watchdog
        self.last_decision: SafetyDecision | None = None
        self._last_written_w: float | None = None
        self._last_write_mono = 0.0

    async def run(self) -> None:
        try:
            while True:
                period_s = self.config.config.power_control.safety_period_s
                await self.cycle()
                await asyncio.sleep(period_s)
        finally:
            await self._write_safe("safety loop stopped")

    async def cycle(self) -> SafetyDecision | None:
        cfg = self.config.config
        now = self.clock.now()
        try:
            state = self.bus.snapshot()
            requested_w = self.dispatcher(state, now)
            decision = decide(state, requested_w, now, cfg.bess, cfg.power_control, cfg.grid_connection)
            self._record(decision)
            await self._write(decision.setpoint_w, cfg.power_control.setpoint_resend_s)
        except Exception:
            log.exception("safety cycle failed; writing the safe setpoint")
            self.last_decision = SafetyDecision(SAFE_SETPOINT_W, 0.0, "safety", ("internal error",), 0.0)
            await self._write_safe("safety cycle failed")
            return None
        self.pet_watchdog()
        return decision

    def _record(self, decision: SafetyDecision) -> None:
        previous = self.last_decision
        self.last_decision = decision
        if previous is None or previous.mode != decision.mode:
            level = "info" if decision.mode == "normal" else "warning"
            detail = ", ".join(decision.reasons) or "all inputs fresh"
            self.notifications.add(level, "safety", f"power control {decision.mode}: {detail}")

    async def _write(self, power_w: float, resend_s: float) -> None:
        mono = self.clock.monotonic()
        if power_w != self._last_written_w or mono - self._last_write_mono >= resend_s:
            await self.sink.write_setpoint(power_w)
            self._last_written_w = power_w
            self._last_write_mono = mono

    async def _write_safe(self, why: str) -> None:
        try:
            await asyncio.shield(self.sink.write_setpoint(SAFE_SETPOINT_W))
            self._last_written_w = SAFE_SETPOINT_W
            log.info("safe setpoint written (%s)", why)
        except Exception:
            log.exception("could not write the safe setpoint (%s)", why)

    def to_json(self) -> dict[str, object]:
        d = self.last_decision
        if d is None:
            return {"mode": None, "requested_w": None, "setpoint_w": None, "reasons": [], "limit_pct": None}
        return {"mode": d.mode, "requested_w": round(d.requested_w, 1), "setpoint_w": round(d.setpoint_w, 1),
                "reasons": list(d.reasons), "limit_pct": d.limit_pct}

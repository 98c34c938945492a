"""The safety loop: the only code that writes to the PCS, and the only one that pets the watchdogs.

Each cycle (fixed rate, `power_control.safety_period_s`, or at once when `wake()` is called — the DSO
box's poller does that on every change) it freezes the plant state, asks the real-time layer for a
request, lets `rules.decide` make it safe, publishes the decision into the plant state and, with
`auto_write` on, hands it to the sink (on change, and at least every `setpoint_resend_s`, because
inverters fall back on comm loss). A write that fails or hangs is retried, then raises an alarm and
the safe state. The watchdogs are petted only while healthy: inputs fresh, the last write
acknowledged, the cycle within its period. A real-time layer that raises costs its request, never
the cycle; cancelling the loop (shutdown) leaves the plant in the safe state.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import replace
from typing import Callable, Protocol, Sequence

from .. import i18n
from ..bus import TelemetryBus
from ..clock import Clock
from ..config import ConfigStore
from ..localtime import minute_of_day, site_zone
from ..notifications import Notifications
from ..state import Measurement, PlantState
from .reasons import Reason, ReasonCode, limited_category
from .reasons import why as reasons_in_words
from .rules import DecisionInputs, PowerControlDecision, decide

log = logging.getLogger(__name__)

WRITE_ATTEMPTS = 3
WRITE_TIMEOUT_S = 2.0
UTILISATION_HYSTERESIS_PCT = 5.0


class SetpointSink(Protocol):
    """Where decisions go: the simulated plant, or the PCS over Modbus."""

    async def apply(self, decision: PowerControlDecision) -> None:
        """Write enable/disable, setpoint and limit; raise on failure (the loop retries, then alarms)."""

    async def safe_state(self) -> None:
        """0 W (and whatever else the device needs to be safe)."""


Dispatcher = Callable[[PlantState, float], float]


def _percentiles(samples: Sequence[float]) -> dict[str, float | None]:
    data = sorted(samples)
    if not data:
        return {"p50": None, "p99": None, "max": None}
    pick = lambda p: round(data[min(len(data) - 1, int(p * len(data)))], 3)
    return {"p50": pick(0.5), "p99": pick(0.99), "max": round(data[-1], 3)}


class SafetyLoop:
    def __init__(self, bus: TelemetryBus, clock: Clock, config: ConfigStore, dispatcher: Dispatcher,
                 sink: SetpointSink, notifications: Notifications, pet_watchdogs: Callable[[], None],
                 offline_devices: Callable[[], tuple[str, ...]] = lambda: (),
                 pv_peak_kw: Callable[[], float] | None = None):
        self.bus = bus
        self.clock = clock
        self.config = config
        self.dispatcher = dispatcher
        self.sink = sink
        self.notifications = notifications
        self.pet_watchdogs = pet_watchdogs
        self.offline_devices = offline_devices
        self.pv_peak_kw = pv_peak_kw or (lambda: config.config.forecast.pv_peak_kwp)
        self.last_decision: PowerControlDecision | None = None
        self.healthy = False
        self.cycles = 0
        self.write_failures = 0
        self.cycle_ms: deque[float] = deque(maxlen=2000)
        self.period_jitter_ms: deque[float] = deque(maxlen=2000)
        self._last_written: tuple[float, bool, float] | None = None
        self._last_write_mono = 0.0
        self._write_failed = False
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._high_utilisation = False

    # -- running ------------------------------------------------------------------------------------
    def wake(self) -> None:
        """Run a cycle now (thread-safe): called on DSO-box changes so a trip is not left to the period."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        last_start: float | None = None
        try:
            while True:
                period_s = self.config.config.power_control.safety_period_s
                start = self.clock.monotonic()
                if last_start is not None and not self._wake.is_set():
                    self.period_jitter_ms.append(abs(start - last_start - period_s) * 1000.0)
                self._wake.clear()
                last_start = start
                await self.cycle()
                self.cycle_ms.append((self.clock.monotonic() - start) * 1000.0)
                if await self.clock.wait(self._wake, start + period_s - self.clock.monotonic()):
                    last_start = None  # an early cycle: its period is not a jitter sample
        finally:
            if self.config.config.power_control.auto_write:
                await self._enter_safe_state("safety loop stopped")

    async def cycle(self) -> PowerControlDecision:
        cfg = self.config.config
        pc = cfg.power_control
        started = self.clock.monotonic()
        now = self.clock.now()
        state = self.bus.snapshot()
        try:
            requested_w = float(self.dispatcher(state, now))
            planner_note: Reason | None = None
        except Exception:
            log.exception("the real-time layer failed; the safety loop goes on with a 0 W request")
            requested_w = 0.0
            planner_note = Reason(ReasonCode.REALTIME_FAILED, "real-time layer failed: 0 W requested")
        try:
            local_minute = minute_of_day(now, site_zone(cfg.site.timezone))
            # Configured timeouts are real seconds; readings age in plant time, which may run faster.
            pc_plant = replace(pc, stale_timeout_s=pc.stale_timeout_s * self.clock.speed)
            decision = decide(DecisionInputs(
                state=state, requested_w=requested_w, now=now, local_time=local_minute,
                bess=cfg.bess, power_control=pc_plant, grid=cfg.grid_connection, feedin=cfg.feedin_limitation,
                pv_peak_kw=self.pv_peak_kw(), offline_devices=tuple(self.offline_devices())))
        except Exception:
            log.exception("safety decision failed; entering the safe state")
            internal_error = Reason(ReasonCode.INTERNAL_ERROR, "internal error in the decision")
            decision = PowerControlDecision(0.0, requested_w, "safety", (internal_error,), 0.0)
        if planner_note is not None:
            decision = _with_reason(decision, planner_note)

        write_ok = True
        if pc.auto_write and not getattr(self.sink, "online", True):
            write_ok = False  # the PCS link is down (the decision already says so); no write to attempt
            self._last_written = None
        elif pc.auto_write:
            sink_resend_s = getattr(self.sink, "max_resend_s", None)  # e.g. the PCS's heartbeat period
            write_ok = await self._write(decision, min(pc.setpoint_resend_s, sink_resend_s or pc.setpoint_resend_s))
            if not write_ok:
                decision = _with_reason(replace(decision, setpoint_w=0.0, limit_w=0.0, charge_limit_w=0.0,
                                                state="shutdown" if decision.remote_shutdown_requested else "safety"),
                                        Reason(ReasonCode.PCS_WRITE_FAILED, f"PCS write failed {WRITE_ATTEMPTS} times",
                                               {"attempts": WRITE_ATTEMPTS}))
        try:
            self._publish(decision, now)
            self._notify_changes(decision, state, now)
        except Exception:  # telling others must never cost a cycle
            log.exception("publishing the safety decision failed")
        self.last_decision = decision
        self.cycles += 1

        # Unknown inputs, an internal error, a failed real-time layer or PCS write: no watchdog petting.
        blocked = any(code.blocks_health for code in decision.codes)
        in_budget = self.clock.monotonic() - started < pc.safety_period_s
        self.healthy = write_ok and not blocked and in_budget
        if self.healthy:
            self.pet_watchdogs()
        return decision

    # -- writing ------------------------------------------------------------------------------------
    async def _write(self, decision: PowerControlDecision, resend_s: float) -> bool:
        key = (round(decision.setpoint_w, 1), decision.remote_shutdown_requested, decision.limit_pct)
        mono = self.clock.monotonic()
        if key == self._last_written and mono - self._last_write_mono < resend_s and not self._write_failed:
            return True
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                await asyncio.wait_for(self.sink.apply(decision), WRITE_TIMEOUT_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("PCS write attempt %d/%d failed: %s", attempt, WRITE_ATTEMPTS, exc or type(exc).__name__)
                continue
            self._write_failed = False
            self._last_written, self._last_write_mono = key, mono
            return True
        self.write_failures += 1
        self._write_failed = True
        self._last_written = None
        await self._enter_safe_state("PCS write failed")
        return False

    async def retire_sink(self, why: str) -> None:
        """Before the device list changes, while the old PCS's link is still up: its safe state, written
        here because the safety loop is the only writer. The runtime then hands it the new sink."""
        self._last_written = None
        await self._enter_safe_state(why)

    async def _enter_safe_state(self, why: str) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self.sink.safe_state()), WRITE_TIMEOUT_S)
            log.info("safe setpoint written (%s)", why)
        except Exception:
            log.exception("could not write the safe setpoint (%s)", why)

    # -- telling others -----------------------------------------------------------------------------
    def _publish(self, d: PowerControlDecision, now: float) -> None:
        max_age_s = 3 * self.config.config.power_control.safety_period_s * self.clock.speed
        reason = "; ".join(d.messages) if d.reasons else None
        self.bus.publish({
            "control.remote_shutdown_requested": Measurement(d.remote_shutdown_requested, now, "ems", max_age_s),
            "control.active_power_limit_w": Measurement(d.limit_w, now, "ems", max_age_s),
            "control.power_limit_reason": Measurement(reason, now, "ems", max_age_s),
            "control.setpoint_w": Measurement(d.setpoint_w, now, "ems", max_age_s),
        })

    def _notify_changes(self, d: PowerControlDecision, state: PlantState, now: float) -> None:
        previous = self.last_decision
        if previous is None or previous.state != d.state:
            detail = ", ".join(d.messages) or "all inputs fresh, no limit active"
            waiting = all(code.awaiting_input for code in d.codes)
            because = reasons_in_words(d.reasons)
            if previous is None and d.state == "safety" and waiting:
                # The first cycle after start: devices are still connecting. Safe, expected, not an alarm.
                self.notifications.add("info", "safety", i18n.mark(
                    "starting in the safe state until every input is fresh: the battery waits at 0 W while the "
                    "devices connect"), detail)
            elif d.state == "shutdown":
                self.notifications.add("error", "dso", i18n.mark(
                    "the grid operator has ordered a shutdown (trip): the battery is stopped and the inverter "
                    "switched off until the order ends"), detail)
            elif d.state == "safety":
                self.notifications.add("error", "safety", i18n.mark(
                    "safety stop: the battery is held at 0 W because {why}; it resumes by itself when that is "
                    "resolved"), detail, why=because)
            elif d.state == "limited":
                category = limited_category(d.reasons)
                dso = next((r for r in d.reasons if r.code is ReasonCode.DSO_LIMIT), None)
                feedin = next((r for r in d.reasons if r.code is ReasonCode.FEEDIN_LIMIT), None)
                if category == "dso" and dso is not None:
                    self.notifications.add("warning", "dso", i18n.mark(
                        "the grid operator limits the battery to {pct} % of its power"), detail,
                        pct=float(d.limit_pct))
                elif category == "feedin" and feedin is not None:
                    limit_w = feedin.detail.get("limit_w")
                    self.notifications.add("warning", "feedin", i18n.mark(
                        "the feed-in limit applies: at most {kw} kW may go into the grid now"), detail,
                        kw=round(float(limit_w) / 1000.0, 1) if isinstance(limit_w, (int, float)) else "?")
                else:
                    self.notifications.add("warning", category, i18n.mark(
                        "the battery's power is limited because {why}"), detail, why=because)
            elif previous is not None:
                self.notifications.add("info", "safety", i18n.mark(
                    "power control back to normal: no order or limit holds the battery back"))
        grid_w = state.value("grid.power_w", now)
        max_kw = self.config.config.grid_connection.max_power_kw
        warn_pct = self.config.config.grid_connection.warn_utilisation_pct
        if isinstance(grid_w, (int, float)) and self.config.config.grid_connection.monitoring_enabled:
            utilisation = abs(grid_w) / (max_kw * 1000.0) * 100.0
            if not self._high_utilisation and utilisation > warn_pct:
                self._high_utilisation = True
                self.notifications.add("warning", "grid", i18n.mark(
                    "the grid connection is at {pct} % of its {max_kw} kW: close to what it may carry"),
                    f"grid.power_w = {grid_w:.0f} W, warning above {warn_pct:g} %",
                    pct=float(round(utilisation)), max_kw=float(max_kw))
            elif self._high_utilisation and utilisation < warn_pct - UTILISATION_HYSTERESIS_PCT:
                self._high_utilisation = False

    def to_json(self) -> dict[str, object]:
        d = self.last_decision
        body: dict[str, object] = d.to_json() if d is not None else {"state": None, "reasons": [], "reason_codes": []}
        body.update({"healthy": self.healthy, "cycles": self.cycles, "write_failures": self.write_failures,
                     "auto_write": self.config.config.power_control.auto_write,
                     "cycle_ms": _percentiles(self.cycle_ms), "period_jitter_ms": _percentiles(self.period_jitter_ms)})
        return body


def _with_reason(d: PowerControlDecision, reason: Reason) -> PowerControlDecision:
    return replace(d, reasons=(*d.reasons, reason))

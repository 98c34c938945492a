"""Samples the plant state into rows and writes them to the HistoryStore in batches, off the event loop.

Samples are taken every `history.sample_interval_s` and written every `history.flush_interval_s`
(one transaction per batch: SD-card wear is dominated by the number of commits, not the row count).
On shutdown the pending batch is flushed.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any, Callable

from ..bus import TelemetryBus
from ..clock import Clock, track_blocking_work
from ..config import ConfigStore
from ..state import PlantState
from .store import HistoryStore

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 6 * 3600
MAX_PENDING_ROWS = 20_000

_POINTS = {
    "soc_pct": "battery.soc_pct", "soh_pct": "battery.soh_pct", "voltage_v": "battery.voltage_v",
    "current_a": "battery.current_a", "temperature_c": "battery.temperature_c", "bess_power_w": "bess.power_w",
    "pv_power_w": "pv.power_w", "load_power_w": "load.power_w", "grid_power_w": "grid.power_w",
    "max_charge_power_w": "battery.max_charge_power_w", "max_discharge_power_w": "battery.max_discharge_power_w",
    "dso_limit_pct": "dso.limit_pct",
}


def telemetry_row(state: PlantState, now: float, setpoint_w: float | None) -> dict[str, Any]:
    """One history row: fresh values only (a stale value is recorded as unknown, not repeated)."""
    row: dict[str, Any] = {"ts": round(now, 3), "setpoint_w": setpoint_w}
    for column, path in _POINTS.items():
        value = state.value(path, now)
        row[column] = float(value) if isinstance(value, (int, float)) else None
    return row


class HistoryRecorder:
    def __init__(self, store: HistoryStore, bus: TelemetryBus, clock: Clock, config: ConfigStore,
                 setpoint_w: Callable[[], float | None]):
        self.store = store
        self.bus = bus
        self.clock = clock
        self.config = config
        self.setpoint_w = setpoint_w
        self.pending: list[dict[str, Any]] = []
        self.rows_written = 0
        self.batches_written = 0
        # One writer thread of our own: batches are written in order and never queue behind other work.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="history")
        self._in_flight: tuple[list[dict[str, Any]], concurrent.futures.Future[bool]] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last_flush = last_prune = self.clock.monotonic()
        try:
            while True:
                cfg = self.config.config.history
                await self.clock.sleep(cfg.sample_interval_s)
                now = self.clock.now()
                self.pending.append(telemetry_row(self.bus.snapshot(), now, self.setpoint_w()))
                if self.clock.monotonic() - last_flush >= cfg.flush_interval_s:
                    last_flush = self.clock.monotonic()
                    await self.flush()
                if self.clock.monotonic() - last_prune >= PRUNE_INTERVAL_S:
                    last_prune = self.clock.monotonic()
                    await loop.run_in_executor(self._executor, self.store.prune, now, cfg.retention_days)
        finally:
            self._finish_on_stop()

    def _finish_on_stop(self) -> None:
        """Shutdown: settle the batch in flight, then write what is pending, before the store closes."""
        if self._in_flight is not None:
            batch, future = self._in_flight
            self._in_flight = None
            if future.cancel() or not future.result(timeout=30):
                self.pending = batch + self.pending
        if self.pending:
            batch, self.pending = self.pending, []
            if not self._write(batch):
                log.error("%d history rows could not be written at shutdown", len(batch))
        self._executor.shutdown(wait=True)

    async def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        future = self._executor.submit(self._write, batch)
        self._in_flight = (batch, future)
        ok = await track_blocking_work(asyncio.wrap_future(future))
        self._in_flight = None
        if not ok:
            # Keep the rows for the next attempt (a full disk may clear), but bounded: memory is small too.
            self.pending = (batch + self.pending)[-MAX_PENDING_ROWS:]

    def _write(self, batch: list[dict[str, Any]]) -> bool:
        try:
            self.rows_written += self.store.write_telemetry(batch)
            self.batches_written += 1
            return True
        except Exception:
            log.exception("writing %d history rows failed; will retry", len(batch))
            return False

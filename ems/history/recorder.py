"""Samples the plant state into rows and writes them to the HistoryStore in batches, off the event loop.

Samples are taken every `history.sample_interval_s` and written every `history.flush_interval_s`
(one transaction per batch: SD-card wear is dominated by the number of commits, not the row count).
On shutdown the pending batch is flushed. A row holds the plant's fresh measurements, what the runtime
adds (`context`: setpoint, PV curtailment, feed-in limit and the prices in force, so money is priced as it
was at the time), the DSO state as a number, and `dt_s`, the time since the previous sample, which its
energies cover (plant seconds, at most MAX_DT_FACTOR intervals: a pause is not integrated).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
from typing import Any, Callable, Mapping

from ..bus import TelemetryBus
from ..clock import Clock, track_blocking_work
from ..config import ConfigStore
from ..state import PlantState
from .channels import DSO_STATES
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


MAX_DT_FACTOR = 3.0
"""A sample stands for at most this many sample intervals: after a pause the gap is not integrated."""

Context = Callable[[float], Mapping[str, Any]]
"""What the runtime adds to a row at plant time `now` (channels not measured by a device)."""


def telemetry_row(state: PlantState, now: float, context: Mapping[str, Any], dt_s: float) -> dict[str, Any]:
    """One history row: fresh values only (a stale value is recorded as unknown, not repeated)."""
    row: dict[str, Any] = {"ts": round(now, 3), "dt_s": round(dt_s, 3), **context}
    for column, path in _POINTS.items():
        value = state.value(path, now)
        row[column] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    mode = state.value("dso.mode", now)
    row["dso_state"] = DSO_STATES.get(mode) if isinstance(mode, str) else None
    return row


class HistoryRecorder:
    def __init__(self, store: HistoryStore, bus: TelemetryBus, clock: Clock, config: ConfigStore,
                 context: Context):
        self.store = store
        self.bus = bus
        self.clock = clock
        self.config = config
        self.context = context
        self.pending: list[dict[str, Any]] = []
        self.rows_written = 0
        self.batches_written = 0
        self.store_status: dict[str, Any] = {}  # `HistoryStore.status()` after the last batch, for /api/state
        # One writer thread of our own: batches are written in order and never queue behind other work.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="history")
        self._in_flight: tuple[list[dict[str, Any]], concurrent.futures.Future[bool]] | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last_flush = last_prune = self.clock.monotonic()
        last_sample: float | None = None
        try:
            # The integrity check reads the whole file: in the writer thread, before the first batch.
            await loop.run_in_executor(self._executor, self._check_integrity)
            while True:
                cfg = self.config.config.history
                await self.clock.sleep(cfg.sample_interval_s)
                now = self.clock.now()
                interval = cfg.sample_interval_s * self.clock.speed  # sleeps are real, timestamps plant time
                dt = interval if last_sample is None else min(max(now - last_sample, 0.0), MAX_DT_FACTOR * interval)
                last_sample = now
                self.pending.append(telemetry_row(self.bus.snapshot(), now, self.context(now), dt))
                if self.clock.monotonic() - last_flush >= cfg.flush_interval_s:
                    last_flush = self.clock.monotonic()
                    await self.flush()
                if self.clock.monotonic() - last_prune >= PRUNE_INTERVAL_S:
                    last_prune = self.clock.monotonic()
                    await loop.run_in_executor(self._executor, self.store.prune, now, cfg)
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

    def _check_integrity(self) -> None:
        try:
            self.store.check_integrity()
            self.store_status = self.store.status()
        except Exception:
            log.exception("history integrity check failed to run")

    def _write(self, batch: list[dict[str, Any]]) -> bool:
        try:
            self.rows_written += self.store.write_telemetry(batch)
            self.batches_written += 1
        except sqlite3.OperationalError:
            log.exception("writing %d history rows failed; will retry", len(batch))
            return False
        except sqlite3.DatabaseError:
            # Not a full disk or a lock: the file itself is damaged. Move it aside and keep the rows.
            log.exception("writing %d history rows failed: checking the database", len(batch))
            self._check_integrity()
            return False
        except Exception:
            log.exception("writing %d history rows failed; will retry", len(batch))
            return False
        try:
            self.store_status = self.store.status()
        except Exception:
            log.exception("history status cannot be read")
        return True

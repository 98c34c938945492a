"""Runs each subsystem as a named asyncio task, restarts crashed ones with backoff, stops all cleanly.

A subsystem is an async callable that runs until cancelled. If it raises, the supervisor logs the
traceback, records a notification and starts it again after a growing delay (1 s, 2 s, 4 s … 60 s),
reset once it has run healthily for a minute. The event loop's lag is measured here too: it is the
first sign that something blocks the loop the safety loop depends on.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from .backoff import Backoff
from . import i18n
from .notifications import Notifications

log = logging.getLogger(__name__)

Subsystem = Callable[[], Awaitable[None]]

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 60.0
HEALTHY_AFTER_S = 60.0


@dataclass
class TaskInfo:
    name: str
    run: Subsystem
    state: str = "pending"  # pending | running | backoff | stopped | finished
    restarts: int = 0
    last_error: str | None = None
    next_restart_s: float | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class LoopLagMonitor:
    """Sleeps a fixed interval and records how late it wakes: the event loop's lag in ms."""

    def __init__(self, interval_s: float = 0.1, window: int = 3000):
        self.interval_s = interval_s
        self.samples_ms: deque[float] = deque(maxlen=window)

    async def run(self) -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(self.interval_s)
            self.samples_ms.append(max(0.0, (time.monotonic() - t0 - self.interval_s) * 1000.0))

    def stats(self) -> dict[str, float | None]:
        data = sorted(self.samples_ms)
        if not data:
            return {"p50": None, "p99": None, "max": None, "samples": 0}

        def pct(p: float) -> float:
            return round(data[min(len(data) - 1, int(p * len(data)))], 3)

        return {"p50": pct(0.5), "p99": pct(0.99), "max": round(data[-1], 3), "samples": len(data)}


class Supervisor:
    def __init__(self, notifications: Notifications, measure_lag: bool = True):
        """`measure_lag` off on virtual time, where the loop never waits for real and lag means nothing."""
        self.notifications = notifications
        self.tasks: dict[str, TaskInfo] = {}
        self.lag = LoopLagMonitor()
        if measure_lag:
            self.add("loop_lag", self.lag.run)

    def add(self, name: str, run: Subsystem) -> None:
        if name in self.tasks:
            raise ValueError(f"subsystem {name!r} registered twice")
        self.tasks[name] = TaskInfo(name, run)

    async def remove(self, name: str, timeout_s: float = 3.0) -> None:
        """Stop one subsystem for good (e.g. a device removed from the configuration)."""
        info = self.tasks.pop(name, None)
        if info is None or info.task is None or info.task.done():
            return
        info.task.cancel()
        done, _ = await asyncio.wait([info.task], timeout=timeout_s)
        if not done:
            log.error("subsystem %s did not stop within %.1f s", name, timeout_s)

    def start(self) -> None:
        for info in self.tasks.values():
            if info.task is None:
                info.task = asyncio.create_task(self._keep_running(info), name=info.name)

    async def _keep_running(self, info: TaskInfo) -> None:
        backoff = Backoff(BACKOFF_MIN_S, BACKOFF_MAX_S)
        while True:
            info.state = "running"
            started = time.monotonic()
            try:
                await info.run()
            except asyncio.CancelledError:
                info.state = "stopped"
                raise
            except Exception as exc:
                if time.monotonic() - started > HEALTHY_AFTER_S:
                    backoff.reset()
                backoff_s = backoff.next_delay()
                info.restarts += 1
                info.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("subsystem %s crashed; restarting in %.0f s", info.name, backoff_s)
                self.notifications.add("error", "supervisor", i18n.mark(
                    "a part of the EMS ({name}) failed and is restarted in {s} s"),
                    f"subsystem {info.name} crashed ({info.last_error}); restart {info.restarts}",
                    name=info.name, s=round(backoff_s, 1))
                info.state = "backoff"
                info.next_restart_s = backoff_s
                try:
                    await asyncio.sleep(backoff_s)
                except asyncio.CancelledError:
                    info.state = "stopped"
                    raise
            else:
                info.state = "finished"
                return

    async def stop(self, timeout_s: float = 3.0) -> None:
        """Cancel every task (in reverse start order) and wait for them to finish their cleanup."""
        running = [i.task for i in reversed(list(self.tasks.values())) if i.task and not i.task.done()]
        for task in running:
            task.cancel()
        if running:
            done, pending = await asyncio.wait(running, timeout=timeout_s)
            for task in pending:
                log.error("subsystem %s did not stop within %.1f s", task.get_name(), timeout_s)

    def status(self) -> dict[str, Any]:
        return {name: {"state": i.state, "restarts": i.restarts, "last_error": i.last_error,
                       "next_restart_s": i.next_restart_s if i.state == "backoff" else None}
                for name, i in self.tasks.items()}

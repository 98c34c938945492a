"""The soak's event loop: `ems.clock.VirtualTimeLoop`, except that long blocking work stops holding time.

On a VirtualTimeLoop plant time passes at the real rate while any thread or executor job is out, so a
timeout around a job means what it says. That is right for the runtime's short jobs (an LP solve, a
SQLite batch: milliseconds), but a forecast fit is a child process of several real seconds, and a month
has dozens: held at the real rate they would be most of a soak's wall time, with the CPU idle. Here a
job holds virtual time for at most `HOLD_S` (1 s: longer than an LP solve, a SQLite batch or a price
fetch from the local server take, so their timeouts keep their meaning) of real time; after that plant
time runs on (at full speed) while the child computes on the other core, and its result lands later in
plant time than it would on site. Nothing waits on a fit but the forecasts themselves (the planner uses
the previous forecast meanwhile, as it does on site while a fit runs), so no safety reaction is
affected. The soak keeps fits inside the hold as far as it can (`fitter.SharedFitter`: one warmed-up
child, no pandas import per fit): a fit released at full speed costs the EMS hours of plant time
without a forecast, and with it its plan.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

from ..clock import VirtualClock, VirtualTimeLoop, run_on_loop

T = TypeVar("T")

HOLD_S = 1.0


READY_POLL_EVERY = 64


class _ReadySelector:
    """The virtual loop's selector, but a turn that has callbacks ready (timeout 0) looks for I/O only
    every `READY_POLL_EVERY` turns.

    Why: asyncio asks the selector on every turn; in a soak three turns in four have work ready, and
    their epoll call found nothing (the loopback wire has no sockets) - a tenth of a day's CPU. Nothing
    is lost by asking less: a thread's `call_soon_threadsafe` queues its callback itself (the self-pipe
    only wakes a sleeping loop), no virtual time passes in a turn with work ready, and every turn that
    would wait or jump in time (timeout > 0 or None) still asks. The periodic poll keeps I/O served even
    if some task kept the ready queue full for ever.
    """

    def __init__(self, inner: Any):
        self._inner = inner
        self._skipped = 0

    def select(self, timeout: float | None = None) -> Any:
        if timeout == 0 and self._skipped < READY_POLL_EVERY:
            self._skipped += 1
            return []
        self._skipped = 0
        return self._inner.select(timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class SoakTimeLoop(VirtualTimeLoop):
    def __init__(self, hold_s: float = HOLD_S) -> None:
        super().__init__()
        self._selector = _ReadySelector(self._selector)
        self.hold_s = hold_s
        self._jobs: dict[asyncio.Future[Any], float] = {}
        self.released = 0  # jobs that outlasted the hold (and let plant time run on)

    def track(self, future: "asyncio.Future[T]") -> "asyncio.Future[T]":
        self._jobs[future] = time.monotonic()
        return future

    def blocking_work_pending(self) -> bool:
        now = time.monotonic()
        held = False
        for future, started in list(self._jobs.items()):
            if future.done():
                del self._jobs[future]
            elif now - started <= self.hold_s:
                held = True
            elif started >= 0:
                self._jobs[future] = -1.0  # released: counted once, never holds again
                self.released += 1
        return held


class SoakClock(VirtualClock):
    """`VirtualClock`, whose `wait` needs no task of its own.

    `LoopTimers.wait` is `asyncio.wait_for(event.wait(), t)`, which on Python 3.11 wraps the wait in a
    new Task, with its own callbacks, on every call; the runtime waits so (safety loop, planner checks,
    pollers) several times per plant second. `asyncio.timeout` (what 3.12's `wait_for` became) cancels
    the waiting task itself at the deadline: the same result (True when the event is set in time, False
    at the timeout, the caller's own cancellation passed on) at a fraction of the cost.
    """

    async def wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        if event.is_set():
            return True
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await event.wait()
        except TimeoutError:
            return False
        return True


def run_soak_loop(main: Any, hold_s: float = HOLD_S) -> Any:
    """Run the coroutine `main` to completion on a fresh SoakTimeLoop (as `ems.clock.run_virtual` does)."""
    return run_on_loop(SoakTimeLoop(hold_s), main)

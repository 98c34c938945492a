"""Injected time: the whole system reads time, sleeps and waits through a Clock, so tests and the
simulator can run faster than the wall clock, and a test can step hours of plant time in seconds.

- `now()` is wall-clock-like epoch seconds (UTC) of the plant, used for timestamps;
- `monotonic()` is for intervals (cycle budgets, refresh spacing, uptime);
- `sleep(s)` and `wait(event, timeout_s)` are the only ways subsystems pause.

`ScaledClock` is production's: it starts at a chosen instant and advances `speed` plant seconds per
real second; its sleeps are real. `VirtualClock` runs on a `VirtualTimeLoop`, an asyncio loop whose
time jumps to the next timer whenever nothing is ready and no blocking work (an executor job, a
forecast thread) is out: the planner, the safety loop, the forecast refresh and the history flush then
run hours of plant time in seconds of CPU, in the same order they would in real time.
"""
from __future__ import annotations

import asyncio
import selectors
import time
from typing import Any, Callable, Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    speed: float
    real_time: bool  # False on virtual time: real-time-only work (measuring loop lag) is skipped

    def now(self) -> float:
        """Epoch seconds (UTC) of the plant's time."""

    def monotonic(self) -> float:
        """Seconds for measuring intervals and lag (real seconds in production)."""

    async def sleep(self, seconds: float) -> None:
        """Pause the calling task for `seconds` of this clock's interval time."""

    async def wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        """Wait for `event` at most `timeout_s`; True if it was set."""


class LoopTimers:
    """`sleep` and `wait` on the running loop's timers: real time on a normal loop, virtual time on a
    VirtualTimeLoop. Clocks (and test clocks) inherit them."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(event.wait(), max(0.0, timeout_s))
            return True
        except asyncio.TimeoutError:
            return False


class ScaledClock(LoopTimers):
    """Plant time = start + speed × real time elapsed. speed 1 and no start = the real clock."""

    real_time = True

    def __init__(self, start_epoch_s: float | None = None, speed: float = 1.0):
        self.speed = speed
        self._m0 = time.monotonic()
        self._t0 = time.time() if start_epoch_s is None else start_epoch_s

    def now(self) -> float:
        return self._t0 + (time.monotonic() - self._m0) * self.speed

    def monotonic(self) -> float:
        return time.monotonic()


class VirtualClock(LoopTimers):
    """Plant time = start + speed × the running VirtualTimeLoop's time (which starts at 0).

    Its sleeps and waits are the loop's timers, so they take no real time when the loop is idle. Create
    it, then run the code under test with `run_virtual(main())` (or on a `VirtualTimeLoop` of your own).
    """

    real_time = False

    def __init__(self, start_epoch_s: float, speed: float = 1.0):
        self.speed = speed
        self._t0 = start_epoch_s

    @staticmethod
    def _loop_time() -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:  # read outside the loop (e.g. from a web thread): the last virtual instant
            return VirtualTimeLoop.last_time

    def now(self) -> float:
        return self._t0 + self._loop_time() * self.speed

    def monotonic(self) -> float:
        return self._loop_time()


class _JumpingSelector:
    """The loop's selector, but a wait for I/O that finds none advances virtual time instead of blocking."""

    def __init__(self, inner: selectors.BaseSelector, loop: "VirtualTimeLoop"):
        self._inner = inner
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._inner.select(0)
        if events or timeout == 0:
            return events
        if self._loop.blocking_work_pending():
            # Work in another thread takes real time: let it, and let virtual time pass at the real rate.
            step = 0.005 if timeout is None else min(timeout, 0.005)
            started = time.monotonic()
            events = self._inner.select(step)
            self._loop.advance(time.monotonic() - started)
            return events
        if timeout is None:  # no timer at all: only a thread or a signal can wake us; wait for it for real
            return self._inner.select(0.05)
        self._loop.advance(timeout)
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time: `time()` starts at 0 and jumps over idle periods.

    Blocking work handed to threads counts as busy: `run_in_executor` futures are tracked here, and
    other thread hand-offs call `track_blocking_work(future)`; while any is pending, time passes at
    the real rate, so a timeout around a thread's job means what it says.
    """

    last_time = 0.0
    _selector: Any  # the base class's, untyped in typeshed

    def __init__(self) -> None:
        super().__init__()
        self._virtual_s = 0.0
        self._pending: set[asyncio.Future[Any]] = set()
        self._selector = _JumpingSelector(self._selector, self)  # the base class's selector, wrapped

    def time(self) -> float:
        return self._virtual_s

    def advance(self, seconds: float) -> None:
        self._virtual_s += max(0.0, seconds)
        VirtualTimeLoop.last_time = self._virtual_s

    def blocking_work_pending(self) -> bool:
        self._pending = {f for f in self._pending if not f.done()}
        return bool(self._pending)

    def track(self, future: "asyncio.Future[T]") -> "asyncio.Future[T]":
        self._pending.add(future)
        return future

    def run_in_executor(self, executor: Any, func: Callable[..., T], *args: Any) -> "asyncio.Future[T]":  # type: ignore[override]  # same call, looser variadic typing
        return self.track(super().run_in_executor(executor, func, *args))


def track_blocking_work(future: "asyncio.Future[T]") -> "asyncio.Future[T]":
    """Tell a VirtualTimeLoop that `future` completes from another thread (a no-op on other loops)."""
    loop = future.get_loop()
    if isinstance(loop, VirtualTimeLoop):
        loop.track(future)
    return future


def run_virtual(main: Any) -> Any:
    """Run the coroutine `main` to completion on a fresh VirtualTimeLoop."""
    return run_on_loop(VirtualTimeLoop(), main)


def run_on_loop(loop: asyncio.AbstractEventLoop, main: Any) -> Any:
    """Run the coroutine `main` to completion on `loop` (made the current loop meanwhile), then close it."""
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        asyncio.set_event_loop(None)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

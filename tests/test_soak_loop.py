"""The soak's loop and clock: the shortcuts they take change no result the runtime relies on.

`SoakClock.wait` replaces `asyncio.wait_for` with `asyncio.timeout`, and the loop's selector skips the
I/O poll on turns that have work ready: both must keep the virtual-time semantics of `ems.clock`
(timeouts in plant seconds, a thread's result delivered, other tasks' cancellation passed on).
"""
from __future__ import annotations

import asyncio
import threading

import pytest

from ems.soak.loop import READY_POLL_EVERY, SoakClock, run_soak_loop


def test_wait_is_true_when_the_event_comes_in_time_and_false_at_the_timeout_in_plant_seconds():
    clock = SoakClock(1_000.0)

    async def main() -> tuple[bool, float, bool, float, bool]:
        event = asyncio.Event()
        t0 = clock.now()
        timed_out = await clock.wait(event, 30.0)
        waited = clock.now() - t0
        asyncio.get_running_loop().call_later(5.0, event.set)
        t1 = clock.now()
        woken = await clock.wait(event, 30.0)
        already = await clock.wait(event, 0.0)
        return timed_out, waited, woken, clock.now() - t1, already

    timed_out, waited, woken, until_set, already = run_soak_loop(main())
    assert (timed_out, woken, already) == (False, True, True)
    assert waited == pytest.approx(30.0) and until_set == pytest.approx(5.0)


def test_a_waiter_cancelled_from_outside_is_cancelled_not_timed_out():
    clock = SoakClock(0.0)

    async def main() -> bool:
        task = asyncio.ensure_future(clock.wait(asyncio.Event(), 60.0))
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert run_soak_loop(main()) is True


def test_work_from_a_thread_arrives_while_the_loop_is_busy_with_ready_callbacks():
    """A thread's `call_soon_threadsafe` is served even while every turn has work ready (the turns
    that skip the I/O poll), and well within the periodic poll."""
    async def main() -> tuple[bool, int]:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        thread = threading.Thread(target=lambda: loop.call_soon_threadsafe(done.set))
        thread.start()
        thread.join(timeout=60)  # the hand-off is done: what is left is the loop's part
        turns = 0
        while not done.is_set() and turns < 100_000:
            await asyncio.sleep(0)  # keeps the ready queue non-empty: timeout 0 on every turn
            turns += 1
        return done.is_set(), turns

    arrived, turns = run_soak_loop(main())
    assert arrived and turns <= READY_POLL_EVERY + 1

"""Supervisor: crashed subsystems come back (with growing delays), clean stops, loop-lag measurement."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

import pytest

from ems import supervisor as supervisor_mod
from ems.notifications import Notifications
from ems.supervisor import LoopLagMonitor, Supervisor
from support import until




@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(supervisor_mod, "BACKOFF_MIN_S", 0.05)
    return 0.05


def crash_records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "ems.supervisor" and r.levelno == logging.ERROR and r.exc_info and name in r.getMessage()]


def test_crashed_subsystem_is_restarted_with_growing_backoff(fast_backoff: float, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    starts: list[float] = []
    notes = Notifications(time.time)

    async def flaky() -> None:
        starts.append(time.monotonic())
        raise RuntimeError(f"sensor gone {len(starts)}")

    async def main() -> Supervisor:
        sup = Supervisor(notes)
        sup.add("flaky", flaky)
        sup.start()
        await until(lambda: len(starts) >= 5, what="five starts")
        await sup.stop(timeout_s=2.0)
        return sup

    sup = asyncio.run(main())

    # Restarted each time, and each pause at least doubles: 0.05, 0.1, 0.2, 0.4 s (10 % slack for timer rounding).
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    for i, gap in enumerate(gaps[:4]):
        assert gap >= fast_backoff * 2 ** i * 0.9, (i, gaps)
    # The announced delay (log) doubles too.
    announced = [r.args[-1] for r in crash_records(caplog, "flaky")]
    assert announced[:4] == pytest.approx([0.05, 0.1, 0.2, 0.4])

    # Logged with the traceback ...
    records = crash_records(caplog, "flaky")
    assert len(records) >= 4
    assert records[0].exc_info[0] is RuntimeError and "sensor gone 1" in str(records[0].exc_info[1])
    # ... and shown to the user as an error notification of the supervisor.
    crashes = [n for n in notes.recent(100) if n.category == "supervisor" and "flaky" in n.message]
    assert len(crashes) == sup.tasks["flaky"].restarts >= 4
    assert all(n.level == "error" for n in crashes)
    assert any("RuntimeError: sensor gone 1" in n.message for n in crashes)
    assert sup.status()["flaky"]["last_error"].startswith("RuntimeError: sensor gone")


def test_backoff_starts_over_after_a_healthy_run(fast_backoff: float, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture):
    monkeypatch.setattr(supervisor_mod, "HEALTHY_AFTER_S", 0.3)
    caplog.set_level(logging.INFO)
    runs = 0

    async def sometimes_healthy() -> None:
        nonlocal runs
        runs += 1
        if runs == 4:
            await asyncio.sleep(0.4)  # runs longer than HEALTHY_AFTER_S before failing again
        raise ValueError(f"run {runs}")

    async def main() -> None:
        sup = Supervisor(Notifications(time.time))
        sup.add("worker", sometimes_healthy)
        sup.start()
        await until(lambda: runs >= 5, what="fifth run")
        await sup.stop(timeout_s=2.0)

    asyncio.run(main())
    announced = [r.args[-1] for r in crash_records(caplog, "worker")]
    assert announced[:4] == pytest.approx([0.05, 0.1, 0.2, 0.05])


def test_subsystem_that_returns_is_finished_and_not_restarted(fast_backoff: float):
    calls = 0
    notes = Notifications(time.time)

    async def one_shot() -> None:
        nonlocal calls
        calls += 1

    async def main() -> dict[str, Any]:
        sup = Supervisor(notes)
        sup.add("migration", one_shot)
        sup.start()
        await until(lambda: sup.tasks["migration"].state == "finished", what="finished")
        # Its keeper task has ended: nothing is left that could start it again.
        await asyncio.wait_for(asyncio.shield(sup.tasks["migration"].task), 5.0)
        status = sup.status()
        await sup.stop(timeout_s=2.0)
        return status

    status = asyncio.run(main())
    assert calls == 1
    assert status["migration"] == {"state": "finished", "restarts": 0, "last_error": None,
                                   "next_restart_s": None}
    assert status["loop_lag"]["state"] == "running"
    assert not [n for n in notes.recent(100) if n.category == "supervisor"]


def test_stop_cancels_every_subsystem_and_runs_its_cleanup():
    started: list[str] = []
    cleaned: list[str] = []

    def service(name: str, async_cleanup: bool) -> Callable[[], Any]:
        async def run() -> None:
            try:
                started.append(name)
                await asyncio.Event().wait()
            finally:
                if async_cleanup:
                    await asyncio.sleep(0.05)  # e.g. writing the safe setpoint
                cleaned.append(name)
        return run

    async def main() -> Supervisor:
        sup = Supervisor(Notifications(time.time))
        sup.add("plant", service("plant", False))
        sup.add("safety", service("safety", True))
        sup.add("history", service("history", False))
        sup.start()
        await until(lambda: all(i.state == "running" for i in sup.tasks.values()) and len(started) == 3,
                    what="all running, inside their cleanup blocks")
        await asyncio.wait_for(sup.stop(timeout_s=2.0), 5.0)
        return sup

    sup = asyncio.run(main())
    assert sorted(cleaned) == ["history", "plant", "safety"]
    # Cancelled in reverse start order: the history stops before the plant (safety cleans up asynchronously).
    assert cleaned.index("history") < cleaned.index("plant")
    assert all(i.task is not None and i.task.done() for i in sup.tasks.values())
    assert {name: s["state"] for name, s in sup.status().items()} == {
        "loop_lag": "stopped", "plant": "stopped", "safety": "stopped", "history": "stopped"}


def test_stop_does_not_hang_on_a_subsystem_that_ignores_cancellation(caplog: pytest.LogCaptureFixture):
    started: list[str] = []
    cleaned: list[str] = []

    async def main() -> tuple[bool, bool]:
        release = asyncio.Event()

        async def stubborn() -> None:
            try:
                started.append("stubborn")
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                await release.wait()  # a cleanup that takes far longer than the shutdown budget

        async def polite() -> None:
            try:
                started.append("polite")
                await asyncio.Event().wait()
            finally:
                cleaned.append("polite")

        sup = Supervisor(Notifications(time.time))
        sup.add("stubborn", stubborn)
        sup.add("polite", polite)
        sup.start()
        await until(lambda: len(started) == 2, what="both waiting inside their try blocks")
        await asyncio.wait_for(sup.stop(timeout_s=0.2), 5.0)  # must return although `stubborn` still runs
        stubborn_still_running = not sup.tasks["stubborn"].task.done()
        polite_done = sup.tasks["polite"].task.done()
        release.set()
        await asyncio.wait_for(sup.tasks["stubborn"].task, 5.0)
        return stubborn_still_running, polite_done

    stubborn_still_running, polite_done = asyncio.run(main())
    assert stubborn_still_running and polite_done
    assert cleaned == ["polite"]
    assert any("stubborn did not stop within 0.2 s" in r.getMessage() for r in caplog.records)


def test_a_subsystem_stopped_while_waiting_to_restart_is_reported_stopped(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(supervisor_mod, "BACKOFF_MIN_S", 30.0)

    async def crash() -> None:
        raise OSError("modbus port vanished")

    async def main() -> dict[str, Any]:
        sup = Supervisor(Notifications(time.time))
        sup.add("modbus", crash)
        sup.start()
        await until(lambda: sup.tasks["modbus"].state == "backoff", what="backoff")
        await asyncio.wait_for(sup.stop(timeout_s=2.0), 5.0)
        assert sup.tasks["modbus"].task.done()
        return sup.status()

    assert asyncio.run(main())["modbus"]["state"] == "stopped"


def test_registering_the_same_name_twice_raises():
    async def noop() -> None:
        return None

    sup = Supervisor(Notifications(time.time))
    sup.add("safety", noop)
    with pytest.raises(ValueError, match="safety"):
        sup.add("safety", noop)
    with pytest.raises(ValueError, match="loop_lag"):
        sup.add("loop_lag", noop)  # the supervisor's own monitor
    assert list(sup.tasks) == ["loop_lag", "safety"]


def test_loop_lag_monitor_sees_a_task_that_blocks_the_loop():
    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        sup = Supervisor(Notifications(time.time))
        # Sample often: the monitor measures how late *its own* timer fires, which under-reports a block by
        # up to one interval (a 300 ms block reads 200-300 ms with the default 100 ms interval).
        sup.lag.interval_s = 0.01
        go = asyncio.Event()

        async def blocker() -> None:
            await go.wait()
            time.sleep(0.3)  # noqa: ASYNC251 - the point: a subsystem that blocks the loop
            await asyncio.Event().wait()

        sup.add("blocker", blocker)
        sup.start()
        await until(lambda: sup.lag.stats()["samples"] >= 5, what="samples before the block")
        before = sup.lag.stats()
        go.set()
        await until(lambda: (sup.lag.stats()["max"] or 0) >= 250, what="lag of the block measured")
        after = sup.lag.stats()
        await sup.stop(timeout_s=2.0)
        return before, after

    before, after = asyncio.run(main())
    assert after["samples"] > before["samples"]
    assert after["max"] >= 250.0
    assert after["p99"] >= 250.0  # fewer than 100 samples: p99 is the worst one
    assert after["p50"] <= after["p99"]


def test_loop_lag_with_the_default_interval_shows_most_of_a_block():
    async def main() -> dict[str, Any]:
        monitor = LoopLagMonitor()  # the supervisor's default: 100 ms interval
        task = asyncio.create_task(monitor.run())
        await until(lambda: len(monitor.samples_ms) >= 1, what="first sample")
        time.sleep(0.3)  # noqa: ASYNC251 - the point: the loop blocked for 300 ms
        await until(lambda: len(monitor.samples_ms) >= 3, what="samples after the block")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return monitor.stats()

    stats = asyncio.run(main())
    assert stats["max"] >= 300.0 - 100.0  # block minus at most one sampling interval


def test_loop_lag_percentiles_from_known_samples():
    monitor = LoopLagMonitor(window=1000)
    assert monitor.stats() == {"p50": None, "p99": None, "max": None, "samples": 0}
    monitor.samples_ms.extend(float(v) for v in reversed(range(1, 201)))  # 1..200 ms, unsorted
    stats = monitor.stats()
    assert stats["samples"] == 200
    assert stats["max"] == 200.0
    assert 100.0 <= stats["p50"] <= 101.0
    assert 198.0 <= stats["p99"] <= 199.0
    small = LoopLagMonitor(window=3)
    small.samples_ms.extend([500.0, 1.0, 2.0, 3.0])  # the window drops the oldest sample
    assert small.stats()["max"] == 3.0 and small.stats()["samples"] == 3

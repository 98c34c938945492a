"""The safety loop: which setpoint it writes, when it writes it, and when it pets the watchdog."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ems.bus import TelemetryBus
from ems.config import ConfigStore, EmsConfig
from ems.config.validate import parse_config
from ems.notifications import Notifications
from ems.safety.loop import SafetyLoop
from ems.state import Measurement, PlantState
from conftest import until
from test_safety import DEFAULTS, POINTS

NOW = 1_750_000_000.0
MAX_AGE_S = 10.0



# -- the safety loop ------------------------------------------------------------------------------

class ManualClock:
    """Plant time and monotonic time that only move when the test says so."""

    speed = 1.0

    def __init__(self) -> None:
        self.t = NOW
        self.mono = 1000.0

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.mono += seconds


class RecordingSink:
    """The PCS: records every setpoint written; can be made unreachable."""

    def __init__(self) -> None:
        self.writes: list[float] = []
        self.fail = False

    async def write_setpoint(self, power_w: float) -> None:
        if self.fail:
            raise ConnectionError("PCS not answering")
        self.writes.append(power_w)

    async def apply(self, decision: Any) -> None:
        await self.write_setpoint(0.0 if decision.remote_shutdown_requested else decision.setpoint_w)

    async def safe_state(self) -> None:
        await self.write_setpoint(0.0)


class Dispatcher:
    """A dispatcher whose request (or failure) the test sets."""

    def __init__(self, request_w: float = 0.0) -> None:
        self.request_w = request_w
        self.error: Exception | None = None

    def __call__(self, state: PlantState, now: float) -> float:
        if self.error is not None:
            raise self.error
        return self.request_w


class Rig:
    def __init__(self, tmp_path: Path, request_w: float, **sections: Any) -> None:
        data = {"bess": {"max_charge_power_kw": 10, "max_discharge_power_kw": 10},
                "grid_connection": {"max_power_kw": 30},
                "power_control": {"safety_period_s": 0.05, "setpoint_resend_s": 5.0, "auto_write": True}}
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        self.config = ConfigStore(tmp_path / "ems.yaml", parse_config(EmsConfig, data))
        self.clock = ManualClock()
        self.bus = TelemetryBus()
        self.sink = RecordingSink()
        self.dispatcher = Dispatcher(request_w)
        self.notifications = Notifications(self.clock.now)
        self.pets = 0
        self.loop = SafetyLoop(self.bus, self.clock, self.config, self.dispatcher, self.sink,
                               self.notifications, self.pet)
        self.publish()

    def pet(self) -> None:
        self.pets += 1

    def publish(self, **overrides: Any) -> None:
        values = {**DEFAULTS, "bms_discharge": 8000.0, **overrides}
        self.bus.publish({POINTS[k]: Measurement(v, self.clock.now(), "sim", MAX_AGE_S) for k, v in values.items()})

    def cycles(self, n: int = 1) -> list[Any]:
        async def run() -> list[Any]:
            return [await self.loop.cycle() for _ in range(n)]
        return asyncio.run(run())




def test_safety_loop_writes_the_clamped_setpoint(tmp_path: Path):
    rig = Rig(tmp_path, request_w=50_000)  # BMS allows 8 kW discharge
    [decision] = rig.cycles()
    assert rig.sink.writes == [8000.0]
    assert decision.setpoint_w == 8000.0 and decision.requested_w == 50_000
    assert rig.loop.to_json()["setpoint_w"] == 8000.0
    assert rig.pets == 1


def test_unchanged_setpoint_is_resent_after_setpoint_resend_s(tmp_path: Path):
    rig = Rig(tmp_path, request_w=3000)
    rig.cycles()
    assert rig.sink.writes == [3000.0]
    rig.clock.advance(2.0)
    rig.cycles(3)
    assert rig.sink.writes == [3000.0]  # unchanged and resend not due: nothing written
    rig.clock.advance(3.0)  # 5 s since the last write: the inverter's comm watchdog must be fed
    rig.cycles()
    assert rig.sink.writes == [3000.0, 3000.0]
    rig.dispatcher.request_w = 2000
    rig.cycles()
    assert rig.sink.writes == [3000.0, 3000.0, 2000.0]  # a change goes out at once
    assert rig.pets == 6  # every healthy cycle, written or not


def test_failing_dispatcher_writes_0_w_and_does_not_pet_the_watchdog(tmp_path: Path):
    rig = Rig(tmp_path, request_w=3000)
    rig.cycles()
    rig.dispatcher.error = ZeroDivisionError("forecast empty")
    [result] = rig.cycles()
    assert result.setpoint_w == 0.0 and result.requested_w == 0.0
    assert "real-time layer failed: 0 W requested" in result.reasons
    assert rig.sink.writes == [3000.0, 0.0]
    assert rig.pets == 1
    assert rig.loop.to_json()["setpoint_w"] == 0.0 and rig.loop.to_json()["healthy"] is False
    rig.dispatcher.error = None
    rig.cycles()
    assert rig.sink.writes == [3000.0, 0.0, 3000.0] and rig.pets == 2


def test_unreachable_inverter_does_not_pet_the_watchdog(tmp_path: Path):
    rig = Rig(tmp_path, request_w=3000)
    rig.sink.fail = True
    decisions = rig.cycles(3)
    assert [d.state for d in decisions] == ["safety"] * 3
    assert all("PCS write failed 3 times" in d.reasons for d in decisions)
    assert rig.pets == 0 and rig.loop.write_failures == 3
    alarms = [n for n in rig.notifications.recent(10) if n.level == "error" and "PCS write failed" in n.message]
    assert len(alarms) == 1  # one alarm, not one per cycle
    rig.sink.fail = False
    rig.cycles()
    assert rig.sink.writes == [3000.0] and rig.pets == 1


def test_stale_telemetry_takes_the_plant_to_0_w_and_tells_the_user(tmp_path: Path):
    rig = Rig(tmp_path, request_w=3000)
    rig.cycles()
    rig.clock.advance(MAX_AGE_S + 1)  # no new readings
    [decision] = rig.cycles()
    assert rig.sink.writes == [3000.0, 0.0]
    assert decision.mode == "safety"
    safety_notes = [n for n in rig.notifications.recent(10) if n.category == "safety"]
    assert [n.level for n in safety_notes] == ["error"]
    assert "no fresh value: battery.soc_pct" in safety_notes[0].message
    rig.publish()
    rig.cycles()
    assert rig.sink.writes == [3000.0, 0.0, 3000.0]


def test_lowered_inverter_rating_applies_from_the_next_cycle(tmp_path: Path):
    rig = Rig(tmp_path, request_w=7000)
    rig.cycles()
    rig.config.update_section("bess", {"max_charge_power_kw": 10, "max_discharge_power_kw": 4})
    rig.cycles()
    assert rig.sink.writes == [7000.0, 4000.0]


def test_running_loop_pets_the_watchdog_and_leaves_0_w_when_cancelled(tmp_path: Path):
    rig = Rig(tmp_path, request_w=-6000)

    async def main() -> tuple[int, list[float]]:
        task = asyncio.create_task(rig.loop.run())
        await until(lambda: rig.pets >= 5, what="five healthy cycles")
        writes_while_running = list(rig.sink.writes)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return rig.pets, writes_while_running

    pets, writes_while_running = asyncio.run(main())
    assert writes_while_running == [-6000.0]  # written once, unchanged since
    assert rig.sink.writes == [-6000.0, 0.0]  # shutdown leaves the plant at 0 W
    assert rig.pets == pets


def test_running_loop_survives_a_failing_dispatcher(tmp_path: Path):
    rig = Rig(tmp_path, request_w=2000)

    async def main() -> None:
        task = asyncio.create_task(rig.loop.run())
        await until(lambda: rig.sink.writes == [2000.0], what="first write")
        rig.dispatcher.error = RuntimeError("optimizer bug")
        await until(lambda: rig.sink.writes[-1] == 0.0, what="safe setpoint")
        pets_while_failing = rig.pets
        await asyncio.sleep(0.2)  # several failing periods
        assert rig.pets == pets_while_failing
        rig.dispatcher.error = None
        await until(lambda: rig.sink.writes[-1] == 2000.0 and rig.pets > pets_while_failing, what="recovery")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert rig.sink.writes[-1] == 0.0
    assert rig.loop.last_decision is not None and rig.loop.last_decision.setpoint_w == 2000.0


def test_cancelling_during_a_slow_write_still_ends_at_0_w(tmp_path: Path):
    rig = Rig(tmp_path, request_w=5000)

    class SlowSink(RecordingSink):
        def __init__(self) -> None:
            super().__init__()
            self.in_write = False

        async def write_setpoint(self, power_w: float) -> None:
            self.in_write = True
            await asyncio.sleep(0.1)  # Modbus round trip
            self.in_write = False
            await super().write_setpoint(power_w)

    sink = SlowSink()
    rig.loop.sink = sink

    async def main() -> None:
        task = asyncio.create_task(rig.loop.run())
        await until(lambda: sink.in_write, what="write in progress")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert sink.writes == [0.0]  # the interrupted 5 kW write never landed; 0 W did

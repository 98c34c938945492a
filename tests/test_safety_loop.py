"""The safety loop: which setpoint it writes, when it writes it, and when it pets the watchdog."""
from __future__ import annotations

import asyncio
from pathlib import Path

from ems.safety.reasons import ReasonCode
from safety_common import MAX_AGE_S, RecordingSink, Rig
from support import until


# -- the safety loop ------------------------------------------------------------------------------

def test_safety_loop_writes_the_clamped_setpoint(tmp_path: Path):
    rig = Rig(tmp_path, request_w=50_000)  # BMS allows 8 kW discharge
    [decision] = rig.cycles()
    assert rig.sink.writes == [8000.0]
    assert decision.setpoint_w == 8000.0 and decision.requested_w == 50_000
    assert rig.loop.to_json()["effective_setpoint_w"] == 8000.0
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
    assert "real-time layer failed: 0 W requested" in result.messages
    assert result.codes[-1] is ReasonCode.REALTIME_FAILED
    assert rig.sink.writes == [3000.0, 0.0]
    assert rig.pets == 1
    assert rig.loop.to_json()["effective_setpoint_w"] == 0.0 and rig.loop.to_json()["healthy"] is False
    assert rig.loop.to_json()["reason_codes"] == ["realtime_failed"]
    rig.dispatcher.error = None
    rig.cycles()
    assert rig.sink.writes == [3000.0, 0.0, 3000.0] and rig.pets == 2


def test_unreachable_inverter_does_not_pet_the_watchdog(tmp_path: Path):
    rig = Rig(tmp_path, request_w=3000)
    rig.sink.fail = True
    decisions = rig.cycles(3)
    assert [d.state for d in decisions] == ["safety"] * 3
    assert all("PCS write failed 3 times" in d.messages for d in decisions)
    assert all(d.codes[-1] is ReasonCode.PCS_WRITE_FAILED for d in decisions)
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
        pets_while_failing, cycles = rig.pets, rig.loop.cycles
        await until(lambda: rig.loop.cycles >= cycles + 3, what="several failing cycles")
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


def test_before_the_first_cycle_the_json_has_no_decision(tmp_path: Path):
    body = Rig(tmp_path, request_w=0).loop.to_json()
    assert body["state"] is None and body["reasons"] == [] and body["reason_codes"] == []
    assert "mode" not in body and "setpoint_w" not in body


def test_first_cycle_waiting_for_inputs_is_no_alarm(tmp_path: Path):
    rig = Rig(tmp_path, request_w=3000)
    rig.clock.advance(MAX_AGE_S + 1)  # the readings are old before the first cycle
    [decision] = rig.cycles()
    assert decision.state == "safety" and ReasonCode.STALE_INPUT in decision.codes
    assert [(n.level, n.category) for n in rig.notifications.recent(10)] == [("info", "safety")]
    assert rig.notifications.recent(1)[0].message.startswith("starting in the safe state until every input is fresh")
    assert rig.pets == 0  # stale inputs: not healthy


# 17:00-18:00 at the site: no feed-in. NOW is 15:06 UTC, 17:06 in Vienna (summer time).
NO_FEEDIN_AT_FIVE = {"enabled": True, "mode": "dynamic", "fixed_limit_pct": 100,
                     "dynamic_rules": [{"start": "17:00", "end": "18:00", "limit_pct": 0}]}


def test_feedin_rules_are_read_in_the_site_time_zone(tmp_path: Path):
    vienna = Rig(tmp_path / "vienna", request_w=3000, feedin_limitation=NO_FEEDIN_AT_FIVE)
    [decision] = vienna.cycles()
    assert decision.setpoint_w == 0.0 and decision.state == "limited"
    assert decision.codes == (ReasonCode.FEEDIN_LIMIT,)
    assert [(n.level, n.category) for n in vienna.notifications.recent(10)] == [("warning", "feedin")]
    utc = Rig(tmp_path / "utc", request_w=3000, feedin_limitation=NO_FEEDIN_AT_FIVE, site={"timezone": "UTC"})
    [decision] = utc.cycles()
    assert decision.setpoint_w == 3000.0 and decision.state == "normal" and decision.reasons == ()


def test_a_dso_limit_is_a_dso_notification_even_with_the_feedin_limit_binding(tmp_path: Path):
    rig = Rig(tmp_path, request_w=5000, feedin_limitation=NO_FEEDIN_AT_FIVE)
    rig.publish(dso="limit", dso_limit=30)
    [decision] = rig.cycles()
    assert decision.state == "limited" and decision.setpoint_w == 0.0
    assert ReasonCode.DSO_LIMIT in decision.codes and ReasonCode.FEEDIN_LIMIT in decision.codes
    assert [(n.level, n.category) for n in rig.notifications.recent(10)] == [("warning", "dso")]
    assert rig.pets == 1  # limited, but every input fresh: healthy

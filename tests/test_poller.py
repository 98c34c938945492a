"""The device poller and the setpoint sink against simulated devices on 127.0.0.1: what an operator sees
when a device dies, refuses, babbles or falls silent, and what reaches the PCS when the safety loop writes."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from ems.bus import TelemetryBus
from ems.clock import ScaledClock
from ems.config.schema import BessConfig, ModbusDeviceConfig, SimulatorConfig
from ems.errors import DeviceError

from ems.devices.client import DeviceConnectError, DeviceVerifyError, DeviceWriteError
from ems.backoff import backoff_delay
from ems.devices.poller import BACKOFF_MAX_S, BACKOFF_MIN_S, RECONNECT_JITTER, DevicePoller
from ems.sim.modbus_devices import DeviceServer
from ems.sim.plant_link import PlantLink
from ems.devices.sink import ModbusSetpointSink
from modbus_common import POLL_S, PROFILES, START_S, eventually, run


class Rig:
    """Simulated devices on one plant, each with a running poller; everything stops at the block's end."""

    def __init__(self, soc_pct: float = 60.0):
        self.clock = ScaledClock(START_S)
        self.link = PlantLink.from_config(BessConfig(), SimulatorConfig(initial_soc_pct=soc_pct), START_S)
        self.bus = TelemetryBus()
        self.servers: dict[str, DeviceServer] = {}
        self.pollers: dict[str, DevicePoller] = {}
        self.tasks: list[asyncio.Task] = []

    async def add(self, name: str, role: str, profile: str, timeout_s: float = 0.3, on_change=None,
                  **server_kw) -> DevicePoller:
        server = DeviceServer(PROFILES[profile], self.link, tcp=("127.0.0.1", 0), clock=self.clock, **server_kw)
        await server.start()
        self.servers[name] = server
        cfg = ModbusDeviceConfig(name=name, role=role, profile=profile, host="127.0.0.1", port=server.port,
                                 poll_interval_s=POLL_S, timeout_s=timeout_s)
        poller = DevicePoller(cfg, PROFILES[profile], self.bus, self.clock, on_change=on_change, backoff_min_s=0.05,
                              backoff_max_s=0.4)
        self.pollers[name] = poller
        self.tasks.append(asyncio.create_task(poller.run(), name=name))
        return poller

    async def __aenter__(self) -> "Rig":
        return self

    async def __aexit__(self, *exc) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for s in self.servers.values():
            await s.stop()


def reconnect_delay(attempt: int, r: float, minimum_s: float = BACKOFF_MIN_S, maximum_s: float = BACKOFF_MAX_S) -> float:
    """The poller's reconnect delay for `attempt` with the random draw `r`."""
    return backoff_delay(attempt, minimum_s, maximum_s, jitter=RECONNECT_JITTER, random_value=r)


def test_backoff_doubles_up_to_the_cap_and_jitter_spreads_it():
    assert [reconnect_delay(a, 0.999999, minimum_s=0.5, maximum_s=30) for a in range(8)] == \
        pytest.approx([0.5, 1, 2, 4, 8, 16, 30, 30], rel=1e-5)
    assert reconnect_delay(3, 0.0, minimum_s=0.5, maximum_s=30) == pytest.approx(2.0)  # half of 4 s
    assert reconnect_delay(1000, 0.5) == pytest.approx(0.75 * 30)  # no overflow far out


def test_a_device_killed_and_restarted_goes_offline_then_online_again():
    async def main():
        async with Rig() as rig:
            poller = await rig.add("bms", "bms", "hithium_ess_5016")
            await eventually(lambda: poller.online, "first connect")
            assert rig.bus.snapshot().battery.soc_pct.value == 60

            await rig.servers["bms"].stop()  # the device is switched off
            await eventually(lambda: poller.state == "offline", "offline after the device died")
            offline = poller.status()
            soc_while_offline = rig.bus.snapshot().battery.soc_pct

            await rig.servers["bms"].start()  # same port, no restart of the poller
            await eventually(lambda: poller.online, "online again after the restart")
            return offline, soc_while_offline, poller.status(), rig.bus.snapshot().battery.soc_pct

    offline, soc_offline, online, soc_online = run(main())
    assert offline["online"] is False and offline["connects"] == 1
    assert "127.0.0.1" in offline["last_error"]  # says which link failed
    assert soc_offline.value is None  # unknown at once, not a stale 60 %
    assert online["online"] and online["connects"] == 2 and online["state"] == "online"
    assert soc_online.value == 60 and soc_online.ts > soc_offline.ts


def test_exception_responses_give_a_clear_status_and_leave_other_devices_alone():
    async def main():
        async with Rig() as rig:
            meter = await rig.add("meter", "meter", "eastron_sdm630")
            bms = await rig.add("bms", "bms", "hithium_ess_5016")
            await eventually(lambda: meter.online and bms.online, "both online")
            rig.servers["meter"].answer_exception(2)
            await eventually(lambda: meter.state == "degraded", "meter degraded")
            bms_cycles = bms.cycles
            await eventually(lambda: bms.cycles >= bms_cycles + 3, "the BMS keeps polling")
            state = rig.bus.snapshot()
            return meter.status(), bms.status(), state, [t.done() for t in rig.tasks]

    meter, bms, state, done = run(main())
    assert meter["online"] is False
    assert "Modbus exception 2 (illegal data address)" in meter["last_error"]
    assert "voltage_l1_v" in meter["last_error"]  # names what could not be read
    assert state.grid.power_w.value is None  # the meter's point is unknown, not its last value
    assert bms["online"] and bms["last_error"] is None and state.battery.soc_pct.value == 60
    assert done == [False, False]  # no task crashed


@pytest.mark.parametrize("fault, message", [("answer_garbage", "no valid Modbus frame"),
                                            ("go_silent", "no answer within 0.3 s")])
def test_a_device_answering_garbage_or_nothing_goes_offline_and_recovers(fault, message):
    async def main():
        async with Rig() as rig:
            dso = await rig.add("dso", "dso", "generic_dso_box")
            bms = await rig.add("bms", "bms", "hithium_ess_5016")
            await eventually(lambda: dso.online and bms.online, "both online")
            getattr(rig.servers["dso"], fault)()
            await eventually(lambda: dso.state == "offline", "DSO box offline")
            broken = dso.status()
            dso_mode = rig.bus.snapshot().dso.mode
            bms_ok = bms.online and not rig.bus.snapshot().battery.soc_pct.is_stale(rig.clock.now())
            rig.servers["dso"].heal()
            await eventually(lambda: dso.online, "DSO box back")
            return broken, dso_mode, bms_ok, rig.bus.snapshot().dso.mode.value, rig.tasks[0].done()

    broken, dso_mode, bms_ok, mode_after, crashed = run(main())
    assert message in broken["last_error"]
    assert dso_mode.value is None  # the safety loop applies its comm-loss limit, never "not restricted"
    assert bms_ok  # the other device kept its fresh values
    assert mode_after == "normal" and not crashed


def test_rtc_sync_writes_the_clock_registers_after_every_reconnect():
    rtc_addresses = [524, 525, 526, 527, 528, 529]

    async def main():
        async with Rig() as rig:
            poller = await rig.add("bms", "bms", "hithium_ess_5016", rtc_offset_s=-3 * 3600)
            server = rig.servers["bms"]
            await eventually(lambda: poller.online, "connected")
            first = [w for w in server.writes if w.address in rtc_addresses]
            drift_after_sync = (server.rtc - datetime.fromtimestamp(rig.clock.now(), timezone.utc)).total_seconds()
            await server.stop()
            await eventually(lambda: not poller.online, "offline")
            await server.start()
            await eventually(lambda: poller.online, "reconnected")
            all_rtc = [w for w in server.writes if w.address in rtc_addresses]
            return first, all_rtc, drift_after_sync

    first, all_rtc, drift_s = run(main())
    assert [w.address for w in first] == rtc_addresses  # year, month, day, hour, minute, second
    assert [w.function for w in first] == [6] * 6  # the profile's write function for single registers
    stamp = datetime(2000 + first[0].words[0], *(w.words[0] for w in first[1:]), tzinfo=timezone.utc)
    assert abs(stamp.timestamp() - START_S) < 60  # plant time, in UTC: 2024-07-01 10:00
    assert len(all_rtc) == 12  # written again on the reconnect
    assert abs(drift_s) < 2.0  # was 3 h off before the sync


def test_writes_are_read_back_and_bad_values_never_reach_the_device():
    async def main():
        async with Rig() as rig:
            pcs = await rig.add("pcs", "pcs", "wstech_pcs")
            server = rig.servers["pcs"]
            await eventually(lambda: pcs.online, "connected")
            await pcs.write("active_power_set_w", -2500)
            written = server.value("active_power_set_w")
            sent_before = len(server.writes)
            with pytest.raises(DeviceWriteError, match="above the maximum 100"):
                await pcs.write("active_power_limit_pct", 150)
            with pytest.raises(DeviceWriteError, match="is read-only|neither a control nor a register"):
                await pcs.write("ac_power_w", 10)
            refused_sent = len(server.writes) - sent_before
            server.set_value("remote_enable", 0)  # a PCS that drops back to local control at once
            with pytest.raises(DeviceVerifyError, match="read back"):
                await pcs.write("remote_enable", True)
            return written, refused_sent

    written, refused_sent = run(main())
    assert written == -2500 and refused_sent == 0


def test_a_write_to_an_offline_device_fails_fast_with_a_device_error():
    async def main():
        async with Rig() as rig:
            pcs = await rig.add("pcs", "pcs", "wstech_pcs")
            await eventually(lambda: pcs.online, "connected")
            await rig.servers["pcs"].stop()
            await eventually(lambda: not pcs.online, "offline")
            with pytest.raises(DeviceConnectError, match="offline"):
                await pcs.write("active_power_set_w", 0)

    run(main())


def test_a_dso_change_wakes_the_listener_and_reaches_the_bus():
    async def main():
        calls = []
        async with Rig() as rig:
            dso = await rig.add("dso", "dso", "generic_dso_box", on_change=lambda: calls.append(rig.bus.snapshot()))
            await eventually(lambda: dso.online, "connected")
            settled, polled = len(calls), dso.cycles
            await eventually(lambda: dso.cycles >= polled + 5, "five more polls")
            quiet = len(calls) - settled  # five polls that found nothing changed: no wake-ups
            rig.link.plant.dso.set_state("trip")
            rig.link.step(START_S + 1)
            await eventually(lambda: len(calls) > settled + quiet, "woken by the trip")
            return quiet, calls[-1].dso.mode.value, calls[-1].dso.limit_pct.value

    quiet, mode, limit = run(main())
    assert quiet == 0 and (mode, limit) == ("trip", 0.0)


def test_the_sink_enables_the_pcs_and_its_setpoint_moves_the_battery():
    async def main():
        async with Rig() as rig:
            pcs = await rig.add("pcs", "pcs", "wstech_pcs")
            bms = await rig.add("bms", "bms", "hithium_ess_5016")
            await eventually(lambda: pcs.online and bms.online, "connected")
            sink = ModbusSetpointSink(pcs, extra_heartbeats=[bms])
            await sink.write_setpoint(-6000.0, limit_pct=50.0)
            moved = rig.link.step(START_S + 60).bess_power_w
            await sink.write_setpoint(-6000.0, limit_pct=50.0)
            await eventually(lambda: rig.bus.snapshot().bess.power_w.value == -6000, "PCS reports the power")
            pcs_writes = [(w.registers[0], w.words) for w in rig.servers["pcs"].writes]
            return moved, pcs_writes, rig.servers["bms"].value("heartbeat"), sink.max_resend_s

    moved, writes, bms_heartbeat, resend_s = run(main())
    assert moved == pytest.approx(-6000.0)
    names = [n for n, _ in writes]
    assert names[:4] == ["remote_enable", "active_power_limit_pct", "active_power_set_w", "keep_alive"]
    assert names[4:] == ["active_power_set_w", "keep_alive"]  # enable and an unchanged limit are not repeated
    assert [w for n, w in writes if n == "keep_alive"] == [(1,), (2,)]  # the counter advances per call
    assert bms_heartbeat == 2 and resend_s == 1.0


def test_the_sink_fails_with_a_device_error_when_the_pcs_is_gone_and_re_enables_after_reconnect():
    async def main():
        async with Rig() as rig:
            pcs = await rig.add("pcs", "pcs", "wstech_pcs")
            await eventually(lambda: pcs.online, "connected")
            sink = ModbusSetpointSink(pcs)
            await sink.write_setpoint(1000.0)
            await rig.servers["pcs"].stop()
            await eventually(lambda: not pcs.online, "offline")
            with pytest.raises(DeviceError):
                await sink.write_setpoint(0.0)
            failed = sink.last_error
            await rig.servers["pcs"].start()
            await eventually(lambda: pcs.online, "back")
            await sink.write_setpoint(500.0)
            enables = [w for w in rig.servers["pcs"].writes if w.registers == ("remote_enable",)]
            return failed, len(enables), rig.link.step(START_S + 60).bess_power_w

    failed, enables, power_w = run(main())
    assert "offline" in failed
    assert enables == 2 and power_w == pytest.approx(500.0)


def test_a_profile_without_a_power_setpoint_cannot_be_the_sink():
    cfg = ModbusDeviceConfig(name="bms", role="bms", profile="hithium_ess_5016", host="127.0.0.1")
    poller = DevicePoller(cfg, PROFILES["hithium_ess_5016"], TelemetryBus(), ScaledClock())
    with pytest.raises(DeviceError, match="no power setpoint control"):
        ModbusSetpointSink(poller)


def test_the_sink_steers_a_victron_through_its_grid_setpoint():
    async def main():
        async with Rig() as rig:
            gx = await rig.add("gx", "pcs", "victron_gx_ess")
            await eventually(lambda: gx.online and rig.bus.snapshot().load.power_w is not None, "connected")
            sink = ModbusSetpointSink(gx, rig.bus.snapshot, rig.clock.now)
            await sink.write_setpoint(2000.0)  # discharge 2 kW
            return rig.link.step(rig.link.plant.now_s + 1)

    sample = run(main())
    # the grid setpoint was computed from the polled load and PV; the plant moved on a little since
    assert sample.bess_power_w == pytest.approx(2000.0, abs=150.0)


def test_the_sink_takes_control_back_when_the_pcs_falls_back_to_local_mode():
    async def main():
        async with Rig() as rig:
            pcs = await rig.add("pcs", "pcs", "wstech_pcs")
            await eventually(lambda: pcs.online, "connected")
            sink = ModbusSetpointSink(pcs)
            await sink.write_setpoint(2000.0)
            server = rig.servers["pcs"]
            server.set_value("remote_enable", 0)  # an operator switches the PCS to local at its panel
            server.set_value("remote_enable", None)  # ... and leaves it there (not pinned)
            cycles = pcs.cycles
            await eventually(lambda: pcs.cycles >= cycles + 2 and pcs.values.get("remote_enable") == 0, "seen local")
            idle = rig.link.step(START_S + 30).bess_power_w
            await sink.write_setpoint(2000.0)
            return idle, rig.link.step(START_S + 60).bess_power_w

    idle_w, resumed_w = run(main())
    assert idle_w == 0.0 and resumed_w == pytest.approx(2000.0)


def test_a_meter_whose_readings_hang_goes_stale_and_is_fresh_again_with_its_first_new_reading():
    """A meter that still answers but serves one frozen grid power (a hung measurement, a gateway's cache)
    is no measurement: its grid power counts from when it last moved, so it goes stale after the stale
    timeout like a silent meter, and the safety loop stops the battery instead of balancing against it.
    The BMS's readings, which may well stand still, stay fresh; the meter's first changed reading is fresh."""
    async def main():
        async with Rig() as rig:
            meter = await rig.add("meter", "meter", "eastron_sdm630")
            bms = await rig.add("bms", "bms", "hithium_ess_5016")
            await eventually(lambda: meter.online and bms.online, "both online")
            server = rig.servers["meter"]
            server.freeze()
            frozen_at = rig.clock.now()
            await eventually(lambda: rig.bus.snapshot().grid.power_w.is_stale(rig.clock.now()),
                             "the frozen grid power goes stale", timeout_s=25.0)
            stale_after_s = rig.clock.now() - frozen_at
            state = rig.bus.snapshot()
            still_online, soc_fresh = meter.online, not state.battery.soc_pct.is_stale(rig.clock.now())
            server.heal()
            register = server.profile.point_registers()["grid.power_w"][0].name
            server.set_value(register, state.grid.power_w.value + 123.0)
            await eventually(lambda: not rig.bus.snapshot().grid.power_w.is_stale(rig.clock.now()),
                             "fresh again with the first new reading")
            return stale_after_s, still_online, soc_fresh, rig.bus.snapshot().grid.power_w.value, state.grid.power_w

    stale_after_s, still_online, soc_fresh, value, frozen = run(main(), timeout_s=40.0)
    assert still_online  # it answers: not a lost link, a hung measurement
    assert stale_after_s >= 10.0 - 0.5  # not before it stood still for the stale timeout's default
    assert soc_fresh
    assert value == frozen.value + 123.0

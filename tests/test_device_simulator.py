"""The Modbus device simulator, read and written over real Modbus TCP on 127.0.0.1 as the EMS would.

Every value is checked against the plant simulator's own state, decoded through the shipped profile.
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ems.clock import ScaledClock
from ems.config.schema import BessConfig, ModbusDeviceConfig, SimulatorConfig
from ems.devices import active_alarms, decode_values, dso_state, encode, split_block
from ems.devices.client import (DeviceExceptionResponse, DeviceProtocolError, DeviceTimeout, ModbusClient)
from ems.devices.poller import discover_profile
from ems.sim.modbus_devices import DeviceServer, dso_inputs, run_plant, simulated_devices, status_raw
from ems.sim.plant_link import PlantLink
from ems.sim.rtu_timing import rtu_exchange_s
from ems.sim.battery import ALARM_INSULATION_LOW
from modbus_common import PROFILES, PROFILE_ERRORS, START_S, eventually, run
from support import free_port


def make_link(**bess) -> PlantLink:
    return PlantLink.from_config(BessConfig(**bess), SimulatorConfig(initial_soc_pct=60.0), START_S)


def config(port: int, profile: str = "wstech_pcs", **kw) -> ModbusDeviceConfig:
    return ModbusDeviceConfig(name=kw.pop("name", "dev"), role=kw.pop("role", "pcs"), profile=profile,
                              host="127.0.0.1", port=port, timeout_s=kw.pop("timeout_s", 0.5), **kw)


async def read_all(client: ModbusClient, profile) -> dict:
    words = {}
    for block in profile.read_plan():
        words |= split_block(block, await client.read(block.function, block.address, block.count))
    return decode_values(profile.registers, words)


async def write(client: ModbusClient, profile, name: str, value) -> None:
    reg = profile.registers[name]
    await client.write(reg.write_function, reg.address, encode(reg, value))


def test_every_shipped_profile_loads():
    assert not PROFILE_ERRORS and {"hithium_ess_5016", "wstech_pcs", "eastron_sdm630", "generic_dso_box",
                                   "sunspec"} <= set(PROFILES)


def test_simulated_bms_reports_the_plants_battery_through_its_profile():
    async def main():
        link = make_link()
        async with DeviceServer(PROFILES["hithium_ess_5016"], link, tcp=("127.0.0.1", 0)) as dev:
            async with ModbusClient(config(dev.port, "hithium_ess_5016")) as client:
                return link.sample(), await read_all(client, dev.profile)

    sample, values = run(main())
    assert values["soc_pct"] == round(sample.soc_pct) == 60
    assert values["pack_voltage_v"] == pytest.approx(sample.voltage_v, abs=0.05)
    assert values["temperature_c"] == round(sample.temperature_c)
    assert values["max_charge_power_w"] == pytest.approx(sample.max_charge_power_w, abs=50)
    # the plant's "standby" is what Hithium calls "ready"
    assert PROFILES["hithium_ess_5016"].status_codes.text(values["system_status"]).startswith("ready")
    assert values["system_alarms"] == 0


def test_writing_the_simulated_pcs_setpoint_moves_the_simulated_battery():
    async def main():
        link = make_link()
        profile = PROFILES["wstech_pcs"]
        async with DeviceServer(profile, link, tcp=("127.0.0.1", 0)) as dev:
            async with ModbusClient(config(dev.port)) as client:
                await write(client, profile, "remote_enable", 1)
                await write(client, profile, "active_power_set_w", 4000)
                soc_before = link.sample().soc_pct
                link.step(START_S + 600)
                values = await read_all(client, profile)
                return soc_before, link.sample(), values

    soc_before, sample, values = run(main())
    assert sample.bess_power_w == pytest.approx(4000.0)
    assert sample.soc_pct < soc_before  # discharging for 10 minutes
    assert values["ac_power_w"] == 4000  # the PCS reports what the battery does
    assert values["active_power_set_w"] == 4000 and values["remote_enable"] == 1


def test_a_setpoint_without_remote_enable_leaves_the_battery_idle():
    async def main():
        link = make_link()
        profile = PROFILES["wstech_pcs"]
        async with DeviceServer(profile, link, tcp=("127.0.0.1", 0)) as dev:
            async with ModbusClient(config(dev.port)) as client:
                await write(client, profile, "active_power_set_w", -4000)
                return link.step(START_S + 60)

    assert run(main()).bess_power_w == 0.0


def test_the_active_power_limit_caps_the_battery_power():
    async def main():
        link = make_link(max_charge_power_kw=10.0, max_discharge_power_kw=10.0)
        profile = PROFILES["wstech_pcs"]
        async with DeviceServer(profile, link, tcp=("127.0.0.1", 0)) as dev:
            async with ModbusClient(config(dev.port)) as client:
                await write(client, profile, "remote_enable", 1)
                await write(client, profile, "active_power_limit_pct", 30)
                await write(client, profile, "active_power_set_w", -9000)
                return link.step(START_S + 60)

    assert run(main()).bess_power_w == pytest.approx(-3000.0)  # 30 % of 10 kW, charging


def test_sungrow_forced_mode_charges_with_direction_and_unsigned_power():
    async def main():
        link = make_link()
        profile = PROFILES["sungrow_sh_hybrid"]
        async with DeviceServer(profile, link, tcp=("127.0.0.1", 0)) as dev:
            async with ModbusClient(config(dev.port, "sungrow_sh_hybrid")) as client:
                await write(client, profile, "ems_mode", 2)
                await write(client, profile, "charge_discharge_power_w", 2500)
                await write(client, profile, "charge_discharge_command", 0xAA)
                charging = link.step(START_S + 60).bess_power_w
                await write(client, profile, "charge_discharge_command", 0xCC)
                return charging, link.step(START_S + 120).bess_power_w

    assert run(main()) == (pytest.approx(-2500.0), 0.0)


def test_victron_grid_setpoint_makes_the_battery_cover_load_minus_pv():
    async def main():
        link = make_link()
        profile = PROFILES["victron_gx_ess"]
        async with DeviceServer(profile, link, tcp=("127.0.0.1", 0)) as dev:
            async with ModbusClient(config(dev.port, "victron_gx_ess")) as client:
                await write(client, profile, "ess_grid_setpoint_w", 1000)  # import 1 kW
                link.step(START_S + 1)
                sample = link.step(START_S + 2)
                return sample, await read_all(client, profile)

    sample, values = run(main())
    assert sample.grid_power_w == pytest.approx(1000.0, abs=1.0)
    # the three phase registers carry the grid power between them; Victron's battery power is > 0 charging
    assert sum(values[f"grid_l{i}_w"] for i in (1, 2, 3)) == pytest.approx(1000, abs=3)
    assert values["battery_power_w"] == pytest.approx(-sample.bess_power_w, abs=1)


def test_addresses_the_profile_does_not_define_answer_illegal_address():
    async def main():
        async with DeviceServer(PROFILES["wstech_pcs"], tcp=("127.0.0.1", 0)) as dev:
            async with ModbusClient(config(dev.port)) as client:
                with pytest.raises(DeviceExceptionResponse) as gap:
                    await client.read(3, 40003, 2)  # between operating_mode and active_power_set_w
                with pytest.raises(DeviceExceptionResponse) as read_only:
                    await client.write(16, 30001, [0, 5])  # input registers cannot be written at all
                with pytest.raises(DeviceExceptionResponse) as too_big:
                    await client.write(6, 40001, [7])  # remote_enable allows 0..1
                return gap.value, read_only.value, too_big.value

    gap, read_only, too_big = run(main())
    assert gap.code == 2 and "illegal data address" in str(gap)
    assert read_only.code in (1, 2)
    assert too_big.code == 3 and "illegal data value" in str(too_big)


def test_dso_box_inputs_follow_the_plants_dso_state():
    profile = PROFILES["generic_dso_box"]

    async def main():
        link = make_link()
        seen = []
        async with DeviceServer(profile, link, tcp=("127.0.0.1", 0)) as dev:
            async with ModbusClient(config(dev.port, "generic_dso_box", role="dso")) as client:
                for mode, pct in (("normal", 100.0), ("limit", 30.0), ("limit", 45.0), ("trip", 0.0)):
                    link.plant.dso.set_state(mode, pct)
                    link.step(link.plant.now_s + 1)
                    seen.append(dso_state(profile.dso, await read_all(client, profile)))
        return seen

    # 45 % has no relay of its own: the box shows the step below (never more than the operator allows)
    assert run(main()) == [("normal", 100.0), ("limit", 30.0), ("limit", 30.0), ("trip", 0.0)]


def test_a_plant_fault_shows_as_the_profiles_alarm_bit_and_status():
    profile = PROFILES["hithium_ess_5016"]

    async def main():
        link = make_link()
        link.plant.battery.forced_alarm_bits = ALARM_INSULATION_LOW
        link.step(START_S + 1)
        async with DeviceServer(profile, link, tcp=("127.0.0.1", 0)) as dev:
            dev.force_alarm("ems_comm_lost")
            async with ModbusClient(config(dev.port, "hithium_ess_5016")) as client:
                return await read_all(client, profile)

    values = run(main())
    names = {a.name for a in active_alarms(profile.alarms, values)}
    assert names == {"insulation_low_serious", "ems_comm_lost"}
    assert profile.status_codes.text(values["system_status"]).startswith("fault")


def test_writing_the_rtc_registers_sets_the_device_clock():
    profile = PROFILES["hithium_ess_5016"]

    async def main():
        clock = ScaledClock(START_S)
        async with DeviceServer(profile, tcp=("127.0.0.1", 0), clock=clock, rtc_offset_s=-5000) as dev:
            before = dev.rtc
            async with ModbusClient(config(dev.port, "hithium_ess_5016")) as client:
                for name, value in (("rtc_year", 2031), ("rtc_month", 2), ("rtc_day", 3), ("rtc_hour", 4),
                                    ("rtc_minute", 5), ("rtc_second", 6)):
                    await write(client, profile, name, value)
                after = dev.rtc
                read_back = await read_all(client, profile)
            return before, after, read_back

    before, after, values = run(main())
    assert before.year == 2024 and before.hour == 8  # 10:00 UTC minus 5000 s
    assert (after.year, after.month, after.day, after.hour, after.minute) == (2031, 2, 3, 4, 5)
    assert (values["rtc_year"], values["rtc_month"], values["rtc_day"]) == (2031, 2, 3)


def test_fault_injection_silence_exception_and_garbage_then_recovery():
    async def main():
        async with DeviceServer(PROFILES["generic_dso_box"], tcp=("127.0.0.1", 0)) as dev:
            async with ModbusClient(config(dev.port, "generic_dso_box", timeout_s=0.3)) as client:
                outcomes = []
                for inject in (dev.go_silent, lambda: dev.answer_exception(6), dev.answer_garbage):
                    inject()
                    try:
                        await client.read(2, 0, 5)
                        outcomes.append(None)
                    except Exception as exc:  # any type: the type is what is checked
                        outcomes.append(exc)
                dev.heal()
                await client.connect()  # a timed-out link is reopened, as the poller does
                outcomes.append(await client.read(2, 0, 5))
                return outcomes

    silent, busy, garbage, healed = run(main())
    assert isinstance(silent, DeviceTimeout) and "no answer within 0.3 s" in str(silent)
    assert isinstance(busy, DeviceExceptionResponse) and busy.code == 6 and "busy" in str(busy)
    assert isinstance(garbage, DeviceProtocolError) and "no valid Modbus frame" in str(garbage)
    assert healed == [0, 0, 0, 0, 0]


def test_sunspec_discovery_finds_the_models_of_a_simulated_sunspec_device_over_tcp():
    marker = PROFILES["sunspec"]

    async def main():
        link = make_link()
        async with DeviceServer(marker, link, tcp=("127.0.0.1", 0)) as dev:
            async with ModbusClient(config(dev.port, "sunspec", role="bms")) as client:
                profile = await discover_profile(client, marker)
                return link.sample(), profile, await read_all(client, profile)

    sample, profile, values = run(main())
    ids = sorted({int(re.match(r"m(\d+)_", n).group(1)) for n in profile.registers})
    assert ids == [1, 103, 124, 802]
    assert profile.registers["m802_SoC"].point == "battery.soc_pct"
    assert values["m1_Mn"] == "Phoenyra"
    assert values["m802_SoC"] == pytest.approx(sample.soc_pct, abs=0.05)  # live from the plant, SoC_SF -1


def test_rtu_wire_time_matches_the_frame_sizes():
    # 50 holding registers: 8-byte request + 105-byte reply, 11-bit characters, plus 3.5-char silences
    assert rtu_exchange_s(3, 50, 9600, bits=11) == pytest.approx(0.1375, abs=0.0001)
    assert rtu_exchange_s(3, 50, 115200, bits=11) == pytest.approx(0.0143, abs=0.0001)  # 1.75 ms silences


@given(mode=st.sampled_from(["normal", "limit", "trip"]), limit=st.floats(0, 100))
def test_dso_inputs_read_back_as_the_same_or_the_next_stricter_step(mode, limit):
    mapping = PROFILES["generic_dso_box"].dso
    got_mode, got_limit = dso_state(mapping, dso_inputs(mapping, mode, limit))
    if mode != "limit":
        assert (got_mode, got_limit) == ((mode, 0.0) if mode == "trip" else ("normal", 100.0))
        return
    assert got_limit <= limit  # never more than the operator allows
    assert not any(got_limit < s.limit_pct <= limit for s in mapping.steps)  # and no stricter than needed
    assert got_mode == ("normal" if got_limit >= 100 else "limit")


def test_plant_status_texts_map_onto_each_vendors_codes():
    hithium = PROFILES["hithium_ess_5016"].status_codes.codes
    assert [hithium[status_raw(hithium, t, -1)].split(" (")[0] for t in ("standby", "charging", "fault")] \
        == ["ready", "charging", "fault"]
    victron = PROFILES["victron_gx_ess"].status_codes.codes
    assert victron[status_raw(victron, "standby", -1)] == "idle"


def test_sim_device_command_serves_a_profile_until_terminated(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "ems.sim.cli", "--profile", "generic_dso_box",
                             "--tcp", "127.0.0.1:0", "--unit-id", "7"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for _ in range(200):  # bounded: the serving line comes within a second or two
            line = proc.stderr.readline()
            match = re.search(r"serving generic_dso_box on tcp 127\.0\.0\.1:(\d+) unit 7", line)
            if match:
                port = int(match.group(1))
                break
            if not line and proc.poll() is not None:
                break
        assert port, "sim-device did not report where it serves"

        async def main():
            async with ModbusClient(config(port, "generic_dso_box", unit_id=7)) as client:
                return await client.read(2, 0, 5)

        assert run(main()) == [0, 0, 0, 0, 0]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_sim_device_command_names_an_unknown_profile():
    out = subprocess.run([sys.executable, "-m", "ems.sim.cli", "--profile", "no_such_box", "--tcp",
                          "127.0.0.1:0"], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.returncode == 2
    assert "no profile 'no_such_box'" in out.stderr and "hithium_ess_5016" in out.stderr


def test_run_plant_serves_the_configured_devices_and_steps_the_plant_on_the_clock():
    async def main():
        clock = ScaledClock(START_S, speed=60.0)  # a simulated minute per real second
        link = make_link()
        configs = [config(free_port(), "wstech_pcs", name="pcs"),
                   config(free_port(), "hithium_ess_5016", name="bms", role="bms")]
        samples = []
        task = asyncio.create_task(run_plant(link, simulated_devices(configs, PROFILES), clock, step_s=0.05,
                                             on_step=samples.append))
        try:
            # The plant steps only inside serve_plant: after its first step the devices are listening.
            await eventually(lambda: samples, "the plant's first step")
            profile = PROFILES["wstech_pcs"]
            async with ModbusClient(configs[0]) as client:
                await write(client, profile, "remote_enable", 1)
                await write(client, profile, "active_power_set_w", 10000)
            seen = len(samples)
            await eventually(lambda: len(samples) > seen + 5, "five plant steps after the setpoint")
            async with ModbusClient(configs[1]) as bms_client:
                status = (await read_all(bms_client, PROFILES["hithium_ess_5016"]))["system_status"]
            return samples[seen:], PROFILES["hithium_ess_5016"].status_codes.text(status)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    after, bms_status = run(main())
    assert all(s.bess_power_w == pytest.approx(10000.0) for s in after[1:])
    assert after[-1].soc_pct < 60.0 and after[-1].ts > START_S
    assert bms_status == "discharging"  # the BMS, a separate simulated device, sees the same battery


INT_AND_FLOAT_REGISTERS = [reg for p in PROFILES.values() for reg in p.registers.values()
                           if reg.scale_register is None and reg.type not in ("bool", "bitfield", "string")]


@given(st.sampled_from(INT_AND_FLOAT_REGISTERS), st.floats(-1e6, 1e6, allow_nan=False))
def test_the_simulators_fast_encoding_matches_the_codec_wherever_it_answers(reg, value):
    from ems.devices.codec import CodecError, decode
    from ems.sim.modbus_devices import fast_words
    words = fast_words(reg, value)
    try:
        exact = encode(reg, value)
    except CodecError:
        exact = None
    if exact is None:  # the codec refuses it: so must the fast path (a float may still round into range)
        assert words is None or reg.type.startswith("float")
    elif words is not None:
        # The same words, or at an exact half raw step (float rounding) the neighbouring one.
        assert words == exact or abs(decode(reg, words) - decode(reg, exact)) <= abs(reg.scale) * 1.0001


def test_a_pcs_that_hears_no_heartbeat_for_its_timeout_falls_back_to_0_w_by_itself():
    async def main():
        clock = ManualClock(START_S)
        link = make_link()
        profile = PROFILES["wstech_pcs"]
        async with DeviceServer(profile, link, tcp=("127.0.0.1", 0), clock=clock, comm_loss_timeout_s=10.0) as dev:
            async with ModbusClient(config(dev.port)) as client:
                await write(client, profile, "remote_enable", 1)
                await write(client, profile, "active_power_set_w", 2000)
                await write(client, profile, "keep_alive", 1)
                heard = link.requested_w(clock.t)
                clock.t += 9.0
                still = link.requested_w(clock.t)
                clock.t += 2.0
                fallen_back = link.requested_w(clock.t), link.fallback_active(clock.t)
                await write(client, profile, "keep_alive", 2)  # the EMS is back: the PCS follows it again
                return heard, still, fallen_back, link.requested_w(clock.t)

    heard, still, (fallen_back, active), resumed = run(main())
    assert heard == still == resumed == 2000.0
    assert fallen_back == 0.0 and active


class ManualClock:
    """Plant time the test moves by hand."""

    speed = 1.0
    real_time = False

    def __init__(self, t: float):
        self.t = t

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t

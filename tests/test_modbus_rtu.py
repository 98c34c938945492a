"""Modbus RTU on a real serial line: a socat pty pair, the simulator on one end, the poller on the other.

A pty accepts parity N only (pyserial's termios call fails for E and, on some kernels, O), so these
tests use 8N1 and 8N2; a pty has no baud rate, so nothing here is timed (see bench/bench_modbus.py).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time

import pytest

from ems.bus import TelemetryBus
from ems.clock import ScaledClock
from ems.config.schema import BessConfig, ModbusDeviceConfig, SimulatorConfig

from ems.devices.client import DeviceConnectError, ModbusClient
from ems.devices.poller import DevicePoller
from ems.sim.modbus_devices import DeviceServer, SerialLine
from ems.sim.plant_link import PlantLink
from ems.devices.sink import ModbusSetpointSink
from modbus_common import POLL_S, PROFILES, START_S, eventually, run


pytestmark = pytest.mark.skipif(shutil.which("socat") is None, reason="needs socat for a pty pair")


@pytest.fixture
def pty_pair(tmp_path):
    """(EMS end, device end): two linked ptys made by socat, removed after the test."""
    ems_end, device_end = tmp_path / "ems", tmp_path / "device"
    proc = subprocess.Popen(["socat", "-d", "-d", f"pty,raw,echo=0,link={ems_end}", f"pty,raw,echo=0,link={device_end}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5.0
        while not (ems_end.exists() and device_end.exists()):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("socat did not create the pty pair within 5 s")
            time.sleep(0.02)
        yield str(ems_end), str(device_end)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def rtu_device(name: str, role: str, profile: str, port: str, **kw) -> ModbusDeviceConfig:
    return ModbusDeviceConfig(name=name, role=role, profile=profile, connection_type="rtu", serial_port=port,
                              poll_interval_s=POLL_S, timeout_s=kw.pop("timeout_s", 0.5), **kw)


def plant(soc_pct: float = 65.0) -> PlantLink:
    return PlantLink.from_config(BessConfig(), SimulatorConfig(initial_soc_pct=soc_pct), START_S)


def test_polling_a_bms_over_rtu_on_a_pty_pair(pty_pair):
    ems_end, device_end = pty_pair

    async def main():
        clock, link, bus = ScaledClock(START_S), plant(), TelemetryBus()
        line = SerialLine(device_end, 9600, "N", 1)
        async with DeviceServer(PROFILES["hithium_ess_5016"], link, rtu=line, unit_id=3, clock=clock):
            poller = DevicePoller(rtu_device("bms", "bms", "hithium_ess_5016", ems_end, unit_id=3),
                                  PROFILES["hithium_ess_5016"], bus, clock)
            task = asyncio.create_task(poller.run())
            try:
                await eventually(lambda: poller.online and poller.cycles >= 3, "three RTU poll cycles")
                return bus.snapshot(), poller.status()
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    state, status = run(main())
    assert state.battery.soc_pct.value == 65 and state.battery.soc_pct.source == "modbus"
    assert state.battery.status_text.value.startswith("ready")
    assert status["connection"] == f"rtu {ems_end} 9600 8N1 unit 3"
    assert status["requests_per_cycle"] == len(PROFILES["hithium_ess_5016"].read_plan())
    assert status["rtc_synced_ts"] is not None  # the BMS clock was set over the serial line too


def test_a_setpoint_over_rtu_8n2_moves_the_simulated_battery(pty_pair):
    ems_end, device_end = pty_pair

    async def main():
        clock, link, bus = ScaledClock(START_S), plant(), TelemetryBus()
        line = SerialLine(device_end, 19200, "N", 2)
        async with DeviceServer(PROFILES["wstech_pcs"], link, rtu=line, clock=clock):
            poller = DevicePoller(rtu_device("pcs", "pcs", "wstech_pcs", ems_end, baudrate=19200, stopbits=2),
                                  PROFILES["wstech_pcs"], bus, clock)
            task = asyncio.create_task(poller.run())
            try:
                await eventually(lambda: poller.online, "online")
                await ModbusSetpointSink(poller).write_setpoint(-5000.0)
                sample = link.step(START_S + 120)
                await eventually(lambda: bus.snapshot().bess.power_w.value == -5000, "PCS reports -5 kW")
                return sample
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    sample = run(main())
    assert sample.bess_power_w == pytest.approx(-5000.0) and sample.soc_pct > 65.0


def test_garbage_on_the_rtu_line_marks_the_device_offline_until_it_is_clean_again(pty_pair):
    ems_end, device_end = pty_pair

    async def main():
        clock, link, bus = ScaledClock(START_S), plant(), TelemetryBus()
        async with DeviceServer(PROFILES["generic_dso_box"], link, rtu=SerialLine(device_end), clock=clock) as dev:
            poller = DevicePoller(rtu_device("dso", "dso", "generic_dso_box", ems_end, timeout_s=0.3),
                                  PROFILES["generic_dso_box"], bus, clock, backoff_min_s=0.05, backoff_max_s=0.3)
            task = asyncio.create_task(poller.run())
            try:
                await eventually(lambda: poller.online, "online")
                dev.answer_garbage()
                await eventually(lambda: poller.state == "offline", "offline on garbage")
                error, mode = poller.last_error, bus.snapshot().dso.mode.value
                dev.heal()
                await eventually(lambda: poller.online, "online again")
                return error, mode, bus.snapshot().dso.mode.value
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    error, mode_during, mode_after = run(main())
    assert "no valid Modbus frame" in error and mode_during is None and mode_after == "normal"


def test_a_serial_port_that_refuses_the_framing_gets_a_clear_error(pty_pair):
    ems_end, _ = pty_pair
    cfg = rtu_device("meter", "meter", "eastron_sdm630", ems_end, parity="E")
    with pytest.raises(DeviceConnectError) as err:
        run(ModbusClient(cfg).connect())
    assert f"rtu {ems_end} 9600 8E1" in str(err.value) and "parity" in str(err.value)


def test_a_missing_serial_port_is_named():
    cfg = rtu_device("meter", "meter", "eastron_sdm630", "/dev/ttyNOPE_phoenyra")
    with pytest.raises(DeviceConnectError, match="/dev/ttyNOPE_phoenyra does not exist"):
        run(ModbusClient(cfg).connect())
    assert not os.path.exists("/dev/ttyNOPE_phoenyra")

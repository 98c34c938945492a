"""Polling over Modbus TCP on 127.0.0.1: a whole simulated plant (BMS, PCS, meter, DSO box) onto the bus.

Also the transport's errors as a user reads them, and the connection test behind `POST /api/modbus/test`.
"""
from __future__ import annotations

import asyncio

import pytest

from ems.bus import TelemetryBus
from ems.clock import ScaledClock
from ems.config.schema import BessConfig, ModbusDeviceConfig, SimulatorConfig
from ems.devices import diagnostics
from ems.devices.client import DeviceConnectError, ModbusClient
from ems.devices.poller import DevicePoller
from ems.sim.modbus_devices import DeviceServer, SimulatedDevice, serve_plant, simulated_devices
from ems.sim.plant_link import PlantLink
from modbus_common import POLL_S, PROFILES, START_S, eventually, run
from support import free_port


def device(name: str, role: str, profile: str, port: int, **kw) -> ModbusDeviceConfig:
    return ModbusDeviceConfig(name=name, role=role, profile=profile, host="127.0.0.1", port=port,
                              poll_interval_s=kw.pop("poll_interval_s", POLL_S), timeout_s=kw.pop("timeout_s", 0.5), **kw)


PLANT_DEVICES = [("bms", "bms", "hithium_ess_5016"), ("pcs", "pcs", "wstech_pcs"), ("meter", "meter", "eastron_sdm630"),
                 ("dso", "dso", "generic_dso_box")]


def test_polling_a_simulated_plant_over_tcp_puts_its_values_on_the_bus():
    async def main():
        clock = ScaledClock(START_S)
        link = PlantLink.from_config(BessConfig(), SimulatorConfig(initial_soc_pct=70.0), START_S)
        configs = [device(n, r, p, free_port()) for n, r, p in PLANT_DEVICES]
        bus = TelemetryBus()
        async with serve_plant(link, simulated_devices(configs, PROFILES), clock):
            link.plant.dso.set_state("limit", 60.0)
            sample = link.step(START_S + 1)
            pollers = [DevicePoller(c, PROFILES[c.profile], bus, clock) for c in configs]
            tasks = [asyncio.create_task(p.run()) for p in pollers]
            try:
                await eventually(lambda: all(p.online for p in pollers) and bus.snapshot().dso.mode is not None)
                return sample, bus.snapshot(), {p.name: p.status() for p in pollers}
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    sample, state, status = run(main())
    assert state.battery.soc_pct.value == round(sample.soc_pct) == 70
    assert state.battery.soc_pct.source == "modbus"
    assert state.battery.soc_pct.max_age_s == pytest.approx(3 * POLL_S)
    assert state.battery.status_text.value.startswith("ready")
    assert state.battery.alarms.value == ()
    assert state.grid.power_w.value == pytest.approx(sample.grid_power_w, abs=0.01)  # float32 on the wire
    assert state.bess.power_w.value == 0
    assert (state.dso.mode.value, state.dso.limit_pct.value) == ("limit", 60.0)
    for name, _, key in PLANT_DEVICES:
        # coalesced: one request per contiguous block, not one per register
        assert status[name]["requests_per_cycle"] == len(PROFILES[key].read_plan())
        assert status[name]["online"] and status[name]["last_error"] is None
    assert status["bms"]["requests_per_cycle"] < len(PROFILES["hithium_ess_5016"].registers)


def test_a_sunspec_device_is_discovered_and_polled_over_tcp():
    async def main():
        clock = ScaledClock(START_S)
        link = PlantLink.from_config(BessConfig(), SimulatorConfig(initial_soc_pct=42.0), START_S)
        bus = TelemetryBus()
        spec = SimulatedDevice("storage", PROFILES["sunspec"], tcp=("127.0.0.1", 0))
        async with serve_plant(link, [spec], clock) as servers:
            poller = DevicePoller(device("storage", "bms", "sunspec", servers["storage"].port), PROFILES["sunspec"],
                                  bus, clock)
            task = asyncio.create_task(poller.run())
            try:
                await eventually(lambda: poller.online)
                return bus.snapshot(), poller
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    state, poller = run(main())
    assert state.battery.soc_pct.value == pytest.approx(42.0, abs=0.05)
    assert state.battery.voltage_v.value > 0
    assert "m802_SoC" in poller.profile.registers and poller.requests_per_cycle == len(poller.profile.read_plan())


def test_connecting_to_a_port_where_nothing_listens_names_the_address():
    port = free_port()

    async def main():
        with pytest.raises(DeviceConnectError) as err:
            await ModbusClient(device("meter", "meter", "eastron_sdm630", port)).connect()
        return err.value

    err = run(main())
    assert f"tcp 127.0.0.1:{port} unit 1" in str(err) and err.device == "meter"


def test_a_missing_host_is_refused_before_any_io():
    cfg = ModbusDeviceConfig(name="meter", role="meter", profile="eastron_sdm630", host=None)
    with pytest.raises(DeviceConnectError, match="no host configured"):
        run(ModbusClient(cfg).connect())


def test_connection_test_reads_the_key_registers_with_values_and_latency():
    async def main():
        link = PlantLink.from_config(BessConfig(), SimulatorConfig(initial_soc_pct=55.0), START_S)
        async with DeviceServer(PROFILES["hithium_ess_5016"], link, tcp=("127.0.0.1", 0)) as dev:
            return await diagnostics.test_connection(device("bms", "bms", "hithium_ess_5016", dev.port),
                                                     PROFILES["hithium_ess_5016"])

    result = run(main())
    assert result["ok"] and not result["errors"]
    assert result["values"]["soc_pct"] == {"value": 55, "unit": "%", "point": "battery.soc_pct"}
    assert result["points"]["battery.soc_pct"] == 55
    assert result["status_text"].startswith("ready")
    assert result["latency_ms"]["min"] <= result["latency_ms"]["max"]
    assert result["requests"] >= 2  # input registers and the alarm discrete inputs
    assert "rtc_year" not in result["values"]  # only what shows the device works: points, status, alarms


def test_connection_test_reports_refusals_and_unreachable_devices_in_words():
    async def main():
        async with DeviceServer(PROFILES["generic_dso_box"], tcp=("127.0.0.1", 0)) as dev:
            dev.answer_exception(2)
            refused = await diagnostics.test_connection(device("dso", "dso", "generic_dso_box", dev.port),
                                                        PROFILES["generic_dso_box"])
        nobody = await diagnostics.test_connection(device("dso", "dso", "generic_dso_box", free_port()),
                                                   PROFILES["generic_dso_box"])
        return refused, nobody

    refused, nobody = run(main())
    assert not refused["ok"] and refused["errors"][0]["exception_code"] == 2
    assert "illegal data address" in refused["errors"][0]["error"] and refused["dso"] is None
    assert not nobody["ok"] and nobody["errors"][0]["stage"] == "connect"
    assert "nothing listening" in nobody["errors"][0]["error"]


def test_connection_test_lists_the_models_of_a_sunspec_device():
    async def main():
        async with DeviceServer(PROFILES["sunspec"], tcp=("127.0.0.1", 0)) as dev:
            return await diagnostics.test_connection(device("inv", "pcs", "sunspec", dev.port), PROFILES["sunspec"])

    result = run(main())
    assert result["ok"] and result["sunspec_models"] == [1, 103, 124, 802]
    assert result["points"]["battery.soc_pct"] == pytest.approx(50.0)

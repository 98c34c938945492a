"""The soak's in-process Modbus wire keeps the real client's contract: the same values, and for every
injected fault the same error a poller gets from pymodbus over TCP (its failure policy branches on them).
"""
from __future__ import annotations

import asyncio

import pytest

from ems.config.schema import ModbusDeviceConfig
from ems.devices.client import (DeviceConnectError, DeviceExceptionResponse, DeviceProtocolError, DeviceTimeout,
                                ModbusClient)
from ems.sim.loopback import LoopbackClient, LoopbackNetwork
from ems.sim.modbus_devices import DeviceServer
from ems.sim.plant_link import PlantLink
from ems.config.schema import BessConfig, SimulatorConfig
from modbus_common import PROFILES, START_S, run


def config(port: int) -> ModbusDeviceConfig:
    return ModbusDeviceConfig(name="bms", role="bms", profile="hithium_ess_5016", host="127.0.0.1", port=port,
                              timeout_s=0.3)


async def outcomes(server: DeviceServer, client) -> list:
    """Reads through each fault in turn; the type of what comes back (or is raised) per fault."""
    seen: list = []

    async def attempt() -> None:
        try:
            seen.append(await client.read(4, 2, 4))
        except Exception as exc:  # the type is what is compared
            seen.append(type(exc))
        if not client.connected:
            await client.connect()

    await attempt()
    for inject in (server.go_silent, lambda: server.answer_exception(6), server.answer_garbage, server.freeze):
        inject()
        await attempt()
        server.heal()
    await server.stop()
    await attempt_connect(client, seen)
    return seen


async def attempt_connect(client, seen: list) -> None:
    try:
        await client.read(4, 2, 4)
        seen.append("read")
    except Exception as exc:
        seen.append(type(exc))
    try:
        await client.connect()
        seen.append("connected")
    except Exception as exc:
        seen.append(type(exc))


def test_the_loopback_answers_and_fails_exactly_like_pymodbus_over_tcp():
    async def both():
        results = []
        for transport in ("tcp", "loopback"):
            link = PlantLink.from_config(BessConfig(), SimulatorConfig(initial_soc_pct=60.0), START_S)
            network = LoopbackNetwork() if transport == "loopback" else None
            server = DeviceServer(PROFILES["hithium_ess_5016"], link, tcp=("127.0.0.1", 0), loopback=network)
            await server.start()
            cfg = config(server.port or 0)
            client = LoopbackClient(cfg, network=network) if network is not None else ModbusClient(cfg)
            await client.connect()
            results.append(await outcomes(server, client))
            client.close()
        return results

    tcp, loopback = run(both())
    assert tcp == loopback, (tcp, loopback)
    first, silent, busy, garbage, frozen, after_stop, reconnect = loopback
    assert isinstance(first, list) and len(first) == 4 and first == frozen
    assert (silent, busy, garbage) == (DeviceTimeout, DeviceExceptionResponse, DeviceProtocolError)
    assert after_stop is DeviceConnectError and reconnect is DeviceConnectError


def test_a_silent_device_costs_the_clients_timeout_on_the_loops_clock():
    async def main():
        network = LoopbackNetwork()
        link = PlantLink.from_config(start_epoch_s=START_S)
        server = DeviceServer(PROFILES["generic_dso_box"], link, tcp=("127.0.0.1", 15024), loopback=network)
        await server.start()
        client = LoopbackClient(ModbusDeviceConfig(name="dso", role="dso", profile="generic_dso_box",
                                                   host="127.0.0.1", port=15024, timeout_s=0.2), network=network)
        await client.connect()
        server.go_silent()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DeviceTimeout, match="no answer within 0.2 s"):
            await client.read(2, 0, 5)
        return loop.time() - started

    assert run(main()) >= 0.2


def test_a_frozen_meter_keeps_answering_with_the_readings_of_its_freeze():
    async def main():
        network = LoopbackNetwork()
        link = PlantLink.from_config(start_epoch_s=START_S)
        server = DeviceServer(PROFILES["eastron_sdm630"], link, tcp=("127.0.0.1", 15023), loopback=network)
        await server.start()
        server.freeze()
        before = server.value("power_w")
        link.setpoint_w, link.remote_enabled = 3000.0, True
        link.step(START_S + 60)
        frozen = server.value("power_w")
        server.heal()
        return before, frozen, server.value("power_w"), link.sample().grid_power_w

    before, frozen, healed, grid = run(main())
    assert frozen == before and healed == pytest.approx(grid, abs=0.5) and healed != frozen

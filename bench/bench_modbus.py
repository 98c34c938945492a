"""Modbus polling: requests per cycle and poll-cycle time, coalesced reads against one request per register.

- requests per poll cycle for every shipped profile: the coalesced read plan vs the baseline of one request
  per readable register (the SunSpec profile as discovered on the simulator's default map);
- poll-cycle time (p50 over several cycles of `DevicePoller.poll_once`) against the device simulator:
  on TCP loopback for every profile, and for the largest profile (Hithium BMS) on a socat pty pair at
  9600 and 115200 baud in 8N1 (10 bits/char) and 8N2 (11 bits/char, the character time of 8E1/8O1,
  which a pty refuses). A pty has no baud rate, so the simulator delays each answer by its frames' wire
  time (`emulate_line_time`); each figure stands next to the wire-time floor computed from the frame
  sizes (3.5-character silences, 1.75 ms above 19200 baud) and the raw pty time with no emulation.
Baselines from the same run: the one-request-per-register plan, measured the same way.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ems.bus import TelemetryBus
from ems.clock import ScaledClock
from ems.config.schema import BessConfig, ModbusDeviceConfig, SimulatorConfig
from ems.devices import ReadBlock, load_library
from ems.devices.client import ModbusClient
from ems.devices.poller import DevicePoller, discover_profile
from ems.sim.modbus_devices import DeviceServer, SerialLine
from ems.sim.plant_link import PlantLink
from ems.sim.rtu_timing import char_bits, rtu_exchange_s

TCP_CYCLES = int(os.environ.get("BENCH_MODBUS_TCP_CYCLES", "30"))
RTU_CYCLES = int(os.environ.get("BENCH_MODBUS_RTU_CYCLES", "6"))
START_S = 1_719_828_000.0
RTU_PROFILE = "hithium_ess_5016"


def per_register(plan: list[ReadBlock]) -> list[ReadBlock]:
    """The baseline: one request per register (what a naive poller sends)."""
    return [ReadBlock(r.function, r.address, r.count, (r,)) for block in plan for r in block.registers]


def wire_floor_ms(plan: list[ReadBlock], baudrate: int, bits: int) -> float:
    return 1000.0 * sum(rtu_exchange_s(b.function, b.count, baudrate, bits) for b in plan)


async def cycle_ms(config: ModbusDeviceConfig, profile, cycles: int, baseline: bool) -> tuple[float, int, list]:
    """p50 cycle time, requests per cycle and the plan used, for `cycles` back-to-back poll cycles."""
    async with ModbusClient(config) as client:
        poller = DevicePoller(config, await discover_profile(client, profile), TelemetryBus(), ScaledClock(START_S))
        if baseline:
            poller.plan = per_register(poller.plan)
        await poller.poll_once(client)  # warm-up: connection, caches
        times = []
        for _ in range(cycles):
            t0 = time.perf_counter()
            complete = await poller.poll_once(client)
            times.append((time.perf_counter() - t0) * 1000.0)
            if not complete:
                raise RuntimeError(f"{profile.key}: a poll cycle failed: {poller.last_error}")
    return statistics.median(times), poller.requests_per_cycle, poller.plan


def tcp_config(key: str, port: int) -> ModbusDeviceConfig:
    return ModbusDeviceConfig(name="bench", role="bms", profile=key, host="127.0.0.1", port=port, timeout_s=5.0)


async def bench_tcp(profiles) -> dict[str, float]:
    out: dict[str, float] = {}
    link = PlantLink.from_config(BessConfig(), SimulatorConfig(), START_S)
    for key in sorted(profiles):
        async with DeviceServer(profiles[key], link, tcp=("127.0.0.1", 0)) as dev:
            cfg = tcp_config(key, dev.port)
            p50, requests, _ = await cycle_ms(cfg, profiles[key], TCP_CYCLES, baseline=False)
            base_p50, base_requests, _ = await cycle_ms(cfg, profiles[key], TCP_CYCLES, baseline=True)
        out[f"{key}_requests_per_cycle"] = requests
        out[f"{key}_requests_per_cycle_one_per_register"] = base_requests
        out[f"{key}_tcp_cycle_ms_p50"] = round(p50, 3)
        out[f"{key}_tcp_cycle_one_per_register_ms_p50"] = round(base_p50, 3)
    return out


async def bench_rtu(profile, ems_end: str, device_end: str) -> dict[str, float]:
    out: dict[str, float] = {}
    link = PlantLink.from_config(BessConfig(), SimulatorConfig(), START_S)
    plan = profile.read_plan()
    baseline_plan = per_register(plan)
    for baud in (9600, 115200):
        for parity, stopbits in (("N", 1), ("N", 2)):
            bits = char_bits(parity, stopbits)
            tag = f"rtu_{baud}_8{parity}{stopbits}"
            cfg = ModbusDeviceConfig(name="bench", role="bms", profile=profile.key, connection_type="rtu",
                                     serial_port=ems_end, baudrate=baud, parity=parity, stopbits=stopbits, timeout_s=5.0)
            line = SerialLine(device_end, baud, parity, stopbits)
            async with DeviceServer(profile, link, rtu=line, emulate_line_time=True):
                p50, _, _ = await cycle_ms(cfg, profile, RTU_CYCLES, baseline=False)
                base_p50, _, _ = await cycle_ms(cfg, profile, max(2, RTU_CYCLES // 3), baseline=True)
            out[f"{RTU_PROFILE}_{tag}_cycle_ms_p50"] = round(p50, 2)
            out[f"{RTU_PROFILE}_{tag}_wire_floor_ms"] = round(wire_floor_ms(plan, baud, bits), 2)
            out[f"{RTU_PROFILE}_{tag}_cycle_one_per_register_ms_p50"] = round(base_p50, 2)
            out[f"{RTU_PROFILE}_{tag}_one_per_register_wire_floor_ms"] = round(wire_floor_ms(baseline_plan, baud, bits), 2)
    cfg = ModbusDeviceConfig(name="bench", role="bms", profile=profile.key, connection_type="rtu",
                             serial_port=ems_end, baudrate=9600, timeout_s=5.0)
    async with DeviceServer(profile, link, rtu=SerialLine(device_end, 9600)):
        raw, _, _ = await cycle_ms(cfg, profile, TCP_CYCLES, baseline=False)
    out[f"{RTU_PROFILE}_pty_no_emulation_cycle_ms_p50"] = round(raw, 3)
    return out


def pty_pair(folder: Path) -> tuple[subprocess.Popen, str, str]:
    ems_end, device_end = folder / "ems", folder / "device"
    proc = subprocess.Popen(["socat", f"pty,raw,echo=0,link={ems_end}", f"pty,raw,echo=0,link={device_end}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5.0
    while not (ems_end.exists() and device_end.exists()):
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("socat did not create a pty pair")
        time.sleep(0.02)
    return proc, str(ems_end), str(device_end)


def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    profiles, errors = load_library(ROOT / "profiles")
    if errors:
        raise SystemExit(f"broken profiles: {sorted(errors)}")
    figures = asyncio.run(bench_tcp(profiles))
    if shutil.which("socat"):
        with tempfile.TemporaryDirectory() as tmp:
            proc, ems_end, device_end = pty_pair(Path(tmp))
            try:
                figures.update(asyncio.run(bench_rtu(profiles[RTU_PROFILE], ems_end, device_end)))
            finally:
                proc.terminate()
                proc.wait(timeout=5)
    else:
        print("socat not found: RTU figures skipped", file=sys.stderr)
    for name, value in figures.items():
        print(f"{name:<64} {value:>10}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

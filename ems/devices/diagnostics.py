"""`POST /api/modbus/test`: connect once, read a profile's key registers, report values, latency and errors.

The installer's question is "is this the right device, wired and addressed right?". So the test reads
only what identifies a working device - every register feeding a plant-state point, the status
register, the alarm registers, the DSO inputs - in coalesced reads, and reports each read's latency
and each failure in words (refused connection, no answer, garbled answer, Modbus exception N). It
never writes. It never raises for a device problem: the result says what went wrong.
"""
from __future__ import annotations

import re
import time
from typing import Any, Callable

from ..config.schema import ModbusDeviceConfig
from ..errors import DeviceError
from .client import DeviceExceptionResponse, ModbusClient, describe
from .codec import CodecError, active_alarms, decode_values, plan_reads, split_block, to_point
from .poller import discover_profile
from .profile import Profile, RegisterDef, dso_state

_MODEL_PREFIX = re.compile(r"m(\d+)_")


def key_registers(profile: Profile) -> list[RegisterDef]:
    """The registers that show a device works: points, status, alarms, DSO inputs (and their scale factors)."""
    names = {r.name for r in profile.registers.values() if r.point and r.readable}
    if profile.status_codes is not None:
        names.add(profile.status_codes.register)
    names.update(a.register for a in profile.alarms)
    if profile.dso is not None:
        names.update(i.register for i in profile.dso.trip)
        names.update(i.register for i in profile.dso.steps)
    regs = profile.registers
    names.update(sf for n in list(names) if (sf := regs[n].scale_register) is not None and sf in regs)
    return [regs[n] for n in sorted(names, key=lambda n: (regs[n].function, regs[n].address)) if regs[n].readable]


def _json_value(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


async def test_connection(config: ModbusDeviceConfig, profile: Profile, client: ModbusClient | None = None,
                          monotonic: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """{ok, device, profile, connection, connect_ms, requests, latency_ms {min, avg, max}, values, points,
    status_text, alarms, dso, errors}; `ok` is true when the device answered every key read.

    `client`: an open link to reuse (the running poller's `client`) - an RS485 port must not be opened
    twice while its poller talks on it. Without one the test opens and closes its own link.
    """
    result: dict[str, Any] = {"ok": False, "device": config.name, "profile": profile.key,
                              "connection": describe(config), "connect_ms": None, "requests": 0,
                              "latency_ms": None, "values": {}, "points": {}, "status_text": None,
                              "alarms": [], "dso": None, "errors": []}
    errors: list[dict[str, Any]] = result["errors"]
    owned = client is None
    if client is None:
        client = ModbusClient(config)
        t0 = monotonic()
        try:
            await client.connect()
        except DeviceError as exc:
            errors.append({"stage": "connect", "error": exc.message})
            return result
        result["connect_ms"] = round((monotonic() - t0) * 1000.0, 1)
    requests_before = client.requests
    try:
        try:
            profile = await discover_profile(client, profile)
        except DeviceError as exc:
            errors.append({"stage": "discover", "error": exc.message})
            return result
        if profile.sunspec is not None:
            result["sunspec_models"] = sorted({int(m.group(1)) for m in map(_MODEL_PREFIX.match, profile.registers) if m})
        regs = key_registers(profile)
        c = profile.connection
        blocks = plan_reads(regs, max_count=c.max_read_registers, max_gap=0, max_bits=c.max_read_bits)
        latencies: list[float] = []
        words: dict[str, list[int]] = {}
        for block in blocks:
            what = f"fc{block.function} {block.address}+{block.count}"
            started = monotonic()
            try:
                words.update(split_block(block, await client.read(block.function, block.address, block.count)))
                latencies.append((monotonic() - started) * 1000.0)
            except DeviceExceptionResponse as exc:
                latencies.append((monotonic() - started) * 1000.0)
                errors.append({"stage": "read", "read": what, "registers": [r.name for r in block.registers],
                               "error": exc.message, "exception_code": exc.code})
            except DeviceError as exc:
                errors.append({"stage": "read", "read": what, "registers": [r.name for r in block.registers],
                               "error": exc.message})
                break  # the link is gone or garbled: further reads would only repeat it
        result["requests"] = client.requests - requests_before
        if latencies:
            result["latency_ms"] = {"min": round(min(latencies), 2), "avg": round(sum(latencies) / len(latencies), 2),
                                    "max": round(max(latencies), 2)}
        try:
            values = decode_values(profile.registers, words)
        except CodecError as exc:
            errors.append({"stage": "decode", "error": str(exc)})
            values = {}
        result["values"] = {name: {"value": _json_value(v), "unit": profile.registers[name].unit,
                                   "point": profile.registers[name].point} for name, v in values.items()}
        points: dict[str, Any] = {}
        for point, feeding in profile.point_registers().items():
            raw = [values.get(r.name) for r in feeding]
            points[point] = None if any(v is None for v in raw) else sum(to_point(r, v) for r, v in zip(feeding, raw))
        result["points"] = points
        if profile.status_codes is not None:
            result["status_text"] = profile.status_codes.text(values.get(profile.status_codes.register))
        result["alarms"] = [{"name": a.name, "severity": a.severity, "text": a.text}
                            for a in active_alarms(profile.alarms, values)]
        if profile.dso is not None:
            state = dso_state(profile.dso, values)
            result["dso"] = None if state is None else {"mode": state[0], "limit_pct": state[1]}
        result["ok"] = not errors and bool(blocks)
        if not blocks:
            errors.append({"stage": "read", "error": f"profile {profile.key} has no key register to read"})
        return result
    finally:
        if owned:
            client.close()


test_connection.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, whatever its name

"""An in-process Modbus "wire" between the EMS's device pollers and the simulated devices.

Why: a month of plant time through pymodbus and TCP sockets is tens of millions of requests, hours of
CPU; the grid-safety soak (`ems.soak`) needs it in minutes. The loopback keeps everything that decides
safety - the pollers, the register codec, the PCS sink and its read-back, the device servers' register
images, write checks and fault injection - and replaces only pymodbus's framing and the socket.

`LoopbackClient` keeps `ems.devices.client.ModbusClient`'s contract exactly (same constructor, same
methods, the same `DeviceError` subclass for each failure), so `DevicePoller(client_factory=...)` and the
sink cannot tell the difference:

| the device                         | ModbusClient over TCP                  | LoopbackClient                  |
|------------------------------------|----------------------------------------|---------------------------------|
| not listening (stopped, restarting)| DeviceConnectError at connect, at once | the same                        |
| stopped while connected            | DeviceConnectError on the next request | the same                        |
| silent                             | DeviceTimeout after `timeout_s`        | the same, on the loop's clock   |
| garbage                            | DeviceProtocolError after `timeout_s`  | the same                        |
| Modbus exception N                 | DeviceExceptionResponse(code N), at once | the same                      |

(`tests/test_soak_loopback.py` checks the table against the real client.) An answered request takes
`latency_s` on the loop's clock (a LAN round trip), so other tasks interleave as they would while a
real request is on the wire; with 0 it is answered at once, without even a yield: the cheapest, for a
month of plant time (a LAN's 1-5 ms are well inside every reaction-time margin the soak checks).
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable, Sequence

from pymodbus.constants import ExcCodes

from ..config.schema import ModbusDeviceConfig
from ..devices.client import (READ_FUNCTIONS, DeviceConnectError, DeviceExceptionResponse,
                              DeviceProtocolError, DeviceTimeout, DeviceWriteError, checked_write, describe,
                              exception_text)

if TYPE_CHECKING:
    from .modbus_devices import DeviceServer

log = logging.getLogger(__name__)

SILENT = "silent"
GARBAGE = "garbage"

Address = tuple[str, int]


class LoopbackNetwork:
    """Which simulated device answers at which (host, port): the in-process stand-in for 127.0.0.1."""

    def __init__(self, latency_s: float = 0.0):
        self.latency_s = float(latency_s)
        self._servers: dict[Address, "DeviceServer"] = {}
        self._next_port = 40000
        self.connects = 0

    def listen(self, server: "DeviceServer", host: str, port: int) -> int:
        """Register `server` at (host, port); port 0 takes a free pseudo port. Returns the port."""
        if port == 0:
            while (host, self._next_port) in self._servers:
                self._next_port += 1
            port = self._next_port
        if (host, port) in self._servers and self._servers[(host, port)] is not server:
            raise OSError(f"loopback {host}:{port} is in use")
        self._servers[(host, port)] = server
        return port

    def close(self, host: str, port: int) -> None:
        self._servers.pop((host, port), None)

    def server_at(self, host: str, port: int) -> "DeviceServer | None":
        return self._servers.get((host, port))

    def client_factory(self) -> Callable[[ModbusDeviceConfig], "LoopbackClient"]:
        """For `DevicePoller(client_factory=...)`: every (re)connect opens a new loopback link."""
        return lambda config: LoopbackClient(config, network=self)


class LoopbackClient:
    """`ModbusClient`'s contract over a `LoopbackNetwork` (see the module docstring's table)."""

    def __init__(self, config: ModbusDeviceConfig, timeout_s: float | None = None, *,
                 network: LoopbackNetwork):
        self.config = config
        self.name = config.name
        self.timeout_s = float(timeout_s if timeout_s is not None else config.timeout_s)
        self.requests = 0
        self._network = network
        self._server: "DeviceServer | None" = None
        self._session = -1

    async def connect(self) -> None:
        c = self.config
        if c.connection_type != "tcp" or not c.host:
            raise DeviceConnectError(self.name, f"the loopback serves tcp devices only ({describe(c)})")
        self.close()
        await asyncio.sleep(0)
        server = self._network.server_at(c.host, c.port)
        if server is None or not server.listening:
            raise DeviceConnectError(self.name, f"cannot connect to {describe(c)} within {self.timeout_s:g} s "
                                                f"(refused, unreachable or nothing listening)")
        self._server, self._session = server, server.session
        self._network.connects += 1

    def close(self) -> None:
        self._server = None

    @property
    def connected(self) -> bool:
        server = self._server
        return server is not None and server.listening and server.session == self._session

    async def __aenter__(self) -> "LoopbackClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def _exchange(self, function: int, address: int, count: int, values: Sequence[int] | None) -> list[int]:
        if not self.connected:
            lost = self._server is not None
            self._server = None
            if lost:
                raise DeviceConnectError(self.name, f"connection lost ({describe(self.config)}) during "
                                                    f"{_what(function, address, count, values)}")
            raise DeviceConnectError(self.name, f"not connected ({describe(self.config)}): "
                                                f"{_what(function, address, count, values)} not sent")
        server = self._server
        assert server is not None, "connected implies a server"
        self.requests += 1
        answer: Any = server.loopback_request(function, address, count, values)
        if answer == SILENT or answer == GARBAGE:
            await asyncio.sleep(self.timeout_s)
            what = _what(function, address, count, values)
            if not self.connected:
                self._server = None
                raise DeviceConnectError(self.name, f"connection lost ({describe(self.config)}) during {what}")
            if answer == SILENT:
                raise DeviceTimeout(self.name, f"{what}: no answer within {self.timeout_s:g} s")
            raise DeviceProtocolError(self.name, f"{what}: the answer (12 bytes, starting de ad be ef) "
                                                 "is no valid Modbus frame")
        if self._network.latency_s > 0:
            await asyncio.sleep(self._network.latency_s)
        if isinstance(answer, ExcCodes):
            code = int(answer)
            raise DeviceExceptionResponse(self.name, f"{_what(function, address, count, values)}: "
                                                     f"{exception_text(code)}", code)
        return [] if answer is None else answer

    async def read(self, function: int, address: int, count: int) -> list[int]:
        if function not in READ_FUNCTIONS:
            raise DeviceWriteError(self.name, f"function {function} is not a read (allowed: 1, 2, 3, 4)")
        return await self._exchange(function, address, count, None)

    async def write(self, function: int, address: int, words: Sequence[int]) -> None:
        words = checked_write(self.name, function, words)
        await self._exchange(function, address, len(words), words)


def _what(function: int, address: int, count: int, values: Sequence[int] | None) -> str:
    """The request as ModbusClient names it in its errors (built only when there is an error)."""
    return f"{'read' if values is None else 'write'} fc{function} {address}+{count}"

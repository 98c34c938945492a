"""The Modbus transport of one device: a pymodbus asyncio client (TCP or RTU) opened from its config.

Thin on purpose: it reads and writes raw blocks (function, address, words) with a timeout and turns every
pymodbus failure into one `DeviceError` subclass a user can act on. What the words mean is the codec's
business (`ems.devices.codec`), when to poll is the poller's.

Contract:
- pymodbus runs with `retries=0` and no automatic reconnect: the poller owns retry and backoff.
- A request either returns exactly what was asked (`count` words or bits) or raises:
  `DeviceConnectError` (cannot open or lost the link), `DeviceTimeout` (no answer), `DeviceProtocolError`
  (bytes came back that are no valid frame, or a frame that does not answer the request),
  `DeviceExceptionResponse` (the device refused with a Modbus exception code). After one of the first
  three (`TRANSPORT_ERRORS`) the link can no longer be trusted (a late RTU answer could be taken for the next
  request's), so the poller closes it and reconnects.
- Written for pymodbus 3.16 (`pymodbus>=3.16,<4`): the 4.x API changes the client keywords.
- pymodbus waits for answers with `asyncio.wait_for`, which on Python 3.11 can swallow a cancellation
  that arrives just as the answer does; `cancel_requested()` lets a loop notice and stop anyway.
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Callable, Sequence, TypedDict

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from ..config.schema import ModbusDeviceConfig
from ..errors import DeviceError

log = logging.getLogger(__name__)

READ_FUNCTIONS = (1, 2, 3, 4)
WRITE_FUNCTIONS = (5, 6, 15, 16)
EXCEPTION_TEXTS = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "server device failure",
    5: "acknowledge", 6: "server device busy", 7: "negative acknowledge", 8: "memory parity error",
    10: "gateway path unavailable", 11: "gateway target device failed to respond",
}
# pymodbus enforces its own response timeout; this margin only guards against a request that never returns.
_GUARD_MARGIN_S = 1.0



def checked_write(device: str, function: int, words: Sequence[int]) -> list[int]:
    """The words of a write, refused before anything is sent if the function is no write or function 5/6
    (one coil, one register) is asked to write more than one value. Shared by every transport."""
    values = [int(w) for w in words]
    if function not in WRITE_FUNCTIONS:
        raise DeviceWriteError(device, f"function {function} is not a write (allowed: 5, 6, 15, 16)")
    if function in (5, 6) and len(values) != 1:
        raise DeviceWriteError(device, f"function {function} writes one value, got {len(values)}")
    return values

class DeviceConnectError(DeviceError):
    """The link cannot be opened or was lost (refused, unreachable, serial port missing or refusing its settings)."""


class DeviceTimeout(DeviceError):
    """The device did not answer within the timeout (silent, wrong unit id, wrong baud rate, cable)."""


class DeviceProtocolError(DeviceError):
    """Bytes came back that are no valid Modbus frame, or a frame that does not answer the request."""


class DeviceExceptionResponse(DeviceError):
    """The device answered with a Modbus exception code: it is reachable but refuses this request."""

    def __init__(self, device: str, message: str, code: int, register: str | None = None):
        self.code = code
        super().__init__(device, message, register)


class DeviceWriteError(DeviceError):
    """A write that must not be sent: unknown target, read-only register, value the register cannot hold."""


class DeviceVerifyError(DeviceError):
    """A write the device accepted but whose read-back differs from what was written."""


TRANSPORT_ERRORS = (DeviceConnectError, DeviceTimeout, DeviceProtocolError)


def cancel_requested() -> bool:
    """True when the current task was asked to stop, even if a library swallowed the CancelledError."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def describe(config: ModbusDeviceConfig) -> str:
    """`tcp 127.0.0.1:502 unit 1` / `rtu /dev/ttyUSB0 9600 8N1 unit 1`, for status lines and errors."""
    if config.connection_type == "rtu":
        return (f"rtu {config.serial_port} {config.baudrate} 8{config.parity}{config.stopbits} "
                f"unit {config.unit_id}")
    return f"tcp {config.host}:{config.port} unit {config.unit_id}"


def exception_text(code: int) -> str:
    return f"Modbus exception {code} ({EXCEPTION_TEXTS.get(code, 'unknown code')})"


class _ClientOptions(TypedDict):
    """The pymodbus client keywords both link types share."""

    timeout: float
    retries: int
    reconnect_delay: float
    trace_packet: Callable[[bool, bytes], bytes]
    name: str


class ModbusClient:
    """One open Modbus link; use as `async with ModbusClient(config) as client:`.

    `requests` counts the requests sent (for requests/cycle). Not shared between devices; pymodbus
    serialises concurrent requests on one client, so the poller and a setpoint write may share it.
    """

    def __init__(self, config: ModbusDeviceConfig, timeout_s: float | None = None):
        self.config = config
        self.name = config.name
        self.timeout_s = float(timeout_s if timeout_s is not None else config.timeout_s)
        self.requests = 0
        self._rx_bytes = 0
        self._rx_head = b""
        self._client: Any = None

    # --- lifetime ------------------------------------------------------------------------------------

    def _make_client(self) -> Any:
        c = self.config
        common = _ClientOptions(timeout=self.timeout_s, retries=0, reconnect_delay=0, trace_packet=self._trace,
                                name=f"ems-{c.name}")
        if c.connection_type == "rtu":
            return AsyncModbusSerialClient(c.serial_port or "", baudrate=c.baudrate, bytesize=8, parity=c.parity,
                                           stopbits=c.stopbits, **common)
        return AsyncModbusTcpClient(c.host or "", port=c.port, **common)

    async def connect(self) -> None:
        """Open the link or raise DeviceConnectError saying what was tried."""
        c = self.config
        where = describe(c)
        if c.connection_type == "rtu":
            if not c.serial_port:
                raise DeviceConnectError(self.name, "no serial_port configured for connection_type rtu")
            if not os.path.exists(c.serial_port):  # noqa: ASYNC240 - one stat of a /dev node, no I/O wait
                raise DeviceConnectError(self.name, f"serial port {c.serial_port} does not exist")
        elif not c.host:
            raise DeviceConnectError(self.name, "no host configured for connection_type tcp")
        self.close()
        self._client = self._make_client()
        try:
            async with asyncio.timeout(self.timeout_s + _GUARD_MARGIN_S):
                ok = await self._client.connect()
        except asyncio.TimeoutError:
            ok = False
        except Exception as exc:  # pyserial/termios errors are not OSError; none of them may escape raw
            self.close()
            hint = ""
            if c.connection_type == "rtu" and "Invalid argument" in str(exc):
                hint = f" (the port refuses {c.baudrate} 8{c.parity}{c.stopbits}; a pty accepts parity N only)"
            raise DeviceConnectError(self.name, f"cannot open {where}: {exc}{hint}") from None
        if not ok:
            self.close()
            if c.connection_type == "rtu":
                raise DeviceConnectError(self.name, f"cannot open {where} (in use, or no permission?)")
            raise DeviceConnectError(self.name, f"cannot connect to {where} within {self.timeout_s:g} s "
                                                f"(refused, unreachable or nothing listening)")
        log.debug("%s: connected (%s)", self.name, where)

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # closing a half-open transport must never mask the error that led here
                log.debug("%s: error while closing", self.name, exc_info=True)
            self._client = None

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    async def __aenter__(self) -> "ModbusClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # --- requests ------------------------------------------------------------------------------------

    def _trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus hands every received byte stream here: it tells a garbled answer from no answer."""
        if not sending:
            self._rx_bytes = max(self._rx_bytes, len(data))
            if not self._rx_head:
                self._rx_head = bytes(data[:12])
        return data

    async def _execute(self, what: str, call: Any) -> Any:
        if not self.connected:
            raise DeviceConnectError(self.name, f"not connected ({describe(self.config)}): {what} not sent")
        self._rx_bytes, self._rx_head = 0, b""
        self.requests += 1
        try:
            async with asyncio.timeout(self.timeout_s + _GUARD_MARGIN_S):
                response = await call()
        except ConnectionException:
            raise DeviceConnectError(self.name, f"connection lost ({describe(self.config)}) during {what}") from None
        except (ModbusIOException, asyncio.TimeoutError):
            raise self._no_answer(what) from None
        except ModbusException as exc:
            raise DeviceProtocolError(self.name, f"{what}: {exc}") from None
        except OSError as exc:
            raise DeviceConnectError(self.name, f"{what}: {exc}") from None
        if response is None:
            raise self._no_answer(what)
        if response.isError():
            code = int(getattr(response, "exception_code", 0) or 0)
            raise DeviceExceptionResponse(self.name, f"{what}: {exception_text(code)}", code)
        return response

    def _no_answer(self, what: str) -> DeviceError:
        if not self.connected:
            return DeviceConnectError(self.name, f"connection lost ({describe(self.config)}) during {what}")
        if self._rx_bytes:
            return DeviceProtocolError(self.name, f"{what}: the answer ({self._rx_bytes} bytes, starting "
                                                  f"{self._rx_head.hex(' ')}) is no valid Modbus frame")
        return DeviceTimeout(self.name, f"{what}: no answer within {self.timeout_s:g} s")

    async def read(self, function: int, address: int, count: int) -> list[int]:
        """`count` words (function 3/4) or bits as 0/1 (function 1/2) from `address`."""
        if function not in READ_FUNCTIONS:
            raise DeviceWriteError(self.name, f"function {function} is not a read (allowed: 1, 2, 3, 4)")
        what = f"read fc{function} {address}+{count}"
        unit = self.config.unit_id
        c = self._client
        calls = {1: lambda: c.read_coils(address, count=count, device_id=unit),
                 2: lambda: c.read_discrete_inputs(address, count=count, device_id=unit),
                 3: lambda: c.read_holding_registers(address, count=count, device_id=unit),
                 4: lambda: c.read_input_registers(address, count=count, device_id=unit)}
        response = await self._execute(what, calls[function])
        if response.function_code != function:
            raise DeviceProtocolError(self.name, f"{what}: answered with function {response.function_code}")
        if function in (1, 2):
            bits = list(response.bits or [])
            if len(bits) < count:
                raise DeviceProtocolError(self.name, f"{what}: answered {len(bits)} bits")
            return [1 if b else 0 for b in bits[:count]]
        words = list(response.registers or [])
        if len(words) != count:
            raise DeviceProtocolError(self.name, f"{what}: answered {len(words)} registers")
        return words

    async def write(self, function: int, address: int, words: Sequence[int]) -> None:
        """Write `words` (registers, or bits 0/1 for coils) from `address` with function 5, 6, 15 or 16."""
        words = checked_write(self.name, function, words)
        what = f"write fc{function} {address}+{len(words)}"
        unit = self.config.unit_id
        c = self._client
        calls = {5: lambda: c.write_coil(address, bool(words[0]), device_id=unit),
                 6: lambda: c.write_register(address, words[0], device_id=unit),
                 15: lambda: c.write_coils(address, [bool(w) for w in words], device_id=unit),
                 16: lambda: c.write_registers(address, words, device_id=unit)}
        response = await self._execute(what, calls[function])
        if response.function_code != function:
            raise DeviceProtocolError(self.name, f"{what}: answered with function {response.function_code}")

"""One supervised task per Modbus device: connect, poll, decode, publish; reconnect when the link fails.

Each cycle sends the profile's coalesced reads (`Profile.read_plan`), decodes them with the codec and
publishes every plant-state point the profile feeds to the bus with source "modbus" and a freshness of
three poll intervals. A BMS also publishes its status text and active alarm texts; a DSO box its
(mode, limit %) through the profile's `dso` mapping.

Failure policy (a missing value must read as unknown, never as "fine"):
- a block answered with a Modbus exception: its registers are unknown this cycle, the rest is published,
  the device is "degraded" and `status()` says which read failed and why;
- no answer, a garbled answer, a lost link: every point of the device is published as unknown (None) at
  once — the safety loop reacts within its next cycle, not only when the values go stale — the link is
  closed and reopened with exponential backoff and jitter;
- nothing a device sends can crash the task; other devices have their own task and link.
On every (re)connect a BMS with `rtc` registers gets its clock set to UTC; a SunSpec device has its
model map discovered again. `write()` (the safety loop's sink only) encodes a control or register
value and reads it back. `on_change` is called when a published value or the online state changes,
so the DSO poller can wake the safety loop at once.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from .. import i18n
from ..backoff import Backoff
from ..bus import TelemetryBus
from ..clock import Clock
from ..config.schema import ModbusDeviceConfig
from ..errors import DeviceError
from ..state import Measurement
from . import sunspec
from .client import (DeviceConnectError, DeviceExceptionResponse, DeviceVerifyError, DeviceWriteError,
                     ModbusClient, cancel_requested, describe)
from .codec import CodecError, active_alarms, decode_values, encode, from_point, split_block, to_point
from .profile import AlarmDef, Profile, RegisterDef, dso_state, plant_points

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
FRESH_POLLS = 3.0  # a value stays fresh for three poll intervals
CONTROL_NAMES = ("remote_enable", "active_power_set_w", "grid_power_set_w", "active_power_limit_pct", "heartbeat")


RECONNECT_JITTER = 0.5
"""Reconnect delays are scaled into [50 %, 100 %] so devices that failed together do not retry in lockstep."""


MUST_MOVE_POINTS = frozenset({"grid.power_w"})
"""Readings a live device never repeats to the bit for long: the grid power (float W on the SDM630, a
site's load always moves it). A repeat beyond the stale timeout means the measurement hung (see
`DevicePoller._moving_since`)."""
MUST_MOVE_MIN_S = 10.0  # ... and not before it has stood still this long (the default stale timeout)


NEVER_ONLINE_TELL_AFTER = 3  # failed attempts before a device never seen online is reported

class _NeedRead(Exception):
    def __init__(self, address: int, count: int):
        self.address, self.count = address, count


async def discover_profile(client: ModbusClient, profile: Profile) -> Profile:
    """The profile to poll: a SunSpec marker profile becomes the device's discovered map; others unchanged.

    `sunspec.discover` walks the map through a synchronous read; each walk that needs a register not yet
    read stops, the read is sent, and the walk restarts from the cache (a map has a handful of models).
    """
    if profile.sunspec is None or profile.registers:
        return profile
    cache: dict[tuple[int, int], list[int] | None] = {}

    def read(address: int, count: int) -> list[int] | None:
        if (address, count) not in cache:
            raise _NeedRead(address, count)
        return cache[(address, count)]

    for _ in range(4096):
        try:
            locations = sunspec.discover(read, profile.sunspec.base_addresses)
            break
        except _NeedRead as need:
            try:
                cache[(need.address, need.count)] = await client.read(3, need.address, need.count)
            except DeviceExceptionResponse:
                cache[(need.address, need.count)] = None  # the address does not exist on this device
        except sunspec.SunSpecError as exc:
            raise DeviceError(client.name, f"SunSpec discovery failed: {exc}") from None
    else:  # pragma: no cover - discover() itself caps the walk
        raise DeviceError(client.name, "SunSpec discovery did not finish")
    try:
        found = sunspec.discovered_profile(profile, locations)
    except sunspec.SunSpecError as exc:
        raise DeviceError(client.name, f"SunSpec map cannot be laid out: {exc}") from None
    log.info("%s: SunSpec models %s", client.name, ", ".join(str(loc.model_id) for loc in locations))
    return found


class DevicePoller:
    """Polls one device forever (`run`), publishes to the bus, and writes for the safety loop (`write`)."""

    def __init__(self, config: ModbusDeviceConfig, profile: Profile, bus: TelemetryBus, clock: Clock, *,
                 on_change: Callable[[], None] | None = None, notify: Callable[..., object] | None = None,
                 backoff_min_s: float = BACKOFF_MIN_S,
                 backoff_max_s: float = BACKOFF_MAX_S, jitter: Callable[[], float] = random.random,
                 client_factory: Callable[[ModbusDeviceConfig], ModbusClient] = ModbusClient):
        self.config = config
        self.name = config.name
        self.marker_profile = profile
        self.profile = profile
        self.bus = bus
        self.clock = clock
        self.on_change = on_change
        self.notify = notify  # `Notifications.add`: the device lost, answering with errors, back
        self._told: str | None = None  # the problem last told ("offline", "degraded"), None once it is back
        self._ever_online = False
        self._failures = 0  # attempts in a row that failed: a device never seen is told after a few
        self._unchanged: dict[str, tuple[Any, float]] = {}  # must-move point -> (value, first read with it)
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self._jitter = jitter
        self._client_factory = client_factory
        self._client: ModbusClient | None = None
        online_point = f"devices.{config.role}_online"
        self._online_point = online_point if online_point in plant_points() else None
        # what `status()` shows
        self.state = "starting"  # starting | connecting | online | degraded | offline
        self.online = False
        self.values: dict[str, Any] = {}
        self.points: dict[str, Any] = {}
        self.alarms: list[AlarmDef] = []
        self.status_text: str | None = None
        self.last_ok_ts: float | None = None
        self.last_error: str | None = None
        self.last_error_ts: float | None = None
        self.requests_per_cycle = 0
        self.cycle_ms: float | None = None
        self.cycles = 0
        self.failed_cycles = 0
        self.connects = 0
        self.next_retry_s: float | None = None
        self.rtc_synced_ts: float | None = None
        self._published: dict[str, Any] = {}
        self._set_profile(profile)

    def _set_profile(self, profile: Profile) -> None:
        self.profile = profile
        self.plan = profile.read_plan()
        self._point_regs = profile.point_registers()
        status = profile.status_codes
        self._status_point = (status is not None and profile.registers[status.register].point == "battery.status_code")
        self._publish_alarms = self.config.role == "bms" or profile.meta.kind == "bms"

    @property
    def client(self) -> ModbusClient | None:
        """The open link while connected (a connection test on a busy RS485 line must share it)."""
        return self._client if self._client is not None and self._client.connected else None

    @property
    def connection_id(self) -> int:
        """Increments on every successful connect: a writer re-sends its enable after a reconnect."""
        return self.connects

    # --- the task ------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, poll at the device's interval, reconnect with backoff; runs until cancelled."""
        backoff = Backoff(self.backoff_min_s, self.backoff_max_s, jitter=RECONNECT_JITTER, random=self._jitter)
        try:
            while True:
                self.state = "connecting"
                client = self._client_factory(self.config)
                try:
                    await client.connect()
                    self._set_profile(await discover_profile(client, self.marker_profile))
                    self._client = client
                    self.connects += 1
                    self.next_retry_s = None
                    log.info("%s: connected (%s)", self.name, describe(self.config))
                    await self._sync_rtc(client)
                    while True:
                        started = self.clock.monotonic()
                        if await self.poll_once(client):
                            backoff.reset()
                        if cancel_requested():
                            raise asyncio.CancelledError
                        elapsed = self.clock.monotonic() - started
                        await asyncio.sleep(max(0.0, self.config.poll_interval_s - elapsed))
                except DeviceError as exc:
                    self._offline(exc)
                except Exception as exc:  # a bug or a frame nothing expected: this device only, never the EMS
                    log.exception("%s: unexpected error", self.name)
                    self._offline(DeviceError(self.name, f"unexpected {type(exc).__name__}: {exc}"))
                finally:
                    self._client = None
                    client.close()
                if cancel_requested():
                    raise asyncio.CancelledError
                delay = backoff.next_delay()
                self.next_retry_s = delay
                await asyncio.sleep(delay)
        finally:
            self._client = None
            self.online = False
            self.state = "offline"

    async def poll_once(self, client: ModbusClient) -> bool:
        """One cycle: read every block, decode, publish. True when every block was read.

        Exception responses only cost their block; transport errors propagate (the link is reopened).
        """
        started = self.clock.monotonic()
        words: dict[str, list[int]] = {}
        errors: list[str] = []
        requests = 0
        for block in self.plan:
            requests += 1
            try:
                words.update(split_block(block, await client.read(block.function, block.address, block.count)))
            except DeviceExceptionResponse as exc:
                errors.append(f"{exc.message} [{', '.join(r.name for r in block.registers[:3])}"
                              f"{', ...' if len(block.registers) > 3 else ''}]")
            except CodecError as exc:
                errors.append(f"read fc{block.function} {block.address}+{block.count}: {exc}")
        values = self._decode(words, errors)
        self.requests_per_cycle = requests
        self.cycle_ms = round((self.clock.monotonic() - started) * 1000.0, 3)
        self.cycles += 1
        now = self.clock.now()
        complete = not errors
        if complete:
            self.last_ok_ts = now
            self._set_state("online", True)
        else:
            self.failed_cycles += 1
            self._error("; ".join(errors), now)
            self._set_state("degraded", False)
        self.values = values
        self._publish(values, now)
        return complete

    def _decode(self, words: Mapping[str, list[int]], errors: list[str]) -> dict[str, Any]:
        regs = self.profile.registers
        try:
            return decode_values(regs, words)
        except CodecError:
            pass
        values: dict[str, Any] = {}  # decode register by register so one bad value costs only itself
        for name, w in words.items():
            try:
                values.update(decode_values(regs, {name: w, **self._scale_words(name, words)}))
            except CodecError as exc:
                errors.append(str(exc))
        return values

    def _scale_words(self, name: str, words: Mapping[str, list[int]]) -> dict[str, list[int]]:
        sf = self.profile.registers[name].scale_register
        return {sf: words[sf]} if sf is not None and sf in words else {}

    # --- state and publishing ------------------------------------------------------------------------

    def _max_age_s(self) -> float:
        return FRESH_POLLS * self.config.poll_interval_s * getattr(self.clock, "speed", 1.0)

    def _point_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for point, regs in self._point_regs.items():
            raw = [values.get(r.name) for r in regs]
            if any(v is None for v in raw):
                out[point] = None
            elif len(regs) == 1:
                out[point] = to_point(regs[0], raw[0])
            else:
                out[point] = sum(to_point(r, v) for r, v in zip(regs, raw))
        p = self.profile
        if p.status_codes is not None:
            code = values.get(p.status_codes.register)
            self.status_text = p.status_codes.text(code)
            if self._status_point:
                out["battery.status_text"] = self.status_text
        alarm_registers = {a.register for a in p.alarms}
        self.alarms = active_alarms(p.alarms, values)
        if self._publish_alarms and alarm_registers:
            known = all(values.get(r) is not None for r in alarm_registers)
            # With their severities: the safety rules stop the battery on the profile's critical alarms.
            out["battery.alarms"] = tuple({"name": a.name, "severity": a.severity, "text": a.text}
                                          for a in self.alarms) if known else None
        if p.dso is not None:
            state = dso_state(p.dso, values)
            out["dso.mode"], out["dso.limit_pct"] = state if state is not None else (None, None)
        return out

    def _publish(self, values: Mapping[str, Any], now: float) -> None:
        points = self._point_values(values)
        if self._online_point:
            points[self._online_point] = self.online
        self.points = points
        self._send(points, now)

    def _send(self, points: Mapping[str, Any], now: float) -> None:
        if not points:
            return
        max_age_s = self._max_age_s()
        measured = {}
        for point, value in points.items():
            since = self._moving_since(point, value, now)
            # A reading that stands still gets the stale timeout's default before it counts as hung, however
            # fast the device is polled (a cut-off meter may read 0.0 W for a few seconds).
            age_s = max_age_s if since == now else max(max_age_s, MUST_MOVE_MIN_S * getattr(self.clock, "speed", 1.0))
            measured[point] = Measurement(value, since, "modbus", age_s)
        self.bus.publish(measured)
        changed = points != self._published
        self._published = dict(points)
        if changed and self.on_change is not None:
            try:
                self.on_change()
            except Exception:  # a subscriber's bug must not stop the polling
                log.exception("%s: on_change callback failed", self.name)

    def _moving_since(self, point: str, value: Any, now: float) -> float:
        """The time a reading counts from: now, except for a reading that should never stand still
        (`MUST_MOVE_POINTS`) and has not changed by a single bit since an earlier poll - then the time it was
        first read with that value. A meter whose measurement hung behind a Modbus stack that still answers
        (or a gateway serving its cache) thus goes stale after the stale timeout like a silent one, and the
        safety loop holds the battery at 0 W instead of balancing against a grid power that is no longer
        measured. The first changed reading is fresh at once."""
        if point not in MUST_MOVE_POINTS:
            return now
        last = self._unchanged.get(point)
        if value is None or last is None or last[0] != value or type(last[0]) is not type(value):
            self._unchanged[point] = (value, now)
            return now
        return last[1]

    def _set_state(self, state: str, online: bool) -> None:
        if online != self.online:
            log.info("%s: %s", self.name, "online" if online else f"{state}: {self.last_error}")
        self._tell(state, online)
        self.state = state
        self.online = online

    def _tell(self, state: str, online: bool) -> None:
        """A notification when the device is lost, answers with errors (Modbus exceptions) or is back."""
        self._failures = 0 if online else self._failures + 1
        if online:
            self._ever_online = True
        elif not self._ever_online and self._failures < NEVER_ONLINE_TELL_AFTER:
            return  # starting up: the device may just not be listening yet
        if self.notify is None or (not online and state == self._told):
            return
        try:
            if online and self._told is not None:
                self.notify("info", "modbus", i18n.mark("the device {device} answers again"), device=self.name)
                self._told = None
            elif state == "offline":
                self.notify("warning", "modbus", i18n.mark(
                    "the device {device} does not answer: its readings count as unknown until it is back"),
                    self.last_error or "", device=self.name)
                self._told = state
            elif state == "degraded":
                self.notify("warning", "modbus", i18n.mark(
                    "the device {device} answers with errors: some of its readings are missing"),
                    self.last_error or "", device=self.name)
                self._told = state
        except Exception:  # telling must never stop the polling
            log.exception("%s: notification failed", self.name)

    def _error(self, message: str, now: float) -> None:
        if message != self.last_error:
            log.warning("%s: %s", self.name, message)
        self.last_error = message
        self.last_error_ts = now

    def _offline(self, exc: DeviceError) -> None:
        """The link failed: everything this device reported is unknown from now on."""
        now = self.clock.now()
        self.failed_cycles += 1
        self._error(exc.message if exc.device == self.name else str(exc), now)
        self._set_state("offline", False)
        self.values = {}
        unknown: dict[str, Any] = {point: None for point in self._published}
        for point in self._point_values({}):
            unknown[point] = None
        if self._online_point:
            unknown[self._online_point] = False
        self.points = unknown
        self._send(unknown, now)

    def status(self) -> dict[str, Any]:
        """JSON for the API and the settings UI."""
        return {
            "name": self.name, "role": self.config.role, "profile": self.profile.key,
            "connection": describe(self.config), "state": self.state, "online": self.online,
            "last_ok_ts": self.last_ok_ts, "last_error": self.last_error, "last_error_ts": self.last_error_ts,
            "requests_per_cycle": self.requests_per_cycle, "cycle_ms": self.cycle_ms,
            "poll_interval_s": self.config.poll_interval_s, "cycles": self.cycles,
            "failed_cycles": self.failed_cycles, "connects": self.connects, "next_retry_s": self.next_retry_s,
            "rtc_synced_ts": self.rtc_synced_ts, "status_text": self.status_text,
            "alarms": [{"name": a.name, "severity": a.severity, "text": a.text} for a in self.alarms],
            "points": dict(self.points),
        }

    # --- RTC -----------------------------------------------------------------------------------------

    async def _sync_rtc(self, client: ModbusClient) -> None:
        """Set the device clock to UTC now (plant time). A refusal is reported; a transport error propagates."""
        rtc = self.profile.rtc
        if rtc is None:
            return
        t = datetime.fromtimestamp(self.clock.now(), tz=timezone.utc)
        regs = [self.profile.registers[n] for n in dataclasses.astuple(rtc)]
        values = (t.year, t.month, t.day, t.hour, t.minute, t.second)
        try:
            encoded = [encode(r, v) for r, v in zip(regs, values)]
            contiguous = all(b.address == a.end for a, b in zip(regs, regs[1:]))
            if contiguous and all(r.write_function == 16 for r in regs):
                await client.write(16, regs[0].address, [w for words in encoded for w in words])
            else:
                for reg, words in zip(regs, encoded):
                    assert reg.write_function is not None, "the profile check makes RTC registers writable"
                    await client.write(reg.write_function, reg.address, words)
        except (DeviceExceptionResponse, CodecError) as exc:
            self._error(f"RTC sync failed: {exc}", self.clock.now())
            return
        self.rtc_synced_ts = t.timestamp()
        log.info("%s: device clock set to %s UTC", self.name, t.strftime("%Y-%m-%d %H:%M:%S"))

    # --- writes (the safety loop's sink only) --------------------------------------------------------

    def _plan_write(self, target: str, value: Any) -> list[tuple[RegisterDef, Any]]:
        """(register, engineering value) pairs in the order they must be sent."""
        p = self.profile
        regs = p.registers
        c = p.controls
        if target in CONTROL_NAMES:
            control = getattr(c, target, None) if c is not None else None
            if control is None:
                raise DeviceWriteError(self.name, f"profile {p.key} has no control {target}", target)
            reg = regs[control.register]
            if target == "remote_enable":
                return [(reg, control.on_value if value else control.off_value)]
            if target in ("active_power_set_w", "grid_power_set_w") and control.direction_register:
                power = from_point(reg, value)
                direction = (control.discharge_value if value > 0 else control.charge_value if value < 0
                             else control.idle_value)
                plan = [(reg, abs(power))]  # power first: |power| never exceeds the old or the new setpoint
                if direction is not None:
                    plan.append((regs[control.direction_register], direction))
                return plan
            if target in ("active_power_set_w", "grid_power_set_w"):
                return [(reg, from_point(reg, value))]
            return [(reg, value)]
        if target in regs:
            return [(regs[target], value)]
        allowed = [n for n in CONTROL_NAMES if c is not None and getattr(c, n, None) is not None]
        allowed += [n for n, r in regs.items() if r.writable]
        raise DeviceWriteError(self.name, f"{target!r} is neither a control nor a register of {p.key} "
                                          f"(allowed: {', '.join(allowed) or 'nothing writable'})", target)

    async def write(self, target: str, value: Any, *, verify: bool = True) -> None:
        """Write a control (`remote_enable`, `active_power_set_w` in W > 0 discharge, `grid_power_set_w`,
        `active_power_limit_pct`, `heartbeat`) or a writable register by name, then read it back.

        Raises DeviceWriteError before sending anything the register cannot take, DeviceConnectError
        while the device is offline, DeviceVerifyError when the read-back differs.
        """
        client = self._client
        if client is None or not client.connected:
            raise DeviceConnectError(self.name, f"offline ({self.last_error or self.state}): {target} not written",
                                     target)
        sends: list[tuple[RegisterDef, int, list[int]]] = []
        for reg, v in self._plan_write(target, value):
            if not reg.writable or reg.write_function is None:
                raise DeviceWriteError(self.name, "is read-only", reg.name)
            sf = None
            if reg.scale_register is not None:
                sf = self.values.get(reg.scale_register)
                if sf is None:
                    raise DeviceWriteError(self.name, f"scale factor {reg.scale_register} not read yet", reg.name)
            try:
                sends.append((reg, reg.write_function, encode(reg, v, sf=int(sf) if sf is not None else None)))
            except CodecError as exc:
                raise DeviceWriteError(self.name, exc.message, reg.name) from None
        for reg, write_function, words in sends:
            await client.write(write_function, reg.address, words)
            if verify and reg.readable:
                back = await client.read(reg.function, reg.address, reg.count)
                if back != list(words):
                    raise DeviceVerifyError(self.name, f"wrote {words}, read back {back}", reg.name)

"""The Modbus device simulator: serves any profile over Modbus TCP or RTU, backed by the plant simulator.

So the EMS is tested, benchmarked and demonstrated through real Modbus frames with no hardware:
- register values come from the plant's latest `PlantSample` through the profile itself: each register's
  `point` (split evenly when several registers feed one point, e.g. three phase powers), the status
  register through its status texts, alarm bits through a small plant-to-profile alarm table, DSO
  inputs through the profile's `dso` mapping, the RTC from a device clock the EMS can set;
- writes to a PCS's control registers (remote enable, power setpoint with or without direction
  register, grid setpoint, limit %) become the `PlantLink`'s command, which the plant is stepped with:
  the simulated battery really moves;
- a SunSpec profile is served from `sunspec.build_image` (default models 1, 103, 124, 802);
- fault injection for tests: go silent, answer exception code N, answer garbage, freeze (answer with
  readings that stop following the plant: a hung measurement behind a live Modbus stack);
- served over TCP (a real pymodbus server) or, with `loopback=LoopbackNetwork`, on the in-process wire
  of `loopback.py` (the same register image, writes and faults, without sockets or framing);
- RTU line time: a pty has no baud rate, so `emulate_line_time` delays each answer by the time its
  request and response frames would take on the wire (see `rtu_exchange_s`).

Built on pymodbus 3.16's `SimDevice` with an `action` hook, not on the datastore classes that pymodbus
deprecates for v4 (`ModbusServerContext`, `ModbusSequentialDataBlock`); pin `pymodbus>=3.16,<4`.
Addresses a profile does not define answer "illegal data address", as most real devices do.

One module on purpose: the register image, the write hooks, fault injection and the server lifecycle are
one device's behaviour, and splitting them would only pass the same device state between files. The plant
between the devices (`plant_link`) and RTU wire time (`rtu_timing`) live beside it.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Callable, Iterable, Mapping, Sequence, TypedDict

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from ..clock import Clock, ScaledClock
from ..config.schema import ModbusDeviceConfig
from . import battery as bat
from .plant import PlantSample
from .loopback import GARBAGE as LOOPBACK_GARBAGE
from .loopback import SILENT as LOOPBACK_SILENT
from .loopback import LoopbackNetwork
from .plant_link import PlantLink
from .rtu_timing import char_bits, rtu_exchange_s
from ..devices import sunspec
from ..devices.codec import FLOAT_TYPES, INT_TYPES, CodecError, decode, encode, to_point
from ..devices.profile import DsoMapping, Profile, RegisterDef

log = logging.getLogger(__name__)

# function code -> register table: coils, discrete inputs, holding, input registers
_TABLE = {1: "c", 5: "c", 15: "c", 2: "d", 3: "h", 6: "h", 16: "h", 4: "i"}
_READ_FUNCTION = {"c": 1, "d": 2, "h": 3, "i": 4}
_BIT_TABLES = ("c", "d")
GARBAGE = bytes.fromhex("dead beef feed face 5a a5")  # no valid MBAP header, no valid RTU CRC
FAULTS = ("silent", "exception", "garbage")  # answer faults; `freeze()` is separate (the device still answers)

# Plant alarms -> profile alarm names meaning the same thing (every name the profile defines is set).
PLANT_ALARMS = {
    bat.ALARM_OVER_TEMPERATURE: ("cell_temperature_high_medium", "over_temperature"),
    bat.ALARM_UNDER_TEMPERATURE: ("cell_temperature_low_medium", "under_temperature"),
    bat.ALARM_SOC_LOW: ("soc_low_medium", "soc_low"),
    bat.ALARM_SOC_HIGH: ("soc_high_medium", "soc_high"),
    bat.ALARM_INSULATION_LOW: ("insulation_low_serious", "insulation_low"),
    bat.ALARM_OVER_TEMPERATURE_TRIP: ("cell_temperature_high_serious", "bms_fault", "over_temperature_trip"),
}
# What an unmapped grid-side measurement of a meter or inverter shows (instead of 0 V / 0 Hz).
NOMINAL_BY_UNIT = {"V": 230.0, "Hz": 50.0}
# Plant status text -> words a profile's status texts use for the same state.
STATUS_SYNONYMS = {"standby": ("standby", "ready", "idle"), "charging": ("charging",),
                   "discharging": ("discharging",), "fault": ("fault",)}


# --- the plant as the devices see it ---------------------------------------------------------------------

def _sample_value(sample: PlantSample, point: str) -> Any:
    """`battery.soc_pct` -> sample.soc_pct, `grid.power_w` -> sample.grid_power_w, `dso.mode` -> dso_mode."""
    group, _, name = point.partition(".")
    return getattr(sample, name if group == "battery" else f"{group}_{name}", None)


# --- encoding helpers ------------------------------------------------------------------------------------

def _engineering_range(reg: RegisterDef, sf: int | None) -> tuple[float, float] | None:
    if reg.type in INT_TYPES:
        words, signed = INT_TYPES[reg.type]
        bits = 16 * words
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    elif reg.type in FLOAT_TYPES:
        return (reg.min if reg.min is not None else -math.inf, reg.max if reg.max is not None else math.inf)
    else:
        return None
    factor = reg.scale * 10.0 ** (sf or 0)
    a, b = lo * factor + reg.offset, hi * factor + reg.offset
    lo_e, hi_e = min(a, b), max(a, b)
    if reg.min is not None:
        lo_e = max(lo_e, reg.min)
    if reg.max is not None:
        hi_e = min(hi_e, reg.max)
    return lo_e, hi_e


def encode_clamped(reg: RegisterDef, value: Any, sf: int | None = None) -> list[int] | None:
    """The words for `value`, clamped into what the register can hold; None when it cannot be encoded."""
    if value is None:
        return None
    if reg.type == "bool":
        return encode(reg, bool(value))
    if reg.type == "bitfield":
        return encode(reg, int(value) & ((1 << (reg.count if reg.function in (1, 2) else 16 * reg.count)) - 1))
    if reg.type == "string":
        return encode(reg, str(value)[: 2 * reg.count])
    try:
        return encode(reg, value, sf=sf)
    except CodecError:
        pass
    bounds = _engineering_range(reg, sf)
    if bounds is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    lo, hi = bounds
    for margin in (0.0, abs(reg.scale * 10.0 ** (sf or 0))):  # one raw step inside, should rounding push it out
        try:
            return encode(reg, min(hi - margin, max(lo + margin, float(value))), sf=sf)
        except CodecError:
            continue
    return None


_UNSET = object()


def fast_words(reg: RegisterDef, value: Any) -> list[int] | None:
    """`codec.encode(reg, value)` for a plain number in an int or float register, in float arithmetic.

    The simulated devices encode every reading on every plant step; the codec's exact (Fraction)
    arithmetic is right for the EMS's writes but costs most of a month-long soak. None when this
    value needs the codec (not a finite number, outside the register's range or min/max, an n/a
    pattern, a scale-factor register): the caller falls back to `encode_clamped`.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or reg.scale_register is not None:
        return None
    if not math.isfinite(value) or (reg.min is not None and value < reg.min) or \
            (reg.max is not None and value > reg.max):
        return None
    nbytes = 2 * reg.count
    if reg.type in INT_TYPES:
        words, signed = INT_TYPES[reg.type]
        x = (value - reg.offset) / reg.scale
        raw = math.floor(abs(x) + 0.5)
        raw = raw if x >= 0 else -raw
        bits = 16 * words
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if not lo <= raw <= hi:
            return None
        data = raw.to_bytes(nbytes, "big", signed=signed)
        if int.from_bytes(data, "big") in reg.na_values:
            return None
    elif reg.type in FLOAT_TYPES:
        try:
            data = struct.pack(FLOAT_TYPES[reg.type][1], (float(value) - reg.offset) / reg.scale)
        except (OverflowError, struct.error):
            return None
        if not math.isfinite(struct.unpack(FLOAT_TYPES[reg.type][1], data)[0]) or \
                int.from_bytes(data, "big") in reg.na_values:
            return None
    else:
        return None
    little_bytes = reg.byte_order == "little"
    out = [(data[i + 1] << 8 | data[i]) if little_bytes else (data[i] << 8 | data[i + 1]) for i in range(0, nbytes, 2)]
    if reg.word_order == "little":
        out.reverse()
    return out


def status_raw(codes: Mapping[int, str], text: str, fallback: int) -> int:
    """The profile's status code for the plant's status text (standby/charging/discharging/fault)."""
    words = STATUS_SYNONYMS.get(text, (text,))
    for word in words:  # exact text first, then a text starting with the word ("fault (serious ...)")
        for code, label in codes.items():
            if label.strip().lower() == word:
                return code
    for word in words:
        for code, label in codes.items():
            first = label.strip().lower().split(" (")[0]
            if first == word or (first.split(" ")[0] == word and "prohibited" not in first):
                return code
    return fallback


def dso_inputs(mapping: DsoMapping, mode: str, limit_pct: float) -> dict[str, bool]:
    """The input states a control box shows for (mode, limit %): the inverse of `profile.dso_state`.

    A limit between two steps activates the step below it (never report more than the plant allows).
    """
    values: dict[str, bool] = {}
    for trip in mapping.trip:
        values[trip.register] = (mode == "trip") != trip.invert
    chosen = None
    if mode == "limit":
        below = [s for s in mapping.steps if s.limit_pct <= limit_pct]
        pool = below or list(mapping.steps)
        if pool:
            chosen = max(pool, key=lambda s: s.limit_pct) if below else min(pool, key=lambda s: s.limit_pct)
    elif mode == "normal" and mapping.default_limit_pct < 100.0:
        full = [s for s in mapping.steps if s.limit_pct >= 100.0]
        chosen = full[0] if full else None
    for step in mapping.steps:
        if step.register not in values:  # a trip input doubling as a step keeps its trip state
            values[step.register] = (step is chosen) != step.invert
    return values


def default_sunspec_models() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """A storage inverter with a battery: common (1), three-phase inverter (103), storage (124), battery (802)."""
    load = sunspec.load_model
    return [
        (load(1), {"Mn": "Phoenyra", "Md": "SimStorage", "SN": "SIM-0001", "Vr": "1.0"}),
        (load(103), {"W": 0, "W_SF": 0, "Hz": 50.0, "Hz_SF": -2, "St": 4}),
        (load(124), {"WChaMax": 5000, "WChaMax_SF": 0}),
        (load(802), {"SoC": 50.0, "SoC_SF": -1, "SoH": 98, "SoH_SF": 0, "V": 400.0, "V_SF": -1}),
    ]


@dataclass(frozen=True)
class SerialLine:
    """An RTU line: the port and its framing (a pty accepts parity N only)."""

    port: str
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1


@dataclass(frozen=True)
class WriteRecord:
    """One write the simulated device accepted: what the EMS sent, in order."""

    function: int
    address: int
    words: tuple[int, ...]
    registers: tuple[str, ...]
    ts: float


@dataclass(frozen=True)
class _PlantPlan:
    """A device's plant-fed registers, worked out from its profile (see `DeviceServer._plant_plan`)."""

    feeds: tuple[tuple[str, tuple[tuple[str, float], ...], int], ...]  # sample attribute, (register, sign)s, n
    status: tuple[str, Mapping[int, str], int] | None  # status register, codes, fallback code
    alarms: tuple[tuple[str, int, str], ...]  # (register, bit, alarm name), the DSO's trip inputs left out
    alarm_registers: tuple[tuple[str, bool], ...]  # (register, is a bool register), in profile order
    battery: bool  # the plant's battery alarms show here


class _ServerHooks(TypedDict):
    """The pymodbus server keywords both listener types get."""

    trace_packet: Callable[[bool, bytes], bytes]
    trace_pdu: Callable[[bool, ModbusPDU], ModbusPDU]


# --- the device ------------------------------------------------------------------------------------------

class DeviceServer:
    """One simulated Modbus device: `async with DeviceServer(profile, link, tcp=("127.0.0.1", 0)) as dev:`.

    `dev.port` is the bound TCP port. `stop()` and `start()` kill and restart it (same port). A PCS gets
    the comm-loss fallback of `PlantLink` with `comm_loss_timeout_s` (default: its profile's, if any). Without a
    `plant` the registers hold a frozen image of a fresh plant (writes are stored and read back; nothing
    moves). `set_value(register, value)` pins a register; `force_alarm(name)` sets an alarm bit.
    """

    def __init__(self, profile: Profile, plant: PlantLink | None = None, *, tcp: tuple[str, int] | None = None,
                 rtu: SerialLine | None = None, unit_id: int = 1, clock: Clock | None = None,
                 emulate_line_time: bool = False, turnaround_s: float = 0.0, rtc_offset_s: float = 0.0,
                 sunspec_models: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]] | None = None,
                 sunspec_base: int = 40000, loopback: LoopbackNetwork | None = None,
                 comm_loss_timeout_s: float | None = None):
        if (tcp is None) == (rtu is None):
            raise ValueError("give exactly one of tcp=(host, port) or rtu=SerialLine(...)")
        if loopback is not None and tcp is None:
            raise ValueError("a loopback device answers at a tcp=(host, port) address")
        self.tcp = tcp
        self.rtu = rtu
        self.loopback = loopback
        self.session = 0  # bumped whenever the device drops its connections (stop, restart)
        self.unit_id = int(unit_id)
        self.clock = clock or ScaledClock()
        self.plant = plant or PlantLink.from_config(start_epoch_s=self.clock.now())
        self.emulate_line_time = emulate_line_time
        self.turnaround_s = float(turnaround_s)
        self.port: int | None = tcp[1] if tcp else None
        self.requests = 0
        self.writes: list[WriteRecord] = []
        self._server: Any = None
        self._fault: str | None = None
        self._fault_code = int(ExcCodes.DEVICE_FAILURE)
        self.frozen = False
        self._pinned: dict[str, Any] = {}
        self._stored: dict[str, Any] = {}  # register -> the value its words were last encoded from
        self._rtc_second: tuple[int, float] | None = None
        self._defined: dict[tuple[str, int, int], bool] = {}  # (table, address, count) -> all defined
        self._forced_alarms: set[str] = set()
        self._last_request: tuple[int, int, int] | None = None
        self._sample: PlantSample | None = None
        # image: table -> {address: word (registers) or 0/1 (bits)}; the defined addresses are its keys
        self._image: dict[str, dict[int, int]] = {t: {} for t in ("c", "d", "h", "i")}
        if profile.sunspec is not None and not profile.registers:
            profile = self._load_sunspec(profile, sunspec_models, sunspec_base)
        self.profile = profile
        self._by_address: dict[str, dict[int, RegisterDef]] = {t: {} for t in ("c", "d", "h", "i")}
        for reg in profile.registers.values():
            table = _TABLE[reg.function]
            for a in range(reg.address, reg.end):
                self._by_address[table][a] = reg
                self._image[table].setdefault(a, 0)
        self._point_regs = profile.point_registers()
        self._plan: _PlantPlan | None = None
        self._rtc_names = dataclasses.astuple(profile.rtc) if profile.rtc else ()
        now = datetime.fromtimestamp(self.clock.now() + rtc_offset_s, tz=timezone.utc)
        self._rtc_fields = [now.year, now.month, now.day, now.hour, now.minute, now.second]
        self._rtc_set_at = self.clock.now()
        if profile.meta.kind in ("meter", "pcs", "inverter"):
            for reg in profile.registers.values():
                if reg.point is None and not reg.writable and reg.unit in NOMINAL_BY_UNIT:
                    self._store(reg, NOMINAL_BY_UNIT[reg.unit])
        self._init_controls()
        if self.controls_plant:
            # The PCS's own comm-loss fallback: as given, else as its profile states (unset = none).
            c = profile.controls
            timeout = comm_loss_timeout_s if comm_loss_timeout_s is not None else \
                (c.comm_loss_timeout_s if c is not None else None)
            if timeout is not None:
                self.plant.comm_loss_timeout_s = float(timeout)
        self._refresh(force=True)

    # --- setup -------------------------------------------------------------------------------------------

    def _load_sunspec(self, marker: Profile, models: Any, base: int) -> Profile:
        image = sunspec.build_image(list(models) if models is not None else default_sunspec_models(), base=base)
        self._image["h"].update(image)

        def read(address: int, count: int) -> list[int] | None:
            if any(a not in image for a in range(address, address + count)):
                return None
            return [image[a] for a in range(address, address + count)]

        assert marker.sunspec is not None, "only called for a SunSpec profile"
        return sunspec.discovered_profile(marker, sunspec.discover(read, marker.sunspec.base_addresses))

    def _init_controls(self) -> None:
        """Writable control registers start as a PCS powers up: local control, 0 W, 100 %."""
        c = self.profile.controls
        if c is None:
            return
        regs = self.profile.registers
        if c.remote_enable:
            self._store(regs[c.remote_enable.register], c.remote_enable.off_value)
        for sp in (c.active_power_set_w, c.grid_power_set_w):
            if sp is not None:
                self._store(regs[sp.register], 0)
                if sp.direction_register and sp.idle_value is not None:
                    self._store(regs[sp.direction_register], sp.idle_value)
        if c.active_power_limit_pct:
            reg = regs[c.active_power_limit_pct.register]
            self._store(reg, min(100.0, reg.max if reg.max is not None else 100.0))
        if self.controls_plant:
            self._apply_controls()

    @property
    def controls_plant(self) -> bool:
        """True for a PCS: a device whose registers command the battery."""
        c = self.profile.controls
        return c is not None and any((c.remote_enable, c.active_power_set_w, c.grid_power_set_w))

    def _store(self, reg: RegisterDef, value: Any) -> None:
        if reg.scale_register is None:
            if self._stored.get(reg.name, _UNSET) == value:
                return  # the register already holds this value's words
            words = fast_words(reg, value)
            if words is None:
                words = encode_clamped(reg, value)
            if words is not None:
                self._put(reg, words)
                self._stored[reg.name] = value
            return
        sf = self._sf(reg)
        if sf is None:
            return
        words = encode_clamped(reg, value, sf)
        if words is not None:
            self._put(reg, words)

    def _put(self, reg: RegisterDef, words: Sequence[int]) -> None:
        image = self._image[_TABLE[reg.function]]
        for i, w in enumerate(words):
            image[reg.address + i] = int(w)

    def _words(self, reg: RegisterDef) -> list[int]:
        image = self._image[_TABLE[reg.function]]
        return [image.get(a, 0) for a in range(reg.address, reg.end)]

    def _sf(self, reg: RegisterDef) -> int | None:
        if reg.scale_register is None:
            return None
        sf_reg = self.profile.registers.get(reg.scale_register)
        if sf_reg is None:
            return None
        sf = decode(sf_reg, self._words(sf_reg))
        return None if sf is None else int(sf)

    def value(self, name: str) -> Any:
        """The decoded value a client would read from register `name` now."""
        self._refresh()
        reg = self.profile.registers[name]
        return decode(reg, self._words(reg), sf=self._sf(reg))

    # --- plant -> registers ------------------------------------------------------------------------------

    def _refresh(self, force: bool = False) -> None:
        """Re-encode the plant-fed registers when the plant has a new sample; the RTC on every call.
        A frozen device keeps the readings it had (its RTC and pinned registers still move)."""
        sample = self.plant.sample()
        if not self.frozen and (force or sample is not self._sample):
            self._sample = sample
            for name, value in self._plant_values(sample).items():
                self._store(self.profile.registers[name], value)
        if self._rtc_names:
            second = (math.floor(self.clock.now() - self._rtc_set_at), self._rtc_set_at)
            if force or second != self._rtc_second:  # the clock shows whole seconds
                self._rtc_second = second
                t = self._rtc_now()
                for name, v in zip(self._rtc_names, (t.year, t.month, t.day, t.hour, t.minute, t.second)):
                    self._store(self.profile.registers[name], v)
        for name, value in self._pinned.items():
            self._store(self.profile.registers[name], value)

    def _plant_plan(self) -> "_PlantPlan":
        """What `_plant_values` reads from a sample and where it goes: fixed by the profile, so worked out
        once (a soak refreshes every device on every plant step: tens of thousands of times a day)."""
        plan = self._plan
        if plan is not None:
            return plan
        p = self.profile
        regs = p.registers
        feeds = []
        for point, feeding in self._point_regs.items():
            if p.controls is not None and any(r.writable for r in feeding):
                continue  # a written register keeps what the EMS wrote
            group, _, name = point.partition(".")
            feeds.append((name if group == "battery" else f"{group}_{name}",
                          tuple((reg.name, reg.sign) for reg in feeding), len(feeding)))
        status = None
        if p.status_codes is not None and p.meta.kind != "dso":
            status = (regs[p.status_codes.register].name, p.status_codes.codes, next(iter(p.status_codes.codes), 0))
        dso_registers = {i.register for i in p.dso.trip} if p.dso is not None else set()
        alarms = tuple((a.register, a.bit, a.name) for a in p.alarms if a.register not in dso_registers)
        alarm_registers = tuple(dict.fromkeys((register, regs[register].type == "bool") for register, _, _ in alarms))
        battery = p.meta.kind == "bms" or any(pt.startswith("battery.") for pt in self._point_regs)
        plan = self._plan = _PlantPlan(tuple(feeds), status, alarms, alarm_registers, battery)
        return plan

    def _plant_values(self, sample: PlantSample) -> dict[str, Any]:
        plan = self._plant_plan()
        values: dict[str, Any] = {}
        for attr, feeding, n in plan.feeds:
            v = getattr(sample, attr, None)
            if v is None or isinstance(v, (str, tuple)):
                continue
            share = v / n if n > 1 else v
            for name, sign in feeding:
                values[name] = share * sign if sign != 1 else share
        if plan.status is not None:
            name, codes, fallback = plan.status
            values[name] = status_raw(codes, sample.status_text, fallback=fallback)
        if plan.alarms:
            active = set(self._forced_alarms)
            if plan.battery and sample.alarm_bits:
                for bit, names in PLANT_ALARMS.items():
                    if sample.alarm_bits & bit:
                        active.update(names)
            alarm_bits = dict.fromkeys((register for register, _ in plan.alarm_registers), 0)
            if active:
                for register, bit, name in plan.alarms:
                    if name in active:
                        alarm_bits[register] |= 1 << bit
            for register, is_bool in plan.alarm_registers:
                values[register] = bool(alarm_bits[register]) if is_bool else alarm_bits[register]
        dso = self.profile.dso
        if dso is not None:
            values.update(dso_inputs(dso, sample.dso_mode, sample.dso_limit_pct))
        return values

    def _rtc_now(self) -> datetime:
        y, mo, d, h, mi, s = self._rtc_fields
        mo = min(12, max(1, mo))
        days = (datetime(y + (mo == 12), mo % 12 + 1, 1) - timedelta(days=1)).day
        base = datetime(y, mo, min(max(1, d), days), min(23, max(0, h)), min(59, max(0, mi)), min(59, max(0, s)),
                        tzinfo=timezone.utc)
        return base + timedelta(seconds=self.clock.now() - self._rtc_set_at)

    @property
    def rtc(self) -> datetime | None:
        """The simulated device clock (UTC), or None when the profile has no RTC."""
        return self._rtc_now() if self._rtc_names else None

    # --- registers -> plant ------------------------------------------------------------------------------

    def _apply_controls(self) -> None:
        c = self.profile.controls
        assert c is not None, "only called when controls_plant"
        regs = self.profile.registers
        link = self.plant
        if c.remote_enable:
            reg = regs[c.remote_enable.register]
            link.remote_enabled = int(decode(reg, self._words(reg))) == c.remote_enable.on_value
        else:
            link.remote_enabled = True
        if c.active_power_set_w:
            sp = c.active_power_set_w
            reg = regs[sp.register]
            value = to_point(reg, decode(reg, self._words(reg), sf=self._sf(reg))) or 0.0
            if sp.direction_register:
                d_reg = regs[sp.direction_register]
                direction = decode(d_reg, self._words(d_reg))
                value = abs(value) * (1 if direction == sp.discharge_value else -1 if direction == sp.charge_value else 0)
            link.setpoint_w = float(value)
        if c.grid_power_set_w:
            reg = regs[c.grid_power_set_w.register]
            link.grid_setpoint_w = float(to_point(reg, decode(reg, self._words(reg), sf=self._sf(reg))) or 0.0)
        if c.active_power_limit_pct:
            reg = regs[c.active_power_limit_pct.register]
            v = decode(reg, self._words(reg), sf=self._sf(reg))
            link.limit_pct = 100.0 if v is None else float(v)

    def _after_write(self, names: set[str]) -> None:
        if self._rtc_names and names & set(self._rtc_names):
            t = self._rtc_now()
            fields = [t.year, t.month, t.day, t.hour, t.minute, t.second]
            for i, name in enumerate(self._rtc_names):
                if name in names:
                    reg = self.profile.registers[name]
                    fields[i] = int(decode(reg, self._words(reg)))
            self._rtc_fields = fields
            self._rtc_set_at = self.clock.now()
        if self.controls_plant:
            c = self.profile.controls
            assert c is not None, "controls_plant implies controls"
            heartbeat = c.heartbeat.register if c.heartbeat is not None else None
            if heartbeat is None or heartbeat in names:
                self.plant.contact(self.clock.now())
            if names != {heartbeat}:  # a heartbeat alone commands nothing
                self._apply_controls()
            self.plant.commanded(self.clock.now())

    # --- fault injection ---------------------------------------------------------------------------------

    def go_silent(self) -> None:
        """Receive requests but never answer (a hung device, a wrong unit id on RTU)."""
        self._fault = "silent"

    def answer_exception(self, code: int = int(ExcCodes.DEVICE_FAILURE)) -> None:
        """Answer every request with Modbus exception `code` (2 illegal address, 4 device failure, 6 busy...)."""
        self._fault, self._fault_code = "exception", int(ExcCodes(code))

    def answer_garbage(self) -> None:
        """Answer every request with bytes that are no Modbus frame (noise on the line, a wrong protocol)."""
        self._fault = "garbage"

    def freeze(self) -> None:
        """Keep answering, but with the readings of this moment: a hung measurement (or a gateway serving
        its cache) behind a Modbus stack that still works. Writes are still accepted."""
        self.frozen = True

    def heal(self) -> None:
        """End every injected fault: answer again, and follow the plant again."""
        self._fault = None
        if self.frozen:
            self.frozen = False
            self._refresh(force=True)

    @property
    def fault(self) -> str | None:
        """The answer fault in force (`silent`, `exception`, `garbage`) or None."""
        return self._fault

    def set_value(self, name: str, value: Any) -> None:
        """Pin register `name` to `value` (engineering units), whatever the plant or a write says (as an
        operator at the device's panel would); None unpins, the register keeps its value."""
        if name not in self.profile.registers:
            raise KeyError(f"{self.profile.key} has no register {name!r}")
        if value is None:
            self._pinned.pop(name, None)
        else:
            self._pinned[name] = value
        self._refresh(force=True)
        if self.controls_plant:  # a control changed at the device itself acts on the plant, as a write does
            self._apply_controls()

    def force_alarm(self, name: str, active: bool = True) -> None:
        if name not in {a.name for a in self.profile.alarms}:
            raise KeyError(f"{self.profile.key} has no alarm {name!r}")
        (self._forced_alarms.add if active else self._forced_alarms.discard)(name)
        self._refresh(force=True)

    # --- pymodbus hooks ----------------------------------------------------------------------------------

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests += 1
            count = getattr(pdu, "count", 0) or len(getattr(pdu, "bits", None) or getattr(pdu, "registers", None) or [])
            self._last_request = (pdu.function_code, getattr(pdu, "address", 0), int(count or 1))
        return pdu

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending and self._fault == "silent":
            return b""
        if sending and self._fault == "garbage":
            return GARBAGE
        return data

    async def _line_time(self, function: int, count: int, exception: bool = False) -> None:
        if not (self.emulate_line_time and self.rtu):
            return
        line = self.rtu
        bits = char_bits(line.parity, line.stopbits)
        delay = rtu_exchange_s(function, count, line.baudrate, bits, response_bytes=5 if exception else None)
        await asyncio.sleep(delay + self.turnaround_s)

    async def _action(self, function: int, start: int, address: int, count: int, registers: list[int],
                      set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        """pymodbus calls this before every access: validate, refresh from the plant, apply writes."""
        table = _TABLE.get(function)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        writing = set_values is not None
        if not writing and function in (5, 6):
            self._fill(table, start, address, 1, registers)  # pymodbus re-reads a single write
            return None
        n = len(set_values) if set_values is not None else count
        if table in _BIT_TABLES and not writing:
            last = self._last_request
            n = last[2] if last and last[0] == function and last[1] == address else 16 * count
        if self._fault is not None:
            return ExcCodes(self._fault_code) if self._fault == "exception" else ExcCodes.DEVICE_FAILURE
        defined = self._image[table]
        if any(a not in defined for a in range(address, address + n)):
            await self._line_time(function, n, exception=True)
            return ExcCodes.ILLEGAL_ADDRESS
        await self._line_time(function, n)
        if set_values is None:
            self._refresh()
            self._fill(table, start, address, n, registers)
            return None
        return self._write(function, table, address, [int(v) for v in set_values])

    def loopback_request(self, function: int, address: int, count: int,
                         values: Sequence[int] | None) -> list[int] | ExcCodes | str | None:
        """One request from the loopback wire: the words (or bits as 0/1) read, None for a write done, an
        exception code, or `loopback.SILENT` / `loopback.GARBAGE` - the same checks as `_action`."""
        self.requests += 1
        if self._fault == "silent":
            return LOOPBACK_SILENT
        if self._fault == "garbage":
            return LOOPBACK_GARBAGE
        table = _TABLE.get(function)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if self._fault == "exception":
            return ExcCodes(self._fault_code)
        if values is not None:
            return self._write(function, table, address, [int(v) for v in values])
        image = self._image[table]
        key = (table, address, count)
        defined = self._defined.get(key)
        if defined is None:
            defined = self._defined[key] = all(a in image for a in range(address, address + count))
        if not defined:
            return ExcCodes.ILLEGAL_ADDRESS
        self._refresh()
        return [image[a] for a in range(address, address + count)]

    def _fill(self, table: str, start: int, address: int, n: int, registers: list[int]) -> None:
        image = self._image[table]
        if table in _BIT_TABLES:  # pymodbus packs 16 bits per word, bit 0 first
            for a in range(address, address + n):
                i, bit = a // 16 - start, a % 16
                if 0 <= i < len(registers) and a in image:
                    registers[i] = (registers[i] | (1 << bit)) if image[a] else (registers[i] & ~(1 << bit))
        else:
            for a in range(address, address + n):
                if 0 <= a - start < len(registers):
                    registers[a - start] = image.get(a, 0)
        return None

    def _write(self, function: int, table: str, address: int, values: list[int]) -> ExcCodes | None:
        regs_by_address = self._by_address[table]
        touched: dict[str, RegisterDef] = {}
        for a in range(address, address + len(values)):
            reg = regs_by_address.get(a)
            if reg is None or not reg.writable:
                return ExcCodes.ILLEGAL_ADDRESS
            touched[reg.name] = reg
        image = self._image[table]
        staged = dict(image)
        for i, v in enumerate(values):
            staged[address + i] = v
        for reg in touched.values():  # a write must fit the register's declared range, as a device checks
            words = [staged[a] for a in range(reg.address, reg.end)]
            try:
                value = decode(reg, words, sf=self._sf(reg))
                if value is not None and not isinstance(value, (str, bool)):
                    if (reg.min is not None and value < reg.min) or (reg.max is not None and value > reg.max):
                        return ExcCodes.ILLEGAL_VALUE
            except CodecError:
                return ExcCodes.ILLEGAL_VALUE
        image.update(staged)
        for name in touched:
            self._stored.pop(name, None)  # the image now holds what the EMS wrote
        self.writes.append(WriteRecord(function, address, tuple(values), tuple(touched), self.clock.now()))
        self._after_write(set(touched))
        return None

    def _sim_device(self) -> SimDevice:
        blocks: list[list[SimData]] = []
        for table in ("c", "d", "h", "i"):
            addresses = sorted(self._image[table])
            runs: list[tuple[int, int]] = []
            for a in addresses:
                if runs and a == runs[-1][0] + runs[-1][1]:
                    runs[-1] = (runs[-1][0], runs[-1][1] + 1)
                else:
                    runs.append((a, 1))
            if table in _BIT_TABLES:
                data = [SimData(a, values=[False] * n, datatype=DataType.BITS) for a, n in runs]
                blocks.append(data or [SimData(0, values=[False] * 16, datatype=DataType.BITS)])
            else:
                data = [SimData(a, count=n, values=0, datatype=DataType.REGISTERS) for a, n in runs]
                blocks.append(data or [SimData(0, datatype=DataType.INVALID)])
        coils, discrete_inputs, holding, inputs = blocks
        return SimDevice(self.unit_id, simdata=(coils, discrete_inputs, holding, inputs), action=self._action)

    # --- lifetime ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen (TCP) or open the serial port (RTU); again after `stop()` on the same port."""
        if self._server is not None:
            return
        if self.loopback is not None:
            assert self.tcp is not None, "checked in __init__"
            self.port = self.loopback.listen(self, self.tcp[0], self.port or 0)
            self._server = self.loopback
            log.debug("simulated %s serving on %s, unit %d", self.profile.key, self.where, self.unit_id)
            return
        hooks = _ServerHooks(trace_packet=self._trace_packet, trace_pdu=self._trace_pdu)
        server: ModbusTcpServer | ModbusSerialServer
        if self.tcp is not None:
            server = ModbusTcpServer(self._sim_device(), address=(self.tcp[0], self.port or 0), **hooks)
        else:
            line = self.rtu
            assert line is not None, "exactly one of tcp and rtu (checked in __init__)"
            server = ModbusSerialServer(self._sim_device(), port=line.port, baudrate=line.baudrate,
                                        parity=line.parity, stopbits=line.stopbits, **hooks)
        try:
            await server.serve_forever(background=True)
        except Exception as exc:
            with contextlib.suppress(Exception):
                await server.shutdown()
            raise OSError(f"simulated {self.profile.key} cannot listen on {self.where}: {exc}") from None
        if self.tcp is not None:
            # pymodbus declares `transport` a BaseTransport; a TCP listener's is the asyncio.Server it created
            listener = server.transport
            assert isinstance(listener, asyncio.Server)
            self.port = listener.sockets[0].getsockname()[1]
        self._server = server
        log.info("simulated %s (%s) serving on %s, unit %d", self.profile.key, self.profile.meta.kind,
                 self.where, self.unit_id)

    async def stop(self) -> None:
        """Close the listener and every open connection, as a device that is switched off."""
        server, self._server = self._server, None
        self.session += 1
        if isinstance(server, LoopbackNetwork):
            assert self.tcp is not None and self.port is not None, "a started loopback device has an address"
            server.close(self.tcp[0], self.port)
        elif server is not None:
            await server.shutdown()
            await asyncio.sleep(0)  # let the transports close

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def where(self) -> str:
        if self.tcp is not None:
            return f"{'loopback' if self.loopback is not None else 'tcp'} {self.tcp[0]}:{self.port}"
        line = self.rtu
        assert line is not None, "exactly one of tcp and rtu (checked in __init__)"
        return f"rtu {line.port} {line.baudrate} 8{line.parity}{line.stopbits}"

    async def __aenter__(self) -> "DeviceServer":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# --- a whole plant ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SimulatedDevice:
    """Where one simulated device listens: TCP (host, port; port 0 = any free) or an RTU line."""

    name: str
    profile: Profile
    tcp: tuple[str, int] | None = None
    rtu: SerialLine | None = None
    unit_id: int = 1


def simulated_devices(devices: Iterable[ModbusDeviceConfig], profiles: Mapping[str, Profile]) -> list[SimulatedDevice]:
    """The configured, enabled devices as simulated devices at the addresses the pollers will use."""
    out = []
    for d in devices:
        if not d.enabled:
            continue
        if d.profile not in profiles:
            raise KeyError(f"modbus device {d.name}: no profile {d.profile!r}")
        if d.connection_type == "rtu":
            line = SerialLine(d.serial_port or "", d.baudrate, d.parity, d.stopbits)
            out.append(SimulatedDevice(d.name, profiles[d.profile], rtu=line, unit_id=d.unit_id))
        else:
            out.append(SimulatedDevice(d.name, profiles[d.profile], tcp=(d.host or "127.0.0.1", d.port),
                                       unit_id=d.unit_id))
    return out


@contextlib.asynccontextmanager
async def serve_plant(plant: PlantLink, devices: Iterable[SimulatedDevice], clock: Clock | None = None,
                      **options: Any) -> AsyncIterator[dict[str, DeviceServer]]:
    """Serve every device of one plant (BMS, PCS, meter, DSO box) for the block's lifetime: name -> server.

    `options` go to every DeviceServer (emulate_line_time, rtc_offset_s, ...). The caller steps the plant.
    """
    servers: dict[str, DeviceServer] = {}
    try:
        for d in devices:
            server = DeviceServer(d.profile, plant, tcp=d.tcp, rtu=d.rtu, unit_id=d.unit_id, clock=clock, **options)
            await server.start()
            servers[d.name] = server
        yield servers
    finally:
        for server in reversed(list(servers.values())):
            await server.stop()


async def run_plant(plant: PlantLink, devices: Sequence[SimulatedDevice], clock: Clock, step_s: float = 1.0,
                    on_step: Callable[[PlantSample], None] | None = None, **options: Any) -> None:
    """Serve the devices and step the plant on the clock until cancelled: one supervised task for the demo."""
    async with serve_plant(plant, devices, clock, **options):
        await plant.run(clock, step_s, on_step)

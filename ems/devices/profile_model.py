"""The loaded device profile: frozen dataclasses, each field with the constraints of the profile format.

The same classes describe the file format (`constrained` fields, `check()` rules, read by
`ems.config.validate` like `ems.yaml`) and are what the rest of the EMS uses; only registers are
read through a separate document class (`ems.devices.profile.RegisterDoc`), because their word
count and write function are derived. References to registers (`register_ref`) are checked against
the registers of the file being read, which the loader hands to the reader as its context.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping, Optional

from ..config.validate import Check
from ..config.validate import constrained as c
from .codec import BIT_FUNCTIONS, FLOAT_TYPES, INT_TYPES, MAX_READ_BITS, MAX_READ_REGISTERS, ReadBlock, plan_reads

Kind = Literal["bms", "pcs", "meter", "dso", "inverter"]
Function = Literal[1, 2, 3, 4]
Category = Literal["telemetry", "limit", "status", "alarm", "control", "rtc", "heartbeat", "info"]
Access = Literal["r", "rw", "w"]
Order = Literal["big", "little"]
Severity = Literal["info", "warning", "critical", "shutdown"]
Parity = Literal["N", "E", "O"]
Baudrate = Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200]
HeartbeatMode = Literal["counter", "toggle"]

KINDS = typing.get_args(Kind)
FUNCTIONS = typing.get_args(Function)
CATEGORIES = typing.get_args(Category)
ACCESS = typing.get_args(Access)
ORDERS = typing.get_args(Order)
SEVERITIES = typing.get_args(Severity)
PARITIES = typing.get_args(Parity)
BAUDRATES = typing.get_args(Baudrate)
HEARTBEAT_MODES = typing.get_args(HeartbeatMode)
NUMERIC_TYPES = (*INT_TYPES, *FLOAT_TYPES)
DSO_INPUT_TYPES = ("bool", "bitfield", *INT_TYPES)
KEY_PATTERN = re.compile(r"[a-z0-9_]{1,64}")
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}")
_EMPTY: Mapping[Any, Any] = types.MappingProxyType({})


@functools.lru_cache(maxsize=1)
def plant_points() -> tuple[str, ...]:
    """Every plant-state point a register may feed (`battery.soc_pct`, `grid.power_w`, ...)."""
    from ..state import PlantState

    points = []
    groups = typing.get_type_hints(PlantState)
    for group in dataclasses.fields(PlantState):
        points += [f"{group.name}.{f.name}" for f in dataclasses.fields(groups[group.name])]
    return tuple(points)


# --- references to registers -----------------------------------------------------------------------------

@dataclass(frozen=True)
class RegisterRefs:
    """The reader's context while a profile's other sections are read: the registers they may name."""

    registers: Mapping[str, RegisterDef]
    declared: frozenset[str]  # every register name in the file, including ones that failed to parse


def register_ref(*, writable: bool = False, types_: tuple[str, ...] | None = None) -> Check:
    """A field `check`: the value names a register of the file (writable / of one of `types_`, if asked)."""
    def check(name: Any, refs: Any) -> str | None:
        if not isinstance(refs, RegisterRefs):
            return None  # read without a register map: nothing to check against
        reg = refs.registers.get(name)
        if reg is None and name in refs.declared:
            return None  # the register itself is broken and already reported
        if reg is None:
            close = difflib.get_close_matches(name, sorted(refs.declared | set(refs.registers)), n=1)
            hint = f", did you mean '{close[0]}'?" if close else ""
            return f"unknown register '{name}'{hint}"
        if writable and not reg.writable:
            return f"register '{name}' is not writable (access {reg.access})"
        if types_ is not None and reg.type not in types_:
            return f"register '{name}' is a {reg.type} (allowed: {', '.join(types_)})"
        return None
    return check


# --- the loaded profile --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProfileMeta:
    vendor: str
    model: str
    kind: Kind
    source: str
    verified: bool
    description: str = ""
    notes: str = ""


@dataclass(frozen=True)
class ConnectionDefaults:
    """Defaults the Modbus wizard pre-fills; the installer's ems.yaml overrides them."""

    port: int = c(502, min=1, max=65535)
    unit_id: int = c(1, min=0, max=247)
    poll_interval_s: float = c(2.0, min=0.1, max=3600)
    timeout_s: float = c(3.0, min=0.05, max=60)
    baudrate: Baudrate = 9600
    parity: Parity = "N"
    stopbits: Literal[1, 2] = 1
    max_read_registers: int = c(MAX_READ_REGISTERS, min=1, max=MAX_READ_REGISTERS)
    max_read_bits: int = c(MAX_READ_BITS, min=1, max=MAX_READ_BITS)
    max_gap_registers: int = c(0, min=0, max=MAX_READ_REGISTERS - 2)


@dataclass(frozen=True)
class RegisterDef:
    """One register (or coil/discrete-input range) and how to turn its words into a value."""

    name: str
    address: int
    function: int
    type: str
    count: int  # addresses spanned: words for function 3/4, bits for 1/2
    word_order: str = "big"
    byte_order: str = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    category: str = "telemetry"
    access: str = "r"
    write_function: int | None = None  # set for writable registers
    min: float | None = None
    max: float | None = None
    point: str | None = None
    sign: int = 1
    description: str = ""
    vendor_name: str | None = None
    values: Mapping[int, str] = field(default_factory=lambda: _EMPTY)
    na_values: tuple[int, ...] = ()
    scale_register: str | None = None

    @property
    def end(self) -> int:
        return self.address + self.count

    @property
    def readable(self) -> bool:
        return "r" in self.access

    @property
    def writable(self) -> bool:
        return "w" in self.access


@dataclass(frozen=True)
class AlarmDef:
    register: str = c(check=register_ref(types_=("bool", "bitfield")))
    bit: int = c(0, min=0, max=1999)
    name: str = c("", required=True, pattern=NAME_PATTERN.pattern, doc="letters, digits, _")
    severity: Severity = c("info", required=True)
    text: str = c("", required=True)

    def check(self, refs: Any = None) -> list[tuple[str, str]]:
        reg = refs.registers.get(self.register) if isinstance(refs, RegisterRefs) else None
        if reg is None:
            return []
        width = 1 if reg.type == "bool" else (reg.count if reg.function in BIT_FUNCTIONS else 16 * reg.count)
        if self.bit >= width:
            return [("bit", f"{self.bit} is out of range for {self.register} (allowed: 0..{width - 1})")]
        return []


@dataclass(frozen=True)
class StatusCodes:
    register: str = c(check=register_ref())
    codes: Mapping[int, str] = c(doc="integer codes to texts")

    def text(self, code: int | None) -> str | None:
        if code is None:
            return None
        return self.codes.get(int(code), f"unknown status {code}")


@dataclass(frozen=True)
class SwitchControl:
    """A register the EMS sets to `on_value` to take control and to `off_value` to hand it back."""

    SHORTHAND: ClassVar[str] = "register"  # a plain register name is short for {register: name}
    register: str = c(check=register_ref(writable=True, types_=("bool", *INT_TYPES)))
    on_value: int = c(1, min=0, max=65535)
    off_value: int = c(0, min=0, max=65535)


@dataclass(frozen=True)
class SetpointControl:
    """A setpoint in our sign convention, written through the register's scale and sign.

    Devices that take a direction command plus an unsigned power (Sungrow SH) name the
    `direction_register` and its values; the power register then gets the absolute value.
    """

    SHORTHAND: ClassVar[str] = "register"
    register: str = c(check=register_ref(writable=True, types_=NUMERIC_TYPES))
    direction_register: Optional[str] = c(None, check=register_ref(writable=True, types_=tuple(INT_TYPES)))
    charge_value: Optional[int] = c(None, min=0, max=65535)
    discharge_value: Optional[int] = c(None, min=0, max=65535)
    idle_value: Optional[int] = c(None, min=0, max=65535)

    def check(self) -> list[tuple[str, str]]:
        keys = ("charge_value", "discharge_value", "idle_value")
        if self.direction_register is not None:
            return [(k, "is required with direction_register") for k in keys if getattr(self, k) is None]
        return [(k, "only together with direction_register") for k in keys if getattr(self, k) is not None]


@dataclass(frozen=True)
class HeartbeatControl:
    """A register the EMS writes every `period_s`: an incrementing counter (wraps) or a 0/1 toggle."""

    SHORTHAND: ClassVar[str] = "register"
    register: str = c(check=register_ref(writable=True, types_=("bool", *INT_TYPES)))
    period_s: float = c(1.0, min=0.1, max=600)
    mode: HeartbeatMode = "counter"


@dataclass(frozen=True)
class Controls:
    """The semantic write points the safety loop uses (it alone writes them)."""

    remote_enable: SwitchControl | None = None
    active_power_set_w: SetpointControl | None = None
    active_power_limit_pct: SetpointControl | None = None
    grid_power_set_w: SetpointControl | None = None
    heartbeat: HeartbeatControl | None = None
    comm_loss_timeout_s: float | None = c(None, min=0.1, max=86400)


@dataclass(frozen=True)
class DsoInput:
    SHORTHAND: ClassVar[str] = "register"
    register: str = c(check=register_ref(types_=DSO_INPUT_TYPES))
    invert: bool = False  # true: the input is active when it reads 0 (normally-closed contact)


@dataclass(frozen=True)
class DsoStep:
    register: str = c(check=register_ref(types_=DSO_INPUT_TYPES))
    limit_pct: float = c(min=0, max=100)
    invert: bool = False


@dataclass(frozen=True)
class DsoMapping:
    """How a DSO box's inputs become (mode, limit %): trip wins, then the lowest active step."""

    trip: tuple[DsoInput, ...] = ()
    steps: tuple[DsoStep, ...] = ()
    default_limit_pct: float = c(100.0, min=0, max=100)

    def check(self) -> list[tuple[str, str]]:
        return [] if self.trip or self.steps else [("", "maps no input (allowed: trip and/or steps)")]


_RTC = register_ref(writable=True, types_=tuple(INT_TYPES))


@dataclass(frozen=True)
class RtcRegisters:
    year: str = c(check=_RTC)
    month: str = c(check=_RTC)
    day: str = c(check=_RTC)
    hour: str = c(check=_RTC)
    minute: str = c(check=_RTC)
    second: str = c(check=_RTC)


@dataclass(frozen=True)
class SunSpecSettings:
    """A SunSpec device: the register map is discovered at runtime (ems.devices.sunspec)."""

    base_addresses: tuple[int, ...] = c((0, 40000, 50000), min=0, max=65535)
    models: tuple[int, ...] = c((), min=0, max=65535)
    points: Mapping[str, str] = c(default_factory=lambda: _EMPTY, key_pattern=r"\d+\.[A-Za-z0-9_]+",
                                  key_doc="'model.Point', e.g. 802.SoC", choices=plant_points,
                                  doc="'model.Point' to a plant-state point")  # "802.SoC" -> "battery.soc_pct"


@dataclass(frozen=True)
class Profile:
    key: str
    meta: ProfileMeta
    connection: ConnectionDefaults
    registers: Mapping[str, RegisterDef]
    alarms: tuple[AlarmDef, ...] = ()
    status_codes: StatusCodes | None = None
    controls: Controls | None = None
    dso: DsoMapping | None = None
    rtc: RtcRegisters | None = None
    sunspec: SunSpecSettings | None = None
    file: str = field(default="", compare=False)

    def read_plan(self) -> list[ReadBlock]:
        """The fewest read requests covering every readable register, within the device's limits."""
        c = self.connection
        return plan_reads(self.registers.values(), max_count=c.max_read_registers, max_gap=c.max_gap_registers,
                          max_bits=c.max_read_bits)

    def point_registers(self) -> dict[str, tuple[RegisterDef, ...]]:
        """Plant-state point -> the registers feeding it (their values are summed)."""
        out: dict[str, list[RegisterDef]] = {}
        for reg in self.registers.values():
            if reg.point:
                out.setdefault(reg.point, []).append(reg)
        return {p: tuple(regs) for p, regs in out.items()}


def dso_state(mapping: DsoMapping, values: Mapping[str, Any]) -> tuple[str, float] | None:
    """(mode, limit_pct) from the decoded DSO inputs; None when any mapped input is unknown.

    Unknown must never read as "not restricted": the caller applies its comm-loss limit instead.
    Several active steps: the lowest limit wins. No active step: `default_limit_pct`.
    """
    def active(register: str, invert: bool) -> bool | None:
        v = values.get(register)
        return None if v is None else bool(v) != invert

    trips = [active(i.register, i.invert) for i in mapping.trip]
    steps = [(active(s.register, s.invert), s.limit_pct) for s in mapping.steps]
    if any(t is None for t in trips) or any(a is None for a, _ in steps):
        return None
    if any(trips):
        return ("trip", 0.0)
    limit = min([pct for a, pct in steps if a], default=mapping.default_limit_pct)
    return ("normal", 100.0) if limit >= 100.0 else ("limit", float(limit))

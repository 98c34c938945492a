"""Device profiles: one YAML file per device, validated on load into frozen dataclasses.

A device is data, never Python: registers (address, function code, type, word/byte order, scale,
offset, unit, category, access), alarm bits, status-code texts, default connection parameters and -
for devices the EMS controls - which registers the safety loop writes. The file name is the profile
key (`profiles/hithium_ess_5016.yaml` -> `hithium_ess_5016`). Every problem in a file is reported at
once, as `file: path.to.field: message (allowed: ...)`, through one `ProfileError`.

Format (top-level keys; see the shipped profiles for complete examples):

    meta:        vendor, model, kind (bms|pcs|meter|dso|inverter), description, source (document),
                 verified (were the addresses checked against a vendor document?), notes
    connection:  port, unit_id, poll_interval_s, timeout_s, baudrate, parity (N|E|O), stopbits,
                 max_read_registers (<= 125), max_read_bits (<= 2000), max_gap_registers (default 0:
                 never read addresses the profile does not define)
    registers:   name -> {address, function (1 coils, 2 discrete inputs, 3 holding, 4 input), type,
                 count (string: words; bitfield: words, or bits for function 1/2), word_order, byte_order,
                 scale, offset (value = raw * scale + offset), unit, category, access (r|rw|w),
                 write_function (6/16 holding, 5/15 coils), min, max (writes, engineering units),
                 point (plant-state point, e.g. battery.soc_pct), sign (-1: device convention is the
                 opposite of ours), description, vendor_name, values ({raw: label} for enums),
                 na_values (raw bit patterns meaning "not available", or `sunspec`),
                 scale_register (SunSpec: a register holding the power-of-ten scale factor)}
    alarms:      [{register (bool or bitfield), bit, name, severity, text}]; severity: info (shown),
                 warning (notified), critical (notified; the device needs attention), shutdown (the
                 device cannot run safely: the safety loop is expected to go to 0 W)
    status_codes: {register, codes: {raw: text}}
    controls:    remote_enable {register, on_value, off_value}; active_power_set_w, grid_power_set_w,
                 active_power_limit_pct {register, and for devices that take a direction and an
                 unsigned power: direction_register, charge_value, discharge_value, idle_value};
                 heartbeat {register, period_s, mode counter|toggle}; comm_loss_timeout_s (the device's
                 own fallback timeout, when known). A plain register name is short for {register: name}.
    dso:         trip: [{register, invert}], steps: [{register, limit_pct, invert}], default_limit_pct
    rtc:         year, month, day, hour, minute, second (register names)
    sunspec:     base_addresses, models (the models this EMS can decode), points ({"802.SoC": point})

Sign conventions (ems.state): battery/BESS power > 0 = discharging, grid power > 0 = import,
battery current > 0 = charging (as BMSs report it). Several registers feeding the same point are
summed (per-phase powers -> total).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ..errors import ProfileError, ProfileProblem
from .codec import (BIT_FUNCTIONS, FLOAT_TYPES, INT_TYPES, MAX_READ_BITS, MAX_READ_REGISTERS, REGISTER_TYPES,
                    ReadBlock, plan_reads, sunspec_na, words_per_type)

KINDS = ("bms", "pcs", "meter", "dso", "inverter")
FUNCTIONS = (1, 2, 3, 4)
CATEGORIES = ("telemetry", "limit", "status", "alarm", "control", "rtc", "heartbeat", "info")
ACCESS = ("r", "rw", "w")
ORDERS = ("big", "little")
SEVERITIES = ("info", "warning", "critical", "shutdown")
PARITIES = ("N", "E", "O")
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
HEARTBEAT_MODES = ("counter", "toggle")
NUMERIC_TYPES = (*INT_TYPES, *FLOAT_TYPES)
KEY_PATTERN = re.compile(r"[a-z0-9_]{1,64}")
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}")
_EMPTY: Mapping[Any, Any] = types.MappingProxyType({})


def plant_points() -> tuple[str, ...]:
    """Every plant-state point a register may feed (`battery.soc_pct`, `grid.power_w`, ...)."""
    from ..state import PlantState

    points = []
    for group in dataclasses.fields(PlantState):
        group_cls = group.default_factory  # type: ignore[misc]
        points += [f"{group.name}.{f.name}" for f in dataclasses.fields(group_cls)]
    return tuple(points)


# --- the loaded profile --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProfileMeta:
    vendor: str
    model: str
    kind: str
    source: str
    verified: bool
    description: str = ""
    notes: str = ""


@dataclass(frozen=True)
class ConnectionDefaults:
    """Defaults the Modbus wizard pre-fills; the installer's ems.yaml overrides them."""

    port: int = 502
    unit_id: int = 1
    poll_interval_s: float = 2.0
    timeout_s: float = 3.0
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    max_read_registers: int = MAX_READ_REGISTERS
    max_read_bits: int = MAX_READ_BITS
    max_gap_registers: int = 0


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
    register: str
    bit: int
    name: str
    severity: str
    text: str


@dataclass(frozen=True)
class StatusCodes:
    register: str
    codes: Mapping[int, str]

    def text(self, code: int | None) -> str | None:
        if code is None:
            return None
        return self.codes.get(int(code), f"unknown status {code}")


@dataclass(frozen=True)
class SwitchControl:
    """A register the EMS sets to `on_value` to take control and to `off_value` to hand it back."""

    register: str
    on_value: int = 1
    off_value: int = 0


@dataclass(frozen=True)
class SetpointControl:
    """A setpoint in our sign convention, written through the register's scale and sign.

    Devices that take a direction command plus an unsigned power (Sungrow SH) name the
    `direction_register` and its values; the power register then gets the absolute value.
    """

    register: str
    direction_register: str | None = None
    charge_value: int | None = None
    discharge_value: int | None = None
    idle_value: int | None = None


@dataclass(frozen=True)
class HeartbeatControl:
    """A register the EMS writes every `period_s`: an incrementing counter (wraps) or a 0/1 toggle."""

    register: str
    period_s: float = 1.0
    mode: str = "counter"


@dataclass(frozen=True)
class Controls:
    """The semantic write points the safety loop uses (it alone writes them)."""

    remote_enable: SwitchControl | None = None
    active_power_set_w: SetpointControl | None = None
    active_power_limit_pct: SetpointControl | None = None
    grid_power_set_w: SetpointControl | None = None
    heartbeat: HeartbeatControl | None = None
    comm_loss_timeout_s: float | None = None


@dataclass(frozen=True)
class DsoInput:
    register: str
    invert: bool = False  # true: the input is active when it reads 0 (normally-closed contact)


@dataclass(frozen=True)
class DsoStep:
    register: str
    limit_pct: float
    invert: bool = False


@dataclass(frozen=True)
class DsoMapping:
    """How a DSO box's inputs become (mode, limit %): trip wins, then the lowest active step."""

    trip: tuple[DsoInput, ...] = ()
    steps: tuple[DsoStep, ...] = ()
    default_limit_pct: float = 100.0


@dataclass(frozen=True)
class RtcRegisters:
    year: str
    month: str
    day: str
    hour: str
    minute: str
    second: str


@dataclass(frozen=True)
class SunSpecSettings:
    """A SunSpec device: the register map is discovered at runtime (ems.devices.sunspec)."""

    base_addresses: tuple[int, ...] = (0, 40000, 50000)
    models: tuple[int, ...] = ()
    points: Mapping[str, str] = field(default_factory=lambda: _EMPTY)  # "802.SoC" -> "battery.soc_pct"


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


# --- validation ----------------------------------------------------------------------------------------

class _Checker:
    """Collects every problem in one file; the read helpers return None after reporting one."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[ProfileProblem] = []
        self.declared: set[str] = set()  # register names in the file, including ones that failed to parse

    def fail(self, path: str, message: str) -> None:
        self.problems.append(ProfileProblem(self.file, path or "(top level)", message))

    def mapping(self, value: Any, path: str, allowed: Iterable[str], required: Iterable[str] = ()) -> dict | None:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping of keys (got {type(value).__name__})")
            return None
        value = {k: v for k, v in value.items() if v is not None}  # null = not set (JSON from the UI)
        allowed = list(allowed)
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f", did you mean '{close[0]}'?" if close else ""
                self.fail(_join(path, str(key)), f"unknown key{hint} (allowed: {', '.join(allowed)})")
        for key in required:
            if key not in value:
                self.fail(_join(path, key), "is required")
        return value

    def string(self, d: dict, key: str, path: str, default: Any = None, pattern: re.Pattern | None = None,
               doc: str = "") -> Any:
        if key not in d or (d[key] is None and default is None):
            return default
        v = d[key]
        if not isinstance(v, str):
            self.fail(_join(path, key), f"must be a string (got {v!r})")
            return default
        if pattern is not None and not pattern.fullmatch(v):
            self.fail(_join(path, key), f"{v!r} has the wrong format (allowed: {doc or pattern.pattern})")
            return default
        return v

    def boolean(self, d: dict, key: str, path: str, default: Any = None) -> Any:
        if key not in d:
            return default
        v = d[key]
        if not isinstance(v, bool):
            self.fail(_join(path, key), f"must be true or false (got {v!r})")
            return default
        return v

    def integer(self, d: dict, key: str, path: str, default: Any = None, lo: int | None = None,
                hi: int | None = None) -> Any:
        if key not in d or (d[key] is None and default is None):
            return default
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(_join(path, key), f"must be an integer (got {v!r})")
            return default
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            self.fail(_join(path, key), f"{v} is out of range (allowed: {lo}..{hi})")
            return default
        return v

    def number(self, d: dict, key: str, path: str, default: Any = None, lo: float | None = None,
               hi: float | None = None, nonzero: bool = False) -> Any:
        if key not in d or (d[key] is None and default is None):
            return default
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail(_join(path, key), f"must be a finite number (got {v!r})")
            return default
        if nonzero and v == 0:
            self.fail(_join(path, key), "must not be 0 (allowed: any finite number except 0)")
            return default
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            if lo is not None and hi is not None:
                allowed = f"{lo:g}..{hi:g}"
            else:
                allowed = f">= {lo:g}" if lo is not None else f"<= {hi:g}"
            self.fail(_join(path, key), f"{v:g} is out of range (allowed: {allowed})")
            return default
        return float(v)

    def choice(self, d: dict, key: str, path: str, allowed: tuple, default: Any = None) -> Any:
        if key not in d:
            return default
        v = d[key]
        if v not in allowed or isinstance(v, bool) != isinstance(allowed[0], bool):
            self.fail(_join(path, key), f"{v!r} is not allowed (allowed: {', '.join(str(a) for a in allowed)})")
            return default
        return v

    def int_keyed(self, value: Any, path: str) -> dict[int, str]:
        """{raw: text}; keys may be ints or digit strings (JSON), values strings."""
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping of integer codes to texts (got {type(value).__name__})")
            return {}
        out: dict[int, str] = {}
        for k, text in value.items():
            code = _as_int(k)
            if code is None:
                self.fail(_join(path, str(k)), f"{k!r} is not an integer code (allowed: integers, e.g. 3 or 0x0A)")
            elif not isinstance(text, str):
                self.fail(_join(path, str(k)), f"must be a text (got {text!r})")
            else:
                out[code] = text
        return out


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _as_int(k: Any) -> int | None:
    if isinstance(k, bool):
        return None
    if isinstance(k, int):
        return k
    if isinstance(k, str):
        try:
            return int(k, 0)
        except ValueError:
            return None
    return None


_REGISTER_KEYS = ("address", "function", "type", "count", "word_order", "byte_order", "scale", "offset", "unit",
                  "category", "access", "write_function", "min", "max", "point", "sign", "description",
                  "vendor_name", "values", "na_values", "scale_register")


def _parse_register(ck: _Checker, name: str, raw: Any, path: str, points: tuple[str, ...]) -> RegisterDef | None:
    before = len(ck.problems)
    d = ck.mapping(raw, path, _REGISTER_KEYS, required=("address", "function", "type"))
    if d is None:
        return None
    address = ck.integer(d, "address", path, lo=0, hi=65535)
    function = ck.choice(d, "function", path, FUNCTIONS)
    type_ = ck.choice(d, "type", path, REGISTER_TYPES)
    count = None
    if function is not None and type_ is not None:
        bits = function in BIT_FUNCTIONS
        if bits and type_ not in ("bool", "bitfield"):
            source = "coils" if function == 1 else "discrete inputs"
            ck.fail(_join(path, "type"), f"{type_} cannot be read from {source} (allowed: bool, bitfield)")
        elif "count" in d and type_ not in ("string", "bitfield"):
            ck.fail(_join(path, "count"), f"only for string and bitfield; {type_} always spans "
                                          f"{words_per_type(type_, None, function)}")
        else:
            limit = MAX_READ_BITS if bits else MAX_READ_REGISTERS
            if type_ == "string" and "count" not in d:
                ck.fail(_join(path, "count"), "is required for a string (registers, 2 characters each)")
            count = ck.integer(d, "count", path, default=None, lo=1, hi=limit)
            if type_ == "bitfield" and not bits and count is not None and count > 4:
                ck.fail(_join(path, "count"), f"{count} is out of range (allowed: 1..4 words for a register bitfield)")
                count = None
            if count is not None or type_ != "string":
                count = words_per_type(type_, count, function)
    if address is not None and count is not None and address + count - 1 > 65535:
        ck.fail(_join(path, "address"), f"{address} + {count} addresses runs past 65535")
    word_order = ck.choice(d, "word_order", path, ORDERS, "big")
    byte_order = ck.choice(d, "byte_order", path, ORDERS, "big")
    scale = ck.number(d, "scale", path, 1.0, nonzero=True)
    offset = ck.number(d, "offset", path, 0.0)
    if type_ in ("bool", "bitfield", "string"):
        for key, default in (("scale", 1), ("offset", 0)):
            if key in d and d[key] != default:
                ck.fail(_join(path, key), f"does not apply to a {type_}")
    unit = ck.string(d, "unit", path)
    category = ck.choice(d, "category", path, CATEGORIES, "telemetry")
    access = ck.choice(d, "access", path, ACCESS, "r")
    if function in (2, 4) and access not in (None, "r"):
        ck.fail(_join(path, "access"),
                f"{access!r} is not allowed for function {function}, which is read-only (allowed: r)")
    writable = access is not None and "w" in access
    write_function = None
    if "write_function" in d and not writable:
        ck.fail(_join(path, "write_function"), "only for writable registers (access rw or w)")
    elif writable and function in (1, 3) and count is not None:
        single, multi = (5, 15) if function == 1 else (6, 16)
        allowed = (single, multi) if count == 1 else (multi,)
        write_function = ck.choice(d, "write_function", path, allowed, multi if count > 1 else single)
    lo = ck.number(d, "min", path)
    hi = ck.number(d, "max", path)
    for key in ("min", "max"):
        if key in d and not writable:
            ck.fail(_join(path, key), "only for writable registers (access rw or w): it limits writes")
    if lo is not None and hi is not None and lo > hi:
        ck.fail(_join(path, "min"), f"{lo:g} is above max {hi:g}")
    point = ck.choice(d, "point", path, points) if "point" in d else None
    sign = ck.choice(d, "sign", path, (1, -1), 1)
    if sign == -1 and "point" not in d:
        ck.fail(_join(path, "sign"), "only together with point (it converts to our sign convention)")
    description = ck.string(d, "description", path, "")
    vendor_name = ck.string(d, "vendor_name", path)
    values: Mapping[int, str] = _EMPTY
    if "values" in d:
        values = types.MappingProxyType(ck.int_keyed(d["values"], _join(path, "values")))
    na_values: tuple[int, ...] = ()
    if "na_values" in d and type_ is not None and count is not None:
        na = d["na_values"]
        if type_ in ("bool", "string") or function in BIT_FUNCTIONS:
            ck.fail(_join(path, "na_values"), f"does not apply to a {type_}")
        elif na == "sunspec":
            na_values = sunspec_na(type_, count)
        elif isinstance(na, list) and all(_as_int(v) is not None for v in na):
            top = (1 << (16 * count)) - 1
            bad = [v for v in na if not 0 <= _as_int(v) <= top]
            if bad:
                ck.fail(_join(path, "na_values"), f"{bad} do not fit {count} register(s) (allowed: 0..0x{top:X})")
            na_values = tuple(_as_int(v) for v in na)
        else:
            ck.fail(_join(path, "na_values"), f"{na!r} is not allowed (allowed: a list of raw bit patterns, e.g. "
                                              "[0xFFFF], or sunspec)")
    scale_register = ck.string(d, "scale_register", path, pattern=NAME_PATTERN, doc="a register name")
    if scale_register is not None and type_ not in INT_TYPES and type_ not in FLOAT_TYPES:
        ck.fail(_join(path, "scale_register"), f"does not apply to a {type_}")
    if len(ck.problems) > before:
        return None
    return RegisterDef(name=name, address=address, function=function, type=type_, count=count,
                       word_order=word_order, byte_order=byte_order, scale=scale, offset=offset, unit=unit,
                       category=category, access=access, write_function=write_function, min=lo, max=hi,
                       point=point, sign=sign, description=description, vendor_name=vendor_name, values=values,
                       na_values=na_values, scale_register=scale_register)


def _check_overlaps(ck: _Checker, registers: Mapping[str, RegisterDef]) -> None:
    """Two definitions of the same address (per function code) are an error, not a choice."""
    by_function: dict[int, list[RegisterDef]] = {}
    for reg in registers.values():
        by_function.setdefault(reg.function, []).append(reg)
    for function, regs in by_function.items():
        regs.sort(key=lambda r: (r.address, r.end))
        widest: RegisterDef | None = None
        for reg in regs:
            if widest is not None and reg.address < widest.end:
                ck.fail(f"registers.{reg.name}.address",
                        f"{reg.address} overlaps registers.{widest.name} (addresses {widest.address}.."
                        f"{widest.end - 1}, function {function})")
            if widest is None or reg.end > widest.end:
                widest = reg


def _ref(ck: _Checker, registers: Mapping[str, RegisterDef], name: Any, path: str, *, writable: bool = False,
         types_: tuple[str, ...] | None = None) -> str | None:
    """A reference to a register by name: it must exist (and be writable / of a type, if asked)."""
    if not isinstance(name, str):
        ck.fail(path, f"must be a register name (got {name!r})")
        return None
    reg = registers.get(name)
    if reg is None and name in ck.declared:
        return None  # the register itself is broken and already reported
    if reg is None:
        close = difflib.get_close_matches(name, sorted(ck.declared | set(registers)), n=1)
        hint = f", did you mean '{close[0]}'?" if close else ""
        ck.fail(path, f"unknown register '{name}'{hint}")
        return None
    if writable and not reg.writable:
        ck.fail(path, f"register '{name}' is not writable (access {reg.access})")
        return None
    if types_ is not None and reg.type not in types_:
        ck.fail(path, f"register '{name}' is a {reg.type} (allowed: {', '.join(types_)})")
        return None
    return name


def _parse_alarms(ck: _Checker, raw: Any, registers: Mapping[str, RegisterDef]) -> tuple[AlarmDef, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        ck.fail("alarms", f"must be a list (got {type(raw).__name__})")
        return ()
    out = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        path = f"alarms[{i}]"
        d = ck.mapping(item, path, ("register", "bit", "name", "severity", "text"),
                       required=("register", "name", "severity", "text"))
        if d is None:
            continue
        before = len(ck.problems)
        register = _ref(ck, registers, d.get("register"), _join(path, "register"), types_=("bool", "bitfield"))
        bit = ck.integer(d, "bit", path, 0, lo=0, hi=1999)
        if register is not None and bit is not None:
            reg = registers[register]
            width = 1 if reg.type == "bool" else (reg.count if reg.function in BIT_FUNCTIONS else 16 * reg.count)
            if bit >= width:
                ck.fail(_join(path, "bit"), f"{bit} is out of range for {register} (allowed: 0..{width - 1})")
        name = ck.string(d, "name", path, pattern=NAME_PATTERN, doc="letters, digits, _")
        if name is not None and name in names:
            ck.fail(_join(path, "name"), f"'{name}' is used twice (alarm names must be unique)")
        names.add(name)
        severity = ck.choice(d, "severity", path, SEVERITIES)
        text = ck.string(d, "text", path)
        if len(ck.problems) == before:
            out.append(AlarmDef(register, bit, name, severity, text))
    return tuple(out)


def _parse_status(ck: _Checker, raw: Any, registers: Mapping[str, RegisterDef]) -> StatusCodes | None:
    d = ck.mapping(raw, "status_codes", ("register", "codes"), required=("register", "codes"))
    if d is None or "register" not in d or "codes" not in d:
        return None
    register = _ref(ck, registers, d["register"], "status_codes.register")
    codes = ck.int_keyed(d["codes"], "status_codes.codes")
    return StatusCodes(register, types.MappingProxyType(codes)) if register else None


def _parse_setpoint(ck: _Checker, raw: Any, path: str, registers: Mapping[str, RegisterDef]) -> SetpointControl | None:
    if isinstance(raw, str):
        raw = {"register": raw}
    d = ck.mapping(raw, path, ("register", "direction_register", "charge_value", "discharge_value", "idle_value"),
                   required=("register",))
    if d is None or "register" not in d:
        return None
    before = len(ck.problems)
    register = _ref(ck, registers, d["register"], _join(path, "register"), writable=True, types_=NUMERIC_TYPES)
    direction = None
    values = {}
    if "direction_register" in d:
        direction = _ref(ck, registers, d["direction_register"], _join(path, "direction_register"), writable=True,
                         types_=tuple(INT_TYPES))
        for key in ("charge_value", "discharge_value", "idle_value"):
            if key not in d:
                ck.fail(_join(path, key), "is required with direction_register")
            values[key] = ck.integer(d, key, path, lo=0, hi=65535)
    else:
        for key in ("charge_value", "discharge_value", "idle_value"):
            if key in d:
                ck.fail(_join(path, key), "only together with direction_register")
    if len(ck.problems) > before:
        return None
    return SetpointControl(register, direction, values.get("charge_value"), values.get("discharge_value"),
                           values.get("idle_value"))


def _parse_controls(ck: _Checker, raw: Any, registers: Mapping[str, RegisterDef]) -> Controls | None:
    keys = ("remote_enable", "active_power_set_w", "active_power_limit_pct", "grid_power_set_w", "heartbeat",
            "comm_loss_timeout_s")
    d = ck.mapping(raw, "controls", keys)
    if d is None:
        return None
    remote = None
    if "remote_enable" in d:
        r = d["remote_enable"]
        r = {"register": r} if isinstance(r, str) else r
        rd = ck.mapping(r, "controls.remote_enable", ("register", "on_value", "off_value"), required=("register",))
        if rd is not None and "register" in rd:
            reg = _ref(ck, registers, rd["register"], "controls.remote_enable.register", writable=True,
                       types_=("bool", *INT_TYPES))
            on = ck.integer(rd, "on_value", "controls.remote_enable", 1, lo=0, hi=65535)
            off = ck.integer(rd, "off_value", "controls.remote_enable", 0, lo=0, hi=65535)
            remote = SwitchControl(reg, on, off) if reg else None
    setpoints = {key: _parse_setpoint(ck, d[key], f"controls.{key}", registers)
                 for key in ("active_power_set_w", "active_power_limit_pct", "grid_power_set_w") if key in d}
    heartbeat = None
    if "heartbeat" in d:
        h = d["heartbeat"]
        h = {"register": h} if isinstance(h, str) else h
        hd = ck.mapping(h, "controls.heartbeat", ("register", "period_s", "mode"), required=("register",))
        if hd is not None and "register" in hd:
            reg = _ref(ck, registers, hd["register"], "controls.heartbeat.register", writable=True,
                       types_=("bool", *INT_TYPES))
            period = ck.number(hd, "period_s", "controls.heartbeat", 1.0, lo=0.1, hi=600)
            mode = ck.choice(hd, "mode", "controls.heartbeat", HEARTBEAT_MODES, "counter")
            heartbeat = HeartbeatControl(reg, period, mode) if reg else None
    timeout = ck.number(d, "comm_loss_timeout_s", "controls", None, lo=0.1, hi=86400)
    return Controls(remote_enable=remote, heartbeat=heartbeat, comm_loss_timeout_s=timeout, **setpoints)


def _parse_dso(ck: _Checker, raw: Any, registers: Mapping[str, RegisterDef]) -> DsoMapping | None:
    d = ck.mapping(raw, "dso", ("trip", "steps", "default_limit_pct"))
    if d is None:
        return None
    inputs = ("bool", "bitfield", *INT_TYPES)

    def items(key: str) -> list:
        v = d.get(key) or []
        if not isinstance(v, list):
            ck.fail(f"dso.{key}", f"must be a list (got {type(v).__name__})")
            return []
        return v

    trip = []
    for i, item in enumerate(items("trip")):
        path = f"dso.trip[{i}]"
        td = ck.mapping({"register": item} if isinstance(item, str) else item, path, ("register", "invert"),
                        required=("register",))
        if td is not None and "register" in td:
            reg = _ref(ck, registers, td["register"], _join(path, "register"), types_=inputs)
            invert = ck.boolean(td, "invert", path, False)
            if reg:
                trip.append(DsoInput(reg, invert))
    steps = []
    for i, item in enumerate(items("steps")):
        path = f"dso.steps[{i}]"
        sd = ck.mapping(item, path, ("register", "limit_pct", "invert"), required=("register", "limit_pct"))
        if sd is not None and "register" in sd:
            reg = _ref(ck, registers, sd["register"], _join(path, "register"), types_=inputs)
            pct = ck.number(sd, "limit_pct", path, None, lo=0, hi=100)
            invert = ck.boolean(sd, "invert", path, False)
            if reg and pct is not None:
                steps.append(DsoStep(reg, pct, invert))
    default = ck.number(d, "default_limit_pct", "dso", 100.0, lo=0, hi=100)
    if not d.get("trip") and not d.get("steps"):
        ck.fail("dso", "maps no input (allowed: trip and/or steps)")
    return DsoMapping(tuple(trip), tuple(steps), default)


def _parse_rtc(ck: _Checker, raw: Any, registers: Mapping[str, RegisterDef]) -> RtcRegisters | None:
    names = ("year", "month", "day", "hour", "minute", "second")
    d = ck.mapping(raw, "rtc", names, required=names)
    if d is None or any(n not in d for n in names):
        return None
    refs = [_ref(ck, registers, d[n], f"rtc.{n}", writable=True, types_=tuple(INT_TYPES)) for n in names]
    return None if None in refs else RtcRegisters(*refs)


def _parse_sunspec(ck: _Checker, raw: Any, points: tuple[str, ...]) -> SunSpecSettings | None:
    d = ck.mapping(raw, "sunspec", ("base_addresses", "models", "points"))
    if d is None:
        return None
    out = {}
    for key, default in (("base_addresses", (0, 40000, 50000)), ("models", ())):
        v = d.get(key, list(default))
        if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, int) or not 0 <= x <= 65535
                                          for x in v):
            ck.fail(f"sunspec.{key}", f"must be a list of integers 0..65535 (got {v!r})")
            v = list(default)
        out[key] = tuple(v)
    mapped = {}
    if "points" in d:
        pd = d["points"]
        if not isinstance(pd, dict):
            ck.fail("sunspec.points", "must be a mapping of 'model.Point' to a plant-state point")
        else:
            for k, v in pd.items():
                if not isinstance(k, str) or not re.fullmatch(r"\d+\.[A-Za-z0-9_]+", k):
                    ck.fail(f"sunspec.points.{k}", "the key must be 'model.Point', e.g. 802.SoC")
                elif v not in points:
                    ck.fail(f"sunspec.points.{k}", f"{v!r} is not allowed (allowed: {', '.join(points)})")
                else:
                    mapped[k] = v
    return SunSpecSettings(out["base_addresses"], out["models"], types.MappingProxyType(mapped))


def parse_profile(data: Any, key: str, file: str = "<memory>") -> Profile:
    """Build a Profile from plain data (parsed YAML or JSON) or raise ProfileError listing every problem."""
    ck = _Checker(file)
    if not KEY_PATTERN.fullmatch(key):
        ck.fail("(file name)", f"{key!r} is not a valid profile key (allowed: lower-case letters, digits, _; 1-64)")
    top = ck.mapping(data, "", ("meta", "connection", "registers", "alarms", "status_codes", "controls", "dso",
                                "rtc", "sunspec"), required=("meta", "registers"))
    if top is None:
        raise ProfileError(ck.problems)
    points = plant_points()

    meta = None
    md = ck.mapping(top.get("meta"), "meta", ("vendor", "model", "kind", "description", "source", "verified", "notes"),
                    required=("vendor", "model", "kind", "source", "verified"))
    if md is not None:
        meta = ProfileMeta(vendor=ck.string(md, "vendor", "meta"), model=ck.string(md, "model", "meta"),
                           kind=ck.choice(md, "kind", "meta", KINDS), source=ck.string(md, "source", "meta"),
                           verified=ck.boolean(md, "verified", "meta"),
                           description=ck.string(md, "description", "meta", ""),
                           notes=ck.string(md, "notes", "meta", ""))

    connection = ConnectionDefaults()
    cd = ck.mapping(top.get("connection"), "connection", [f.name for f in dataclasses.fields(ConnectionDefaults)])
    if cd is not None:
        c = "connection"
        connection = ConnectionDefaults(
            port=ck.integer(cd, "port", c, 502, lo=1, hi=65535),
            unit_id=ck.integer(cd, "unit_id", c, 1, lo=0, hi=247),
            poll_interval_s=ck.number(cd, "poll_interval_s", c, 2.0, lo=0.1, hi=3600),
            timeout_s=ck.number(cd, "timeout_s", c, 3.0, lo=0.05, hi=60),
            baudrate=ck.choice(cd, "baudrate", c, BAUDRATES, 9600),
            parity=ck.choice(cd, "parity", c, PARITIES, "N"),
            stopbits=ck.choice(cd, "stopbits", c, (1, 2), 1),
            max_read_registers=ck.integer(cd, "max_read_registers", c, MAX_READ_REGISTERS, lo=1, hi=MAX_READ_REGISTERS),
            max_read_bits=ck.integer(cd, "max_read_bits", c, MAX_READ_BITS, lo=1, hi=MAX_READ_BITS),
            max_gap_registers=ck.integer(cd, "max_gap_registers", c, 0, lo=0, hi=MAX_READ_REGISTERS - 2))

    registers: dict[str, RegisterDef] = {}
    rd = top.get("registers")
    if rd is None and "registers" in top:
        rd = {}
    if rd is not None and not isinstance(rd, dict):
        ck.fail("registers", f"must be a mapping of register names to definitions (got {type(rd).__name__})")
    elif rd is not None:
        for name, raw in rd.items():
            path = f"registers.{name}"
            if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
                ck.fail(path, "is not a valid register name (allowed: a letter, then letters, digits, _; up to 80)")
                continue
            ck.declared.add(name)
            reg = _parse_register(ck, name, raw, path, points)
            if reg is not None:
                registers[name] = reg
        if not rd and "sunspec" not in top:
            ck.fail("registers", "is empty (only a sunspec profile discovers its registers at runtime)")
    _check_overlaps(ck, registers)
    for reg in registers.values():
        if reg.scale_register is not None:
            _ref(ck, registers, reg.scale_register, f"registers.{reg.name}.scale_register", types_=("int16",))

    alarms = _parse_alarms(ck, top.get("alarms"), registers)
    status = _parse_status(ck, top["status_codes"], registers) if "status_codes" in top else None
    controls = _parse_controls(ck, top["controls"], registers) if "controls" in top else None
    dso = _parse_dso(ck, top["dso"], registers) if "dso" in top else None
    rtc = _parse_rtc(ck, top["rtc"], registers) if "rtc" in top else None
    sunspec = _parse_sunspec(ck, top["sunspec"], points) if "sunspec" in top else None
    if ck.problems:
        raise ProfileError(ck.problems)
    return Profile(key=key, meta=meta, connection=connection, registers=types.MappingProxyType(registers),
                   alarms=alarms, status_codes=status, controls=controls, dso=dso, rtc=rtc, sunspec=sunspec,
                   file=file)


# --- files ---------------------------------------------------------------------------------------------

class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: YAML would silently keep the last register definition."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_profile(path: str | Path) -> Profile:
    """Load and validate one profile file; the key is the file name without `.yaml`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError([ProfileProblem(str(path), "(file)", f"cannot be read: {exc}")]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(yaml)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProfileError([ProfileProblem(str(path), where, f"is not valid YAML: {problem}")]) from None
    return parse_profile(data, path.stem, file=str(path))


def load_library(directory: str | Path) -> tuple[dict[str, Profile], dict[str, ProfileError]]:
    """Every `*.yaml` profile in `directory`: (key -> Profile, key -> ProfileError).

    A broken file never hides the good ones; the settings UI lists both.
    """
    profiles: dict[str, Profile] = {}
    errors: dict[str, ProfileError] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        try:
            profiles[path.stem] = load_profile(path)
        except ProfileError as exc:
            errors[path.stem] = exc
    return profiles, errors


# --- JSON for the settings UI --------------------------------------------------------------------------

def _register_to_json(reg: RegisterDef) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(RegisterDef):
        if f.name == "name":
            continue
        v = getattr(reg, f.name)
        if f.name == "count" and reg.type not in ("string", "bitfield"):
            continue  # derived from the type
        if v is None or (f.name in ("values", "na_values") and not v):
            continue
        if f.name == "values":
            v = {str(k): t for k, t in v.items()}
        elif f.name == "na_values":
            v = list(v)
        out[f.name] = v
    return out


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def profile_to_json(profile: Profile) -> dict[str, Any]:
    """JSON-ready data for `GET /api/modbus/profiles?profile=key`: the profile document with every
    default filled in, plus `key` and a precomputed `read_plan`. Without `key` and `read_plan` it is a
    valid profile document again (`parse_profile` accepts it), so the UI can edit and save it back.
    """
    doc: dict[str, Any] = {"key": profile.key, "meta": _plain(profile.meta), "connection": _plain(profile.connection),
                           "registers": {name: _register_to_json(r) for name, r in profile.registers.items()}}
    if profile.alarms:
        doc["alarms"] = _plain(profile.alarms)
    if profile.status_codes is not None:
        doc["status_codes"] = _plain(profile.status_codes)
    if profile.controls is not None:
        doc["controls"] = {k: v for k, v in _plain(profile.controls).items() if v is not None}
        for ctl in doc["controls"].values():
            if isinstance(ctl, dict):
                for k in [k for k, v in ctl.items() if v is None]:
                    del ctl[k]
    if profile.dso is not None:
        doc["dso"] = _plain(profile.dso)
    if profile.rtc is not None:
        doc["rtc"] = _plain(profile.rtc)
    if profile.sunspec is not None:
        doc["sunspec"] = _plain(profile.sunspec)
    doc["read_plan"] = [{"function": b.function, "address": b.address, "count": b.count,
                         "registers": [r.name for r in b.registers]} for b in profile.read_plan()]
    return doc

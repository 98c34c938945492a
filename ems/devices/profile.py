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

Validation is the EMS's one mechanism (`ems.config.validate`, as for `ems.yaml`): the format is the
frozen dataclasses of `profile_model` (each field's type and `constrained` limits, `check()` rules,
references to registers) plus `RegisterDoc` and `ProfileDoc` here. This module reads a file into
them; `profile_model` holds the loaded profile, `profile_json` its JSON view. Names other modules
import from here (`Profile`, `RegisterDef`, `load_profile`, ...) are re-exported.
"""
from __future__ import annotations

import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

import yaml

from ..config.validate import INVALID, Message, Reader, not_allowed
from ..config.validate import constrained as c
from ..errors import ProfileError, ProfileProblem
from .codec import (BIT_FUNCTIONS, FLOAT_TYPES, INT_TYPES, MAX_READ_BITS, MAX_READ_REGISTERS, REGISTER_TYPES,
                    sunspec_na, words_per_type)
from .profile_json import profile_to_json
from .profile_model import (ACCESS, BAUDRATES, CATEGORIES, DSO_INPUT_TYPES, FUNCTIONS, HEARTBEAT_MODES, KEY_PATTERN,
                            KINDS, NAME_PATTERN, NUMERIC_TYPES, ORDERS, PARITIES, SEVERITIES, Access, AlarmDef,
                            Category, ConnectionDefaults, Controls, DsoInput, DsoMapping, DsoStep, Function,
                            HeartbeatControl, Order, Profile, ProfileMeta, RegisterDef, RegisterRefs, RtcRegisters,
                            SetpointControl, StatusCodes, SunSpecSettings, SwitchControl, _EMPTY, dso_state,
                            plant_points, register_ref)

__all__ = [
    "ACCESS", "BAUDRATES", "CATEGORIES", "DSO_INPUT_TYPES", "FUNCTIONS", "HEARTBEAT_MODES", "KEY_PATTERN", "KINDS",
    "NAME_PATTERN", "NUMERIC_TYPES", "ORDERS", "PARITIES", "SEVERITIES", "AlarmDef", "ConnectionDefaults", "Controls",
    "DsoInput", "DsoMapping", "DsoStep", "HeartbeatControl", "Profile", "ProfileDoc", "ProfileMeta", "RegisterDef",
    "RegisterDoc", "RtcRegisters", "SetpointControl", "StatusCodes", "SunSpecSettings", "SwitchControl", "dso_state",
    "load_library", "load_profile", "parse_profile", "plant_points", "profile_to_json",
]


# --- the document: what a file may say --------------------------------------------------------------------

@dataclass(frozen=True)
class RegisterDoc:
    """A register as a profile file writes it; `to_register` derives its word count and write function."""

    address: int = c(min=0, max=65535)
    function: Function = c()
    type: str = c(choices=REGISTER_TYPES)
    count: Optional[int] = c(None, min=1, max=MAX_READ_BITS)
    word_order: Order = "big"
    byte_order: Order = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit: Optional[str] = None
    category: Category = "telemetry"
    access: Access = "r"
    write_function: Optional[Literal[5, 6, 15, 16]] = None
    min: Optional[float] = None
    max: Optional[float] = None
    point: Optional[str] = c(None, choices=plant_points)
    sign: Literal[1, -1] = 1
    description: str = ""
    vendor_name: Optional[str] = None
    values: Mapping[int, str] = c(default_factory=lambda: _EMPTY, doc="integer codes to texts")
    na_values: Optional[Union[list[int], Literal["sunspec"]]] = None
    scale_register: Optional[str] = c(None, pattern=NAME_PATTERN.pattern, doc="a register name")

    @property
    def writable(self) -> bool:
        return "w" in self.access

    def _count(self, problems: list[tuple[str, Message]]) -> int | None:
        """Addresses spanned (words, or bits for function 1/2), or None after adding why it is wrong."""
        bits = self.function in BIT_FUNCTIONS
        if bits and self.type not in ("bool", "bitfield"):
            source = "coils" if self.function == 1 else "discrete inputs"
            problems.append(("type", f"{self.type} cannot be read from {source} (allowed: bool, bitfield)"))
        elif self.count is not None and self.type not in ("string", "bitfield"):
            problems.append(("count", f"only for string and bitfield; {self.type} always spans "
                                      f"{words_per_type(self.type, None, self.function)}"))
        elif self.type == "string" and self.count is None:
            problems.append(("count", "is required for a string (registers, 2 characters each)"))
        elif self.count is not None and self.count > (limit := MAX_READ_BITS if bits else MAX_READ_REGISTERS):
            problems.append(("count", f"{self.count} is out of range (allowed: 1..{limit})"))
        elif self.type == "bitfield" and not bits and self.count is not None and self.count > 4:
            problems.append(("count", f"{self.count} is out of range (allowed: 1..4 words for a register bitfield)"))
        else:
            return words_per_type(self.type, self.count, self.function)
        return None

    def _write_functions(self, count: int) -> tuple[int, ...]:
        """The allowed write functions, the default first (none for read-only registers)."""
        if not self.writable or self.function not in (1, 3):
            return ()
        single, multi = (5, 15) if self.function == 1 else (6, 16)
        return (single, multi) if count == 1 else (multi,)

    def check(self) -> list[tuple[str, Message]]:
        problems: list[tuple[str, Message]] = []
        count = self._count(problems)
        if count is not None and self.address + count - 1 > 65535:
            problems.append(("address", f"{self.address} + {count} addresses runs past 65535"))
        if self.scale == 0:
            problems.append(("scale", "must not be 0 (allowed: any finite number except 0)"))
        if self.type in ("bool", "bitfield", "string"):
            problems += [(k, f"does not apply to a {self.type}") for k, default in (("scale", 1), ("offset", 0))
                         if getattr(self, k) != default]
        if self.function in (2, 4) and self.access != "r":
            problems.append(("access", f"{self.access!r} is not allowed for function {self.function}, which is "
                                       "read-only (allowed: r)"))
        if self.write_function is not None and not self.writable:
            problems.append(("write_function", "only for writable registers (access rw or w)"))
        elif self.write_function is not None and count is not None:
            allowed = self._write_functions(count)
            if allowed and self.write_function not in allowed:
                problems.append(("write_function", not_allowed(self.write_function, allowed)))
        for key in ("min", "max"):
            if getattr(self, key) is not None and not self.writable:
                problems.append((key, "only for writable registers (access rw or w): it limits writes"))
        if self.min is not None and self.max is not None and self.min > self.max:
            problems.append(("min", f"{self.min:g} is above max {self.max:g}"))
        if self.sign == -1 and self.point is None:
            problems.append(("sign", "only together with point (it converts to our sign convention)"))
        if self.na_values is not None and count is not None:
            if self.type in ("bool", "string") or self.function in BIT_FUNCTIONS:
                problems.append(("na_values", f"does not apply to a {self.type}"))
            elif self.na_values != "sunspec":
                top = (1 << (16 * count)) - 1
                bad = [v for v in self.na_values if not 0 <= v <= top]
                if bad:
                    problems.append(("na_values", f"{bad} do not fit {count} register(s) (allowed: 0..0x{top:X})"))
        if self.scale_register is not None and self.type not in INT_TYPES and self.type not in FLOAT_TYPES:
            problems.append(("scale_register", f"does not apply to a {self.type}"))
        return problems

    def to_register(self, name: str) -> RegisterDef:
        """The register this (checked) document entry defines."""
        count = self._count([])
        assert count is not None, "to_register after a failed check"
        allowed = self._write_functions(count)
        na: tuple[int, ...] = ()
        if self.na_values == "sunspec":
            na = sunspec_na(self.type, count)
        elif self.na_values is not None:
            na = tuple(self.na_values)
        return RegisterDef(name=name, address=self.address, function=self.function, type=self.type, count=count,
                           word_order=self.word_order, byte_order=self.byte_order, scale=self.scale,
                           offset=self.offset, unit=self.unit, category=self.category, access=self.access,
                           write_function=(self.write_function or allowed[0]) if allowed else None,
                           min=self.min, max=self.max, point=self.point, sign=self.sign,
                           description=self.description, vendor_name=self.vendor_name, values=self.values,
                           na_values=na, scale_register=self.scale_register)


@dataclass(frozen=True)
class ProfileDoc:
    """A profile file's top-level keys. `parse_profile` reads the sections one by one (registers first,
    as the others refer to them), so a broken section hides no problem in another."""

    meta: ProfileMeta
    registers: Mapping[str, RegisterDoc] = c(key_pattern=NAME_PATTERN.pattern, doc="register names to definitions",
                                             key_doc="a letter, then letters, digits, _; up to 80")
    connection: ConnectionDefaults = field(default_factory=ConnectionDefaults)
    alarms: tuple[AlarmDef, ...] = c((), unique="name")
    status_codes: Optional[StatusCodes] = None
    controls: Optional[Controls] = None
    dso: Optional[DsoMapping] = None
    rtc: Optional[RtcRegisters] = None
    sunspec: Optional[SunSpecSettings] = None


def _check_overlaps(reader: Reader, registers: Mapping[str, RegisterDef]) -> None:
    """Two definitions of the same address (per function code) are an error, not a choice."""
    by_function: dict[int, list[RegisterDef]] = {}
    for reg in registers.values():
        by_function.setdefault(reg.function, []).append(reg)
    for function, regs in by_function.items():
        regs.sort(key=lambda r: (r.address, r.end))
        widest: RegisterDef | None = None
        for reg in regs:
            if widest is not None and reg.address < widest.end:
                reader.fail(f"registers.{reg.name}.address",
                            f"{reg.address} overlaps registers.{widest.name} (addresses {widest.address}.."
                            f"{widest.end - 1}, function {function})")
            if widest is None or reg.end > widest.end:
                widest = reg


_SCALE_REGISTER = register_ref(types_=("int16",))


def parse_profile(data: Any, key: str, file: str = "<memory>") -> Profile:
    """Build a Profile from plain data (parsed YAML or JSON) or raise ProfileError listing every problem."""
    reader = Reader(null_is_unset=True)  # null = not set (JSON from the UI)
    if not KEY_PATTERN.fullmatch(key):
        reader.fail("(file name)", f"{key!r} is not a valid profile key (allowed: lower-case letters, digits, _; 1-64)")
    top = reader.mapping(ProfileDoc, data, "")
    if top is None:
        raise ProfileError.in_file(file, reader.problems)

    def section(name: str) -> Any:
        return reader.read_field(ProfileDoc, name, top, "")

    meta, connection = section("meta"), section("connection")
    docs = section("registers")
    registers = {name: doc.to_register(name) for name, doc in docs.items()} if docs is not INVALID else {}
    raw = top.get("registers")
    if isinstance(raw, dict) and not raw and "sunspec" not in top:
        reader.fail("registers", "is empty (only a sunspec profile discovers its registers at runtime)")
    declared = frozenset(k for k in raw if isinstance(k, str) and NAME_PATTERN.fullmatch(k)) \
        if isinstance(raw, dict) else frozenset()
    reader.context = refs = RegisterRefs(registers, declared)
    _check_overlaps(reader, registers)
    for reg in registers.values():
        problem = _SCALE_REGISTER(reg.scale_register, refs) if reg.scale_register is not None else None
        if problem:
            reader.fail(f"registers.{reg.name}.scale_register", problem)
    sections = {name: section(name) for name in ("alarms", "status_codes", "controls", "dso", "rtc", "sunspec")}
    if reader.problems:
        raise ProfileError.in_file(file, reader.problems)
    return Profile(key=key, meta=meta, connection=connection, registers=types.MappingProxyType(registers),
                   file=file, **sections)


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
        data = yaml.load(text, Loader=_UniqueKeyLoader)
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

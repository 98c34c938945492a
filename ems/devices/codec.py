"""Register words <-> engineering values, and which reads to send: pure, no I/O, no clock.

Everything here works on the words a Modbus read returns, so it is tested on captured words without a
socket, and the device simulator uses the same functions to fill its register image.

Conventions (the contract the poller and the simulator rely on):
- `words` is what a read returns for one register definition: 16-bit unsigned ints for holding/input
  registers (function 3/4), bits 0/1 for coils/discrete inputs (function 1/2), `reg.count` of them.
- `word_order` says which word carries the most significant part: "big" = first word high (the Modbus
  norm); "little" = low word first (e.g. Sungrow's "swap: word"). `byte_order` is the order of the two
  bytes inside each word: "big" = high byte first (the Modbus norm).
- value = raw * scale + offset; SunSpec registers with a `scale_register` are also multiplied by
  10**sf, where sf is the decoded value of that register (see `decode_values`).
- `None` means "not available": NaN/inf floats, and raw patterns listed in `reg.na_values` (the unsigned
  bit pattern, e.g. 0x8000 for an int16 - the SunSpec "not implemented" sentinels, see `sunspec_na`).
- Decoded values are the device's view. A register's `sign` (-1 when the device's sign convention is the
  opposite of ours) is applied only when a value feeds a plant-state point: `to_point` / `from_point`.
- `encode` inverts `decode`: it removes offset/scale, rounds to the nearest raw value (ties away from
  zero) and refuses values outside the register's min/max or the type's range with a `CodecError`.
  It does not check `access`: the simulator encodes read-only registers too; the poller checks access.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover - imported for type hints only (profile imports this module)
    from .profile import AlarmDef, RegisterDef

INT_TYPES: dict[str, tuple[int, bool]] = {  # type -> (words, signed)
    "int16": (1, True), "uint16": (1, False),
    "int32": (2, True), "uint32": (2, False),
    "int64": (4, True), "uint64": (4, False),
}
FLOAT_TYPES: dict[str, tuple[int, str]] = {"float32": (2, ">f"), "float64": (4, ">d")}  # type -> (words, struct)
REGISTER_TYPES = (*INT_TYPES, *FLOAT_TYPES, "string", "bool", "bitfield")
BIT_FUNCTIONS = (1, 2)       # coils, discrete inputs: one bit per address
WORD_FUNCTIONS = (3, 4)      # holding, input registers: one 16-bit word per address
MAX_READ_REGISTERS = 125     # Modbus limit for function 3/4 reads
MAX_READ_BITS = 2000         # Modbus limit for function 1/2 reads


class CodecError(ValueError):
    """Words that do not fit a register definition, or a value that cannot be written to it."""

    def __init__(self, register: str, message: str):
        self.register = register
        self.message = message
        super().__init__(f"{register}: {message}")


def words_per_type(type_: str, count: int | None = None, function: int = 3) -> int:
    """How many addresses a register of `type_` spans: words for function 3/4, bits for 1/2.

    `count` is needed for strings (words) and for bitfields read as bits; a register bitfield defaults
    to one word. Raises ValueError for a type that cannot be read with `function`.
    """
    if function in BIT_FUNCTIONS:
        if type_ == "bool":
            return 1
        if type_ == "bitfield":
            return count if count is not None else 1
        raise ValueError(f"type {type_} cannot be read as bits (function {function}): use bool or bitfield")
    if type_ in INT_TYPES:
        return INT_TYPES[type_][0]
    if type_ in FLOAT_TYPES:
        return FLOAT_TYPES[type_][0]
    if type_ == "bool":
        return 1
    if type_ == "bitfield":
        return count if count is not None else 1
    if type_ == "string":
        if count is None:
            raise ValueError("a string needs a count (registers, 2 characters each)")
        return count
    raise ValueError(f"unknown type {type_!r} (allowed: {', '.join(REGISTER_TYPES)})")


def sunspec_na(type_: str, count: int = 1) -> tuple[int, ...]:
    """The SunSpec 'not implemented' bit pattern for a register of this type (empty if none)."""
    if type_ in INT_TYPES:
        words, signed = INT_TYPES[type_]
        bits = 16 * words
        return ((1 << (bits - 1)),) if signed else ((1 << bits) - 1,)
    if type_ == "bitfield":
        return ((1 << (16 * count)) - 1,)
    if type_ == "float32":
        return (0x7FC00000,)  # NaN: decodes to None anyway
    return ()


# --- words <-> bytes -------------------------------------------------------------------------------

def _words_to_bytes(reg: RegisterDef, words: Sequence[int]) -> bytes:
    """The register's bytes in canonical order (most significant first)."""
    ordered = list(words)
    if reg.word_order == "little":
        ordered.reverse()
    out = bytearray()
    for w in ordered:
        hi, lo = (w >> 8) & 0xFF, w & 0xFF
        out += bytes((lo, hi)) if reg.byte_order == "little" else bytes((hi, lo))
    return bytes(out)


def _bytes_to_words(reg: RegisterDef, data: bytes) -> list[int]:
    words = []
    for i in range(0, len(data), 2):
        hi, lo = data[i], data[i + 1]
        words.append((lo << 8 | hi) if reg.byte_order == "little" else (hi << 8 | lo))
    if reg.word_order == "little":
        words.reverse()
    return words


def _check_words(reg: RegisterDef, words: Sequence[int]) -> None:
    if len(words) != reg.count:
        raise CodecError(reg.name, f"expected {reg.count} {'bits' if reg.function in BIT_FUNCTIONS else 'words'}, "
                                   f"got {len(words)}")
    top = 1 if reg.function in BIT_FUNCTIONS else 0xFFFF
    for w in words:
        if isinstance(w, bool):
            continue
        if not isinstance(w, int) or not 0 <= w <= top:
            raise CodecError(reg.name, f"{w!r} is not a {'bit' if top == 1 else '16-bit word'}")


# --- decode ----------------------------------------------------------------------------------------

def _scaled(reg: RegisterDef, raw: int | float, sf: int | None) -> int | float:
    """raw * scale * 10**sf + offset; an int when every factor is integral (exact for 64-bit counters)."""
    exponent = sf or 0
    if (isinstance(raw, int) and float(reg.scale).is_integer() and float(reg.offset).is_integer()
            and exponent >= 0):
        return raw * int(reg.scale) * 10 ** exponent + int(reg.offset)
    value: float = raw
    factor = reg.scale * 10.0 ** exponent
    if factor != 1:
        value = value * factor
    if reg.offset:
        value = value + reg.offset  # skipped at 0 so a float -0.0 keeps its sign
    return float(value)


def _finite_or_none(value: int | float) -> int | float | None:
    return value if isinstance(value, int) or math.isfinite(value) else None


WordDecoder = Callable[[Sequence[int]], Any]
_COMPILED: dict[int, tuple["RegisterDef", WordDecoder | None]] = {}


def _compile(reg: RegisterDef) -> WordDecoder | None:
    """A decoder specialised to `reg` for the common case - a number from 16-bit words, no SunSpec scale
    register - or None where only the general path applies (bits, strings, bools, bitfields, SunSpec).

    Why: the poller decodes every register of every poll (a month's soak: ~50 million decodes), and the
    general path re-reads the definition each time. This one gives the same value as `_decode_general`
    (a property test compares them over every profile's registers); words that do not fit (wrong count,
    not a 16-bit word) are left to the general path, which names the problem.
    """
    if (reg.function in BIT_FUNCTIONS or reg.scale_register is not None
            or (reg.type not in INT_TYPES and reg.type not in FLOAT_TYPES)):
        return None
    count = reg.count
    pack = struct.Struct(("<" if reg.byte_order == "little" else ">") + "H" * count).pack
    reverse = reg.word_order == "little"
    na_values = frozenset(reg.na_values)
    unpack_float = struct.Struct(FLOAT_TYPES[reg.type][1]).unpack if reg.type in FLOAT_TYPES else None
    signed = INT_TYPES[reg.type][1] if reg.type in INT_TYPES else False
    integral = float(reg.scale).is_integer() and float(reg.offset).is_integer()
    int_scale, int_offset = (int(reg.scale), int(reg.offset)) if integral else (1, 0)
    factor, offset = float(reg.scale), reg.offset

    def decode_number(words: Sequence[int]) -> Any:
        if len(words) != count:
            raise ValueError("word count")
        data = pack(*(reversed(words) if reverse else words))
        if na_values and int.from_bytes(data, "big") in na_values:
            return None
        if unpack_float is not None:
            raw: float = unpack_float(data)[0]
            if not math.isfinite(raw):
                return None
        else:
            whole = int.from_bytes(data, "big", signed=signed)
            if integral:
                return whole * int_scale + int_offset
            raw = whole
        value = raw * factor if factor != 1 else raw
        if offset:
            value = value + offset  # skipped at 0 so a float -0.0 keeps its sign
        value = float(value)
        return value if math.isfinite(value) else None

    return decode_number


def decode(reg: RegisterDef, words: Sequence[int], sf: int | None = None) -> Any:
    """The engineering value of one register from its words (see the module docstring).

    Returns bool for bool, int for bitfield (bit i = i-th bit; for coils/discrete inputs bit i is the
    address `reg.address + i`), str for string, None for "not available", else int or float.
    `sf` is the SunSpec scale factor for a register with `scale_register`; when it is None (unknown or
    itself "not implemented") the value is None too.
    """
    if sf is None:
        entry = _COMPILED.get(id(reg))
        if entry is None or entry[0] is not reg:
            if len(_COMPILED) > 20_000:  # profiles reloaded many times over: start afresh
                _COMPILED.clear()
            entry = _COMPILED[id(reg)] = (reg, _compile(reg))
        fast = entry[1]
        if fast is not None:
            try:
                return fast(words)
            except (ValueError, TypeError, struct.error):
                pass  # the general path names what is wrong
    return _decode_general(reg, words, sf)


def _decode_general(reg: RegisterDef, words: Sequence[int], sf: int | None = None) -> Any:
    """`decode` for every register and scale factor, checking the words first."""
    _check_words(reg, words)
    if reg.scale_register is None and sf is not None:
        raise CodecError(reg.name, "got a scale factor but the register has no scale_register")
    if reg.function in BIT_FUNCTIONS:
        bits = [1 if w else 0 for w in words]
        if reg.type == "bool":
            return bool(bits[0])
        return sum(bit << i for i, bit in enumerate(bits))
    if reg.type == "bool":
        return words[0] != 0
    data = _words_to_bytes(reg, words)
    if reg.type == "string":
        return data.split(b"\0", 1)[0].decode("ascii", errors="replace").strip()
    pattern = int.from_bytes(data, "big")
    if pattern in reg.na_values:
        return None
    if reg.type == "bitfield":
        return pattern
    if reg.type in FLOAT_TYPES:
        (raw,) = struct.unpack(FLOAT_TYPES[reg.type][1], data)
        if not math.isfinite(raw):
            return None
    else:
        raw = int.from_bytes(data, "big", signed=INT_TYPES[reg.type][1])
    if reg.scale_register is not None and sf is None:
        return None
    return _finite_or_none(_scaled(reg, raw, sf))  # never NaN/inf: consumers compare values


# --- encode ----------------------------------------------------------------------------------------

def _round_half_away(q: Fraction) -> int:
    n = math.floor(abs(q) + Fraction(1, 2))
    return n if q >= 0 else -n


def _number(reg: RegisterDef, value: Any) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CodecError(reg.name, f"{value!r} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise CodecError(reg.name, f"{value!r} cannot be written (not a finite number)")
    return Fraction(value)


def encode(reg: RegisterDef, value: Any, sf: int | None = None) -> list[int]:
    """The words to write for `value` (engineering units); the inverse of `decode`.

    Raises CodecError when the value is of the wrong kind, outside the register's min/max, outside the
    type's range after removing offset/scale, or would encode to one of the register's `na_values`.
    """
    if reg.scale_register is not None and sf is None:
        raise CodecError(reg.name, f"needs the scale factor from {reg.scale_register} to encode")
    if reg.scale_register is None and sf is not None:
        raise CodecError(reg.name, "got a scale factor but the register has no scale_register")
    if reg.type == "bool":
        if value not in (0, 1) or not isinstance(value, (bool, int)):
            raise CodecError(reg.name, f"{value!r} is not a bool (allowed: true, false, 0, 1)")
        return [1 if value else 0]
    if reg.function in BIT_FUNCTIONS:  # bitfield over coils/discrete inputs
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << reg.count):
            raise CodecError(reg.name, f"{value!r} is out of range (allowed: 0..{(1 << reg.count) - 1})")
        return [(value >> i) & 1 for i in range(reg.count)]
    nbytes = 2 * reg.count
    if reg.type == "string":
        if not isinstance(value, str):
            raise CodecError(reg.name, f"{value!r} is not a string")
        try:
            data = value.encode("ascii")
        except UnicodeEncodeError:
            raise CodecError(reg.name, f"{value!r} is not ASCII") from None
        if len(data) > nbytes:
            raise CodecError(reg.name, f"{value!r} is longer than {nbytes} characters")
        return _bytes_to_words(reg, data.ljust(nbytes, b"\0"))
    if reg.type == "bitfield":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << (8 * nbytes)):
            raise CodecError(reg.name, f"{value!r} is out of range (allowed: 0..{(1 << (8 * nbytes)) - 1})")
        pattern = value
        data = pattern.to_bytes(nbytes, "big")
    else:
        number = _number(reg, value)
        if reg.min is not None and number < Fraction(reg.min):
            raise CodecError(reg.name, f"{value} is below the minimum {reg.min:g} {reg.unit or ''}".rstrip())
        if reg.max is not None and number > Fraction(reg.max):
            raise CodecError(reg.name, f"{value} is above the maximum {reg.max:g} {reg.unit or ''}".rstrip())
        if reg.type in FLOAT_TYPES:
            raw_f = (float(value) - reg.offset) / (reg.scale * 10.0 ** (sf or 0))  # float maths keeps -0.0
            try:
                data = struct.pack(FLOAT_TYPES[reg.type][1], raw_f)
            except (OverflowError, struct.error):
                raise CodecError(reg.name, f"{value} is out of range for {reg.type}") from None
            if not math.isfinite(struct.unpack(FLOAT_TYPES[reg.type][1], data)[0]):
                raise CodecError(reg.name, f"{value} is out of range for {reg.type}")
        else:
            words, signed = INT_TYPES[reg.type]
            raw = _round_half_away((number - Fraction(reg.offset)) / (Fraction(reg.scale) * Fraction(10) ** (sf or 0)))
            bits = 16 * words
            lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
            if not lo <= raw <= hi:
                raise CodecError(reg.name, f"{value} needs raw value {raw}, out of range for {reg.type} "
                                           f"(allowed raw: {lo}..{hi})")
            data = raw.to_bytes(nbytes, "big", signed=signed)
        pattern = int.from_bytes(data, "big")
    if pattern in reg.na_values:
        raise CodecError(reg.name, f"{value!r} encodes to 0x{pattern:X}, which this register reserves "
                                   "for 'not available'")
    return _bytes_to_words(reg, data)


# --- values of a whole profile ----------------------------------------------------------------------

def decode_values(registers: Mapping[str, RegisterDef], words_by_name: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """Decode every register whose words were read, applying SunSpec scale factors.

    Registers missing from `words_by_name` are left out; a register whose scale register was not read
    (or reads "not implemented") decodes to None.
    """
    values: dict[str, Any] = {}
    pending: list[tuple[RegisterDef, Sequence[int], str]] = []
    for name, words in words_by_name.items():
        reg = registers[name]
        if reg.scale_register is None:
            values[name] = decode(reg, words)
        else:
            pending.append((reg, words, reg.scale_register))
    for reg, words, scale_register in pending:
        sf = values.get(scale_register)  # None: not read, or "not implemented"
        values[reg.name] = None if sf is None else decode(reg, words, sf=int(sf))
    return values


def to_point(reg: RegisterDef, value: Any) -> Any:
    """The value in our sign convention (battery > 0 = discharging, grid > 0 = import)."""
    return value * reg.sign if value is not None and reg.sign != 1 else value


def from_point(reg: RegisterDef, value: Any) -> Any:
    """The value in the device's sign convention, for writing a point's setpoint."""
    return to_point(reg, value)


def active_alarms(alarms: Iterable[AlarmDef], values: Mapping[str, Any]) -> list[AlarmDef]:
    """The alarms whose bit is set in the decoded `values`; alarms on unread registers are left out."""
    active = []
    for alarm in alarms:
        value = values.get(alarm.register)
        if value is None:
            continue
        if isinstance(value, bool):
            on = value and alarm.bit == 0
        else:
            on = bool((int(value) >> alarm.bit) & 1)
        if on:
            active.append(alarm)
    return active


# --- read planning ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReadBlock:
    """One read request: `count` addresses from `address` with `function`, covering `registers`."""

    function: int
    address: int
    count: int
    registers: tuple[RegisterDef, ...]

    @property
    def end(self) -> int:
        return self.address + self.count


def plan_reads(registers: Iterable[RegisterDef], max_count: int = MAX_READ_REGISTERS, max_gap: int = 0,
               max_bits: int = MAX_READ_BITS) -> list[ReadBlock]:
    """Group the readable registers into as few requests as possible.

    Registers of the same function code that are adjacent (or at most `max_gap` unused addresses
    apart) share a request while it stays within `max_count` registers (function 3/4) or `max_bits`
    bits (function 1/2). Bridging gaps reads addresses no register defines: many devices answer that
    with an exception, so the default is 0. Greedy in address order, which is optimal for this
    one-dimensional packing. Blocks come sorted by function, then address.
    """
    by_function: dict[int, list[RegisterDef]] = {}
    for reg in registers:
        if reg.readable:
            by_function.setdefault(reg.function, []).append(reg)
    blocks: list[ReadBlock] = []
    for function in sorted(by_function):
        limit = max_bits if function in BIT_FUNCTIONS else max_count
        regs = sorted(by_function[function], key=lambda r: (r.address, r.count))
        start = end = -1
        members: list[RegisterDef] = []
        for reg in regs:
            if reg.count > limit:
                raise ValueError(f"{reg.name} spans {reg.count} addresses, more than one read may carry ({limit})")
            new_end = max(end, reg.address + reg.count)
            if members and reg.address - end <= max_gap and new_end - start <= limit:
                members.append(reg)
                end = new_end
                continue
            if members:
                blocks.append(ReadBlock(function, start, end - start, tuple(members)))
            members, start, end = [reg], reg.address, reg.address + reg.count
        if members:
            blocks.append(ReadBlock(function, start, end - start, tuple(members)))
    return blocks


def split_block(block: ReadBlock, words: Sequence[int]) -> dict[str, list[int]]:
    """Register name -> its words, from the words a block's read returned.

    A bit read may return more bits than asked (padded to whole bytes, as pymodbus does): extra bits
    are ignored. A register read must return exactly `block.count` words.
    """
    if block.function in BIT_FUNCTIONS:
        if len(words) < block.count:
            raise CodecError(f"read {block.function}@{block.address}", f"expected {block.count} bits, got {len(words)}")
    elif len(words) != block.count:
        raise CodecError(f"read {block.function}@{block.address}", f"expected {block.count} words, got {len(words)}")
    out = {}
    for reg in block.registers:
        i = reg.address - block.address
        out[reg.name] = [int(w) for w in words[i:i + reg.count]]
    return out

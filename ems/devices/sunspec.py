"""SunSpec: find a device's models and turn the SunSpec model definitions into profile registers.

Pure: `discover` walks the map through a `read(address, count)` callable the caller provides (the poller
wraps its Modbus client, tests an in-memory image), so the walk is tested without a socket.

- Discovery: read 2 registers at each base address (0, 40000, 50000) until one holds 'SunS'
  (0x5375 0x6E53); then from base+2 read model id and length (length excludes the 2-register header),
  the next model starts at address + 2 + length, until model id 0xFFFF.
- Model definitions are the SunSpec Alliance's JSON files (sunspec/models, Apache-2.0), shipped in
  `profiles/sunspec/`. Each point becomes a RegisterDef named `m<model>_<Point>` (`m802_SoC`; points in
  groups: `m704_PFWInj_PF`; repeating groups get a 1-based index, `m160_module_2_DCA`).
- Scale factors: a point whose `sf` names another point (`W` -> `W_SF`) gets `scale_register:
  m103_W_SF`; the codec multiplies by 10**sf where sf is that register's decoded value (`decode_values`
  does it for a whole read). A numeric `sf` becomes a fixed `scale`.
- "Not implemented" values (0x8000 int16, 0xFFFF uint16/enum16/bitfield16, 0x80000000 int32, 0 for
  accumulators, NaN floats, ...) are the registers' `na_values` and decode to None.
- SunSpec registers are holding registers (function 3); writable points (access RW) use function 16.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import re
import types
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

from .codec import encode
from .profile import AlarmDef, Profile, RegisterDef

SUNS_MARKER = (0x5375, 0x6E53)
DEFAULT_BASES = (0, 40000, 50000)
END_MODEL_ID = 0xFFFF
HEADER_POINTS = ("ID", "L")

Read = Callable[[int, int], "Sequence[int] | None"]

# SunSpec point type -> (profile type, registers, "not implemented" patterns); None = skipped (no value).
_TYPES: dict[str, tuple[str, int, tuple[int, ...]] | None] = {
    "int16": ("int16", 1, (0x8000,)),
    "uint16": ("uint16", 1, (0xFFFF,)),
    "raw16": ("uint16", 1, ()),
    "count": ("uint16", 1, ()),
    "acc16": ("uint16", 1, (0,)),
    "enum16": ("uint16", 1, (0xFFFF,)),
    "bitfield16": ("bitfield", 1, (0xFFFF,)),
    "sunssf": ("int16", 1, (0x8000,)),
    "int32": ("int32", 2, (0x80000000,)),
    "uint32": ("uint32", 2, (0xFFFFFFFF,)),
    "acc32": ("uint32", 2, (0,)),
    "enum32": ("uint32", 2, (0xFFFFFFFF,)),
    "bitfield32": ("bitfield", 2, (0xFFFFFFFF,)),
    "ipaddr": ("uint32", 2, (0,)),
    "int64": ("int64", 4, (0x8000000000000000,)),
    "uint64": ("uint64", 4, (0xFFFFFFFFFFFFFFFF,)),
    "acc64": ("uint64", 4, (0,)),
    "bitfield64": ("bitfield", 4, (0xFFFFFFFFFFFFFFFF,)),
    "float32": ("float32", 2, (0x7FC00000,)),
    "float64": ("float64", 4, (0x7FF8000000000000,)),
    "string": ("string", 0, ()),  # size from the point
    "pad": None,
    "ipv6addr": None,
    "eui48": None,
}
_UNITS = {"Pct": "%", "Secs": "s", "C": "°C", "Var": "var", "Varh": "varh", "AH": "Ah"}
_STATUS_ENUMS = {"St", "ChaSt", "State", "InvSt", "ConnSt", "LocRemCtl", "StVnd", "StateVnd", "Typ"}


class ModelLocation(NamedTuple):
    model_id: int
    address: int  # of the model's ID register
    length: int   # registers after the 2-register header (ID, L)


class SunSpecError(ValueError):
    """Not a SunSpec device, a broken model chain, or a model definition this module cannot lay out."""


# --- discovery -----------------------------------------------------------------------------------------

def _read(read: Read, address: int, count: int) -> list[int] | None:
    words = read(address, count)
    if words is None:
        return None
    if len(words) != count:
        raise SunSpecError(f"read of {count} registers at {address} returned {len(words)}")
    return [int(w) for w in words]


def discover(read: Read, bases: Iterable[int] = DEFAULT_BASES, max_models: int = 256) -> list[ModelLocation]:
    """The device's models in map order, as (model_id, address of its ID register, length).

    `read(address, count)` returns the holding-register words, or None when the device answers that
    the address does not exist (exception response); I/O errors should propagate as exceptions.
    A chain that ends without the 0xFFFF end marker (the next header does not exist) ends there.
    Raises SunSpecError when no base holds 'SunS' or the chain runs past 65535 / `max_models`.
    """
    bases = tuple(bases)
    for base in bases:
        if _read(read, base, 2) != list(SUNS_MARKER):
            continue
        models: list[ModelLocation] = []
        address = base + 2
        while True:
            if address + 1 > 65535:
                raise SunSpecError(f"model chain from base {base} runs past address 65535")
            header = _read(read, address, 2)
            if header is None or header[0] == END_MODEL_ID:
                return models
            if len(models) >= max_models:
                raise SunSpecError(f"more than {max_models} models from base {base}: no end marker?")
            models.append(ModelLocation(header[0], address, header[1]))
            address += 2 + header[1]
    raise SunSpecError(f"no SunSpec map ('SunS' marker) at {', '.join(str(b) for b in bases)}")


# --- model definitions ---------------------------------------------------------------------------------

def models_dir() -> Path:
    from ..resources import profiles_dir

    return profiles_dir() / "sunspec"


@functools.lru_cache(maxsize=64)
def _load_model_cached(model_id: int, directory: str) -> str:
    path = Path(directory) / f"model_{model_id}.json"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        raise SunSpecError(f"no definition for SunSpec model {model_id} ({path} is missing)") from None


def load_model(model_id: int, directory: str | Path | None = None) -> dict[str, Any]:
    """The SunSpec JSON definition of `model_id` (a fresh dict each call)."""
    return json.loads(_load_model_cached(int(model_id), str(directory or models_dir())))


def available_models(directory: str | Path | None = None) -> tuple[int, ...]:
    """The model ids this installation has definitions for."""
    found = (re.fullmatch(r"model_(\d+)\.json", p.name) for p in Path(directory or models_dir()).glob("model_*.json"))
    return tuple(sorted(int(m.group(1)) for m in found if m))


def _point_size(point: Mapping[str, Any]) -> int:
    return int(point["size"])


def _group_size(group: Mapping[str, Any], counts: Mapping[str, int], path: str) -> int:
    size = sum(_point_size(p) for p in group.get("points", ()))
    for child in group.get("groups", ()):
        n = _group_count(child, counts)
        if n is None:
            key = child.get("count") or child["name"]
            raise SunSpecError(f"{path}.{child['name']}: repeat count unknown (pass counts={{'{key}': n}})")
        size += n * _group_size(child, counts, f"{path}.{child['name']}")
    return size


def _group_count(group: Mapping[str, Any], counts: Mapping[str, int]) -> int | None:
    count = group.get("count", 1)
    if isinstance(count, int) and count > 0:
        return count
    key = count if isinstance(count, str) else group["name"]
    return counts.get(key)


def _known_count(group: Mapping[str, Any], counts: Mapping[str, int]) -> int:
    """The repeat count of a group that is not the (single) unknown one."""
    count = _group_count(group, counts)
    assert count is not None, f"repeat count of {group['name']} unknown"
    return count


def _derive_counts(model: Mapping[str, Any], length: int | None, counts: Mapping[str, int]) -> dict[str, int]:
    """Fill in one unknown top-level repeat count from the model length, as SunSpec clients do."""
    counts = dict(counts)
    top = model["group"]
    unknown = [g for g in top.get("groups", ()) if _group_count(g, counts) is None]
    if not unknown:
        return counts
    if length is None or len(unknown) > 1:
        names = ", ".join(g["name"] for g in unknown)
        raise SunSpecError(f"model {model['id']}: repeat count of {names} unknown; pass the model length or counts")
    (group,) = unknown
    key = group["count"] if isinstance(group.get("count"), str) else group["name"]
    fixed = sum(_point_size(p) for p in top.get("points", ())) - 2 + sum(
        _known_count(g, counts) * _group_size(g, counts, g["name"]) for g in top.get("groups", ()) if g is not group)
    one = _group_size(group, counts, group["name"])
    n, rest = divmod(length - fixed, one) if one else (0, 0)
    if n < 0 or rest:
        raise SunSpecError(f"model {model['id']}: length {length} does not fit {group['name']} "
                           f"repeats of {one} registers")
    counts[key] = n
    return counts


def model_length(model: Mapping[str, Any], counts: Mapping[str, int] | None = None) -> int:
    """The model's length as its header states it (registers after ID and L)."""
    return _group_size(model["group"], counts or {}, str(model["id"])) - 2


def _category(point: Mapping[str, Any], reg_type: str) -> str:
    name = point["name"]
    if point["type"] == "sunssf" or name in HEADER_POINTS or point.get("static") == "S" or reg_type == "string":
        return "info"
    if point.get("access") == "RW":
        return "heartbeat" if name.endswith("Hb") else "control"
    if reg_type == "bitfield" and (name.startswith("Evt") or name.startswith("Alrm")):
        return "alarm"
    if point["type"] in ("enum16", "enum32") and name in _STATUS_ENUMS:
        return "status"
    return "telemetry"


def model_registers(model: Mapping[str, Any], start: int, length: int | None = None, prefix: str | None = None,
                    counts: Mapping[str, int] | None = None, points: Mapping[str, str] | None = None
                    ) -> dict[str, RegisterDef]:
    """Register definitions for one model instance whose ID register is at `start`.

    `length` (from discovery) sizes a repeating group whose count is only known at runtime, and points
    beyond it are left out (a device implementing a shorter, older revision). `counts` gives repeat
    counts by count-point or group name. `points` maps point names (`SoC`) to plant-state points.
    """
    prefix = prefix or f"m{model['id']}"
    counts = _derive_counts(model, length, counts or {})
    end = start + 2 + length if length is not None else None
    layout: list[tuple[str, Mapping[str, Any], int, list[dict[str, str]]]] = []

    def walk(group: Mapping[str, Any], parts: list[str], address: int, scopes: list[dict[str, str]]) -> int:
        scope: dict[str, str] = {}
        scopes = [scope, *scopes]
        for p in group.get("points", ()):
            name = "_".join([prefix, *parts, p["name"]])
            scope[p["name"]] = name
            layout.append((name, p, address, scopes))
            address += _point_size(p)
        for child in group.get("groups", ()):
            n = _group_count(child, counts) or 0
            indexed = not (child.get("count", 1) == 1)
            for i in range(1, n + 1):
                address = walk(child, [*parts, f"{child['name']}_{i}" if indexed else child["name"]], address, scopes)
        return address

    walk(model["group"], [], start, [])
    registers: dict[str, RegisterDef] = {}
    for name, p, address, scopes in layout:
        spec = _TYPES.get(p["type"], None)
        if spec is None or (end is not None and address + _point_size(p) > end):
            continue
        reg_type, _, na = spec
        sf = p.get("sf")
        scale, scale_register = 1.0, None
        if isinstance(sf, int):
            scale = 10.0 ** sf
        elif isinstance(sf, str):
            scale_register = next((s[sf] for s in scopes if sf in s), None)
            if scale_register is None:
                raise SunSpecError(f"model {model['id']}: {p['name']} names scale factor {sf}, which is not defined")
        writable = p.get("access") == "RW"
        symbols = {int(s["value"]): s.get("label") or s["name"] for s in p.get("symbols", ())}
        registers[name] = RegisterDef(
            name=name, address=address, function=3, type=reg_type, count=_point_size(p),
            scale=scale, unit=_UNITS.get(p.get("units", ""), p.get("units")),
            category=_category(p, reg_type), access="rw" if writable else "r",
            write_function=16 if writable else None, point=(points or {}).get(p["name"]),
            description=p.get("desc") or p.get("label") or "", vendor_name=p["name"],
            values=types.MappingProxyType(symbols if reg_type != "bitfield" else {}),
            na_values=na, scale_register=scale_register)
    return registers


def model_alarms(model: Mapping[str, Any], registers: Mapping[str, RegisterDef]) -> tuple[AlarmDef, ...]:
    """One alarm per symbol of the model's event bitfields (Evt1, Alrm, ...), severity warning.

    SunSpec does not grade events; the installer can raise a severity in a copied profile.
    """
    by_vendor = {(r.vendor_name, r.category): r for r in registers.values()}
    out = []
    for p in model["group"].get("points", ()):
        reg = by_vendor.get((p["name"], "alarm"))
        if reg is None:
            continue
        for s in p.get("symbols", ()):
            label = re.sub(r"[^A-Za-z0-9_]", "_", str(s["name"]))
            out.append(AlarmDef(reg.name, int(s["value"]), f"{reg.name}_{label}", "warning",
                                s.get("label") or str(s["name"]).replace("_", " ").lower()))
    return tuple(out)


def discovered_profile(profile: Profile, locations: Sequence[ModelLocation],
                       load: Callable[[int], Mapping[str, Any]] = load_model) -> Profile:
    """The marker `profile` with the registers and alarms of the discovered models it knows.

    Models not in `profile.sunspec.models` are skipped. A model that appears again (a second battery)
    gets the prefix `m<id>_<n>`; `sunspec.points` only maps the first instance.
    """
    if profile.sunspec is None:
        raise SunSpecError(f"profile {profile.key} has no sunspec section: its registers are not discovered")
    known = set(profile.sunspec.models)
    registers: dict[str, RegisterDef] = dict(profile.registers)
    alarms = list(profile.alarms)
    seen: dict[int, int] = {}
    for loc in locations:
        if loc.model_id not in known:
            continue
        seen[loc.model_id] = seen.get(loc.model_id, 0) + 1
        n = seen[loc.model_id]
        prefix = f"m{loc.model_id}" if n == 1 else f"m{loc.model_id}_{n}"
        point_map = {k.split(".", 1)[1]: v for k, v in profile.sunspec.points.items()
                     if n == 1 and k.split(".", 1)[0] == str(loc.model_id)}
        model = load(loc.model_id)
        regs = model_registers(model, loc.address, loc.length, prefix=prefix, points=point_map)
        registers.update(regs)
        alarms += model_alarms(model, regs)
    return dataclasses.replace(profile, registers=types.MappingProxyType(registers), alarms=tuple(alarms))


# --- images, for tests and the device simulator ---------------------------------------------------------

def build_image(models: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]], base: int = 40000) -> dict[int, int]:
    """A SunSpec register image {address: word}: 'SunS', each model with the given point values, end marker.

    `models` is a list of (model definition, {point register name without the `m<id>_` prefix: value in
    engineering units}). Scaled points are encoded with their scale factor's value from the same mapping.
    Points without a value hold their "not implemented" pattern. Fixed-length models only.
    """
    image: dict[int, int] = {base: SUNS_MARKER[0], base + 1: SUNS_MARKER[1]}
    address = base + 2
    for model, values in models:
        length = model_length(model)
        prefix = f"m{model['id']}"
        for a in range(address, address + 2 + length):
            image[a] = 0x8000  # what pad registers hold; every point is written below
        regs = model_registers(model, address, length, prefix=prefix)
        plain = {name[len(prefix) + 1:]: reg for name, reg in regs.items()}
        given = dict(values)
        given.update({"ID": model["id"], "L": length})
        for short, reg in plain.items():
            if short in given:
                sf = None
                if reg.scale_register is not None:
                    sf_name = reg.scale_register[len(prefix) + 1:]
                    if sf_name not in given:
                        raise SunSpecError(f"{short} needs a value for its scale factor {sf_name}")
                    sf = int(given[sf_name])
                words = encode(reg, given[short], sf=sf)
            elif reg.na_values:
                pattern = reg.na_values[0]
                words = [(pattern >> (16 * (reg.count - 1 - i))) & 0xFFFF for i in range(reg.count)]
            else:
                words = [0] * reg.count
            for i, w in enumerate(words):
                image[reg.address + i] = w
        unknown = set(values) - set(plain)
        if unknown:
            raise SunSpecError(f"model {model['id']} has no point(s) {', '.join(sorted(unknown))}")
        address += 2 + length
    image[address] = END_MODEL_ID
    image[address + 1] = 0
    return image

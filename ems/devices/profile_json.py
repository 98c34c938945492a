"""The JSON view of a device profile, for the settings UI (`GET /api/modbus/profiles?profile=key`)."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from .profile_model import Profile, RegisterDef


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

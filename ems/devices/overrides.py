"""A device's profile with the site's register overrides applied (`modbus[].register_overrides`).

The merge goes through the profile document: the profile as JSON (`profile_to_json`), the override's keys set
on the named registers, then `parse_profile` again, so a merged profile is checked exactly as a profile file
is (types, counts, overlaps, scale registers), and a bad override is refused with the profile format's own
words before anything is polled with it.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..config.schema import RegisterOverride
from ..config.validate import to_plain
from ..errors import ProfileError
from .profile import Profile, parse_profile
from .profile_json import profile_to_json


class OverrideError(ValueError):
    """An override names no register of the profile, or makes the profile invalid; `key` says which."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
        self.message = message


def with_overrides(profile: Profile, overrides: Mapping[str, RegisterOverride]) -> Profile:
    """The profile as this site's device speaks it; the profile itself when there is nothing to apply."""
    if not overrides:
        return profile
    doc: dict[str, Any] = profile_to_json(profile)
    doc.pop("key", None)
    doc.pop("read_plan", None)
    registers = doc["registers"]
    for name, override in overrides.items():
        if name not in registers:
            raise OverrideError(name, f"{name!r} is not a register of profile {profile.key!r}"
                                      + (" (a SunSpec profile finds its registers on the device)"
                                         if profile.sunspec is not None else ""))
        for key, value in to_plain(override).items():
            if value is not None:
                registers[name][key] = value
        if "type" in to_plain(override) and override.type is not None:
            registers[name].pop("count", None)  # derived from the new type
    try:
        return parse_profile(doc, profile.key, file=f"{profile.file} with this site's overrides")
    except ProfileError as exc:
        problem = exc.problems[0]
        parts = problem.path.split(".")
        key = parts[1] if len(parts) > 1 and parts[0] == "registers" and parts[1] in overrides else next(iter(overrides))
        raise OverrideError(key, f"{problem.path}: {problem.message}") from exc

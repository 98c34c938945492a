"""What changed between two states, as the live stream's `delta` events carry it.

A JSON merge patch (RFC 7386) with one difference: a key removed from the state is sent as null and stays
null on the page (a state key never has to disappear; a measurement that vanished reads as null either
way). Objects are compared key by key, everything else (lists included) is replaced whole. The page
applies it with `EMSUtil.applyDelta`; `tests/test_deltas.py` checks that applying what `delta` gives always
rebuilds the new state exactly.
"""
from __future__ import annotations

from typing import Any


def delta(old: Any, new: Any) -> Any:
    """The patch turning `old` into `new` (both plain JSON values); {} when nothing changed."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    out: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            out[key] = value
        elif old[key] != value:
            out[key] = delta(old[key], value) if isinstance(old[key], dict) and isinstance(value, dict) else value
    for key in old.keys() - new.keys():
        out[key] = None
    return out


def apply(base: Any, patch: Any) -> Any:
    """The page's side, in Python (for tests): `base` with `patch` merged in, `base` itself left as it was."""
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return patch
    out = dict(base)
    for key, value in patch.items():
        out[key] = apply(base.get(key), value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out

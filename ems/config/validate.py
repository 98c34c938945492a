"""Turn plain YAML data into typed, frozen config dataclasses, collecting every error.

The schema is the dataclasses in `schema.py`; this module only knows how to read them:
field types (bool, int, float, str, Literal enums, Optional, list, nested dataclasses),
and the constraints kept in each field's metadata (`min`, `max`, `exclusive_min`, `pattern`).
Every problem is reported with its key path, so an installer can fix a whole file in one go.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any, Literal, Union

from ..errors import ConfigError, ConfigProblem

_MISSING = dataclasses.MISSING


def constrained(default: Any = _MISSING, *, default_factory: Any = _MISSING, min: float | None = None,
                max: float | None = None, exclusive_min: bool = False, pattern: str | None = None,
                doc: str = "") -> Any:
    """A dataclass field with validation constraints (and a short doc for the settings UI)."""
    meta = {"min": min, "max": max, "exclusive_min": exclusive_min, "pattern": pattern, "doc": doc}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return "a list"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if tp is type(None):
        return "null"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class _Reader:
    def __init__(self) -> None:
        self.problems: list[ConfigProblem] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(ConfigProblem(path, message))

    def read(self, tp: Any, value: Any, path: str, meta: dict[str, Any]) -> Any:
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            args = typing.get_args(tp)
            if value is None and type(None) in args:
                return None
            non_null = [a for a in args if a is not type(None)]
            if len(non_null) == 1:
                return self.read(non_null[0], value, path, meta)
            raise TypeError(f"unsupported union {tp}")
        if origin is Literal:
            allowed = typing.get_args(tp)
            if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
                self.fail(path, f"{value!r} is not allowed (allowed: {', '.join(str(a) for a in allowed)})")
                return _MISSING
            return value
        if origin is list:
            (item_tp,) = typing.get_args(tp)
            if not isinstance(value, list):
                self.fail(path, f"must be a list (got {type(value).__name__})")
                return _MISSING
            items = [self.read(item_tp, item, _join(path, i), meta) for i, item in enumerate(value)]
            return tuple(i for i in items if i is not _MISSING)
        if dataclasses.is_dataclass(tp):
            return self.read_dataclass(tp, value, path)
        if tp is bool:
            if not isinstance(value, bool):
                self.fail(path, f"must be true or false (got {value!r})")
                return _MISSING
            return value
        if tp in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (tp is int and not float(value).is_integer()):
                self.fail(path, f"must be {_type_name(tp)} (got {value!r})")
                return _MISSING
            if value != value or value in (float("inf"), float("-inf")):
                self.fail(path, f"must be a finite number (got {value!r})")
                return _MISSING
            value = tp(value)
            return value if self._in_range(value, path, meta) else _MISSING
        if tp is str:
            if not isinstance(value, str):
                self.fail(path, f"must be a string (got {value!r})")
                return _MISSING
            pattern = meta.get("pattern")
            if pattern and not re.fullmatch(pattern, value):
                self.fail(path, f"{value!r} has the wrong format (allowed: {meta.get('doc') or pattern})")
                return _MISSING
            return value
        raise TypeError(f"unsupported config type {tp!r} at {path}")

    def _in_range(self, value: float, path: str, meta: dict[str, Any]) -> bool:
        lo, hi, excl = meta.get("min"), meta.get("max"), meta.get("exclusive_min")
        too_low = lo is not None and (value <= lo if excl else value < lo)
        too_high = hi is not None and value > hi
        if too_low or too_high:
            parts = []
            if lo is not None:
                parts.append(f"> {lo}" if excl else f">= {lo}")
            if hi is not None:
                parts.append(f"<= {hi}")
            self.fail(path, f"{value} is out of range (allowed: {' and '.join(parts)})")
            return False
        return True

    def read_dataclass(self, cls: Any, value: Any, path: str) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.fail(path or "(top level)", f"must be a mapping of keys (got {type(value).__name__})")
            return _MISSING
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        for key in value:
            if key not in fields:
                allowed = ", ".join(fields)
                close = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = f", did you mean '{close[0]}'?" if close else ""
                self.fail(_join(path, str(key)), f"unknown key{hint} (allowed: {allowed})")
        kwargs: dict[str, Any] = {}
        before = len(self.problems)
        for name, f in fields.items():
            if name in value:
                parsed = self.read(hints[name], value[name], _join(path, name), dict(f.metadata))
                if parsed is not _MISSING:
                    kwargs[name] = parsed
            elif f.default is _MISSING and f.default_factory is _MISSING:
                self.fail(_join(path, name), f"is required ({_type_name(hints[name])})")
        if len(self.problems) > before:
            return _MISSING
        obj = cls(**kwargs)
        check = getattr(obj, "check", None)
        if check is not None:
            for key, message in check():
                self.fail(_join(path, key) if key else path, message)
        return obj if len(self.problems) == before else _MISSING


def parse_config(cls: Any, data: Any, path: str = "") -> Any:
    """Build `cls` from plain data or raise ConfigError listing every problem."""
    reader = _Reader()
    obj = reader.read_dataclass(cls, data, path)
    if reader.problems:
        raise ConfigError(reader.problems)
    return obj


def to_plain(obj: Any) -> Any:
    """The inverse of parse_config: dataclasses back to YAML/JSON-ready data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj

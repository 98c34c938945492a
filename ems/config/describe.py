"""The config schema as data, for forms and API descriptions: per key its kind, bounds, choices, default,
doc and marks (admin-only, secret), read from the dataclasses and their `constrained` metadata, so the
settings page and the validator can never disagree about what a key accepts.

Kinds: number, integer, boolean, string, choice (a Literal), list (of plain values: `item_kind`), table (a
list of dataclasses: `item_fields`), group (a nested dataclass: `item_fields`), mapping (free-form).
"""
from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from typing import Any, Literal, Union

from .schema import EmsConfig
from .validate import init_fields, type_hints

_MISSING = dataclasses.MISSING


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(tp)):
            return args[0], True
    return tp, False


def _kind(tp: Any) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return {"kind": "choice", "choices": list(typing.get_args(tp))}
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (Any,)
        if dataclasses.is_dataclass(item):
            return {"kind": "table", "item_fields": describe_class(item)}  # type: ignore[arg-type]
        return {"kind": "list", "item_kind": _kind(item)["kind"]}
    if dataclasses.is_dataclass(tp):
        return {"kind": "group", "item_fields": describe_class(tp)}  # type: ignore[arg-type]
    if origin in (dict, collections.abc.Mapping):
        return {"kind": "mapping"}
    return {"kind": {bool: "boolean", int: "integer", float: "number", str: "string"}.get(tp, "string")}


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not _MISSING:
        value = f.default_factory()
        return list(value) if isinstance(value, tuple) else value
    value = f.default
    return None if value is _MISSING or dataclasses.is_dataclass(value) else value


def describe_class(cls: type) -> list[dict[str, Any]]:
    hints = type_hints(cls)
    fields = []
    for name, f in init_fields(cls).items():
        tp, nullable = _unwrap_optional(hints[name])
        meta = f.metadata
        entry: dict[str, Any] = {"key": name, **_kind(tp), "nullable": nullable, "default": _default(f),
                                 "doc": meta.get("doc", ""), "admin_only": bool(meta.get("admin_only")),
                                 "secret": bool(meta.get("secret"))}
        for bound in ("min", "max", "pattern", "max_items"):
            if meta.get(bound) is not None:
                entry[bound] = meta[bound]
        if meta.get("exclusive_min"):
            entry["exclusive_min"] = True
        choices = meta.get("choices")
        if isinstance(choices, tuple):
            entry["kind"], entry["choices"] = "choice", list(choices)
        if entry["kind"] == "group":
            entry["default"] = None
        fields.append(entry)
    return fields


def describe_section(section: str) -> list[dict[str, Any]]:
    """The keys of one `ems.yaml` section, in schema order."""
    hints = type_hints(EmsConfig)
    if section not in hints:
        raise KeyError(section)
    tp, _nullable = _unwrap_optional(hints[section])
    if typing.get_origin(tp) in (list, tuple):
        (tp,) = typing.get_args(tp)[:1]
    return describe_class(tp)

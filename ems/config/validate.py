"""Turn plain data (YAML, JSON, CLI options) into typed, frozen dataclasses, collecting every error.

The one validation mechanism of the EMS: `ems.yaml` (`schema.py`), device profiles
(`ems.devices.profile`) and backtest inputs (`ems.backtest`) are all frozen dataclasses read by
this module. It knows field types (bool, int, float, str, Literal enums, Optional and other unions,
list/tuple, dict/Mapping, nested dataclasses, Any) and the constraints kept in each field's metadata
(`constrained`: `min`, `max`, `exclusive_min`, `pattern`, `choices`, key constraints, `unique`, `check`).
After a dataclass's own fields are valid, its `check()` method (if any) adds cross-field problems.
Every problem is reported as `key.path: what is wrong (allowed: ...)`, all of them at once, so a
whole file can be fixed in one go; unknown keys get a "did you mean".
"""
from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import functools
import inspect
import numbers
import re
import types
import typing
from typing import Any, Callable, Literal, Mapping, Optional, Union

from .. import i18n
from ..errors import ConfigError, ConfigProblem

_MISSING: Any = dataclasses.MISSING
INVALID: Any = dataclasses.MISSING
"""What `Reader.read` returns for a value it reported a problem for."""

Message = Union[str, i18n.Msg]
"""A problem's words: an `i18n.Msg` (shown in the reader's language) or a plain English text."""
Check = Callable[[Any, Any], Optional[Message]]
"""check(value, reader context) -> a problem message, or None when the value is fine."""


_MAX_UNKNOWN_REPORTED = 20
DEFAULT_MAX_ITEMS = 10_000
"""A list or mapping longer than this is refused without reading its items (bounded validation work)."""


def constrained(default: Any = _MISSING, *, default_factory: Any = _MISSING, min: float | None = None,
                max: float | None = None, exclusive_min: bool = False, pattern: str | None = None,
                choices: Any = None, key_pattern: str | None = None, key_doc: str = "", unique: str | None = None,
                required: bool = False, check: Check | None = None, doc: str = "", max_items: int | None = None,
                secret: bool = False, admin_only: bool = False) -> Any:
    """A dataclass field with validation constraints (and a short doc for the settings UI).

    For lists and mappings, the value constraints apply to each item. `choices`: the allowed values
    (a tuple, or a function returning one: for sets only known at runtime). `key_pattern`/`key_doc`:
    the format of a mapping's string keys (integer keys need none: "3" and "0x0A" are read as integers).
    `unique`: in a list of dataclasses, no two items may have the same value of this field.
    `required`: the key must be in the data even though the Python constructor has a default.
    `check(value, context)`: a further rule needing the reader's context (e.g. "names a register").
    `doc`: shown in the settings UI, and as the allowed format of a `pattern`.
    `max_items`: a list or mapping may hold at most this many items (default `DEFAULT_MAX_ITEMS`); a longer
    one is refused before its items are read, so validation work is bounded by the schema, not the input.
    `secret`: a credential (password, API key, token): write-only over the API, never shown back (see
    `ems.config.guard`). `admin_only`: a safety- or security-relevant setting: only admins may change it, and
    every change is audited (see `ems.config.guard`).
    """
    meta = {"min": min, "max": max, "exclusive_min": exclusive_min, "pattern": pattern, "choices": choices,
            "key_pattern": key_pattern, "key_doc": key_doc, "unique": unique, "required": required, "check": check,
            "doc": doc, "max_items": max_items, "secret": secret, "admin_only": admin_only}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _short(value: Any, limit: int = 80) -> str:
    """`repr(value)`, cut to `limit` characters: a message quotes the input, not a megabyte of it."""
    text = repr(value) if not isinstance(value, (dict, list, tuple)) or len(value) < 20 else \
        f"<{type(value).__name__} of {len(value)} items>"
    return text if len(text) <= limit else text[:limit - 1] + "…"


def not_allowed(value: Any, allowed: Any) -> i18n.Msg:
    """The message for a value outside a set: `'x' is not allowed (allowed: a, b)`."""
    return i18n.Msg(i18n.mark("{got} is not allowed (allowed: {allowed})"),
                    {"got": _short(value), "allowed": [str(a) for a in allowed]})


def allowed_range(lo: float | None, hi: float | None, exclusive_lo: bool = False) -> Message:
    """`0..100`, `> 0 and <= 10`, `>= 1`: the allowed part of an out-of-range message (numbers written
    with the reader's decimal separator)."""
    if lo is not None and hi is not None and not exclusive_lo:
        return i18n.Msg(i18n.mark("{lo}..{hi}"), {"lo": float(lo), "hi": float(hi)})
    parts = []
    if lo is not None:
        parts.append(i18n.Msg(i18n.mark("> {n}") if exclusive_lo else i18n.mark(">= {n}"), {"n": float(lo)}))
    if hi is not None:
        parts.append(i18n.Msg(i18n.mark("<= {n}"), {"n": float(hi)}))
    if len(parts) == 1:
        return parts[0]
    return i18n.Msg(i18n.mark("{first} and {last}"), {"first": parts[0], "last": parts[1]})


TYPE_WORDS: dict[Any, i18n.Msg] = {
    list: i18n.Msg(i18n.mark("a list")), dict: i18n.Msg(i18n.mark("a mapping")), type(None): i18n.Msg(i18n.mark("null")),
    bool: i18n.Msg(i18n.mark("true or false")), int: i18n.Msg(i18n.mark("an integer")),
    float: i18n.Msg(i18n.mark("a number")), str: i18n.Msg(i18n.mark("a string"))}
"""What a value of a plain type is called in a message; the API's body check shares them."""


def either(words: list[Message]) -> Message:
    """'a, b or c' in the reader's language (each word a `Msg` or a plain text)."""
    if len(words) == 1:
        return words[0]
    return i18n.Msg(i18n.mark("{first} or {last}"), {"first": words[:-1], "last": words[-1]})


def _type_name(tp: Any) -> Message:
    """What a value of type `tp` is, in words: "an integer", "one of a, b", "a number or null"."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return i18n.Msg(i18n.mark("one of {allowed}"), {"allowed": [str(a) for a in typing.get_args(tp)]})
    if origin in (Union, types.UnionType):
        return either([_type_name(a) for a in typing.get_args(tp)])
    if origin in (list, tuple):
        return TYPE_WORDS[list]
    if origin in (dict, collections.abc.Mapping) or dataclasses.is_dataclass(tp):
        return TYPE_WORDS[dict]
    return TYPE_WORDS.get(tp, str(tp))


def _must_be(tp: Any, value: Any) -> i18n.Msg:
    return i18n.Msg(i18n.mark("must be {wanted} (got {got})"), {"wanted": _type_name(tp), "got": _short(value)})


def _kind(tp: Any) -> str:
    """Which kind of plain value a type is read from: picks the alternative of a union."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return _kind_of(typing.get_args(tp)[0])
    if origin in (list, tuple):
        return "list"
    if origin in (dict, collections.abc.Mapping) or dataclasses.is_dataclass(tp):
        return "mapping"
    return {bool: "bool", int: "number", float: "number", str: "str"}.get(tp, "other")


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, numbers.Real):
        return "number"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return "str" if isinstance(value, str) else "other"


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def type_hints(cls: type) -> dict[str, Any]:
    """The resolved type of every field of dataclass `cls` (cached)."""
    return _hints(cls)


def init_fields(cls: type) -> dict[str, dataclasses.Field]:
    """The fields of dataclass `cls` that its constructor takes, with their constraint metadata."""
    return _fields(cls)


def _is_required(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("required")) or (f.default is _MISSING and f.default_factory is _MISSING)


def _default(f: dataclasses.Field) -> Any:
    factory: Any = f.default_factory
    return factory() if factory is not _MISSING else f.default


class Reader:
    """Reads plain data into typed values, collecting problems instead of stopping at the first.

    `null_is_unset`: a null value counts as a missing key (JSON from an editor); otherwise null is
    only accepted by Optional fields. `context` is handed to the fields' `check` functions.
    A dataclass with a class attribute `SHORTHAND = "key"` also reads from a plain value, as `{key: value}`.
    """

    def __init__(self, *, null_is_unset: bool = False, context: Any = None) -> None:
        self.problems: list[ConfigProblem] = []
        self.null_is_unset = null_is_unset
        self.context = context

    def fail(self, path: str, message: Message, /, **params: Any) -> None:
        """Record a problem at `path`: a msgid with `params`, an `i18n.Msg`, or a plain English text."""
        if isinstance(message, i18n.Msg):
            params = dict(message.params)
            message = message.msgid
        self.problems.append(ConfigProblem.of(path or "(top level)", message, **params))

    def read(self, tp: Any, value: Any, path: str, meta: Mapping[str, Any] | None = None) -> Any:
        """`value` as type `tp` with the constraints `meta`, or INVALID after reporting why not."""
        meta = meta or {}
        origin = typing.get_origin(tp)
        if tp is Any:
            return value
        if origin in (Union, types.UnionType):
            args = typing.get_args(tp)
            if value is None and type(None) in args:
                return None
            non_null = [a for a in args if a is not type(None)]
            if len(non_null) > 1:
                fitting = [a for a in non_null if _kind(a) == _kind_of(value)]
                if not fitting:
                    self.fail(path, _must_be(tp, value))
                    return INVALID
                non_null = fitting
            return self.read(non_null[0], value, path, meta)
        if origin is Literal:
            allowed = typing.get_args(tp)
            if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
                self.fail(path, not_allowed(value, allowed))
                return INVALID
            return self._constraints(value, path, meta)
        if origin in (list, tuple):
            item_tp = typing.get_args(tp)[0]
            if not isinstance(value, (list, tuple)):
                self.fail(path, _must_be(list, value))
                return INVALID
            if len(value) > (meta.get("max_items") or DEFAULT_MAX_ITEMS):
                self.fail(path, i18n.mark("{n} items is too many (allowed: at most {most})"), n=len(value),
                          most=meta.get("max_items") or DEFAULT_MAX_ITEMS)
                return INVALID
            items = [self.read(item_tp, item, _join(path, i), meta) for i, item in enumerate(value)]
            unique = meta.get("unique")
            if unique:
                seen: set[Any] = set()
                for i, (raw, item) in enumerate(zip(value, items)):  # an item that failed still has its key
                    key = raw.get(unique) if item is INVALID and isinstance(raw, dict) else getattr(item, unique, None)
                    if not isinstance(key, (str, int, float)):
                        continue
                    if key in seen:
                        self.fail(_join(_join(path, i), unique), i18n.mark("'{key}' is used twice (each {field} "
                                                                           "must be unique)"), key=key, field=unique)
                    seen.add(key)
            return tuple(i for i in items if i is not INVALID)
        if origin in (dict, collections.abc.Mapping):
            return self._read_mapping(tp, value, path, meta)
        if dataclasses.is_dataclass(tp):
            return self.read_dataclass(tp, value, path)
        if tp is bool:
            if not isinstance(value, bool):
                self.fail(path, _must_be(bool, value))
                return INVALID
            return self._constraints(value, path, meta)
        if tp in (int, float):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or (
                    tp is int and not float(value).is_integer()):
                self.fail(path, _must_be(tp, value))
                return INVALID
            if value != value or value in (float("inf"), float("-inf")):
                self.fail(path, i18n.mark("must be a finite number (got {got})"), got=_short(value))
                return INVALID
            return self._constraints(tp(value), path, meta)
        if tp is str:
            if not isinstance(value, str):
                self.fail(path, _must_be(str, value))
                return INVALID
            return self._constraints(value, path, meta)
        raise TypeError(f"unsupported type {tp!r} at {path}")

    def _constraints(self, value: Any, path: str, meta: Mapping[str, Any]) -> Any:
        lo, hi, excl = meta.get("min"), meta.get("max"), bool(meta.get("exclusive_min"))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            too_low = lo is not None and (value <= lo if excl else value < lo)
            if too_low or (hi is not None and value > hi):
                self.fail(path, i18n.mark("{got} is out of range (allowed: {allowed})"), got=value,
                          allowed=allowed_range(lo, hi, excl))
                return INVALID
        pattern = meta.get("pattern")
        if pattern and isinstance(value, str) and not re.fullmatch(pattern, value):
            self.fail(path, i18n.mark("{got} has the wrong format (allowed: {allowed})"), got=_short(value),
                      allowed=i18n.Msg(meta.get("doc") or pattern))  # a pattern's doc is a msgid (i18n.mark)
            return INVALID
        choices = meta.get("choices")
        if choices is not None:
            allowed = choices() if callable(choices) else choices
            if value not in allowed:
                self.fail(path, not_allowed(value, allowed))
                return INVALID
        check = meta.get("check")
        message = check(value, self.context) if check is not None else None
        if message:
            self.fail(path, message)
            return INVALID
        return value

    def _read_mapping(self, tp: Any, value: Any, path: str, meta: Mapping[str, Any]) -> Any:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            self.fail(path, _must_be(dict, value))
            return INVALID
        if len(value) > (meta.get("max_items") or DEFAULT_MAX_ITEMS):
            self.fail(path, i18n.mark("{n} entries is too many (allowed: at most {most})"), n=len(value),
                      most=meta.get("max_items") or DEFAULT_MAX_ITEMS)
            return INVALID
        out = {}
        for key, item in value.items():
            item_path = _join(path, str(key))
            if key_tp is int:  # JSON keys are strings: "3", "0x0A"
                parsed = key if isinstance(key, int) and not isinstance(key, bool) else _int_or_none(key)
                if parsed is None:
                    self.fail(item_path, i18n.mark("{got} is not an integer key (allowed: integers, e.g. 3 or 0x0A)"),
                              got=_short(key))
                    continue
                key = parsed
            elif self.read(key_tp, key, item_path, {"pattern": meta.get("key_pattern"),
                                                    "doc": meta.get("key_doc")}) is INVALID:
                continue
            parsed_item = self.read(value_tp, item, item_path, meta)
            if parsed_item is not INVALID:
                out[key] = parsed_item
        return types.MappingProxyType(out)

    def mapping(self, cls: Any, value: Any, path: str) -> dict[Any, Any] | None:
        """The data for dataclass `cls`: a mapping without unknown keys, with every required one.

        Returns the mapping (nulls dropped when they mean unset), or None when it is not a mapping;
        unknown and missing keys are reported, the fields themselves are not read yet.
        """
        if value is None:
            value = {}
        short = getattr(cls, "SHORTHAND", None)
        if short is not None and not isinstance(value, (dict, list, tuple)):
            value = {short: value}
        if not isinstance(value, dict):
            self.fail(path, _must_be(dict, value))
            return None
        if self.null_is_unset:
            value = {k: v for k, v in value.items() if v is not None}
        fields = _fields(cls)
        unknown = [key for key in value if key not in fields]
        if len(unknown) > _MAX_UNKNOWN_REPORTED:  # a flood of keys: name a few, do not "did you mean" them all
            self.fail(path, i18n.mark("{n} unknown keys, e.g. {some} (allowed: {allowed})"), n=len(unknown),
                      some=[repr(str(k)[:40]) for k in unknown[:3]], allowed=list(fields))
            unknown = []
        for key in unknown:
            if key not in fields:
                close = difflib.get_close_matches(str(key)[:100], list(fields), n=1)
                if close:
                    self.fail(_join(path, str(key)), i18n.mark("unknown key, did you mean '{close}'? (allowed: "
                                                               "{allowed})"), close=close[0], allowed=list(fields))
                else:
                    self.fail(_join(path, str(key)), i18n.mark("unknown key (allowed: {allowed})"),
                              allowed=list(fields))
        for name, f in fields.items():
            if name not in value and _is_required(f):
                self.fail(_join(path, name), i18n.mark("is required ({wanted})"), wanted=_type_name(_hints(cls)[name]))
        return value

    def read_field(self, cls: Any, name: str, data: Mapping[str, Any], path: str = "") -> Any:
        """Field `name` of dataclass `cls` from `data` (checked by `mapping`): its value, its default, or INVALID."""
        f = _fields(cls)[name]
        if name not in data:
            return INVALID if _is_required(f) else _default(f)
        return self.read(_hints(cls)[name], data[name], _join(path, name), f.metadata)

    def read_dataclass(self, cls: Any, value: Any, path: str) -> Any:
        """An instance of `cls`, or INVALID when any of its fields or its `check()` found a problem.

        `check()` returns [(key, message)]; a `check(context)` taking a parameter gets the reader's context.
        """
        before = len(self.problems)
        data = self.mapping(cls, value, path)
        if data is None:
            return INVALID
        kwargs = {name: self.read_field(cls, name, data, path) for name in _fields(cls) if name in data}
        if len(self.problems) > before:
            return INVALID
        obj = cls(**kwargs)
        check = getattr(obj, "check", None)
        if check is not None:
            found = check(self.context) if inspect.signature(check).parameters else check()
            for key, message in found:
                self.fail(_join(path, key) if key else path, message)
        return obj if len(self.problems) == before else INVALID


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            return None
    return None


def parse_config(cls: Any, data: Any, path: str = "") -> Any:
    """Build `cls` from plain data or raise ConfigError listing every problem."""
    reader = Reader()
    obj = reader.read_dataclass(cls, data, path)
    if reader.problems:
        raise ConfigError(reader.problems)
    return obj


def field_problems(obj: Any) -> list[tuple[str, str]]:
    """The problems of a dataclass built in code (not read): every field against its type and
    constraints, nested dataclasses with their `check()`. For a `check()` method to start with."""
    reader = Reader()
    cls: Any = type(obj)
    for name, f in _fields(cls).items():
        reader.read(_hints(cls)[name], to_plain(getattr(obj, name)), name, f.metadata)
    return [(p.path, p.message) for p in reader.problems]


def field_problem(cls: Any, name: str, value: Any) -> str | None:
    """What is wrong with `value` for field `name` of dataclass `cls` (None: nothing), e.g. for a CLI option."""
    reader = Reader()
    reader.read(_hints(cls)[name], value, name, _fields(cls)[name].metadata)
    return reader.problems[0].message if reader.problems else None


def to_plain(obj: Any) -> Any:
    """The inverse of parse_config: dataclasses back to YAML/JSON-ready data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, collections.abc.Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj

"""Who may see and change which config key, and what a change changed: the rules behind the config API.

The schema marks keys (`ems.config.schema`): `secret=True` keys are write-only, `admin_only=True` keys are
safety- or security-relevant. This module applies the marks to plain (JSON/YAML) section data:

- `masked(section, plain)`: what a GET shows — every secret replaced by `{"set": true|false}`.
- `merge_secrets(section, stored, incoming)`: what a POST means for each secret key:
    key absent, or `{"set": …}` as a GET showed it  → the stored value stays;
    `{"replace": "new value"}` (or a bare string)    → the secret is set to it;
    `{"clear": true}` (or null)                      → the secret is removed.
  So a client may post back exactly what it read without touching a secret it never saw.
- `changes(section, old, new)`: the changed keys, field by field (list items by `name` where they have one),
  each marked admin-only or secret; secrets' values never appear in a change, only "set"/"not set"/"changed".
- `refuse_unless_admin(changes, role)`: 403 naming the first admin-only key a non-admin tried to change.

An admin-only mark covers everything inside the marked key. In a list whose items carry admin-only keys
(the Modbus devices: role, profile, enabled), adding or removing an item is admin-only too.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Mapping, Union

from .. import i18n
from ..errors import ApiError, ConfigError, ConfigProblem
from .schema import EmsConfig
from .validate import init_fields, type_hints

SECRET_FORMS = i18n.Msg(i18n.mark("{\"set\": …} or no key to keep it, {\"replace\": \"<new value>\"} to set it, "
                                  "{\"clear\": true} to remove it"))
SECRET_WRITE_ONLY = i18n.mark("is write-only (allowed: {forms})")


@dataclass(frozen=True)
class FieldChange:
    """One changed key: `path` like `power_control.enabled` or `modbus[dso].enabled`; plain old/new values
    (for a secret only "set", "not set" or "changed")."""

    path: str
    old: Any
    new: Any
    admin_only: bool = False
    secret: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"field": self.path, "old": self.old, "new": self.new, "admin_only": self.admin_only,
                "secret": self.secret}


def section_type(section: str) -> Any:
    return type_hints(EmsConfig)[section]


def _meta(cls: Any, name: str) -> Mapping[str, Any]:
    return init_fields(cls)[name].metadata


def _dataclass_of(tp: Any) -> Any:
    """The dataclass inside `tp` (`X`, `Optional[X]`), or None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) is Union:
        inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return inner[0] if len(inner) == 1 else None
    return None


def _item_type(tp: Any) -> Any:
    """The item dataclass of a list type (`list[X]`), or None."""
    if typing.get_origin(tp) in (list, tuple):
        args = typing.get_args(tp)
        return _dataclass_of(args[0]) if args else None
    return None


def _has_marked(cls: Any, mark: str) -> bool:
    """True if dataclass `cls` or any dataclass inside it has a key marked `mark`."""
    for name, tp in type_hints(cls).items():
        if name not in init_fields(cls):
            continue
        if _meta(cls, name).get(mark):
            return True
        inner = _dataclass_of(tp) or _item_type(tp)
        if inner is not None and inner is not cls and _has_marked(inner, mark):
            return True
    return False


def secret_paths(tp: Any, prefix: str = "") -> list[str]:
    """Every secret key under type `tp` (for tests and docs): `mqtt.password`, ..."""
    cls = _dataclass_of(tp)
    if cls is None:
        item = _item_type(tp)
        return secret_paths(item, prefix + "[]") if item is not None else []
    out = []
    for name, hint in type_hints(cls).items():
        if name in init_fields(cls):
            path = f"{prefix}.{name}" if prefix else name
            out += [path] if _meta(cls, name).get("secret") else secret_paths(hint, path)
    return out


# -- reading: secrets masked ----------------------------------------------------------------------------

def _is_set(value: Any) -> bool:
    return value is not None and value != ""


def masked(section: str, plain: Any) -> Any:
    """`plain` section data with every secret replaced by `{"set": true|false}`."""
    return _mask(section_type(section), plain)


def _mask(tp: Any, plain: Any) -> Any:
    cls = _dataclass_of(tp)
    if cls is not None and isinstance(plain, dict):
        out = {}
        for key, value in plain.items():
            if key in init_fields(cls):
                meta = _meta(cls, key)
                out[key] = {"set": _is_set(value)} if meta.get("secret") else _mask(type_hints(cls)[key], value)
            else:
                out[key] = value
        return out
    item = _item_type(tp)
    if item is not None and isinstance(plain, list):
        return [_mask(item, v) for v in plain]
    return plain


def secret_values(config: EmsConfig) -> list[str]:
    """The stored secrets themselves (to scrub them from anything the web might send out)."""
    from .validate import to_plain
    found: list[str] = []

    def walk(tp: Any, plain: Any) -> None:
        cls = _dataclass_of(tp)
        if cls is not None and isinstance(plain, dict):
            for key, value in plain.items():
                if key in init_fields(cls):
                    if _meta(cls, key).get("secret"):
                        if isinstance(value, str) and value:
                            found.append(value)
                    else:
                        walk(type_hints(cls)[key], value)
        item = _item_type(tp)
        if item is not None and isinstance(plain, list):
            for v in plain:
                walk(item, v)

    walk(EmsConfig, to_plain(config))
    return found


# -- writing: secrets kept, replaced or cleared -----------------------------------------------------------

def merge_secrets(section: str, stored: Any, incoming: Any) -> Any:
    """`incoming` with each secret resolved against `stored` (see the module doc); ConfigError naming a
    secret key posted in any other form."""
    problems: list[ConfigProblem] = []
    merged = _merge(section_type(section), stored, incoming, section, problems)
    if problems:
        raise ConfigError(problems)
    return merged


def _merge(tp: Any, stored: Any, incoming: Any, path: str, problems: list[ConfigProblem]) -> Any:
    cls = _dataclass_of(tp)
    if cls is not None and isinstance(incoming, dict):
        stored_map = stored if isinstance(stored, dict) else {}
        out = dict(incoming)
        for name, hint in type_hints(cls).items():
            if name not in init_fields(cls):
                continue
            key_path = f"{path}.{name}"
            if _meta(cls, name).get("secret"):
                out[name] = _secret_value(stored_map.get(name), incoming.get(name, {"set": True}), key_path, problems)
            elif name in incoming and (_dataclass_of(hint) is not None or _item_type(hint) is not None):
                out[name] = _merge(hint, stored_map.get(name), incoming[name], key_path, problems)
        return out
    item = _item_type(tp)
    if item is not None and isinstance(incoming, list) and _has_marked(item, "secret"):
        stored_list = stored if isinstance(stored, list) else []
        return [_merge(item, stored_list[i] if i < len(stored_list) else None, v, f"{path}[{i}]", problems)
                for i, v in enumerate(incoming)]
    return incoming


def _secret_value(stored: Any, posted: Any, path: str, problems: list[ConfigProblem]) -> Any:
    if posted is None or isinstance(posted, str):
        return posted or None
    if isinstance(posted, dict):
        keys = set(posted)
        if keys == {"set"} and isinstance(posted["set"], bool):
            return stored
        if keys == {"replace"} and isinstance(posted["replace"], str) and posted["replace"]:
            return posted["replace"]
        if keys == {"clear"} and posted["clear"] is True:
            return None
    problems.append(ConfigProblem.of(path, SECRET_WRITE_ONLY, forms=SECRET_FORMS))
    return stored


# -- what changed ---------------------------------------------------------------------------------------------

def changes(section: str, old: Any, new: Any) -> list[FieldChange]:
    """The keys that differ between two plain versions of a section, in schema order."""
    out: list[FieldChange] = []
    _diff(section_type(section), old, new, section, False, out)
    return out


def _secret_change(old: Any, new: Any) -> tuple[str, str]:
    before = "set" if _is_set(old) else "not set"
    after = "not set" if not _is_set(new) else ("changed" if _is_set(old) else "set")
    return before, after


def _diff(tp: Any, old: Any, new: Any, path: str, admin: bool, out: list[FieldChange]) -> None:
    if old == new:
        return
    cls = _dataclass_of(tp)
    if cls is not None and isinstance(old, dict) and isinstance(new, dict):
        for name, hint in type_hints(cls).items():
            if name not in init_fields(cls):
                continue
            meta = _meta(cls, name)
            key_path = f"{path}.{name}"
            if meta.get("secret"):
                if old.get(name) != new.get(name):
                    before, after = _secret_change(old.get(name), new.get(name))
                    out.append(FieldChange(key_path, before, after, admin or bool(meta.get("admin_only")), True))
            else:
                _diff(hint, old.get(name), new.get(name), key_path, admin or bool(meta.get("admin_only")), out)
        return
    item = _item_type(tp)
    if item is not None and isinstance(old, list) and isinstance(new, list) and not admin:
        _diff_items(item, old, new, path, out)
        return
    out.append(FieldChange(path, old, new, admin))


def _diff_items(item: Any, old: list[Any], new: list[Any], path: str, out: list[FieldChange]) -> None:
    """Items matched by `name` when every item has a distinct one (Modbus devices), else by position."""
    structural = _has_marked(item, "admin_only")  # adding or removing such an item is admin-only

    def keyed(items: list[Any]) -> dict[str, Any] | None:
        names = [v.get("name") if isinstance(v, dict) else None for v in items]
        texts = [n for n in names if isinstance(n, str)]
        if "name" not in init_fields(item) or len(texts) < len(names) or len(set(texts)) < len(texts):
            return None
        return dict(zip(texts, items))

    old_keyed, new_keyed = keyed(old), keyed(new)
    if old_keyed is not None and new_keyed is not None:
        for name in [*old_keyed, *[n for n in new_keyed if n not in old_keyed]]:
            item_path = f"{path}[{name}]"
            if name not in new_keyed:
                out.append(FieldChange(item_path, _mask(item, old_keyed[name]), None, structural))
            elif name not in old_keyed:
                out.append(FieldChange(item_path, None, _mask(item, new_keyed[name]), structural))
            else:
                _diff(item, old_keyed[name], new_keyed[name], item_path, False, out)
        return
    for i in range(max(len(old), len(new))):
        item_path = f"{path}[{i}]"
        if i >= len(new):
            out.append(FieldChange(item_path, _mask(item, old[i]), None, structural))
        elif i >= len(old):
            out.append(FieldChange(item_path, None, _mask(item, new[i]), structural))
        else:
            _diff(item, old[i], new[i], item_path, False, out)


def refuse_unless_admin(found: list[FieldChange], may_change_admin_only: bool, role: str) -> None:
    """ApiError 403 naming the first admin-only key in `found`, unless the caller may change those."""
    if may_change_admin_only:
        return
    for change in found:
        if change.admin_only:
            raise ApiError(403, i18n.mark("is safety- or security-relevant: only an admin may change it (your role: "
                                          "{role})"), change.path, role=i18n.Msg(role))

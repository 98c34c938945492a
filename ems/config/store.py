"""Load `ems.yaml`, change one section at runtime, and tell the subsystems that care.

A change is validated as a whole config first; only a valid config is written (atomically, the
previous file kept as `.bak`, both readable by the service's user only: the file holds secrets) and
only then are the section's subscribers called, so a running system never sees a half-applied or
invalid configuration. Parsing and validation run in the caller's thread (a web thread), never on the
event loop; subscribers get the finished, immutable config.

Sections as the web sees them (`section_plain`) carry no secret values (`ems.config.guard`);
`apply_change` is the web's way in: secrets resolved, admin-only keys refused to non-admins, the changes
handed back for the audit log.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from ..atomic import remove_stale_temp_files, write_atomic
from ..errors import ConfigError, ConfigProblem
from . import guard
from .guard import FieldChange
from .schema import SECTIONS, EmsConfig
from .validate import parse_config, to_plain

log = logging.getLogger(__name__)

Subscriber = Callable[[EmsConfig], object]  # the result is ignored
# libyaml's emitter when installed: the pure-Python one takes ~50 ms for a full config, holding the GIL the
# event loop needs (a change is written in a web thread, but threads share the interpreter).
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def parse_yaml_config(text: str) -> EmsConfig:
    """Parse and validate YAML text; raise ConfigError naming every bad key."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError([ConfigProblem(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    return parse_config(EmsConfig, data)


def load_config(path: str | Path) -> EmsConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(str(path), f"cannot be read: {exc}")]) from None
    return parse_yaml_config(text)


@dataclass(frozen=True)
class ConfigChange:
    """What `apply_change` did: the config now in force and the keys that changed (empty: nothing did)."""

    config: EmsConfig
    section: str
    changes: tuple[FieldChange, ...]


class ConfigStore:
    """The one live configuration of the process, thread-safe, persisted to `path`."""

    def __init__(self, path: str | Path, config: EmsConfig,
                 dispatch: Callable[[Callable[[], None]], object] | None = None):
        self.path = Path(path)
        self._config = config
        self._lock = threading.Lock()
        self._subscribers: dict[str, list[Subscriber]] = {}
        # Checks beyond the schema (e.g. that a device's profile exists), run before anything is written.
        self.validators: list[Callable[[EmsConfig], object]] = []  # raise ConfigError to refuse
        self._section_validators: dict[str, list[Callable[[EmsConfig], object]]] = {}
        # How subscriber calls are delivered; the runtime sets this to the event loop's call_soon_threadsafe.
        self._dispatch = dispatch or (lambda fn: fn())

    @classmethod
    def open(cls, path: str | Path, **kwargs: Any) -> "ConfigStore":
        """Load `path`; temp files of writes interrupted by a crash are removed, and the file (it may hold
        secrets) is made readable by its owner only."""
        target = Path(path)
        remove_stale_temp_files(target.parent, prefix=f".{target.name}.")
        _owner_only(target)
        return cls(path, load_config(path), **kwargs)

    @property
    def config(self) -> EmsConfig:
        return self._config

    def add_validator(self, validate: Callable[[EmsConfig], object], sections: tuple[str, ...] | None = None) -> None:
        """A check beyond the schema (raise ConfigError to refuse), run on changes of `sections` only (None: of
        every section). A costly check (the profile library) bound to the section it reads keeps other
        changes quick: they hold the interpreter lock the event loop needs."""
        if sections is None:
            self.validators.append(validate)
            return
        for section in sections:
            _check_section(section)
            self._section_validators.setdefault(section, []).append(validate)

    def set_dispatch(self, dispatch: Callable[[Callable[[], None]], object]) -> None:
        self._dispatch = dispatch

    def subscribe(self, section: str, callback: Subscriber) -> None:
        if section not in SECTIONS:
            raise ValueError(f"unknown config section {section!r}")
        self._subscribers.setdefault(section, []).append(callback)

    def section_plain(self, section: str) -> Any:
        """A section as plain data for anyone to see: secrets only as `{"set": true|false}`."""
        return guard.masked(section, self.section_secret_plain(section))

    def section_secret_plain(self, section: str) -> Any:
        """A section as plain data *with* its secrets (for the file and the subsystems, never the web)."""
        _check_section(section)
        return to_plain(getattr(self._config, section))

    def update_section(self, section: str, data: Any) -> EmsConfig:
        """Replace one section with `data` (validated as part of the whole file) and apply it. Secret keys
        that `data` leaves out or shows as `{"set": …}` keep their stored value (`ems.config.guard`)."""
        return self.apply_change(section, data).config

    def apply_change(self, section: str, data: Any, may_change_admin_only: bool = True,
                     role: str = "admin", record: Callable[[ConfigChange], object] | None = None) -> ConfigChange:
        """`update_section` for a caller with a role: 403 (ApiError naming the key) if someone who may not
        (`may_change_admin_only` False) changes an admin-only key. `record` (the audit log) is called with the
        changes after the file is written, before anyone is told: a change is never applied unrecorded by a
        running log. Nothing is written when nothing changed."""
        _check_section(section)
        with self._lock:
            plain = to_plain(self._config)
            stored = plain[section]
            plain[section] = guard.merge_secrets(section, stored, data)
            new_config = parse_config(EmsConfig, plain)
            new_section = to_plain(getattr(new_config, section))
            found = guard.changes(section, stored, new_section)
            guard.refuse_unless_admin(found, may_change_admin_only, role)
            if not found:
                return ConfigChange(self._config, section, ())
            for validate in [*self.validators, *self._section_validators.get(section, [])]:
                validate(new_config)
            plain[section] = new_section  # the file gets the normalised section (defaults filled in)
            text = yaml.dump(plain, Dumper=_DUMPER, sort_keys=False, allow_unicode=True)
            write_atomic(self.path, text.encode("utf-8"), keep_backup=True)
            self._config = new_config
            change = ConfigChange(new_config, section, tuple(found))
            if record is not None:
                record(change)
        log.info("config section %s changed (%s) and saved to %s", section,
                 ", ".join(c.path for c in found), self.path)
        for callback in self._subscribers.get(section, []):
            self._dispatch(functools.partial(self._notify, callback, section, new_config))
        return change

    def secrets(self) -> list[str]:
        """The stored secret values, to keep them out of every response (`ems.api.app` scrubs them)."""
        return guard.secret_values(self._config)

    @staticmethod
    def _notify(callback: Subscriber, section: str, config: EmsConfig) -> None:
        try:
            callback(config)
        except Exception:  # a broken subscriber must not stop the others
            log.exception("subscriber of config section %s failed", section)



def _check_section(section: str) -> None:
    if section not in SECTIONS:
        raise ConfigError([ConfigProblem(str(section)[:40], f"unknown section (allowed: {', '.join(SECTIONS)})")])


def _owner_only(path: Path) -> None:
    """chmod 600 a config file we own (it may hold secrets); a file owned by root stays as the admin set it."""
    try:
        info = path.stat()
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            path.chmod(0o600)
            log.info("made %s readable by its owner only (it may hold secrets)", path)
    except OSError as exc:
        log.warning("cannot restrict the permissions of %s: %s", path, exc)

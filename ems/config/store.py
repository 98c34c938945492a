"""Load `ems.yaml`, change one section at runtime, and tell the subsystems that care.

A change is validated as a whole config first; only a valid config is written (atomically, the
previous file kept as `.bak`) and only then are the section's subscribers called, so a running
system never sees a half-applied or invalid configuration.
"""
from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import Any, Callable

import yaml

from ..atomic import write_atomic
from ..errors import ConfigError, ConfigProblem
from .schema import SECTIONS, EmsConfig
from .validate import parse_config, to_plain

log = logging.getLogger(__name__)

Subscriber = Callable[[EmsConfig], object]  # the result is ignored


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
        # How subscriber calls are delivered; the runtime sets this to the event loop's call_soon_threadsafe.
        self._dispatch = dispatch or (lambda fn: fn())

    @classmethod
    def open(cls, path: str | Path, **kwargs: Any) -> "ConfigStore":
        return cls(path, load_config(path), **kwargs)

    @property
    def config(self) -> EmsConfig:
        return self._config

    def set_dispatch(self, dispatch: Callable[[Callable[[], None]], object]) -> None:
        self._dispatch = dispatch

    def subscribe(self, section: str, callback: Subscriber) -> None:
        if section not in SECTIONS:
            raise ValueError(f"unknown config section {section!r}")
        self._subscribers.setdefault(section, []).append(callback)

    def section_plain(self, section: str) -> Any:
        if section not in SECTIONS:
            raise ConfigError([ConfigProblem(section, f"unknown section (allowed: {', '.join(SECTIONS)})")])
        return to_plain(getattr(self._config, section))

    def update_section(self, section: str, data: Any) -> EmsConfig:
        """Replace one section with `data` (validated as part of the whole file) and apply it."""
        if section not in SECTIONS:
            raise ConfigError([ConfigProblem(section, f"unknown section (allowed: {', '.join(SECTIONS)})")])
        with self._lock:
            plain = to_plain(self._config)
            plain[section] = data
            new_config = parse_config(EmsConfig, plain)
            for validate in self.validators:
                validate(new_config)
            text = yaml.safe_dump(to_plain(new_config), sort_keys=False, allow_unicode=True)
            write_atomic(self.path, text.encode("utf-8"), keep_backup=True)
            self._config = new_config
        log.info("config section %s changed and saved to %s", section, self.path)
        for callback in self._subscribers.get(section, []):
            self._dispatch(functools.partial(self._notify, callback, section, new_config))
        return new_config

    @staticmethod
    def _notify(callback: Subscriber, section: str, config: EmsConfig) -> None:
        try:
            callback(config)
        except Exception:  # a broken subscriber must not stop the others
            log.exception("subscriber of config section %s failed", section)


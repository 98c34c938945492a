"""One error type per boundary, each carrying the key path or field a user can act on.

The web layer maps these to 4xx JSON in one place (`ems.api.errors`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from . import i18n


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a config file: where (`bess.capacity_kwh`) and what. With a `msgid` (marked with
    `i18n.mark`) and its `params`, the web layer shows the problem in the reader's language (`text(lang)`);
    `message` is the English text."""

    path: str
    message: str
    msgid: str = field(default="", compare=False)
    params: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    @classmethod
    def of(cls, path: str, msgid: str, /, **params: Any) -> ConfigProblem:
        return cls(path, i18n.render(msgid, params), msgid, params)

    def text(self, lang: str) -> str:
        return i18n.render(self.msgid, self.params, lang) if self.msgid else self.message


class ConfigError(Exception):
    """A configuration that must not be used; lists every problem, not just the first."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class ProfileProblem:
    """One thing wrong in a device profile: which file, where in it (`registers.soc_pct.type`) and what
    (a `ConfigProblem` of the shared validation, plus the file)."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}"


class ProfileError(Exception):
    """A device profile that must not be used; lists every problem in the file, not just the first."""

    def __init__(self, problems: list[ProfileProblem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def in_file(cls, file: str, problems: Iterable[ConfigProblem]) -> ProfileError:
        """The problems the shared validation (`ems.config.validate`) found, as problems of `file`."""
        return cls([ProfileProblem(file, p.path, p.message) for p in problems])


class ApiError(Exception):
    """A bad request: HTTP status, the offending field and a message for the user.

    `message` may be a msgid (marked with `i18n.mark`) with `{placeholders}` filled from `params`: the web
    layer then answers in the reader's language (`text(lang)`); `.message` is the English text."""

    def __init__(self, status: int, message: str, field: str | None = None, **params: Any):
        self.status = status
        self.field = field
        self.msgid = message
        self.params = params
        self.message = i18n.render(message, params) if params else message
        super().__init__(self.message)

    def text(self, lang: str) -> str:
        """The message in `lang` (English for a text that is no msgid)."""
        return i18n.render(self.msgid, self.params, lang)


class DeviceError(Exception):
    """A field device that cannot be used right now: which device, what failed (`register` or request) and why.

    The transport (`ems.devices.client`) raises subclasses for the cases a user tells apart: cannot connect,
    no answer, a garbled answer, a Modbus exception response, a write that did not read back.
    """

    def __init__(self, device: str, message: str, register: str | None = None):
        self.device = device
        self.register = register
        self.message = message
        where = f"{device}: {register}: " if register else f"{device}: "
        super().__init__(where + message)

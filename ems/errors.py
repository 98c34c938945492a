"""One error type per boundary, each carrying the key path or field a user can act on.

The web layer maps these to 4xx JSON in one place (`ems.api.errors`).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a config file: where (`bess.capacity_kwh`) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(Exception):
    """A configuration that must not be used; lists every problem, not just the first."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class ProfileProblem:
    """One thing wrong in a device profile: which file, where in it (`registers.soc_pct.type`) and what."""

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


class ApiError(Exception):
    """A bad request: HTTP status, the offending field and a message for the user."""

    def __init__(self, status: int, message: str, field: str | None = None):
        self.status = status
        self.field = field
        self.message = message
        super().__init__(message)

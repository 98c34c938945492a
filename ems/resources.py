"""Where the shipped files are: inside the installed wheel (`ems/web`, `ems/profiles`) or in a checkout."""
from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"{name}/ is neither in the installed package nor next to it")


def web_dir() -> Path:
    return _find("web")


def profiles_dir() -> Path:
    return _find("profiles")


def data_file(name: str) -> Path:
    return _PACKAGE / "data" / name


def demo_config_text() -> str:
    return data_file("ems.demo.yaml").read_text(encoding="utf-8")

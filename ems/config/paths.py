"""What a path-valued setting may name: a character device under `/dev`, never a file of ours.

A setting the service *writes to* (the hardware watchdog is petted every second; a serial port carries
Modbus frames) would otherwise be a file-write primitive for whoever may change the configuration: pointed
at `users.json`, the watchdog pets would overwrite the user store. So a device path must be absolute, under
`/dev` after resolving symlinks and `..`, and — when it exists — a character device. The checks run when
the config is read (`ems check-config`, start-up, every API change) and again where the device is opened
(`ems.safety.watchdog`), so a file swapped in after validation is refused too.
"""
from __future__ import annotations

import os
import stat
from typing import Any

DEV_DIR = "/dev"


def device_path_problem(path: str, must_exist: bool) -> str | None:
    """Why `path` may not be used as a device (None: it may). `must_exist`: the device must be there now."""
    if not path.startswith(DEV_DIR + "/") or any(part in ("", ".", "..") for part in path[len(DEV_DIR) + 1:].split("/")):
        return f"{path[:80]!r} is not a device path (allowed: a character device under {DEV_DIR}/, e.g. /dev/watchdog)"
    resolved = os.path.realpath(path)
    if not resolved.startswith(DEV_DIR + "/"):
        return f"{path[:80]!r} leads outside {DEV_DIR}/ (to {resolved[:80]!r}); only devices under {DEV_DIR}/ are allowed"
    try:
        mode = os.stat(resolved).st_mode
    except FileNotFoundError:
        return f"{path[:80]!r} does not exist (allowed: an existing character device)" if must_exist else None
    except OSError as exc:
        return f"{path[:80]!r} cannot be checked ({exc.strerror})"
    if not stat.S_ISCHR(mode):
        return f"{path[:80]!r} is not a character device (allowed: a device such as /dev/watchdog or /dev/ttyUSB0)"
    return None


def existing_char_device(value: Any, _context: Any = None) -> str | None:
    """`constrained(check=...)`: an existing character device under /dev (the hardware watchdog)."""
    return device_path_problem(value, must_exist=True) if isinstance(value, str) else None


def char_device(value: Any, _context: Any = None) -> str | None:
    """`constrained(check=...)`: a character device under /dev that may be unplugged right now (a serial port)."""
    return device_path_problem(value, must_exist=False) if isinstance(value, str) else None

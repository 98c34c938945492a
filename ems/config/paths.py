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

from .. import i18n

DEV_DIR = "/dev"


def device_path_problem(path: str, must_exist: bool) -> i18n.Msg | None:
    """Why `path` may not be used as a device (None: it may). `must_exist`: the device must be there now."""
    quoted = repr(path[:80])
    if not path.startswith(DEV_DIR + "/") or any(part in ("", ".", "..") for part in path[len(DEV_DIR) + 1:].split("/")):
        return i18n.Msg(i18n.mark("{path} is not a device path (allowed: a character device under /dev/, e.g. "
                                  "/dev/watchdog)"), {"path": quoted})
    resolved = os.path.realpath(path)
    if not resolved.startswith(DEV_DIR + "/"):
        return i18n.Msg(i18n.mark("{path} leads outside /dev/ (to {target}); only devices under /dev/ are allowed"),
                        {"path": quoted, "target": repr(resolved[:80])})
    try:
        mode = os.stat(resolved).st_mode
    except FileNotFoundError:
        return i18n.Msg(i18n.mark("{path} does not exist (allowed: an existing character device)"),
                        {"path": quoted}) if must_exist else None
    except OSError as exc:
        return i18n.Msg(i18n.mark("{path} cannot be checked ({reason})"), {"path": quoted, "reason": exc.strerror or ""})
    if not stat.S_ISCHR(mode):
        return i18n.Msg(i18n.mark("{path} is not a character device (allowed: a device such as /dev/watchdog or "
                                  "/dev/ttyUSB0)"), {"path": quoted})
    return None


def existing_char_device(value: Any, _context: Any = None) -> i18n.Msg | None:
    """`constrained(check=...)`: an existing character device under /dev (the hardware watchdog)."""
    return device_path_problem(value, must_exist=True) if isinstance(value, str) else None


def char_device(value: Any, _context: Any = None) -> i18n.Msg | None:
    """`constrained(check=...)`: a character device under /dev that may be unplugged right now (a serial port)."""
    return device_path_problem(value, must_exist=False) if isinstance(value, str) else None

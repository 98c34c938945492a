"""The hardware watchdog (`/dev/watchdog`): petted by the safety loop only while it is healthy.

If the safety loop hangs or keeps failing, nobody pets the device and the board resets — the last line
of defence when software cannot be trusted to reach its own safe state. A clean stop writes the magic
close character 'V' so that an intentional shutdown does not reboot the gateway.

Only a character device under /dev is ever opened (checked on the path, and on the opened file itself,
so a regular file swapped in after the config was validated is refused too): pets written into a file
would corrupt it.
"""
from __future__ import annotations

import logging
import os
import stat
import time

from ..config.paths import device_path_problem

log = logging.getLogger(__name__)

MAGIC_CLOSE = b"V"
PET = b"."


class HardwareWatchdog:
    def __init__(self, path: str, min_interval_s: float = 1.0):
        self.path = path
        self.min_interval_s = min_interval_s
        self._fd: int | None = None
        self._last_pet = 0.0
        self.pets = 0

    def open(self) -> None:
        """Arm the watchdog (opening the device starts its countdown). ValueError when the path is not a
        character device under /dev; OSError when it cannot be opened."""
        problem = device_path_problem(self.path, must_exist=True)
        if problem:
            raise ValueError(f"hardware watchdog: {problem}")
        fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY)
        if not stat.S_ISCHR(os.fstat(fd).st_mode):
            os.close(fd)
            raise ValueError(f"hardware watchdog: {self.path!r} is not a character device")
        self._fd = fd
        log.info("hardware watchdog %s armed", self.path)

    def pet(self) -> None:
        if self._fd is None:
            return
        now = time.monotonic()
        if now - self._last_pet < self.min_interval_s:
            return
        try:
            os.write(self._fd, PET)
        except OSError:
            log.exception("petting the hardware watchdog %s failed", self.path)
            return
        self._last_pet = now
        self.pets += 1

    def close(self) -> None:
        """Clean stop: disarm with the magic close character, then close."""
        if self._fd is None:
            return
        try:
            os.write(self._fd, MAGIC_CLOSE)
        except OSError:
            log.exception("disarming the hardware watchdog %s failed", self.path)
        finally:
            os.close(self._fd)
            self._fd = None
        log.info("hardware watchdog %s disarmed (magic close)", self.path)

"""systemd integration: READY=1 once serving, STATUS= lines, WATCHDOG=1 only from the safety loop.

Without NOTIFY_SOCKET (not under systemd) every call is a cheap no-op.
"""
from __future__ import annotations

import logging
import os
import time

import sdnotify

log = logging.getLogger(__name__)

WATCHDOG_MIN_INTERVAL_S = 1.0


class ServiceNotifier:
    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        self._last_watchdog = 0.0
        self.watchdog_pets = 0

    def _send(self, message: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(message)

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def stopping(self) -> None:
        self._send("STOPPING=1\nSTATUS=stopping")

    def watchdog(self) -> None:
        """Pet the service watchdog; called by the safety loop after each healthy cycle."""
        now = time.monotonic()
        if now - self._last_watchdog >= WATCHDOG_MIN_INTERVAL_S:
            self._last_watchdog = now
            self.watchdog_pets += 1
            self._send("WATCHDOG=1")

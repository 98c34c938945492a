"""The serial ports this gateway has, for the Modbus wizard's RTU port picker.

USB adapters (ttyUSB*, ttyACM*), the Raspberry Pi's UARTs (ttyAMA*, and ttyS0 as the mini-UART) and PC
COM ports (ttyS* that a driver really backs: Linux creates ttyS0..31 whether or not a UART exists), with
their stable /dev/serial/by-id names where udev made one (a USB adapter keeps that name when it is plugged
into another socket; ttyUSB0 may not).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PATTERNS = ("ttyUSB*", "ttyACM*", "ttyAMA*", "ttyS*")


def _real_uart(dev: Path, sys_class: Path) -> bool:
    """ttyS*: only those whose serial8250 port has a real UART behind it (type not 0 = unknown)."""
    if not dev.name.startswith("ttyS"):
        return True
    port_type = sys_class / dev.name / "type"
    try:
        return port_type.read_text().strip() not in ("", "0")
    except OSError:
        return (sys_class / dev.name / "device").exists()


def serial_ports(dev_dir: Path = Path("/dev"), sys_class: Path = Path("/sys/class/tty")) -> list[dict[str, Any]]:
    """[{path, by_id}] sorted by path; by_id is the /dev/serial/by-id link to it, or None."""
    by_id: dict[str, str] = {}
    links = dev_dir / "serial" / "by-id"
    try:
        for link in sorted(links.iterdir()):
            by_id.setdefault(os.path.realpath(link), str(link))
    except OSError:
        pass  # no USB serial adapter plugged in: udev made no folder
    found = []
    for pattern in PATTERNS:
        for dev in sorted(dev_dir.glob(pattern)):
            if _real_uart(dev, sys_class):
                found.append({"path": str(dev), "by_id": by_id.get(os.path.realpath(dev))})
    return found

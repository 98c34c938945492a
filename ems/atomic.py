"""Crash-safe file replacement: a power cut leaves either the old or the new file, never half of one."""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: bytes, keep_backup: bool = False) -> None:
    """Write `data` to `path` via temp file + fsync + rename; optionally keep the old file as `<path>.bak`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if keep_backup and target.exists():
            # A hard link keeps the old inode alive as .bak without copying; rename makes it atomic.
            bak_tmp = target.with_name(f".{target.name}.bak.tmp")
            bak_tmp.unlink(missing_ok=True)
            os.link(target, bak_tmp)
            os.replace(bak_tmp, target.with_name(target.name + ".bak"))
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

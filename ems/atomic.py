"""Crash-safe file replacement: a power cut leaves either the old or the new file, never half of one.

A writer killed between creating its temp file and renaming it leaves `.<name>.<random>.tmp` behind
(and `.<name>.bak.tmp` while it keeps a backup); `remove_stale_temp_files` clears those at start-up.
New files are created readable and writable by the service's user only (mkstemp's 0600).
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
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


TEMP_SUFFIX = ".tmp"
STALE_AFTER_S = 60.0  # no write of ours takes a minute: an older temp file was left by a killed writer


def remove_stale_temp_files(directory: str | os.PathLike[str], prefix: str = ".",
                            min_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete temp files of interrupted `write_atomic` calls in `directory` (names `<prefix>…tmp`, hidden,
    not touched for `min_age_s`: a write in progress in another process keeps its own). Returns them."""
    removed: list[Path] = []
    base = Path(directory)
    if not base.is_dir():
        return removed
    now = time.time()
    for leftover in base.iterdir():
        name = leftover.name
        if not (name.startswith(".") and name.startswith(prefix) and name.endswith(TEMP_SUFFIX)):
            continue
        try:
            info = leftover.lstat()
            if not leftover.is_file() or leftover.is_symlink() or now - info.st_mtime < min_age_s:
                continue
            leftover.unlink()
        except OSError as exc:
            log.warning("cannot remove the stale temp file %s: %s", leftover, exc)
            continue
        removed.append(leftover)
        log.info("removed %s, left by an interrupted write", leftover)
    return removed

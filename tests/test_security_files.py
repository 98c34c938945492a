"""Files the service writes: temp files of writes killed mid-way are cleaned at start, secrets are stored
readable by the owner only, and a crash never leaves a half-written file behind (issue 17, class 10)."""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import yaml

from appliance import demo_config
from ems.atomic import remove_stale_temp_files, write_atomic
from ems.config import ConfigStore
from ems.users.auth import Security


def leave(path: Path, age_s: float) -> Path:
    path.write_bytes(b"half a file")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_stale_temp_files_of_interrupted_writes_are_removed_at_start(tmp_path: Path):
    config = tmp_path / "ems.yaml"
    config.write_text(yaml.safe_dump(demo_config()))
    data = tmp_path / "data"
    data.mkdir()
    stale = [leave(tmp_path / ".ems.yaml.k2j3h4.tmp", 3600), leave(tmp_path / ".ems.yaml.bak.tmp", 3600),
             leave(data / ".sessions.json.a8d7.tmp", 3600), leave(data / ".users.json.x1y2.tmp", 3600),
             leave(data / ".api_tokens.json.q9.tmp", 3600)]
    in_progress = leave(data / ".sessions.json.now1.tmp", 0)  # another process writing right now
    foreign = leave(tmp_path / ".someone-elses.tmp", 3600)
    ConfigStore.open(config)
    Security.open(data).close()
    assert not any(p.exists() for p in stale)
    assert in_progress.exists() and foreign.exists()


def test_remove_stale_temp_files_keeps_everything_else(tmp_path: Path):
    keep = [leave(tmp_path / "ems.yaml", 3600), leave(tmp_path / "notes.tmp", 3600), leave(tmp_path / ".hidden", 3600)]
    gone = leave(tmp_path / ".history.json.abc.tmp", 3600)
    assert remove_stale_temp_files(tmp_path) == [gone]
    assert all(p.exists() for p in keep)


def test_the_config_file_is_made_owner_only_when_opened_and_stays_so(tmp_path: Path):
    config = tmp_path / "ems.yaml"
    config.write_text(yaml.safe_dump(demo_config()))
    config.chmod(0o644)
    store = ConfigStore.open(config)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    store.update_section("bess", {**store.section_plain("bess"), "capacity_kwh": 12})
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.with_name("ems.yaml.bak").stat().st_mode) == 0o600


def test_atomic_writes_create_owner_only_files(tmp_path: Path):
    write_atomic(tmp_path / "users.json", b"{}")
    assert stat.S_IMODE((tmp_path / "users.json").stat().st_mode) == 0o600

"""The appliance's systemd units and drop-ins, checked offline (no running systemd needed, as in CI).

`systemd-analyze verify` loads the units against the installed systemd's own units in a scratch root (with
stand-ins for the executables the image installs); `systemd-analyze security --offline=yes` scores the EMS
unit's sandbox. The image test (`make image-test`) runs the same unit for real under QEMU.

The checks that run systemd's own tools skip when `systemd-analyze` is not installed (a developer machine
without systemd; `make test` installs the Debian package systemd, so CI always runs them). Everything else
(settings, scripts' syntax) runs everywhere. The whole module takes a few seconds.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ems.cli import build_parser
from ems.systemd_notify import WATCHDOG_MIN_INTERVAL_S

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "systemd"
EMS_UNIT = UNITS / "phoenyra-ems.service"
FIRSTBOOT_UNIT = UNITS / "phoenyra-firstboot.service"
RETRY_UNITS = (UNITS / "phoenyra-ems-retry.service", UNITS / "phoenyra-ems-retry.timer")
MAX_EXPOSURE = 2.0
PI_WATCHDOG_MAX_S = 15  # bcm2835_wdt


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                                   reason="systemd-analyze missing (`make test` installs the Debian package systemd)")


def systemd_analyze() -> str:
    assert SYSTEMD_ANALYZE is not None  # only called from tests marked needs_systemd
    return SYSTEMD_ANALYZE


def unit_settings(path: Path) -> dict[str, list[str]]:
    """`Key=value` lines of a unit or drop-in (keys may repeat), comments and sections left out."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|min)?", value)
    assert m, f"not a time span I can read: {value}"
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "min": 60, None: 1}[m.group(2)]


@pytest.fixture(scope="module")
def scratch_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The installed systemd's units plus ours, with stand-ins for the programs the image installs."""
    root = tmp_path_factory.mktemp("systemd-root")
    system_units = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
                         if (p / "multi-user.target").exists()), None)
    assert system_units, "no systemd units installed: `make test` installs the Debian package systemd"
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in (EMS_UNIT, FIRSTBOOT_UNIT, *RETRY_UNITS):
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
    for program in ("opt/phoenyra/venv/bin/ems", "usr/lib/phoenyra/firstboot", "bin/systemctl"):
        stub = root / program
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    return root


@needs_systemd
@pytest.mark.parametrize("unit", [u.name for u in (EMS_UNIT, FIRSTBOOT_UNIT, *RETRY_UNITS)])
def test_unit_passes_systemd_analyze_verify(scratch_root: Path, unit: str) -> None:
    proc = subprocess.run([systemd_analyze(), "verify", f"--root={scratch_root}", unit],
                          capture_output=True, text=True, timeout=60)
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if "phoenyra" in line]
    assert proc.returncode == 0 and not ours, proc.stdout + proc.stderr


@needs_systemd
def test_ems_unit_exposure_is_at_most_2_0() -> None:
    proc = subprocess.run([systemd_analyze(), "security", "--offline=yes", "--no-pager", str(EMS_UNIT)],
                          capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for phoenyra-ems\.service:\s*([\d.]+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, proc.stdout


def test_ems_unit_starts_the_ems_as_its_cli_expects() -> None:
    exec_start = unit_settings(EMS_UNIT)["ExecStart"]
    assert len(exec_start) == 1
    argv = exec_start[0].split()
    assert argv[0] == "/opt/phoenyra/venv/bin/ems"
    args = build_parser().parse_args(argv[1:])
    assert args.config == "/etc/phoenyra/ems.yaml" and args.data_dir == "/var/lib/phoenyra"


def test_ems_unit_is_watched_restarted_and_confined() -> None:
    s = unit_settings(EMS_UNIT)
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    # The safety loop pets at most every WATCHDOG_MIN_INTERVAL_S: leave room for a few missed cycles.
    assert seconds(one["WatchdogSec"]) >= 4 * WATCHDOG_MIN_INTERVAL_S
    assert one["Restart"] == "always" and int(one["StartLimitBurst"]) >= 3 and seconds(one["StartLimitIntervalSec"]) > 0
    assert one["User"] == "phoenyra" and one["UMask"] == "0077"
    assert one["StateDirectory"] == "phoenyra" and one["ConfigurationDirectory"] == "phoenyra"
    assert one["ProtectSystem"] == "strict" and one["DevicePolicy"] == "closed"
    assert {"char-ttyUSB rw", "char-ttyS rw"} <= set(s["DeviceAllow"])
    assert one["CapabilityBoundingSet"] == "" and one["NoNewPrivileges"] == "yes"
    assert one["MemoryDenyWriteExecute"] == "yes"


def test_a_given_up_ems_is_started_again_later() -> None:
    """Restart=always stops at the start limit; the retry timer (OnFailure=) starts the EMS again later."""
    assert unit_settings(EMS_UNIT)["OnFailure"] == ["phoenyra-ems-retry.timer"]
    timer = unit_settings(RETRY_UNITS[1])
    assert timer["Unit"] == ["phoenyra-ems-retry.service"] and seconds(timer["OnActiveSec"][0]) >= 60
    assert any("start" in cmd and "phoenyra-ems.service" in cmd for cmd in unit_settings(RETRY_UNITS[0])["ExecStart"])


def test_firstboot_runs_before_the_ems_and_once() -> None:
    s = unit_settings(FIRSTBOOT_UNIT)
    assert any("phoenyra-ems.service" in v for v in s["Before"])
    assert s["ConditionPathExists"] == ["!/var/lib/phoenyra/.firstboot-done"]
    assert "phoenyra-firstboot.service" in unit_settings(EMS_UNIT)["After"][0]


@needs_systemd
@pytest.mark.parametrize("dropin, defaults", [
    ("system.conf.d/phoenyra-watchdog.conf", "system.conf"),
    ("journald.conf.d/phoenyra-sdcard.conf", "journald.conf"),
])
def test_dropin_keys_are_known_to_the_installed_systemd(dropin: str, defaults: str) -> None:
    """Each key must appear in the installed systemd's own (commented) defaults: a typo would be ignored."""
    shipped = Path("/etc/systemd") / defaults
    assert shipped.exists(), f"{shipped} missing: `make test` installs the Debian package systemd"
    known = set(re.findall(r"^#?([A-Za-z]+)=", shipped.read_text(), re.M))
    keys = set(unit_settings(UNITS / dropin))
    assert keys and keys <= known, keys - known


def test_hardware_watchdog_fits_the_raspberry_pi() -> None:
    s = unit_settings(UNITS / "system.conf.d/phoenyra-watchdog.conf")
    assert 0 < seconds(s["RuntimeWatchdogSec"][-1]) < PI_WATCHDOG_MAX_S


def test_journal_spares_the_sd_card() -> None:
    s = unit_settings(UNITS / "journald.conf.d/phoenyra-sdcard.conf")
    assert s["Storage"] == ["volatile"] and s["RuntimeMaxUse"]


def test_image_scripts_parse() -> None:
    for script, shell in (("image/firstboot.sh", "sh"), ("image/essential-hook.sh", "sh"), ("image/kernel-hook.sh", "sh"),
                          ("image/build.sh", "bash"), ("image/customize.sh", "bash"),
                          ("image/rootfs-amd64/etc/kernel/postinst.d/zz-phoenyra-esp", "sh")):
        proc = subprocess.run([shell, "-n", str(REPO / script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"

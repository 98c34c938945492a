"""The appliance delivery: the EMS unit's sandbox score, the image's size and build time, and the booted image.

- `systemd-analyze security --offline=yes` exposure of systemd/phoenyra-ems.service (0 = fully sandboxed,
  10 = not at all; the issue's bound is 2.0). Baseline in the same run: the unit as it was before the
  hardening (UNIT_BEFORE below, verbatim; 8.5 EXPOSED with systemd 252). Always measured: about a second.
- From `make image` (build/image/phoenyra-ems-<arch>.build.json): image size (raw, allocated on disk, xz)
  and build time. Read, never built here: `make image ARCH=amd64` takes about 10 minutes.
- The booted amd64 image: power-on → UI answering (first boot and a normal boot), restarts after kill -9 and
  after SIGSTOP, the idle EMS's RSS, the system's used memory and SD-card writes per hour from the guest's
  /proc/diskstats. Taken from the record `make image-test` writes (build/image/image-test-amd64.json) when it
  tested the newest image. Otherwise the bench boots the image itself only when that is quick: when KVM
  really works here (image/test_image.py's probe) — under TCG emulation the whole test takes about 20 minutes,
  too long for `make bench`, so the figures are skipped with a note (run `make image-test`). BENCH_IMAGE_BOOT=1
  boots under TCG too, =0 never boots; BENCH_IMAGE_MINUTES (default 5) is that run's idle window.
No image at all: only the exposure figures, in about a second.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("IMAGE_OUT", REPO / "build" / "image"))
MINUTES = float(os.environ.get("BENCH_IMAGE_MINUTES", "5"))
BOOT = os.environ.get("BENCH_IMAGE_BOOT", "auto")  # auto: only with working KVM | 1: also TCG | 0: never

# systemd/phoenyra-ems.service before issue 18 (commit 11a4263), the baseline of the exposure score.
UNIT_BEFORE = """[Unit]
Description=Phoenyra EMS (battery energy management)
After=network-online.target time-sync.target
Wants=network-online.target
StartLimitIntervalSec=300
StartLimitBurst=10

[Service]
Type=notify
NotifyAccess=main
User=phoenyra
Group=phoenyra
ExecStart=/opt/phoenyra/venv/bin/ems run --config /etc/phoenyra/ems.yaml --data-dir /var/lib/phoenyra
WatchdogSec=10
Restart=on-failure
RestartSec=2
TimeoutStopSec=10
KillSignal=SIGTERM
StateDirectory=phoenyra
ConfigurationDirectory=phoenyra
Nice=-5
MemoryMax=200M
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true
NoNewPrivileges=true
ReadWritePaths=/var/lib/phoenyra /etc/phoenyra
SupplementaryGroups=dialout

[Install]
WantedBy=multi-user.target
"""


def exposure(unit: Path) -> float:
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
                          capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+:\s*([\d.]+)", proc.stdout)
    if not m:
        raise RuntimeError(proc.stdout + proc.stderr)
    return float(m.group(1))


def image_test_module() -> Any:
    """image/test_image.py as a module (it is a script, not part of the ems package)."""
    spec = importlib.util.spec_from_file_location("image_test", REPO / "image" / "test_image.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def boot_record(image: Path) -> dict[str, Any] | None:
    """The image test's record for `image`: the stored one if it tested this very build, else a fresh run
    when that is quick (or asked for), else None."""
    tested = OUT / "image-test-amd64.json"
    if tested.exists():
        record = json.loads(tested.read_text())
        if record.get("image") == image.name and record.get("image_mtime_ns") == image.stat().st_mtime_ns:
            print(f"boot figures from make image-test of {record['image']} at {record['tested_at']} "
                  f"({record['accel']}, {record['measure_minutes']:g} min idle window)")
            return record
    if BOOT == "0":
        print("note: no image-test record of the newest image and BENCH_IMAGE_BOOT=0: boot figures skipped")
        return None
    if not (shutil.which("qemu-system-x86_64") and Path("/usr/share/OVMF/OVMF_CODE_4M.fd").exists()):
        print("note: qemu-system-x86 / ovmf missing (make image-test installs them): boot figures skipped")
        return None
    if BOOT != "1" and not image_test_module().kvm_usable():
        print("note: no image-test record of the newest image, and no working KVM here (TCG: ~20 min): boot "
              "figures skipped; run `make image-test` (or BENCH_IMAGE_BOOT=1)")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        proc = subprocess.run([sys.executable, str(REPO / "image" / "test_image.py"), "--image", str(image),
                               "--measure-minutes", f"{MINUTES:g}", "--json", str(result)],
                              capture_output=True, text=True, timeout=1700)
        print(proc.stdout[-3000:])
        if not result.exists():
            print(proc.stderr[-3000:], file=sys.stderr)
            raise RuntimeError("image test wrote no result")
        return json.loads(result.read_text())


def main() -> int:
    figures: dict[str, float] = {}
    if shutil.which("systemd-analyze"):
        figures["ems_unit_exposure_score"] = exposure(REPO / "systemd" / "phoenyra-ems.service")
        with tempfile.TemporaryDirectory() as tmp:
            before = Path(tmp) / "phoenyra-ems.service"
            before.write_text(UNIT_BEFORE)
            figures["ems_unit_before_exposure_score"] = exposure(before)
        print(f"exposure {figures['ems_unit_exposure_score']} (before the hardening: "
              f"{figures['ems_unit_before_exposure_score']})")
    else:
        print("note: systemd-analyze missing (Debian package systemd): no exposure score")

    for arch in ("amd64", "arm64"):
        record_path = OUT / f"phoenyra-ems-{arch}.build.json"
        if not record_path.exists():
            print(f"note: no {arch} image built (make image ARCH={arch}): no size or build time for it")
            continue
        build = json.loads(record_path.read_text())
        figures[f"image_{arch}_mb"] = round(build["image_bytes"] / 1e6, 1)
        figures[f"image_{arch}_allocated_mb"] = round(build["image_allocated_bytes"] / 1e6, 1)
        if build.get("image_xz_bytes"):
            figures[f"image_{arch}_xz_mb"] = round(build["image_xz_bytes"] / 1e6, 1)
        figures[f"image_{arch}_rootfs_used_mb"] = round(build["rootfs_used_bytes"] / 1e6, 1)
        figures[f"image_{arch}_venv_mb"] = round(build["venv_bytes"] / 1e6, 1)
        figures[f"image_{arch}_build_s"] = build["build_s"]
        print(f"{arch}: {build['image']} built {build['built_at']} in {build['build_s']} s")

    images = sorted(OUT.glob("phoenyra-ems-*-amd64.img"), key=lambda p: p.stat().st_mtime)
    record = boot_record(images[-1]) if images else None
    if not images:
        print("note: no amd64 image: boot-to-UI, idle RSS and SD writes skipped (make image ARCH=amd64)")
    if record is not None:
        for name, value in record["figures"].items():
            figures[f"vm_{name}"] = value
        figures["vm_idle_window_min"] = float(record["measure_minutes"])
        failed = [c["name"] for c in record["checks"] if not c["ok"]]
        figures["vm_checks_passed"] = float(len(record["checks"]) - len(failed))
        figures["vm_checks_failed"] = float(len(failed))
        if failed:
            print("image test checks failed:", ", ".join(failed))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

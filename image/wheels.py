"""Wheels for the image: the EMS wheel built from this checkout, every dependency as a wheel for the target.

Run by build.sh with a Python 3.11 (the image's Python is Debian bookworm's 3.11): the dependency set is
resolved once for this interpreter (`pip install --dry-run --report`), then each package is fetched as a wheel
for the target (`pip download --platform manylinux…_<machine> --only-binary=:all:`); a pure-Python package
published only as an sdist (sdnotify) is built into a wheel here. The target's own pip then installs from this
folder with `--no-index`, which also checks that every wheel fits the target's interpreter and glibc.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}
GLIBC_MINOR_MAX = 36  # Debian bookworm's glibc 2.36
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                                     ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", ".demo-data",
                                     "node_modules")


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True)


def platform_args(arch: str) -> list[str]:
    machine = MACHINE[arch]
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(GLIBC_MINOR_MAX, 16, -1)]
    tags += [f"manylinux2014_{machine}"]
    out: list[str] = []
    for tag in tags:
        out += ["--platform", tag]
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", required=True)
    parser.add_argument("--arch", required=True, choices=sorted(MACHINE))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if sys.version_info[:2] != (3, 11):
        print(f"wheels.py needs Python 3.11 (the image's), not {sys.version.split()[0]}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # Built from a copy of the sources: setuptools writes build/ and *.egg-info next to what it builds.
    src = out.parent / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(args.repo, src, ignore=NOT_SOURCES)
    pip("wheel", "--no-deps", "-w", str(out), str(src))
    shutil.rmtree(src)
    ems_wheels = sorted(out.glob("phoenyra_ems-*.whl"))
    if len(ems_wheels) != 1:
        print(f"expected one EMS wheel in {out}, found {ems_wheels}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pip("install", "--dry-run", "--ignore-installed", "--report", str(report), str(ems_wheels[0]))
        items = json.loads(report.read_text())["install"]
    pinned, pure, binary = [], [], []
    for item in items:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if name.lower().replace("_", "-") == "phoenyra-ems":
            continue
        filename = unquote(Path(urlsplit(item["download_info"]["url"]).path).name)
        pinned.append(f"{name}=={version}")
        # A pure wheel is the same everywhere; an sdist is built here and must come out pure (checked below).
        (pure if filename.endswith("-none-any.whl") or not filename.endswith(".whl") else binary).append(pinned[-1])
    if pure:
        pip("wheel", "--no-deps", "-w", str(out), *pure)
    if binary:
        pip("download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
            "--abi", "cp311", *platform_args(args.arch), "-d", str(out), *binary)
    impure = [w.name for w in out.glob("*.whl") if "-none-any" not in w.name and MACHINE[args.arch] not in w.name]
    if impure:
        print(f"wheels that do not fit {args.arch}: {impure}", file=sys.stderr)
        return 1
    (out / "requirements.txt").write_text("\n".join(sorted(pinned, key=str.lower)) + "\n")
    print(f"{len(pinned) + 1} wheels for {args.arch} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

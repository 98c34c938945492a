"""The product runs from a wheel, not only from a checkout: web/ and profiles/ ship inside it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from appliance import SERVING

ROOT = Path(__file__).resolve().parent.parent
# What a build must not see (and would otherwise write into the checkout: build/ and *.egg-info).
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                                     ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", ".demo-data",
                                     "node_modules")


def build_wheel(out: Path) -> Path:
    """Build from a copy of the working tree in `out`: setuptools writes build/ and *.egg-info next to the
    sources it builds, and these must not land in the checkout."""
    src = out / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCES)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out / "dist"), str(src)], check=True, timeout=300, capture_output=True, cwd=out)
    (wheel,) = (out / "dist").glob("phoenyra_ems-*.whl")
    return wheel


def build_outputs() -> set[str]:
    return {p.name for p in ROOT.iterdir() if p.name in ("build", "dist") or p.name.endswith(".egg-info")}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """The wheel (built once for this module), and what the build added to the checkout."""
    before = build_outputs()
    wheel = build_wheel(tmp_path_factory.mktemp("wheel"))
    return wheel, build_outputs() - before


@pytest.fixture
def wheel(built: tuple[Path, set[str]]) -> Path:
    return built[0]


def test_building_the_wheel_writes_nothing_into_the_checkout(built: tuple[Path, set[str]]):
    assert built[1] == set()


def test_wheel_carries_web_profiles_data_and_the_console_script(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("ems/web/templates/base.tpl", "ems/web/templates/dashboard.tpl",
                     "ems/web/static/js/dashboard.js", "ems/web/static/css/app.css",
                     "ems/web/static/vendor/chartjs/chart.umd.min.js", "ems/web/static/vendor/chartjs/LICENSE.md",
                     "ems/profiles/README.md", "ems/data/ems.demo.yaml", "ems/data/SOURCES.md",
                     "ems/data/household_H25_2024_4000kWh_15min.csv", "ems/data/pv_per_kwp_2023_2024_hourly.csv"):
        assert required in names, f"{required} is not in the wheel"
    shipped = [p for p in (ROOT / "profiles").rglob("*") if p.is_file()]
    assert len(shipped) > 10
    for profile in shipped:
        assert f"ems/profiles/{profile.relative_to(ROOT / 'profiles')}" in names, profile
    assert "ems/devices/codec.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "ems = ems.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_runs_from_any_directory(wheel: Path, tmp_path: Path):
    """Installed (not the checkout) into its own folder, started from elsewhere, it serves its own assets."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, timeout=300, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import ems.resources as r; print(r.web_dir()); print(r.profiles_dir())"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert all(line.startswith(str(target)) for line in where.stdout.split()), where.stdout
    proc = subprocess.Popen([sys.executable, "-m", "ems", "run", "--data-dir", str(tmp_path / "data"),
                             "--port", "0"], cwd=elsewhere, env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        assert proc.stderr is not None
        for line in proc.stderr:
            match = SERVING.search(line)
            if match:
                url = f"http://{match.group(1)}:{match.group(2)}"
                break
        assert url, "did not start serving"
        import urllib.request
        page = urllib.request.urlopen(url + "/", timeout=5).read().decode()  # -> the login form
        assert "Phoenyra EMS" in page and 'name="password"' in page and "/static/css/app.css" in page
        chart = urllib.request.urlopen(url + "/static/vendor/chartjs/chart.umd.min.js", timeout=5).read()
        assert len(chart) > 100_000
        assert (tmp_path / "data" / "ems.yaml").exists(), "the demo config is created in the data dir"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0

"""History file health: the upgrade from the first release's schema keeps the data, a damaged file is moved
aside and reported (never silently lost), kill -9 during writes loses no acknowledged batch, the file is private."""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ems.history.schema import SCHEMA_VERSION
from ems.history.store import HistoryStore

T0 = 1_700_001_000.0  # a multiple of 900 s
V1_COLUMNS = ("soc_pct", "soh_pct", "voltage_v", "current_a", "temperature_c", "bess_power_w", "pv_power_w",
              "load_power_w", "grid_power_w", "setpoint_w", "max_charge_power_w", "max_discharge_power_w",
              "dso_limit_pct")
# The schema of the first release, as its store created it (copied from that release, not from the code).
V1_DDL = f"""
CREATE TABLE IF NOT EXISTS telemetry (ts REAL PRIMARY KEY, {", ".join(f"{c} REAL" for c in V1_COLUMNS)}) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS telemetry_15min (bucket_ts INTEGER PRIMARY KEY, n INTEGER NOT NULL,
    {", ".join(f"{c}_sum REAL, {c}_n INTEGER" for c in V1_COLUMNS)}) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS optimization_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL,
    strategy TEXT NOT NULL, status TEXT NOT NULL, solver TEXT, objective_eur REAL, expected_profit_eur REAL,
    duration_ms REAL, reason TEXT, plan_json TEXT);
CREATE INDEX IF NOT EXISTS optimization_runs_ts ON optimization_runs(ts);
"""


def make_v1_database(path: Path) -> None:
    """Ten days ago: two quarter hours known only as sums; recently: an hour of raw rows every 10 s."""
    conn = sqlite3.connect(path)
    conn.executescript(V1_DDL)
    old = T0 - 10 * 86400
    for k, soc in enumerate((40.0, 60.0)):
        conn.execute("INSERT INTO telemetry_15min (bucket_ts, n, soc_pct_sum, soc_pct_n) VALUES (?, 90, ?, 90)",
                     (int(old + 900 * k), soc * 90))
    raw = [(T0 + 10 * i, 50.0 + (i % 7), 1000.0 if i % 2 else -500.0) for i in range(360)]
    conn.executemany("INSERT INTO telemetry (ts, soc_pct, grid_power_w) VALUES (?, ?, ?)", raw)
    for q in range(4):  # the v1 store kept running sums of the same raw rows
        members = [r for r in raw if T0 + 900 * q <= r[0] < T0 + 900 * (q + 1)]
        conn.execute("INSERT INTO telemetry_15min (bucket_ts, n, soc_pct_sum, soc_pct_n, grid_power_w_sum,"
                     " grid_power_w_n) VALUES (?, ?, ?, ?, ?, ?)",
                     (int(T0 + 900 * q), len(members), sum(m[1] for m in members), len(members),
                      sum(m[2] for m in members), len(members)))
    conn.execute("INSERT INTO optimization_runs (ts, strategy, status, solver) VALUES (?, 'arbitrage', 'optimal',"
                 " 'highs')", (T0,))
    conn.commit()
    conn.close()


def test_a_first_release_database_is_migrated_with_its_data_kept(tmp_path: Path):
    path = tmp_path / "history.db"
    make_v1_database(path)
    store = HistoryStore(path)
    try:
        assert store.status()["schema_version"] == SCHEMA_VERSION
        raw = store.telemetry_since(0, 10_000)
        assert len(raw) == 360 and raw[0]["soc_pct"] == 50.0 and raw[1]["grid_power_w"] == 1000.0
        old = T0 - 10 * 86400
        ancient = store.state_range(old, old + 1800, 2)
        assert ancient["tier"] == "15min"
        assert [(p["soc_pct"], p["soc_pct_min"]) for p in ancient["rows"]] == [(40.0, None), (60.0, None)]
        recent = store.state_range(T0, T0 + 3600, 4)["rows"]
        assert [p["n"] for p in recent] == [90, 90, 90, 90]
        assert (recent[0]["soc_pct_min"], recent[0]["soc_pct_max"]) == (50.0, 56.0)  # rebuilt from raw
        minutes = store.state_range(T0, T0 + 600, 10)
        assert minutes["tier"] == "1min" and len(minutes["rows"]) == 10
        # The raw rows got their energies: each stands for the 10 s since the one before (the first for none).
        energy = store.sums(T0, T0 + 3600, ["dt_s", "import_wh", "export_wh"])
        assert energy["dt_s"] == pytest.approx(3590.0)
        assert energy["import_wh"] == pytest.approx(180 * 1000.0 * 10 / 3600)
        assert energy["export_wh"] == pytest.approx(179 * 500.0 * 10 / 3600)
        assert [(r["strategy"], r["solver"]) for r in store.optimization_runs(0)] == [("arbitrage", "highs")]
        store.write_telemetry([{"ts": T0 + 3600, "soc_pct": 70.0, "dt_s": 10.0}])  # and it takes new rows
    finally:
        store.close()
    again = HistoryStore(path)  # opening a current file again migrates nothing
    try:
        assert len(again.telemetry_since(0, 10_000)) == 361
    finally:
        again.close()


def test_a_file_that_is_not_a_database_is_moved_aside_reported_and_replaced(tmp_path: Path):
    path = tmp_path / "history.db"
    path.write_bytes(b"this is not an SQLite file" * 100)
    reports: list[tuple[str, str]] = []
    store = HistoryStore(path, report=lambda level, message: reports.append((level, message)))
    try:
        aside = list(tmp_path.glob("history.db.corrupt-*"))
        assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not an SQLite file")
        assert len(reports) == 1 and reports[0][0] == "error" and aside[0].name in reports[0][1]
        assert store.write_telemetry([{"ts": T0, "soc_pct": 1.0}]) == 1
        assert store.status()["integrity"].startswith("recovered")
    finally:
        store.close()


def test_a_damaged_page_is_found_by_the_integrity_check_and_the_file_replaced(tmp_path: Path):
    path = tmp_path / "history.db"
    store = HistoryStore(path)
    for b in range(20):
        store.write_telemetry([{"ts": T0 + 100 * b + i, "soc_pct": float(i), "grid_power_w": 1.0 * b}
                               for i in range(100)])
    store.close()
    page = 4096
    size = path.stat().st_size
    assert size > 20 * page
    with open(path, "r+b") as f:  # scribble over pages in the middle of the file, past the schema page
        for k in range(size // page // 2, size // page // 2 + 4):
            f.seek(k * page + 100)
            f.write(random.Random(k).randbytes(page - 200))
    reports: list[tuple[str, str]] = []
    damaged = HistoryStore(path, report=lambda level, message: reports.append((level, message)))
    try:
        # Found when the file is opened (if the damage is on the way to the newest row) or by the check.
        if not reports:
            assert damaged.check_integrity().startswith("recovered")
        assert len(reports) == 1 and reports[0][0] == "error"
        assert len(list(tmp_path.glob("history.db.corrupt-*"))) == 1
        assert damaged.telemetry_since(0, 10) == []  # a fresh file …
        assert damaged.write_telemetry([{"ts": T0, "soc_pct": 1.0}]) == 1  # … that works
        assert damaged.check_integrity() == "ok"
    finally:
        damaged.close()


def test_the_history_file_is_readable_by_its_owner_only(tmp_path: Path):
    path = tmp_path / "history.db"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    store = HistoryStore(path)
    try:
        store.write_telemetry([{"ts": T0, "soc_pct": 1.0}])
        for f in [path, *tmp_path.glob("history.db-*")]:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    finally:
        store.close()


WRITER = """
import sys
from ems.history.store import HistoryStore
store = HistoryStore(sys.argv[1])
batch = 0
while True:
    rows = [{"ts": 1_700_001_000.0 + batch * 50 + i, "soc_pct": float(batch), "grid_power_w": 100.0, "dt_s": 1.0}
            for i in range(50)]
    store.write_telemetry(rows)
    print(f"ack {batch}", flush=True)
    batch += 1
"""


def test_kill_9_during_writes_leaves_a_sound_file_with_every_acknowledged_batch(tmp_path: Path):
    path = tmp_path / "history.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    acked: list[int] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while len(acked) < 40 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked.append(int(line.split()[1]))
        proc.send_signal(signal.SIGKILL)  # in the middle of the next batch
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    acked += [int(line.split()[1]) for line in rest.splitlines() if line.startswith("ack ")]
    assert len(acked) >= 40, "the writer did not get going"
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {int(b) for (b,) in conn.execute("SELECT DISTINCT soc_pct FROM telemetry")}
        assert set(acked) <= stored
        counts = conn.execute("SELECT count(*), (SELECT sum(n) FROM telemetry_15min),"
                              " (SELECT sum(n) FROM telemetry_1min) FROM telemetry").fetchone()
        assert counts[0] == counts[1] == counts[2]  # every batch landed whole, aggregates included
    finally:
        conn.close()


def test_a_file_from_a_newer_ems_is_kept_whole_under_its_own_name_not_called_corrupt(tmp_path: Path):
    path = tmp_path / "history.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE future_things (x)")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    reports: list[tuple[str, str]] = []
    store = HistoryStore(path, report=lambda level, message: reports.append((level, message)))
    try:
        kept = list(tmp_path.glob("history.db.newer-v99-*"))
        assert len(kept) == 1 and not list(tmp_path.glob("history.db.corrupt-*"))
        assert reports and reports[0][0] == "warning" and "newer" in reports[0][1]
        assert store.write_telemetry([{"ts": T0, "soc_pct": 1.0}]) == 1
    finally:
        store.close()

"""Telemetry and optimization history in SQLite, written in batches to spare the SD card.

WAL with synchronous=NORMAL: a killed process loses nothing committed; a power cut may lose at
most the last committed batch but never corrupts the file. Raw rows are kept `RAW_RETENTION_DAYS`;
15-minute averages (kept as running sums, so each batch updates them incrementally) are kept for
the configured retention and answer long range queries. All methods block: call them from an
executor thread, never from the event loop. One writer connection; readers get their own per thread.
"""
from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterable, Sequence

log = logging.getLogger(__name__)

TELEMETRY_COLUMNS = (
    "soc_pct", "soh_pct", "voltage_v", "current_a", "temperature_c", "bess_power_w", "pv_power_w",
    "load_power_w", "grid_power_w", "setpoint_w", "max_charge_power_w", "max_discharge_power_w",
    "dso_limit_pct",
)
BUCKET_S = 900
RAW_RETENTION_DAYS = 14

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS telemetry (
    ts REAL PRIMARY KEY,
    {", ".join(f"{c} REAL" for c in TELEMETRY_COLUMNS)}
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS telemetry_15min (
    bucket_ts INTEGER PRIMARY KEY,
    n INTEGER NOT NULL,
    {", ".join(f"{c}_sum REAL, {c}_n INTEGER" for c in TELEMETRY_COLUMNS)}
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS optimization_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    strategy TEXT NOT NULL,
    status TEXT NOT NULL,
    solver TEXT,
    objective_eur REAL,
    expected_profit_eur REAL,
    duration_ms REAL,
    reason TEXT,
    plan_json TEXT
);
CREATE INDEX IF NOT EXISTS optimization_runs_ts ON optimization_runs(ts);
"""

_BUCKET_UPSERT = f"""
INSERT INTO telemetry_15min (bucket_ts, n, {", ".join(f"{c}_sum, {c}_n" for c in TELEMETRY_COLUMNS)})
VALUES (?, ?, {", ".join("?, ?" for _ in TELEMETRY_COLUMNS)})
ON CONFLICT(bucket_ts) DO UPDATE SET n = n + excluded.n,
{", ".join(f"{c}_sum = coalesce({c}_sum, 0) + coalesce(excluded.{c}_sum, 0), {c}_n = {c}_n + excluded.{c}_n"
           for c in TELEMETRY_COLUMNS)}
"""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class HistoryStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _connect(self.path)
        self._writer.executescript(_SCHEMA)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, timeout=10.0,
                                   check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    # -- writes -------------------------------------------------------------------------------
    def write_telemetry(self, rows: Sequence[dict[str, Any]]) -> int:
        """Insert rows (dicts with `ts` and TELEMETRY_COLUMNS) in one transaction; returns rows written.

        A row whose `ts` already exists replaces it, and its old values are taken out of the 15-min
        aggregate first, so long-range averages always summarise exactly the raw rows.
        """
        if not rows:
            return 0
        columns = ", ".join(TELEMETRY_COLUMNS)
        placeholders = ", ".join("?" for _ in range(len(TELEMETRY_COLUMNS) + 1))
        with self._write_lock, self._writer:
            for r in rows:
                old = self._writer.execute(f"SELECT ts, {columns} FROM telemetry WHERE ts = ?", (r["ts"],)).fetchone()
                if old is not None:
                    self._writer.execute(_BUCKET_UPSERT, self._bucket_values(old[0], old[1:], sign=-1))
                values = [r.get(c) for c in TELEMETRY_COLUMNS]
                self._writer.execute(f"INSERT OR REPLACE INTO telemetry (ts, {columns}) VALUES ({placeholders})",
                                     (r["ts"], *values))
                self._writer.execute(_BUCKET_UPSERT, self._bucket_values(r["ts"], values, sign=1))
        return len(rows)

    @staticmethod
    def _bucket_values(ts: float, values: Sequence[Any], sign: int) -> list[Any]:
        out: list[Any] = [int(ts // BUCKET_S * BUCKET_S), sign]
        for v in values:
            out += [None if v is None else sign * v, 0 if v is None else sign]
        return out

    def record_optimization_run(self, ts: float, strategy: str, status: str, solver: str | None = None,
                                objective_eur: float | None = None, expected_profit_eur: float | None = None,
                                duration_ms: float | None = None, reason: str | None = None,
                                plan: Any = None) -> int:
        with self._write_lock, self._writer:
            cur = self._writer.execute(
                "INSERT INTO optimization_runs (ts, strategy, status, solver, objective_eur, expected_profit_eur,"
                " duration_ms, reason, plan_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ts, strategy, status, solver, objective_eur, expected_profit_eur, duration_ms, reason,
                 None if plan is None else json.dumps(plan)))
            return int(cur.lastrowid or 0)

    def prune(self, now: float, retention_days: int) -> None:
        """Drop raw rows past RAW_RETENTION_DAYS and aggregates/runs past `retention_days`."""
        with self._write_lock, self._writer:
            self._writer.execute("DELETE FROM telemetry WHERE ts < ?", (now - RAW_RETENTION_DAYS * 86400,))
            self._writer.execute("DELETE FROM telemetry_15min WHERE bucket_ts < ?", (now - retention_days * 86400,))
            self._writer.execute("DELETE FROM optimization_runs WHERE ts < ?", (now - retention_days * 86400,))

    # -- reads --------------------------------------------------------------------------------
    def telemetry_since(self, since_ts: float, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` raw rows at or after `since_ts`, oldest first."""
        cur = self._reader().execute(
            f"SELECT ts, {', '.join(TELEMETRY_COLUMNS)} FROM telemetry WHERE ts >= ? ORDER BY ts DESC LIMIT ?",
            (since_ts, limit))
        return [self._row(cur.description, r) for r in reversed(cur.fetchall())]

    def state_history(self, since_ts: float, until_ts: float, max_points: int) -> list[dict[str, Any]]:
        """Averages over equal time buckets, at most `max_points` rows, oldest first.

        Spans that raw rows still cover are averaged from them; longer ones (or buckets of 15 min and more)
        come from the 15-min table, whole 15-min buckets only.
        """
        span_s = max(1.0, until_ts - since_ts)
        bucket_s = span_s / max_points
        conn = self._reader()
        if since_ts < until_ts - RAW_RETENTION_DAYS * 86400 or bucket_s >= BUCKET_S:
            b = math.ceil(bucket_s / BUCKET_S) * BUCKET_S
            first = math.ceil(since_ts / BUCKET_S) * BUCKET_S
            avgs = ", ".join(f"sum({c}_sum) / nullif(sum({c}_n), 0) AS {c}" for c in TELEMETRY_COLUMNS)
            cur = conn.execute(
                f"SELECT ? + ((bucket_ts - ?) / ?) * ? AS ts, {avgs} FROM telemetry_15min"
                " WHERE bucket_ts >= ? AND bucket_ts < ? GROUP BY (bucket_ts - ?) / ? ORDER BY ts",
                (first, first, b, b, first, until_ts, first, b))
            return [self._row(cur.description, r) for r in cur.fetchall()]
        avgs = ", ".join(f"avg({c}) AS {c}" for c in TELEMETRY_COLUMNS)
        cur = conn.execute(
            f"SELECT min(ts) AS ts, {avgs} FROM telemetry WHERE ts >= ? AND ts <= ?"
            " GROUP BY min(?, CAST((ts - ?) / ? AS INTEGER)) ORDER BY ts",
            (since_ts, until_ts, max_points - 1, since_ts, bucket_s))
        return [self._row(cur.description, r) for r in cur.fetchall()]

    def optimization_runs(self, since_ts: float, limit: int = 500) -> list[dict[str, Any]]:
        cur = self._reader().execute(
            "SELECT id, ts, strategy, status, solver, objective_eur, expected_profit_eur, duration_ms, reason"
            " FROM optimization_runs WHERE ts >= ? ORDER BY ts DESC LIMIT ?", (since_ts, limit))
        return [self._row(cur.description, r) for r in cur.fetchall()]

    @staticmethod
    def _row(description: Iterable[Any], values: Sequence[Any]) -> dict[str, Any]:
        return {d[0]: (round(v, 4) if isinstance(v, float) else v) for d, v in zip(description, values)}

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        with self._write_lock:
            self._writer.close()

"""Telemetry and optimization history in SQLite, in three tiers, written in batches to spare the SD card.

Tiers: raw rows for `raw_retention_h` (default 48 h), 1-minute buckets for `minute_retention_days`
(default a year), 15-minute and 1-hour buckets forever (`ems.history.channels` says what a bucket holds;
the hourly tier keeps a year's chart at 8,760 rows). Each batch is one transaction that inserts its raw
rows and recomputes just the buckets those rows fall in (`schema.refresh_buckets`: a minute from its raw
rows, a quarter from its minutes, an hour from its quarters), so the aggregates are
always exactly the raw data they summarise, a rewritten timestamp included, at the cost of a few rows per
batch. SD wear is dominated by commits, not rows: one per batch, plus pruning every few hours.

WAL with synchronous=NORMAL: a killed process loses nothing committed; a power cut may lose at most the
last committed batch but never corrupts the file. Corruption found at start or by `check_integrity()` is
not silently lost: the file is moved aside (`history.db.corrupt-<time>`), reported, and a fresh one
started. The file is private (0600): telemetry says when people are at home.

All methods block: call them from an executor thread, never from the event loop. One writer connection;
readers get their own per thread.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

from ..config.schema import HistoryConfig
from . import flows
from .channels import ALL, ENERGY, FLOW_KEYS, MEASURED
from .schema import BACKFILL_MAX_GAP_S, HOUR_S, MINUTE_S, QUARTER_S, SCHEMA_VERSION, NewerSchemaError, \
    immediate_transaction, migrate, refresh_buckets, schema_version

log = logging.getLogger(__name__)

DAY_S = 86400
PRUNE_CHUNK_S = DAY_S  # one transaction per day of data deleted: writers never wait long
TIERS = ("raw", "1min", "15min", "1h")  # fine to coarse
_TABLES = {"1min": "telemetry_1min", "15min": "telemetry_15min", "1h": "telemetry_1h"}
_STEP_S = {"1min": MINUTE_S, "15min": QUARTER_S, "1h": HOUR_S}

CORRUPT_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) if hasattr(sqlite3, "SQLITE_CORRUPT") else (11, 26)

ProblemReporter = Callable[[Literal["warning", "error"], str], object]
"""(level, message): how the store tells people about a corrupt file or data dropped for size."""


class HistoryStore:
    def __init__(self, path: str | Path, config: HistoryConfig | None = None,
                 report: ProblemReporter | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.config = config or HistoryConfig()
        self._report = report or (lambda level, message: None)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._generation = 0
        self.integrity = "not checked"
        self.rows_dropped = 0  # rows refused because they were older than the raw tier
        self._writer = self._open()

    # -- opening, integrity, recovery -----------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect_and_migrate()
        except NewerSchemaError as exc:
            # A rolled-back EMS: keep the newer file whole (an upgrade can take it back) and start afresh.
            self._move_aside(str(exc), suffix=f"newer-v{exc.version}", level="warning")
            return self._connect_and_migrate()
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorcode", None) not in CORRUPT_CODES:
                raise  # a full disk, an I/O error, a lock: not the file's fault, and not a reason to drop it
            self._move_aside(f"it cannot be opened ({exc})")
            return self._connect_and_migrate()

    def _connect_and_migrate(self) -> sqlite3.Connection:
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.chmod(self.path, 0o600)
        conn = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
            migrate(conn)
            rows = conn.execute("SELECT max(ts) FROM telemetry").fetchone()
            self._newest_ts = float(rows[0]) if rows[0] is not None else -math.inf
            for suffix in ("-wal", "-shm"):
                side = Path(f"{self.path}{suffix}")
                if side.exists():
                    os.chmod(side, 0o600)
        except BaseException:
            conn.close()
            raise
        return conn

    def _move_aside(self, why: str, suffix: str = "corrupt", level: Literal["warning", "error"] = "error") -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.path.with_name(f"{self.path.name}.{suffix}-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.replace(Path(f"{target}{suffix}"))
        message = (f"the history database {why} and was moved aside to {target.name}; "
                   "a new one was started (the old file is kept for recovery)")
        log.log(logging.ERROR if level == "error" else logging.WARNING, "%s", message)
        self.integrity = f"recovered: moved aside to {target.name}"
        self._report(level, message)

    def check_integrity(self) -> str:
        """`PRAGMA quick_check`; a damaged file is moved aside and a fresh one started. Returns the result."""
        with self._write_lock:
            try:
                result = [r[0] for r in self._writer.execute("PRAGMA quick_check").fetchall()]
                problem = None if result == ["ok"] else "; ".join(str(r) for r in result[:3])
            except sqlite3.DatabaseError as exc:
                problem = str(exc)
            if problem is None:
                # A recovery at open stays visible in /api/state until the next start.
                self.integrity = "ok" if not self.integrity.startswith("recovered") else self.integrity
                return "ok"
            self._writer.close()
            self._move_aside(f"failed its integrity check ({problem[:200]})")
            self._writer = self._connect_and_migrate()
            self._generation += 1  # readers reopen on their next query (each closes its own old connection)
            return self.integrity

    def _close_all(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self._writer.close()

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "generation", -1) != self._generation:
            with self._readers_lock:
                if conn in self._readers:
                    self._readers.remove(conn)
            conn.close()  # the file it reads was moved aside
            conn = None
        if conn is None:
            conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, timeout=10.0,
                                   check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
            self._local.conn, self._local.generation = conn, self._generation
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock, immediate_transaction(self._writer) as conn:
            yield conn

    # -- writes -------------------------------------------------------------------------------
    def write_telemetry(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert rows (`ts`, measured channels, optional `dt_s`) in one transaction; returns rows written.

        The energy channels are derived here (`flows.energy_channels`); a row without `dt_s` stands for the
        time since the row before it (at most BACKFILL_MAX_GAP_S). A row whose `ts` exists replaces it.
        Rows older than the oldest raw row kept are refused (counted in `rows_dropped`): their buckets
        could no longer be recomputed from raw rows.
        """
        if not rows:
            return 0
        ordered = sorted(rows, key=lambda r: float(r["ts"]))
        # Buckets are recomputed from the raw rows of their minute: a row is refused where some of those were
        # pruned (its quarter counts more rows than the raw tier still has). Only rows before the oldest raw
        # row kept can hit that; a row older than everything, or a clock that ran ahead and back, is taken.
        oldest_raw = self._oldest("raw")
        horizon = -math.inf if oldest_raw is None else oldest_raw // MINUTE_S * MINUTE_S
        pruned_quarters: dict[int, bool] = {}
        values: list[list[Any]] = []
        before = self._reader().execute("SELECT max(ts) FROM telemetry WHERE ts < ?",
                                        (float(ordered[0]["ts"]),)).fetchone()[0]
        previous = -math.inf if before is None else float(before)
        for r in ordered:
            ts = float(r["ts"])
            if ts < horizon and self._quarter_lost_raw_rows(int(ts // QUARTER_S) * QUARTER_S, pruned_quarters):
                self.rows_dropped += 1
                continue
            row = {c: _number(r.get(c)) for c in MEASURED}
            dt = _number(r.get("dt_s"))
            if dt is None and math.isfinite(previous) and ts > previous:
                dt = min(ts - previous, BACKFILL_MAX_GAP_S)
            row["dt_s"] = dt
            previous = max(previous, ts)
            derived = flows.energy_channels(row)
            values.append([ts, *(row[c] for c in MEASURED), *(derived[c] for c in ENERGY)])
        if not values:
            log.warning("%d history rows older than the raw tier were refused", len(ordered))
            return 0
        columns = ", ".join(("ts",) + ALL)
        placeholders = ", ".join("?" for _ in range(len(ALL) + 1))
        with self._transaction() as conn:
            conn.executemany(f"INSERT OR REPLACE INTO telemetry ({columns}) VALUES ({placeholders})", values)
            refresh_buckets(conn, values[0][0], values[-1][0])
        self._newest_ts = max(self._newest_ts, values[-1][0])
        return len(values)

    def _quarter_lost_raw_rows(self, quarter: int, seen: dict[int, bool]) -> bool:
        if quarter not in seen:
            conn = self._reader()
            kept = conn.execute("SELECT n FROM telemetry_15min WHERE bucket_ts = ?", (quarter,)).fetchone()
            raw = conn.execute("SELECT count(*) FROM telemetry WHERE ts >= ? AND ts < ?",
                               (quarter, quarter + QUARTER_S)).fetchone()[0]
            seen[quarter] = kept is not None and kept[0] > raw
        return seen[quarter]

    def record_optimization_run(self, ts: float, strategy: str, status: str, solver: str | None = None,
                                objective_eur: float | None = None, expected_profit_eur: float | None = None,
                                duration_ms: float | None = None, reason: str | None = None,
                                plan: Mapping[str, Any] | None = None) -> int:
        """One planning run; `plan` (see `compact_plan`) is kept `plan_retention_days` for plan vs actual."""
        blob = None if plan is None else zlib.compress(json.dumps(plan, allow_nan=False).encode(), 6)
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO optimization_runs (ts, strategy, status, solver, objective_eur, expected_profit_eur,"
                " duration_ms, reason, plan_blob) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ts, strategy, status, solver, objective_eur, expected_profit_eur, duration_ms, reason, blob))
            return int(cur.lastrowid or 0)

    def prune(self, now: float, config: HistoryConfig | None = None) -> None:
        """Retention of each tier, then the size bound; in day-sized transactions so writers never wait long."""
        if config is not None:
            self.config = config
        cfg = self.config
        self._delete_before("telemetry", "ts", now - cfg.raw_retention_h * 3600)
        self._delete_before("telemetry_1min", "bucket_ts", now - cfg.minute_retention_days * DAY_S)
        self._delete_before("optimization_runs", "ts", now - cfg.retention_days * DAY_S)
        with self._transaction() as conn:
            conn.execute("UPDATE optimization_runs SET plan_blob = NULL WHERE ts < ? AND plan_blob IS NOT NULL",
                         (now - cfg.plan_retention_days * DAY_S,))
        self._enforce_size(now)

    def _delete_before(self, table: str, column: str, cutoff: float) -> int:
        deleted = 0
        oldest = self._reader().execute(f"SELECT min({column}) FROM {table}").fetchone()[0]
        if oldest is None:
            return 0
        lo = float(oldest)
        while lo < cutoff:
            hi = min(lo + PRUNE_CHUNK_S, cutoff)
            with self._transaction() as conn:
                deleted += conn.execute(f"DELETE FROM {table} WHERE {column} < ?", (hi,)).rowcount
            lo = hi
        return deleted

    def used_bytes(self) -> int:
        conn = self._reader()
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * page_size)

    def _enforce_size(self, now: float) -> None:
        """Over `max_db_mb`: drop the oldest 1-minute days (never the raw tier's span), then 15-minute days."""
        limit = self.config.max_db_mb * 1024 * 1024
        if self.used_bytes() <= limit:
            return
        dropped: list[str] = []
        keep_from = now - self.config.raw_retention_h * 3600
        for table in ("telemetry_1min", "telemetry_15min"):
            while self.used_bytes() > limit:
                oldest = self._reader().execute(f"SELECT min(bucket_ts) FROM {table}").fetchone()[0]
                if oldest is None or oldest >= keep_from:
                    break
                cutoff = min(float(oldest) + DAY_S, keep_from)
                with self._transaction() as conn:
                    conn.execute(f"DELETE FROM {table} WHERE bucket_ts < ?", (cutoff,))
                dropped.append(f"{table} before {time.strftime('%Y-%m-%d', time.gmtime(cutoff))}")
        if dropped:
            message = (f"history database over its size limit ({self.config.max_db_mb} MB): dropped "
                       f"{dropped[0]}{' … ' + dropped[-1] if len(dropped) > 1 else ''}")
            log.warning("%s", message)
            self._report("warning", message)

    # -- reads: raw rows and ranged state ------------------------------------------------------
    def telemetry_since(self, since_ts: float, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` raw rows at or after `since_ts`, oldest first (measured channels)."""
        cur = self._reader().execute(
            f"SELECT ts, {', '.join(MEASURED)} FROM telemetry WHERE ts >= ? ORDER BY ts DESC LIMIT ?",
            (since_ts, limit))
        return [_row(cur.description, r) for r in reversed(cur.fetchall())]

    def tier_for(self, since_ts: float, until_ts: float, max_points: int) -> str:
        """The coarsest tier fine enough for `max_points` over the range that still holds its start."""
        bucket_s = max(1e-3, until_ts - since_ts) / max(1, max_points)
        holds = {"raw": self._holds("raw", "1min", since_ts), "1min": self._holds("1min", "15min", since_ts),
                 "15min": True, "1h": True}
        fine_enough = [t for t in ("1h", "15min", "1min") if _STEP_S[t] <= bucket_s] + ["raw"]
        wanted = fine_enough[0]
        order = list(TIERS)
        for tier in order[order.index(wanted):]:
            if holds[tier]:
                return tier
        return "15min"

    def _oldest(self, tier: str) -> float | None:
        table, column = ("telemetry", "ts") if tier == "raw" else (_TABLES[tier], "bucket_ts")
        value = self._reader().execute(f"SELECT min({column}) FROM {table}").fetchone()[0]
        return None if value is None else float(value)

    def _holds(self, tier: str, coarser: str, since_ts: float) -> bool:
        """Whether `tier` has everything from `since_ts` on: it reaches back that far, or nothing older was
        ever pruned from it (it starts where the coarser tier starts: a young system, not a pruned tier)."""
        oldest = self._oldest(tier)
        if oldest is None:
            return False
        if oldest <= since_ts:
            return True
        start = self._oldest(coarser)
        return start is not None and oldest <= start + _STEP_S[coarser]

    def state_range(self, since_ts: float, until_ts: float, max_points: int,
                    channels: Sequence[str] | None = None) -> dict[str, Any]:
        """At most `max_points` equal buckets over [since, until): per channel the mean, `_min` and `_max`.

        The tier is `tier_for`; buckets are whole multiples of the tier's step, so a year costs about
        as much as an hour. Unknown channel names raise ValueError (the route's 400).
        """
        chosen = list(channels) if channels else list(MEASURED)
        unknown = [c for c in chosen if c not in MEASURED]
        if unknown:
            raise ValueError(f"unknown channel {unknown[0]!r} (allowed: {', '.join(MEASURED)})")
        tier = self.tier_for(since_ts, until_ts, max_points)
        conn = self._reader()
        if tier == "raw":
            bucket_s = max(1e-3, until_ts - since_ts) / max_points
            exprs = ", ".join(f"round(avg({c}), 4) AS {c}, min({c}) AS {c}_min, max({c}) AS {c}_max" for c in chosen)
            cur = conn.execute(
                f"SELECT ? + min(?, CAST((ts - ?) / ? AS INTEGER)) * ? AS ts, count(*) AS n, {exprs}"
                " FROM telemetry WHERE ts >= ? AND ts < ? GROUP BY 1 ORDER BY 1",
                (since_ts, max_points - 1, since_ts, bucket_s, bucket_s, since_ts, until_ts))
        else:
            step = _STEP_S[tier]
            first = int(since_ts // step) * step
            bucket_s = math.ceil(max(1.0, until_ts - first) / max_points / step) * step
            exprs = ", ".join(f"round(sum({c}_sum) / nullif(sum({c}_n), 0), 4) AS {c}, min({c}_min) AS {c}_min,"
                              f" max({c}_max) AS {c}_max" for c in chosen)
            cur = conn.execute(
                f"SELECT ? + ((bucket_ts - ?) / ?) * ? AS ts, sum(n) AS n, {exprs} FROM {_TABLES[tier]}"
                " WHERE bucket_ts >= ? AND bucket_ts < ? GROUP BY (bucket_ts - ?) / ? ORDER BY 1",
                (first, first, bucket_s, bucket_s, first, until_ts, first, bucket_s))
        names = [d[0] for d in cur.description]  # means rounded in SQL; min/max are stored samples
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
        return {"from": since_ts, "to": until_ts, "tier": tier, "bucket_s": round(bucket_s, 3),
                "channels": chosen, "rows": rows}

    def state_history(self, since_ts: float, until_ts: float, max_points: int) -> list[dict[str, Any]]:
        """Bucket means only (the forecasts' load and PV history)."""
        rows = self.state_range(since_ts, until_ts, max_points)["rows"]
        return [{k: v for k, v in r.items() if not k.endswith(("_min", "_max"))} for r in rows]

    # -- reads: sums (energy, money) ------------------------------------------------------------
    def sums(self, since_ts: float, until_ts: float, columns: Sequence[str] = ENERGY) -> dict[str, float]:
        """Totals of energy channels over [since, until), exact to the sample where the tiers allow.

        Whole quarter hours come from the 15-minute tier; the partial quarters at either end from the raw
        rows while they exist, else from the whole minutes inside them (ranges older than the 1-minute
        tier are summed in whole quarter hours).
        """
        total = dict.fromkeys(columns, 0.0)
        q0 = math.ceil(since_ts / QUARTER_S) * QUARTER_S
        q1 = math.floor(until_ts / QUARTER_S) * QUARTER_S
        parts: list[tuple[str, float, float]] = []
        if q0 < q1:
            parts += [("15min", q0, q1), ("edge", since_ts, q0), ("edge", q1, until_ts)]
        else:
            parts.append(("edge", since_ts, until_ts))
        oldest_raw = self._oldest("raw")
        raw_from = math.inf if oldest_raw is None else oldest_raw
        for kind, lo, hi in parts:
            if hi <= lo:
                continue
            if kind == "edge":
                kind = "raw" if lo >= raw_from else "1min"
            if kind == "raw":
                exprs = ", ".join(f"sum({c})" for c in columns)
                row = self._reader().execute(f"SELECT {exprs} FROM telemetry WHERE ts >= ? AND ts < ?",
                                             (lo, hi)).fetchone()
            else:
                step = _STEP_S[kind]
                exprs = ", ".join(f"sum({c}_sum)" for c in columns)
                row = self._reader().execute(
                    f"SELECT {exprs} FROM {_TABLES[kind]} WHERE bucket_ts >= ? AND bucket_ts < ?",
                    (math.ceil(lo / step) * step, math.floor(hi / step) * step)).fetchone()
            for c, v in zip(columns, row):
                total[c] += v or 0.0
        return total

    def energy_flows(self, since_ts: float, until_ts: float) -> dict[str, Any]:
        """The Sankey: kWh per flow over the range (allocation rule: `ems.history.flows`), totals and money."""
        s = self.sums(since_ts, until_ts)
        kwh = lambda key: round(s[key] / 1000.0, 4)
        return {"from": since_ts, "to": until_ts, "covered_h": round(s["dt_s"] / 3600.0, 4),
                "flows_kwh": {key: kwh(f"{key}_wh") for key in FLOW_KEYS},
                "totals_kwh": {key: kwh(f"{key}_wh") for key in ("pv", "load", "import", "export", "charge",
                                                                 "discharge")},
                "cost_eur": round(s["cost_eur"], 4), "cost_no_battery_eur": round(s["cost_no_battery_eur"], 4),
                "savings_eur": round(s["cost_no_battery_eur"] - s["cost_eur"], 4),
                "priced_h": round(s["priced_s"] / 3600.0, 4)}

    def quarter_rows(self, since_ts: float, until_ts: float, columns: Sequence[str]) -> list[dict[str, Any]]:
        """15-minute buckets in [since, until) with the given stored columns (`<c>_sum`, `<c>_n` …), unrounded."""
        cur = self._reader().execute(
            f"SELECT bucket_ts, n, {', '.join(columns)} FROM telemetry_15min WHERE bucket_ts >= ? AND bucket_ts < ?"
            " ORDER BY bucket_ts", (since_ts, until_ts))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    # -- reads: optimization runs ---------------------------------------------------------------
    def optimization_runs(self, since_ts: float, limit: int = 500) -> list[dict[str, Any]]:
        cur = self._reader().execute(
            "SELECT id, ts, strategy, status, solver, objective_eur, expected_profit_eur, duration_ms, reason"
            " FROM optimization_runs WHERE ts >= ? ORDER BY ts DESC LIMIT ?", (since_ts, limit))
        return [_row(cur.description, r) for r in cur.fetchall()]

    def strategy_runs(self, since_ts: float, until_ts: float) -> list[tuple[float, str]]:
        """(ts, strategy) of the runs in [since, until) and of the last run before it, oldest first."""
        conn = self._reader()
        before = conn.execute("SELECT ts, strategy FROM optimization_runs WHERE ts < ? ORDER BY ts DESC LIMIT 1",
                              (since_ts,)).fetchall()
        inside = conn.execute("SELECT ts, strategy FROM optimization_runs WHERE ts >= ? AND ts < ? ORDER BY ts",
                              (since_ts, until_ts)).fetchall()
        return [(float(t), str(s)) for t, s in before + inside]

    def plans(self, since_ts: float, until_ts: float) -> list[dict[str, Any]]:
        """Runs with a kept plan made in [since, until) and the last one before, oldest first: the plans in force."""
        conn = self._reader()
        query = ("SELECT id, ts, strategy, expected_profit_eur, plan_blob FROM optimization_runs "
                 "WHERE plan_blob IS NOT NULL AND ")
        before = conn.execute(query + "ts < ? ORDER BY ts DESC LIMIT 1", (since_ts,)).fetchall()
        inside = conn.execute(query + "ts >= ? AND ts < ? ORDER BY ts, id", (since_ts, until_ts)).fetchall()
        out = []
        for run_id, ts, strategy, profit, blob in before + inside:
            try:
                plan = json.loads(zlib.decompress(blob))
            except (zlib.error, ValueError):
                log.warning("stored plan of optimization run %s cannot be read; skipped", run_id)
                continue
            out.append({"id": run_id, "ts": ts, "strategy": strategy, "expected_profit_eur": profit, "plan": plan})
        return out

    # -- status ----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """For `/api/state`: how big the file is against its bound, the tiers, the last integrity check."""
        wal = Path(f"{self.path}-wal")
        file_bytes = (self.path.stat().st_size if self.path.exists() else 0) + (wal.stat().st_size if wal.exists() else 0)
        return {"schema_version": schema_version(self._reader()), "used_mb": round(self.used_bytes() / 2**20, 2),
                "file_mb": round(file_bytes / 2**20, 2), "max_db_mb": self.config.max_db_mb,
                "raw_retention_h": self.config.raw_retention_h,
                "minute_retention_days": self.config.minute_retention_days,
                "integrity": self.integrity, "rows_refused": self.rows_dropped}

    def close(self) -> None:
        with self._write_lock:
            self._close_all()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _row(description: Any, values: Sequence[Any]) -> dict[str, Any]:
    return {d[0]: (round(v, 4) if isinstance(v, float) else v) for d, v in zip(description, values)}


assert SCHEMA_VERSION >= 2

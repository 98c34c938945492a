"""The history database's schema: the first version as it shipped, and the migrations since, by number.

Every database — a fresh one too — is created at version 1 and migrated step by step to
`SCHEMA_VERSION` (`PRAGMA user_version`), so the migrations are exercised on every start-up test, not
only on upgrades. All pending steps and their rebuild run in one transaction with the version bump: a
power cut during a migration leaves the old version intact. Steps that change what the aggregates hold ask
for a rebuild, done after the last step: the energy channels of raw rows that lack them are derived and the
15-minute buckets the raw rows fully cover are recomputed from them (older 15-minute buckets keep their
sums; their min/max stay unknown).

Tables: `telemetry` (raw rows, one per sample), `telemetry_1min`, `telemetry_15min`, `telemetry_1h` (per bucket: the
row count `n`; per measured channel `<c>_sum`, `<c>_n`, `<c>_min`, `<c>_max`; per energy channel
`<c>_sum`), `optimization_runs` (with the plan, zlib-compressed JSON, in `plan_blob`).
"""
from __future__ import annotations

import logging
import math
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

from . import flows
from .channels import ALL, CHANNELS, ENERGY, MEASURED, Channel

log = logging.getLogger(__name__)

MINUTE_S = 60
QUARTER_S = 900
HOUR_S = 3600
BACKFILL_MAX_GAP_S = 60.0
"""A raw row of version 1 (no `dt_s`) stands for the time since the row before, at most this long."""

_V1_COLUMNS = tuple(c.name for c in CHANNELS if c.since == 1)

V1_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS telemetry (
    ts REAL PRIMARY KEY,
    {", ".join(f"{c} REAL" for c in _V1_COLUMNS)}
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS telemetry_15min (
    bucket_ts INTEGER PRIMARY KEY,
    n INTEGER NOT NULL,
    {", ".join(f"{c}_sum REAL, {c}_n INTEGER" for c in _V1_COLUMNS)}
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
"""Version 1, exactly as the first release created it (kept verbatim: it is what upgrades start from)."""


def bucket_column_defs(channel: Channel) -> list[str]:
    if channel.kind == "energy":
        return [f"{channel.name}_sum REAL"]
    c = channel.name
    return [f"{c}_sum REAL", f"{c}_n INTEGER", f"{c}_min REAL", f"{c}_max REAL"]


BUCKET_TABLES = ("telemetry_1min", "telemetry_15min", "telemetry_1h")


def add_channels(conn: sqlite3.Connection, channels: Iterable[Channel]) -> None:
    """New channels: a raw column and the bucket columns of every aggregate tier."""
    for channel in channels:
        conn.execute(f"ALTER TABLE telemetry ADD COLUMN {channel.name} REAL")
        for table in BUCKET_TABLES:
            for column in bucket_column_defs(channel):
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


def _v2(conn: sqlite3.Connection) -> None:
    """Min/max per measured channel, the 1-minute and 1-hour tiers, energy/money/DSO/price channels, plans.

    Every table becomes a rowid table (raw rows keyed by a unique index on `ts`, buckets by `bucket_ts` as
    the rowid): WITHOUT ROWID keeps whole rows in its interior pages, and with rows of several hundred
    bytes that made the trees twice as deep and each batch's commit write twice the pages.
    """
    v1 = [c for c in CHANNELS if c.since == 1]
    raw_columns = ", ".join(("ts",) + _V1_COLUMNS)
    conn.execute(f"CREATE TABLE telemetry_v2 (ts REAL NOT NULL UNIQUE, {', '.join(f'{c} REAL' for c in _V1_COLUMNS)})")
    conn.execute(f"INSERT INTO telemetry_v2 ({raw_columns}) SELECT {raw_columns} FROM telemetry ORDER BY ts")
    conn.execute("DROP TABLE telemetry")
    conn.execute("ALTER TABLE telemetry_v2 RENAME TO telemetry")
    bucket_defs = ", ".join(d for c in v1 for d in bucket_column_defs(c))
    conn.execute(f"CREATE TABLE telemetry_15min_v2 (bucket_ts INTEGER PRIMARY KEY, n INTEGER NOT NULL, {bucket_defs})")
    kept = ", ".join(("bucket_ts", "n") + tuple(f"{c}_{p}" for c in _V1_COLUMNS for p in ("sum", "n")))
    conn.execute(f"INSERT INTO telemetry_15min_v2 ({kept}) SELECT {kept} FROM telemetry_15min")
    conn.execute("DROP TABLE telemetry_15min")
    conn.execute("ALTER TABLE telemetry_15min_v2 RENAME TO telemetry_15min")
    for table in ("telemetry_1min", "telemetry_1h"):
        conn.execute(f"CREATE TABLE {table} (bucket_ts INTEGER PRIMARY KEY, n INTEGER NOT NULL, {bucket_defs})")
    add_channels(conn, [c for c in CHANNELS if c.since == 2])
    conn.execute("ALTER TABLE optimization_runs ADD COLUMN plan_blob BLOB")


@dataclass(frozen=True)
class Migration:
    version: int
    apply: Callable[[sqlite3.Connection], None]
    rebuild: bool  # recompute the energy channels and aggregates the raw rows cover


MIGRATIONS: tuple[Migration, ...] = (Migration(2, _v2, rebuild=True),)
SCHEMA_VERSION = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Bring the database to SCHEMA_VERSION; returns the versions applied (empty when current).

    `conn` must be in autocommit mode (isolation_level None): each step is its own BEGIN … COMMIT.
    """
    current = schema_version(conn)
    if current == 0:
        conn.executescript(V1_SCHEMA)
        conn.execute("PRAGMA user_version = 1")
        current = 1
    if current > SCHEMA_VERSION:
        raise NewerSchemaError(current)
    steps = [step for step in MIGRATIONS if step.version > current]
    if not steps:
        return []
    # All steps and the rebuild in one transaction: a power cut leaves the old version whole, never a new
    # version whose rebuild did not happen.
    with immediate_transaction(conn):
        for step in steps:
            step.apply(conn)
            conn.execute(f"PRAGMA user_version = {step.version}")
        if any(step.rebuild for step in steps):
            rebuild_from_raw(conn)
    applied = [step.version for step in steps]
    log.info("history schema migrated to version %d", applied[-1])
    return applied


class NewerSchemaError(sqlite3.DatabaseError):
    """The file was written by a newer EMS (a rolled-back update): not damaged, and not ours to change."""

    def __init__(self, version: int):
        super().__init__(f"history schema version {version} is newer than this EMS ({SCHEMA_VERSION})")
        self.version = version


@contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT on an autocommit connection; ROLLBACK on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# -- aggregate refresh (shared by every write and by the rebuild) --------------------------------------------

def _bucket_names() -> list[str]:
    names = ["bucket_ts", "n"]
    for c in MEASURED:
        names += [f"{c}_sum", f"{c}_n", f"{c}_min", f"{c}_max"]
    names += [f"{c}_sum" for c in ENERGY]
    return names


def _from_raw_exprs() -> list[str]:
    exprs = [f"CAST(ts / {MINUTE_S} AS INTEGER) * {MINUTE_S}", "count(*)"]
    for c in MEASURED:
        exprs += [f"sum({c})", f"count({c})", f"min({c})", f"max({c})"]
    exprs += [f"sum({c})" for c in ENERGY]
    return exprs


def _merge_exprs(step_s: int) -> list[str]:
    """Buckets of a finer tier merged into buckets of `step_s`."""
    exprs = [f"(bucket_ts / {step_s}) * {step_s}", "sum(n)"]
    for c in MEASURED:
        exprs += [f"sum({c}_sum)", f"sum({c}_n)", f"min({c}_min)", f"max({c}_max)"]
    exprs += [f"sum({c}_sum)" for c in ENERGY]
    return exprs


REFRESH_MINUTES_SQL = (f"INSERT OR REPLACE INTO telemetry_1min ({', '.join(_bucket_names())}) "
                       f"SELECT {', '.join(_from_raw_exprs())} FROM telemetry WHERE ts >= ? AND ts < ? GROUP BY 1")
"""Recompute the 1-minute buckets in [lo, hi) (minute-aligned) from the raw rows."""

REFRESH_QUARTERS_SQL = (f"INSERT OR REPLACE INTO telemetry_15min ({', '.join(_bucket_names())}) "
                        f"SELECT {', '.join(_merge_exprs(QUARTER_S))} FROM telemetry_1min "
                        "WHERE bucket_ts >= ? AND bucket_ts < ? GROUP BY 1")
"""Recompute the 15-minute buckets in [lo, hi) (quarter-aligned) from the 1-minute buckets."""

REFRESH_HOURS_SQL = (f"INSERT OR REPLACE INTO telemetry_1h ({', '.join(_bucket_names())}) "
                     f"SELECT {', '.join(_merge_exprs(HOUR_S))} FROM telemetry_15min "
                     "WHERE bucket_ts >= ? AND bucket_ts < ? GROUP BY 1")
"""Recompute the 1-hour buckets in [lo, hi) (hour-aligned) from the 15-minute buckets."""


def refresh_buckets(conn: sqlite3.Connection, lo_ts: float, hi_ts: float) -> None:
    """Recompute every bucket that holds a raw row in [lo_ts, hi_ts] (whole minutes and quarters)."""
    m0 = int(lo_ts // MINUTE_S) * MINUTE_S
    m1 = int(hi_ts // MINUTE_S) * MINUTE_S + MINUTE_S
    conn.execute(REFRESH_MINUTES_SQL, (m0, m1))
    q0 = int(lo_ts // QUARTER_S) * QUARTER_S
    q1 = int(hi_ts // QUARTER_S) * QUARTER_S + QUARTER_S
    conn.execute(REFRESH_QUARTERS_SQL, (q0, q1))
    h0 = int(lo_ts // HOUR_S) * HOUR_S
    h1 = int(hi_ts // HOUR_S) * HOUR_S + HOUR_S
    conn.execute(REFRESH_HOURS_SQL, (h0, h1))


def rebuild_from_raw(conn: sqlite3.Connection) -> None:
    """Derive missing energy channels of raw rows, then recompute the buckets the raw rows fully cover."""
    columns = ", ".join(("ts",) + MEASURED)
    rows = conn.execute(f"SELECT {columns} FROM telemetry WHERE dt_s IS NULL ORDER BY ts").fetchall()
    previous: float | None = None
    updates = []
    for values in rows:
        row = dict(zip(("ts",) + MEASURED, values))
        ts = float(row["ts"])
        row["dt_s"] = None if previous is None else min(ts - previous, BACKFILL_MAX_GAP_S)
        previous = ts
        derived = flows.energy_channels(row)
        updates.append([derived[c] for c in ENERGY] + [ts])
    if updates:
        conn.executemany(f"UPDATE telemetry SET {', '.join(f'{c} = ?' for c in ENERGY)} WHERE ts = ?", updates)
    first = conn.execute("SELECT min(ts), max(ts) FROM telemetry").fetchone()
    if first[0] is None:
        return
    lo, hi = float(first[0]), float(first[1])
    # Only whole buckets: the first minute/quarter may have lost rows to pruning and keeps what it has.
    m0 = math.ceil(lo / MINUTE_S) * MINUTE_S
    conn.execute(REFRESH_MINUTES_SQL, (m0, int(hi // MINUTE_S) * MINUTE_S + MINUTE_S))
    q0 = math.ceil(lo / QUARTER_S) * QUARTER_S
    conn.execute(REFRESH_QUARTERS_SQL, (q0, int(hi // QUARTER_S) * QUARTER_S + QUARTER_S))
    # Hours from all quarter hours (those before the raw rows keep their means; their min/max are unknown).
    conn.execute(REFRESH_HOURS_SQL, (0, int(hi // HOUR_S) * HOUR_S + HOUR_S))
    log.info("history aggregates rebuilt from %d raw rows", conn.execute("SELECT count(*) FROM telemetry").fetchone()[0])


def columns_of(conn: sqlite3.Connection, table: str) -> Sequence[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


assert set(ALL) == set(MEASURED) | set(ENERGY)

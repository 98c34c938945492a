"""The tiered history store (issue 12): a year of 5-second telemetry in, range queries out, size and SD wear.

1. Ingest: a year (365 days from 2025-01-01 UTC) of 5-second rows for every MEASURED channel, generated
   deterministically (seeded; per day, so any day is reproducible on its own): PV a clear-sky bell ×
   season × daily cloudiness with passing clouds, load with morning/evening peaks, appliance spikes and
   noise, a 10 kWh / 5 kW battery doing self-consumption so SoC stays in 10..95 %, grid = load − PV −
   battery, quarter-hourly spot/import/export prices with a daily shape, rare DSO limit (1) and trip (2)
   events, `dt_s` = 5. Written through `HistoryStore.write_telemetry` in 720-row batches (one hour per
   commit; 525,600 one-minute commits would take the run past its budget), except the last day, which goes
   in 12-row batches (the recorder's one-minute flush at 5 s), and pruned as the recorder prunes
   (`store.prune(ts)` every 6 h of simulated time). Only the time inside `write_telemetry` counts towards
   `history_ingest_rows_per_s`; pruning is timed on its own. Baseline: plain sqlite3 `executemany` of the
   same rows, in the same batches, into a table with the same column count (ts + 36 REAL, WITHOUT ROWID,
   WAL, synchronous=NORMAL) — only the executemany + commit is timed; that table is trimmed to 48 h (untimed)
   so both files stay the same order of size.
2. Queries: `state_range(since, until, 500)` for 60 min / day / week / month / year ending at the last row
   (all channels, as the dashboard asks; the year also with 4 channels), and `energy_flows` over the year;
   median of BENCH_HISTORY_REPEATS (7) after one warm-up, warm page cache. The issue's bound: ≤ 200 ms for
   the year. Baselines: `SELECT 1` and `SELECT count(*)` of the raw tier on the store's own reader
   connection, and the 60-min query (`history_query_year_vs_60min_ratio`).
3. Size after the year, in MiB (as `max_db_mb` and `status()`): pages in use (`used_bytes`) and the file
   bytes, WAL included.
4. Bytes written in steady operation, after the year: the recorder's defaults (a row every 10 s, a flush
   every 60 s: 60 commits of 6 rows) for one hour plus one prune, from `/proc/self/io` write_bytes, in MB
   (10^6, as bench_runtime's disk_writes_mb_per_h). Linux counts a page when it turns dirty, and at a real
   60 s between flushes the kernel has written the last flush's pages back (dirty_expire 30 s) before the
   next one dirties them again; compressed into a second they would stay dirty and be counted once. So after
   every commit the database, WAL and -shm are fsynced (what writeback would have done by then). No
   checkpoint is forced: SQLite's own auto-checkpoint (1000 WAL pages) runs when it would, so one hour may
   or may not hold one; the next 6 hours with one prune (the recorder's cadence) give the average, with the
   checkpoints (WAL restarts) counted and the prune's own bytes. Baseline: the same 60 commits of 6 rows
   into the plain 37-column table holding 48 h of rows (checkpointed first). Budget: ≤ 5 MB/h.

BENCH_HISTORY_DAYS shortens the year for a quick run (figures then are not the year's);
BENCH_HISTORY_NO_PROC_IO=1 forces the file-growth fallback of part 4.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ems.config.schema import HistoryConfig
from ems.history.channels import ALL, MEASURED
from ems.history.store import HistoryStore

DAYS = int(os.environ.get("BENCH_HISTORY_DAYS", "365"))
REPEATS = int(os.environ.get("BENCH_HISTORY_REPEATS", "7"))
SEED = 12
START_TS = 1735689600  # 2025-01-01T00:00:00Z
DAY_S = 86400
STEP_S = 5
YEAR_BATCH = 720  # one hour of 5-second rows per commit
FLUSH_BATCH_5S = 12  # the recorder's one-minute flush at 5 s (the last day)
PRUNE_EVERY_S = 6 * 3600  # ems.history.recorder.PRUNE_INTERVAL_S
STEADY_SAMPLE_S, STEADY_FLUSH_S = 10, 60  # HistoryConfig defaults

LAT = math.radians(47.5)  # Austria
PV_KWP = 8.0
CAPACITY_WH = 10_000.0
BATTERY_W = 5000.0
EFFICIENCY = 0.95
SOC_MIN, SOC_MAX = 10.0, 95.0
EXPORT_LIMIT_W = 6000.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- deterministic telemetry ------------------------------------------------------------------------------

class Plant:
    """A household day by day; `day(d, step)` → array (n × 1+len(MEASURED)): ts then MEASURED in order.

    Everything but the battery is a function of the day's own seeded generator; the battery carries its
    SoC from one call to the next (call the days in order)."""

    def __init__(self) -> None:
        self.soc = 50.0
        self.col = {c: i + 1 for i, c in enumerate(MEASURED)}

    def day(self, d: int, step: int, hours: float = 24.0) -> np.ndarray:
        rng = np.random.default_rng([SEED, d])
        n = int(hours * 3600 // step)
        ts = START_TS + d * DAY_S + np.arange(n, dtype=np.float64) * step
        local_h = ((ts + 3600) % DAY_S) / 3600.0  # CET
        doy = (d % 365) + 1
        summer = math.cos(2 * math.pi * (doy - 172) / 365)  # +1 at the June solstice, −1 in December
        weekend = ((d + 2) % 7) >= 5  # 2025-01-01 was a Wednesday

        # PV: clear-sky bell (solar elevation) × daily clearness × passing clouds at 10-min knots + jitter.
        decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + doy) / 365)
        hour_angle = np.radians(15.0 * (local_h - 12.2))
        sin_elev = math.sin(LAT) * math.sin(decl) + math.cos(LAT) * math.cos(decl) * np.cos(hour_angle)
        clear = PV_KWP * 1000 * 0.82 * np.clip(sin_elev, 0, None) ** 1.15
        clearness = float(np.clip(rng.beta(2.2, 1.3), 0.08, 1.0))
        knots_h = np.arange(0, 24 + 1 / 6, 1 / 6)
        clouds = np.interp(local_h, knots_h, np.clip(clearness + rng.normal(0, 0.22, knots_h.size), 0.05, 1.0))
        pv = clear * clouds * (1 + rng.normal(0, 0.01, n))
        pv = np.clip(pv, 0, None)

        # Load: base + morning and evening peaks (later on weekends), seasonal, appliance spikes, noise.
        morning_h, midday_w = (9.0, 350.0) if weekend else (7.0, 0.0)
        load = (280 + 900 * np.exp(-0.5 * ((local_h - morning_h) / 1.0) ** 2)
                + 1400 * np.exp(-0.5 * ((local_h - 19.0) / 1.5) ** 2)
                + midday_w * np.exp(-0.5 * ((local_h - 13.0) / 2.0) ** 2)) * (1 - 0.2 * summer)
        minutes = (local_h * 60).astype(np.int64) % 1440
        spike_w = np.zeros(1440)
        for start in rng.integers(360, 1380, size=rng.poisson(6)):
            spike_w[start:start + rng.integers(2, 25)] += rng.choice([800.0, 1500.0, 2200.0])
        load = np.clip(load * (1 + rng.normal(0, 0.04, n)) + spike_w[minutes], 120, None)

        # Prices per quarter hour: spot with morning/evening peaks and a solar dip in summer; import adds
        # fees and VAT; export is the spot price.
        qh = np.arange(96) / 4.0
        spot = (0.085 + 0.03 * np.exp(-0.5 * ((qh - 8) / 1.5) ** 2) + 0.06 * np.exp(-0.5 * ((qh - 19) / 2) ** 2)
                - 0.05 * (0.5 + 0.5 * summer) * np.exp(-0.5 * ((qh - 13) / 2.2) ** 2)
                + rng.normal(0, 0.012, 96))
        quarter = (local_h * 4).astype(np.int64) % 96
        import_price = np.round((spot * 1.2 + 0.12)[quarter], 5)
        export_price = np.round(spot[quarter], 5)

        # DSO: mostly normal; on ~2 % of days a limit (60 %) for 1–3 h around noon, on ~0.5 % a trip.
        dso_state = np.zeros(n)
        if rng.random() < 0.02:
            a = rng.uniform(10.5, 12.5)
            dso_state[(local_h >= a) & (local_h < a + rng.uniform(1, 3))] = 1.0
        if rng.random() < 0.005:
            a = rng.uniform(8, 18)
            dso_state[(local_h >= a) & (local_h < a + rng.uniform(1 / 6, 0.5))] = 2.0
        dso_limit_pct = np.where(dso_state == 2, 0.0, np.where(dso_state == 1, 60.0, 100.0))
        export_limit = EXPORT_LIMIT_W * dso_limit_pct / 100

        # Battery: self-consumption within SoC 10..95 % and the power limits (sequential: SoC carries).
        bess = np.empty(n)
        soc = np.empty(n)
        max_ch = np.empty(n)
        max_dis = np.empty(n)
        s = self.soc
        wh_per_step = step / 3600.0
        trip = (dso_state == 2).tolist()
        for i, (p, l_) in enumerate(zip(pv.tolist(), load.tolist())):
            mc = BATTERY_W if s < 90 else BATTERY_W * max(0.2, (SOC_MAX - s) / 5)
            md = BATTERY_W if s > 15 else BATTERY_W * max(0.2, (s - SOC_MIN) / 5)
            want = 0.0 if trip[i] else l_ - p  # > 0 discharge
            if want > 0:
                b = min(want, md, max(0.0, (s - SOC_MIN) / 100 * CAPACITY_WH * EFFICIENCY / wh_per_step))
                s -= b * wh_per_step / EFFICIENCY / CAPACITY_WH * 100
            else:
                b = -min(-want, mc, max(0.0, (SOC_MAX - s) / 100 * CAPACITY_WH / EFFICIENCY / wh_per_step))
                s -= b * wh_per_step * EFFICIENCY / CAPACITY_WH * 100
            bess[i], soc[i], max_ch[i], max_dis[i] = b, s, mc, md
        self.soc = s

        # Curtailment: a trip sheds all PV; a limit sheds export above it.
        grid = load - pv - bess
        curtailed = np.where(dso_state == 2, pv, np.clip(-grid - export_limit, 0, None) * (dso_state == 1))
        pv = pv - curtailed
        grid = load - pv - bess

        ocv = 360 + 0.5 * soc
        current = bess / ocv
        voltage = ocv - 0.08 * current
        temperature = 19 + 5 * summer + np.abs(bess) / 1200 + rng.normal(0, 0.05, n)
        out = np.empty((n, 1 + len(MEASURED)))
        out[:, 0] = ts
        values = {
            "soc_pct": soc, "soh_pct": np.full(n, 100 - 2.0 * d / 365), "voltage_v": voltage, "current_a": current,
            "temperature_c": temperature, "bess_power_w": bess, "pv_power_w": pv, "load_power_w": load,
            "grid_power_w": grid, "setpoint_w": bess, "max_charge_power_w": max_ch, "max_discharge_power_w": max_dis,
            "dso_limit_pct": dso_limit_pct, "pv_curtailed_w": curtailed, "export_limit_w": export_limit,
            "dso_state": dso_state, "import_price_eur_per_kwh": import_price,
            "export_price_eur_per_kwh": export_price,
        }
        assert set(values) == set(MEASURED), set(MEASURED) ^ set(values)
        for c, v in values.items():
            out[:, self.col[c]] = np.round(v, 3) if c not in ("import_price_eur_per_kwh",
                                                              "export_price_eur_per_kwh") else v
        return out


KEYS = ("ts",) + MEASURED


def convert(block: np.ndarray, dt_s: float) -> tuple[list[dict], list[list[float]]]:
    """The store's rows (dicts: ts, MEASURED, dt_s) and the baseline's (ts and 36 values: the measured ones
    twice, the store's column count)."""
    lists = block.tolist()
    return [dict(zip(KEYS, r), dt_s=dt_s) for r in lists], [r + r[1:] for r in lists]


def as_rows(block: np.ndarray, dt_s: float) -> list[dict]:
    return convert(block, dt_s)[0]


def as_plain(block: np.ndarray) -> list[list[float]]:
    return convert(block, 0.0)[1]


# -- the plain sqlite3 baseline ---------------------------------------------------------------------------

class Plain:
    def __init__(self, path: Path):
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        cols = ", ".join(f"c{i} REAL" for i in range(len(ALL)))
        self.conn.execute(f"CREATE TABLE t (ts REAL PRIMARY KEY, {cols}) WITHOUT ROWID")
        self.sql = f"INSERT OR REPLACE INTO t VALUES ({', '.join('?' * (len(ALL) + 1))})"
        assert len(ALL) + 1 == 37

    def write(self, values: list[list[float]]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(self.sql, values)
        self.conn.execute("COMMIT")

    def trim(self, before: float) -> None:
        self.conn.execute("DELETE FROM t WHERE ts < ?", (before,))


# -- disk writes ------------------------------------------------------------------------------------------

def proc_write_bytes() -> int | None:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def file_sizes(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


def writeback(db: Path) -> None:
    """What the kernel's writeback does within a real 60 s flush interval: the files' dirty pages to disk."""
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        if p.exists():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def wal_restarts(db: Path) -> int:
    """The WAL header's checkpoint sequence number: it goes up each time a checkpointed WAL is restarted."""
    try:
        with open(f"{db}-wal", "rb") as f:
            header = f.read(16)
    except OSError:
        return 0
    return int.from_bytes(header[12:16], "big") if len(header) == 16 else 0


class WriteMeter:
    """Bytes this process caused to be written to storage (`/proc/self/io`), else the files' growth."""

    def __init__(self, db: Path, use_proc: bool):
        self.db, self.use_proc = db, use_proc
        self.size = self.grown = 0

    def read(self) -> int:
        """A running total, after doing what writeback would have done by now."""
        writeback(self.db)
        if self.use_proc:
            return proc_write_bytes() or 0
        size = file_sizes(self.db)  # the fallback: growth of WAL + DB file (a lower bound: WAL frames are reused)
        self.grown += max(0, size - self.size)
        self.size = size
        return self.grown


def steady(write, block: np.ndarray, meter: WriteMeter, prune=None) -> dict[str, float]:
    """The recorder's defaults over `block` (10 s rows): a commit of 6 rows per 60 s, then `prune` if given.
    Returns bytes written in all and by the prune, WAL restarts (checkpoints) and ms per flush."""
    per_flush = STEADY_FLUSH_S // STEADY_SAMPLE_S
    restarts0, start = wal_restarts(meter.db), meter.read()
    write_s = 0.0
    for i in range(0, len(block), per_flush):
        t0 = time.perf_counter()
        write(block[i:i + per_flush])
        write_s += time.perf_counter() - t0
        meter.read()
    before_prune = meter.read()
    if prune is not None:
        prune(float(block[-1, 0]))
    end = meter.read()
    return {"bytes": end - start, "prune_bytes": end - before_prune, "wal_restarts": wal_restarts(meter.db) - restarts0,
            "flush_ms": write_s * 1000 / math.ceil(len(block) / per_flush)}


# -- queries ------------------------------------------------------------------------------------------------

def timed_ms(fn, repeats: int = REPEATS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    t_run = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="ems-bench-history-", dir="/var/tmp" if Path("/var/tmp").is_dir() else None))
    use_proc = bool(proc_write_bytes()) and not os.environ.get("BENCH_HISTORY_NO_PROC_IO")
    if not use_proc and not os.environ.get("BENCH_HISTORY_NO_PROC_IO"):
        probe = tmp / "probe"
        before = proc_write_bytes()
        with open(probe, "wb") as f:
            f.write(b"\0" * (1 << 20))
            f.flush()
            os.fsync(f.fileno())
        use_proc = before is not None and (proc_write_bytes() or 0) > before
        probe.unlink()
    if not use_proc:
        log("note: /proc/self/io write_bytes is unavailable or stays 0 here; bytes written are estimated as the "
            "growth of the DB and WAL files after each commit (a lower bound: the WAL reuses its frames)")
    figures: dict[str, float] = {}
    try:
        db = tmp / "history.db"
        store = HistoryStore(db, HistoryConfig())
        plain = Plain(tmp / "plain.db")
        plant = Plant()

        # 1. the year
        ingest = {"big": [0, 0.0, 0.0], "flush": [0, 0.0, 0.0]}  # rows, store s, baseline s
        prune_s, prunes, gen_s = 0.0, 0, 0.0
        next_prune = START_TS + PRUNE_EVERY_S
        last_ts = float("nan")
        t_year = time.perf_counter()
        for d in range(DAYS):
            t0 = time.perf_counter()
            block = plant.day(d, STEP_S)
            gen_s += time.perf_counter() - t0
            kind, size = ("flush", FLUSH_BATCH_5S) if d == DAYS - 1 else ("big", YEAR_BATCH)
            for i in range(0, len(block), size):
                chunk = block[i:i + size]
                t0 = time.perf_counter()
                rows, values = convert(chunk, float(STEP_S))
                gen_s += time.perf_counter() - t0
                t0 = time.perf_counter()
                store.write_telemetry(rows)
                t1 = time.perf_counter()
                plain.write(values)
                t2 = time.perf_counter()
                acc = ingest[kind]
                acc[0] += len(rows)
                acc[1] += t1 - t0
                acc[2] += t2 - t1
                last_ts = float(chunk[-1, 0])
                if last_ts + STEP_S >= next_prune:
                    t0 = time.perf_counter()
                    store.prune(last_ts)
                    prune_s += time.perf_counter() - t0
                    prunes += 1
                    plain.trim(last_ts - store.config.raw_retention_h * 3600)
                    next_prune += PRUNE_EVERY_S
            if d % 30 == 29 or d == DAYS - 1:
                n, s_store, s_plain = (sum(v[j] for v in ingest.values()) for j in range(3))
                log(f"day {d + 1}/{DAYS}: {n:,} rows, store {n / s_store:,.0f} rows/s, plain sqlite "
                    f"{n / s_plain:,.0f} rows/s, {prunes} prunes {prune_s:.1f} s, generating {gen_s:.1f} s, "
                    f"wall {time.perf_counter() - t_year:.0f} s, soc {plant.soc:.1f} %")
        assert store.rows_dropped == 0
        n_big, s_big, p_big = ingest["big"]
        n_fl, s_fl, p_fl = ingest["flush"]
        n_all, s_all, p_all = n_big + n_fl, s_big + s_fl, p_big + p_fl
        figures.update({
            "history_year_rows": n_all,
            "history_ingest_rows_per_s": round(n_all / s_all),
            "baseline_sqlite_executemany_rows_per_s": round(n_all / p_all),
            "history_ingest_vs_plain_sqlite_ratio": round(p_all / s_all, 3),
            "history_ingest_720row_batches_rows_per_s": round(n_big / s_big) if n_big else 0,
            "baseline_sqlite_720row_batches_rows_per_s": round(n_big / p_big) if n_big else 0,
            "history_ingest_12row_batches_rows_per_s": round(n_fl / s_fl),
            "baseline_sqlite_12row_batches_rows_per_s": round(n_fl / p_fl),
            "history_ingest_12row_batch_ms": round(s_fl / (n_fl / FLUSH_BATCH_5S) * 1000, 3),
            "history_prune_ms": round(prune_s / max(1, prunes) * 1000, 2),
            "history_year_ingest_wall_s": round(time.perf_counter() - t_year, 1),
        })

        # 3. size after the year
        status = store.status()
        figures["history_db_size_after_year_mb"] = round(store.used_bytes() / 2**20, 1)  # MiB, as max_db_mb
        figures["history_db_file_after_year_mb"] = round(file_sizes(db) / 2**20, 1)
        conn = store._reader()
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("telemetry", "telemetry_1min", "telemetry_15min")}
        log(f"after the year: {status}; rows per tier {counts}")

        # 2. queries ending at the last row
        until = last_ts + STEP_S  # [since, until): the last row included
        tiers = {}
        for name, span in (("60min", 3600), ("day", DAY_S), ("week", 7 * DAY_S), ("month", 30 * DAY_S),
                           ("year", 365 * DAY_S)):
            since = until - span
            res = store.state_range(since, until, 500)
            tiers[name] = (res["tier"], len(res["rows"]))
            figures[f"history_query_{name}_ms"] = round(timed_ms(lambda: store.state_range(since, until, 500)), 2)
        year_since = until - 365 * DAY_S
        figures["history_energy_flows_year_ms"] = round(timed_ms(lambda: store.energy_flows(year_since, until)), 2)
        figures["baseline_sqlite_select_1_ms"] = round(timed_ms(lambda: conn.execute("SELECT 1").fetchone()), 4)
        figures["baseline_sqlite_count_raw_tier_ms"] = round(
            timed_ms(lambda: conn.execute("SELECT count(*) FROM telemetry").fetchone()), 3)
        four = ["soc_pct", "pv_power_w", "load_power_w", "grid_power_w"]
        figures["history_query_year_4_channels_ms"] = round(
            timed_ms(lambda: store.state_range(year_since, until, 500, four)), 2)
        figures["history_query_year_vs_60min_ratio"] = round(
            figures["history_query_year_ms"] / figures["history_query_60min_ms"], 2)
        flows_year = store.energy_flows(year_since, until)
        log(f"tiers and points: {tiers}; year: {flows_year['totals_kwh']} kWh, cost {flows_year['cost_eur']} €,"
            f" savings {flows_year['savings_eur']} €, covered {flows_year['covered_h']} h")

        # 4. bytes written in steady operation (the recorder's defaults), then the same for plain sqlite
        steady_block = plant.day(DAYS, STEADY_SAMPLE_S, 7)
        per_h = 3600 // STEADY_SAMPLE_S
        write_store = lambda chunk: store.write_telemetry(as_rows(chunk, float(STEADY_SAMPLE_S)))
        meter = WriteMeter(db, use_proc)
        hour = steady(write_store, steady_block[:per_h], meter, store.prune)
        six = steady(write_store, steady_block[per_h:], meter, store.prune)
        log(f"steady 1 h + prune: {hour}; 6 h + prune: {six}")
        figures.update({
            "history_written_mb_per_h": round(hour["bytes"] / 1e6, 3),
            "history_written_mb_per_h_6h_avg": round(six["bytes"] / 1e6 / 6, 3),
            "history_prune_6h_written_mb": round(six["prune_bytes"] / 1e6, 3),
            "history_wal_checkpoints_per_6h": six["wal_restarts"],
            "history_steady_flush_ms": round(six["flush_ms"], 3),
        })
        plain.conn.close()
        base_db = tmp / "plain-steady.db"
        baseline = Plain(base_db)  # 48 h in the table already, as in the raw tier, then checkpointed
        baseline.write(as_plain(np.vstack([plant.day(DAYS - 2, STEADY_SAMPLE_S),
                                           plant.day(DAYS - 1, STEADY_SAMPLE_S)])))
        baseline.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        base = steady(lambda chunk: baseline.write(as_plain(chunk)), steady_block[:per_h], WriteMeter(base_db, use_proc))
        log(f"plain table 1 h: {base}")
        figures["baseline_sqlite_plain_table_written_mb_per_h"] = round(base["bytes"] / 1e6, 3)
        figures["baseline_sqlite_plain_table_flush_ms"] = round(base["flush_ms"], 3)
        baseline.conn.close()
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    figures["history_bench_wall_s"] = round(time.perf_counter() - t_run, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""History: what a user reads back from the SQLite file, and how the recorder batches and survives failures."""
from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ems.clock import LoopTimers
from ems.bus import TelemetryBus
from ems.config import ConfigStore, EmsConfig
from ems.config.validate import parse_config
from ems.history import recorder as recorder_mod
from ems.history.recorder import HistoryRecorder
from ems.config.schema import HistoryConfig
from ems.history.channels import MEASURED
from ems.history.schema import QUARTER_S as BUCKET_S
from ems.history.store import HistoryStore
from ems.state import Measurement
from support import until

DAY = 86400
T0 = 1_700_001_000.0  # a multiple of 900 s: the start of a 15-min bucket
assert T0 % BUCKET_S == 0


def row(ts: float, **values: float | None) -> dict[str, Any]:
    return {"ts": ts, **values}


@pytest.fixture
def store(tmp_path: Path):
    s = HistoryStore(tmp_path / "data" / "history.db")
    yield s
    s.close()


# -- store: raw rows ------------------------------------------------------------------------------

def test_rows_written_in_one_batch_are_read_back(store: HistoryStore):
    written = store.write_telemetry([row(T0 + i, soc_pct=50.0 + i, grid_power_w=-1200.5, setpoint_w=None)
                                     for i in range(10)])
    assert written == 10
    rows = store.telemetry_since(T0, 100)
    assert [r["ts"] for r in rows] == [T0 + i for i in range(10)]
    assert [r["soc_pct"] for r in rows] == [50.0 + i for i in range(10)]
    assert all(r["grid_power_w"] == -1200.5 and r["setpoint_w"] is None and r["pv_power_w"] is None for r in rows)
    assert set(rows[0]) == {"ts", *MEASURED}


def test_telemetry_since_keeps_the_newest_rows_oldest_first(store: HistoryStore):
    store.write_telemetry([row(T0 + i, soc_pct=float(i)) for i in range(10)])
    assert [r["soc_pct"] for r in store.telemetry_since(T0 + 2, 3)] == [7.0, 8.0, 9.0]
    assert [r["soc_pct"] for r in store.telemetry_since(T0 + 7, 100)] == [7.0, 8.0, 9.0]
    assert store.telemetry_since(T0 + 10, 100) == []


def test_rows_survive_closing_and_reopening_the_file(tmp_path: Path):
    path = tmp_path / "history.db"
    first = HistoryStore(path)
    first.write_telemetry([row(T0 + i, soc_pct=float(i)) for i in range(3)])
    first.close()
    second = HistoryStore(path)
    try:
        assert [r["soc_pct"] for r in second.telemetry_since(0, 10)] == [0.0, 1.0, 2.0]
    finally:
        second.close()


# -- store: tiers and ranged state -----------------------------------------------------------------

def tiers(raw_h: float = 48, minute_days: int = 365, **extra: Any) -> HistoryConfig:
    return HistoryConfig(raw_retention_h=raw_h, minute_retention_days=minute_days, **extra)


@pytest.mark.parametrize("span_s, points, tier", [
    (3600, 500, "raw"),  # 7.2 s buckets: only raw samples are that fine
    (3600, 30, "1min"),  # 120 s buckets: whole minutes are fine enough, and cheaper
    (DAY, 500, "1min"),  # 173 s
    (7 * DAY, 500, "15min"),  # 20 min
    (30 * DAY, 500, "1h"),  # 86 min
    (365 * DAY, 500, "1h"),
])
def test_the_coarsest_tier_fine_enough_for_the_points_is_chosen(store: HistoryStore, span_s, points, tier):
    store.write_telemetry([row(T0 + 400 * DAY, soc_pct=1.0)])  # "now" for the retention windows
    end = T0 + 400 * DAY
    assert store.tier_for(end - span_s, end, points) == tier


def test_a_range_older_than_what_a_tier_still_holds_falls_back_to_the_next_coarser_one(tmp_path: Path):
    s = HistoryStore(tmp_path / "h.db", tiers(raw_h=48, minute_days=30))
    try:
        now = T0 + 400 * DAY
        for ts in (now - 40 * DAY, now - 10 * DAY, now - 3600):
            s.write_telemetry([row(ts, soc_pct=1.0)])
        # Young data: every tier holds all there is, so the finest fine-enough one answers.
        assert s.tier_for(now - 47 * 3600, now - 46 * 3600, 500) == "raw"
        s.prune(now)  # raw rows now start an hour ago, minutes ten days ago
        assert s.tier_for(now - 1800, now, 500) == "raw"
        assert s.tier_for(now - 47 * 3600, now - 46 * 3600, 500) == "1min"  # the raw rows are gone by then
        assert s.tier_for(now - 20 * DAY, now - 20 * DAY + 3600, 500) == "15min"  # and so are those minutes
        assert s.tier_for(now - 31 * DAY, now - 30 * DAY, 10) == "1h"
        assert s.state_range(now - 20 * DAY - 1800, now - 20 * DAY + 1800, 500)["rows"] == []
        assert s.state_range(now - 40 * DAY - 1800, now - 40 * DAY + 1800, 500)["rows"][0]["soc_pct"] == 1.0
    finally:
        s.close()


def test_a_row_from_the_future_does_not_stop_the_rows_that_follow(store: HistoryStore):
    store.write_telemetry([row(T0 + 60 * DAY, soc_pct=99.0)])  # a clock that ran ahead, then was corrected
    assert store.write_telemetry([row(T0, soc_pct=1.0), row(T0 + 10, soc_pct=2.0)]) == 2
    assert store.rows_dropped == 0


def test_state_range_gives_mean_min_and_max_per_bucket_from_raw_rows(store: HistoryStore):
    # One row every 10 s for 10 minutes; 60 points over 600 s: 10 s buckets, one sample each (raw tier).
    store.write_telemetry([row(T0 + 10 * i, soc_pct=float(i), pv_power_w=None if i % 2 else 100.0)
                           for i in range(60)])
    body = store.state_range(T0, T0 + 600, 60, ["soc_pct", "pv_power_w"])
    assert body["tier"] == "raw" and body["channels"] == ["soc_pct", "pv_power_w"]
    assert [p["soc_pct"] for p in body["rows"]] == [float(i) for i in range(60)]
    assert set(body["rows"][0]) == {"ts", "n", "soc_pct", "soc_pct_min", "soc_pct_max", "pv_power_w",
                                    "pv_power_w_min", "pv_power_w_max"}
    # 6 buckets of 100 s from the 1-minute tier would be 120 s; 20 points = 30 s raw buckets of 3 rows.
    coarse = store.state_range(T0, T0 + 600, 20, ["soc_pct", "pv_power_w"])
    assert coarse["tier"] == "raw" and len(coarse["rows"]) == 20
    for k, p in enumerate(coarse["rows"]):
        members = [3 * k, 3 * k + 1, 3 * k + 2]
        assert p["ts"] == pytest.approx(T0 + 30 * k)
        assert (p["soc_pct"], p["soc_pct_min"], p["soc_pct_max"]) == pytest.approx(
            (statistics.mean(members), min(members), max(members)))
        assert p["pv_power_w"] == 100.0  # the missing (odd) samples do not pull the average down


def test_state_range_leaves_out_rows_outside_the_range_and_names_bad_channels(store: HistoryStore):
    store.write_telemetry([row(T0 - 5, soc_pct=1000.0), row(T0 + 5, soc_pct=10.0), row(T0 + 15, soc_pct=20.0),
                           row(T0 + 200, soc_pct=1000.0)])
    points = store.state_range(T0, T0 + 100, 10)["rows"]
    assert [(p["ts"], p["soc_pct"]) for p in points] == [(T0, 10.0), (T0 + 10, 20.0)]
    with pytest.raises(ValueError, match="nonsense"):
        store.state_range(T0, T0 + 100, 10, ["soc_pct", "nonsense"])


def test_minute_and_quarter_buckets_keep_min_and_max_across_batches(store: HistoryStore):
    b0, b1 = T0, T0 + BUCKET_S
    store.write_telemetry([row(b0 + 10, soc_pct=10.0, temperature_c=20.0), row(b0 + 20, soc_pct=20.0),
                           row(b1 + 5, soc_pct=80.0)])
    store.write_telemetry([row(b0 + 30, soc_pct=30.0, temperature_c=40.0), row(b0 + 40, soc_pct=None),
                           row(b1 + 6, soc_pct=90.0)])
    body = store.state_range(b0, b0 + 4 * BUCKET_S, 4)
    assert body["tier"] == "15min"
    first, second = body["rows"]
    assert (first["ts"], second["ts"]) == (b0, b1)
    assert (first["soc_pct"], first["soc_pct_min"], first["soc_pct_max"]) == pytest.approx((20.0, 10.0, 30.0))
    assert first["temperature_c"] == pytest.approx(30.0) and first["n"] == 4
    assert (second["soc_pct_min"], second["soc_pct_max"]) == (80.0, 90.0)
    assert second["temperature_c"] is None and first["dso_limit_pct"] is None
    minutes = store.state_range(b0, b0 + 120, 2)
    assert minutes["tier"] == "1min" and minutes["rows"][0]["soc_pct_max"] == 30.0


def test_long_ranges_merge_buckets_and_a_year_comes_from_the_hourly_tier(store: HistoryStore):
    day0 = T0 - T0 % DAY
    # One row per 15 min for two days; SoC is the hour of the day, grid power the day number.
    store.write_telemetry([row(day0 + i * BUCKET_S + 1, soc_pct=float((i * BUCKET_S // 3600) % 24),
                               grid_power_w=float(i // 96)) for i in range(2 * 96)])
    points = store.state_range(day0, day0 + 2 * DAY, 2)["rows"]
    assert [p["ts"] for p in points] == [day0, day0 + DAY]
    assert [p["soc_pct"] for p in points] == pytest.approx([11.5, 11.5])  # mean of 0..23
    assert [(p["soc_pct_min"], p["soc_pct_max"]) for p in points] == [(0.0, 23.0), (0.0, 23.0)]
    assert [p["grid_power_w"] for p in points] == pytest.approx([0.0, 1.0])
    year = store.state_range(day0 + 2 * DAY - 365 * DAY, day0 + 2 * DAY, 50)
    assert year["tier"] == "1h" and 1 <= len(year["rows"]) <= 50
    assert year["rows"][-1]["soc_pct_max"] == 23.0


def test_rewriting_a_timestamp_replaces_it_in_every_tier(store: HistoryStore):
    store.write_telemetry([row(T0 + 1, soc_pct=10.0), row(T0 + 2, soc_pct=20.0)])
    store.write_telemetry([row(T0 + 1, soc_pct=30.0)])  # the same instant again, e.g. a clock stepped back
    assert [r["soc_pct"] for r in store.telemetry_since(T0, 10)] == [30.0, 20.0]
    for points in (4, 60):  # quarter hours, minutes
        p = store.state_range(T0, T0 + 4 * BUCKET_S, points)["rows"][0]
        assert (p["soc_pct"], p["soc_pct_min"], p["soc_pct_max"], p["n"]) == (25.0, 20.0, 30.0, 2)


values = st.one_of(st.none(), st.floats(min_value=-50_000, max_value=50_000, allow_nan=False).map(lambda v: round(v, 2)))


@settings(max_examples=30, deadline=None, database=None)
@given(samples=st.lists(st.tuples(st.integers(0, 2 * BUCKET_S - 1), values, values), min_size=1, max_size=40),
       cuts=st.lists(st.integers(0, 40), max_size=4))
def test_aggregates_equal_the_raw_rows_they_summarise_however_the_rows_are_batched(samples, cuts):
    rows = [row(T0 + offset, soc_pct=soc, grid_power_w=grid, dt_s=5.0) for offset, soc, grid in samples]
    bounds = sorted({0, len(rows), *(min(c, len(rows)) for c in cuts)})
    with tempfile.TemporaryDirectory() as tmp:
        s = HistoryStore(Path(tmp) / "history.db")
        try:
            for a, b in zip(bounds, bounds[1:]):
                s.write_telemetry(rows[a:b])
            raw = {r["ts"]: r for r in s.telemetry_since(0, 10_000)}
            tiers_seen = {points: s.state_range(T0, T0 + 2 * BUCKET_S, points) for points in (2, 30)}
            hour = s.state_range(T0 - 1800, T0 + 1800, 1)  # T0 is the middle of an hour: one hourly bucket
            energy = s.sums(T0, T0 + 2 * BUCKET_S, ["import_wh", "export_wh", "dt_s"])
        finally:
            s.close()
    final = {T0 + offset: (soc, grid) for offset, soc, grid in samples}  # a later write of a ts wins
    assert sorted(raw) == sorted(final)
    for points, width in ((2, BUCKET_S), (30, 60)):
        body = tiers_seen[points]
        assert body["tier"] == ("15min" if width == BUCKET_S else "1min")
        got = {p["ts"]: p for p in body["rows"]}
        expected_buckets = sorted({int(ts // width * width) for ts in final})
        assert sorted(got) == expected_buckets
        for bucket in expected_buckets:
            members = [v for ts, v in final.items() if bucket <= ts < bucket + width]
            assert got[bucket]["n"] == len(members)
            for k, column in enumerate(("soc_pct", "grid_power_w")):
                measured = [m[k] for m in members if m[k] is not None]
                p = got[bucket]
                if measured:
                    assert p[column] == pytest.approx(statistics.fmean(measured), abs=1e-3)
                    assert (p[f"{column}_min"], p[f"{column}_max"]) == (min(measured), max(measured))
                else:
                    assert p[column] is None and p[f"{column}_min"] is None
    assert hour["tier"] == "1h" and [p["n"] for p in hour["rows"]] == [len(final)]
    socs = [soc for soc, _g in final.values() if soc is not None]
    assert hour["rows"][0]["soc_pct_max"] == (max(socs) if socs else None)
    grid = [g for _soc, g in final.values() if g is not None]
    assert energy["dt_s"] == pytest.approx(5.0 * len(final))
    assert energy["import_wh"] == pytest.approx(sum(max(g, 0.0) for g in grid) * 5 / 3600, abs=1e-6)
    assert energy["export_wh"] == pytest.approx(sum(max(-g, 0.0) for g in grid) * 5 / 3600, abs=1e-6)


def test_rows_older_than_the_raw_tier_are_refused_not_mixed_into_old_buckets(store: HistoryStore):
    store.write_telemetry([row(T0 + 10 * DAY, soc_pct=50.0)])
    store.write_telemetry([row(T0 + 11 * DAY, soc_pct=50.0)])
    store.prune(T0 + 12.5 * DAY)  # the raw tier starts on day 11 now; day 10 lives on in its buckets only
    assert store.write_telemetry([row(T0 + 10 * DAY + 30, soc_pct=1.0)]) == 0
    assert store.rows_dropped == 1 and store.status()["rows_refused"] == 1
    assert [r["soc_pct"] for r in store.telemetry_since(0, 10)] == [50.0]


# -- store: retention -----------------------------------------------------------------------------

def test_prune_keeps_each_tier_for_its_window_and_quarter_hours_forever(tmp_path: Path):
    s = HistoryStore(tmp_path / "h.db", tiers(raw_h=48, minute_days=30, retention_days=30, plan_retention_days=5))
    try:
        now = T0 + 100 * DAY
        ancient, month_old, old = now - 60 * DAY, now - 20 * DAY, now - 3 * DAY
        for ts, soc in ((ancient, 5.0), (month_old, 7.0), (old + 10, 40.0), (old + 20, 60.0), (now - DAY, 70.0)):
            s.write_telemetry([row(ts, soc_pct=soc)])
        s.record_optimization_run(ancient, "arbitrage", "optimal")
        s.record_optimization_run(now - 10 * DAY, "arbitrage", "optimal", plan={"start_ts": 0})
        s.record_optimization_run(now - DAY, "arbitrage", "optimal", plan={"start_ts": 1})

        s.prune(now)

        assert [r["soc_pct"] for r in s.telemetry_since(0, 100)] == [70.0]
        minutes = {r["bucket_ts"] for r in s.quarter_rows(0, now, ["soc_pct_sum"])}
        assert ancient - ancient % BUCKET_S in minutes  # 15-minute buckets stay forever
        assert s.state_range(old, old + 60, 1)["rows"][0]["soc_pct"] == pytest.approx(50.0)  # 1-min kept
        assert s.state_range(ancient, ancient + 60, 1)["rows"][0]["soc_pct"] == 5.0  # from 15 min
        assert [r["ts"] for r in s.optimization_runs(0)] == [now - DAY, now - 10 * DAY]
        assert [p["plan"] for p in s.plans(0, now)] == [{"start_ts": 1}]  # older plans dropped after 5 days
    finally:
        s.close()


def test_over_its_size_limit_the_store_drops_the_oldest_minutes_and_says_so(tmp_path: Path):
    reports: list[tuple[str, str]] = []
    s = HistoryStore(tmp_path / "h.db", tiers(raw_h=2, minute_days=365, max_db_mb=1),
                     report=lambda level, message: reports.append((level, message)))
    try:
        start = T0
        for day in range(6):  # one row a minute: six days of 1-minute buckets
            s.write_telemetry([row(start + day * DAY + 60 * i, soc_pct=float(i % 100), grid_power_w=100.0 * i)
                               for i in range(1440)])
        now = start + 6 * DAY
        assert s.used_bytes() > 2**20
        s.prune(now)
        assert s.used_bytes() <= 2**20
        assert reports and reports[0][0] == "warning" and "size limit" in reports[0][1]
        assert s.telemetry_since(now - 2 * 3600, 10_000)  # the raw tier is never dropped for size
    finally:
        s.close()


# -- store: optimization runs ---------------------------------------------------------------------

def test_optimization_runs_are_recorded_and_listed_newest_first(store: HistoryStore):
    ids = [store.record_optimization_run(T0, "arbitrage", "optimal", solver="highs", objective_eur=-1.25,
                                         expected_profit_eur=1.25, duration_ms=42.0, plan={"steps": [1, 2]}),
           store.record_optimization_run(T0 + 900, "peak_shaving", "infeasible", reason="SoC window too small"),
           store.record_optimization_run(T0 + 1800, "arbitrage", "optimal", solver="highs")]
    assert ids == sorted(ids) and len(set(ids)) == 3
    runs = store.optimization_runs(T0 + 1)
    assert [(r["ts"], r["strategy"], r["status"]) for r in runs] == [
        (T0 + 1800, "arbitrage", "optimal"), (T0 + 900, "peak_shaving", "infeasible")]
    assert runs[1]["reason"] == "SoC window too small" and runs[1]["solver"] is None
    first = store.optimization_runs(T0)[-1]
    assert first == {"id": ids[0], "ts": T0, "strategy": "arbitrage", "status": "optimal", "solver": "highs",
                     "objective_eur": -1.25, "expected_profit_eur": 1.25, "duration_ms": 42.0, "reason": None}
    assert [r["id"] for r in store.optimization_runs(0, limit=1)] == [ids[2]]


# -- store: concurrency and file health -----------------------------------------------------------

def test_reader_thread_is_not_blocked_by_an_open_write_transaction(store: HistoryStore):
    store.write_telemetry([row(T0, soc_pct=1.0)])
    other_writer = sqlite3.connect(store.path, timeout=1.0, isolation_level=None)
    try:
        other_writer.execute("BEGIN EXCLUSIVE")
        other_writer.execute("INSERT INTO telemetry (ts, soc_pct) VALUES (?, ?)", (T0 + 1, 2.0))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # Without WAL an exclusive writer blocks readers for the whole busy timeout (10 s).
            seen = pool.submit(lambda: [r["soc_pct"] for r in store.telemetry_since(0, 10)]).result(timeout=3)
            assert seen == [1.0]  # committed rows only
            other_writer.execute("COMMIT")
            seen = pool.submit(lambda: [r["soc_pct"] for r in store.telemetry_since(0, 10)]).result(timeout=3)
            assert seen == [1.0, 2.0]
    finally:
        other_writer.close()


def test_reader_in_another_thread_sees_whole_batches_while_the_writer_writes(store: HistoryStore):
    batch, batches = 25, 40
    done = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not done.is_set():
                seen.append(len(store.telemetry_since(0, 100_000)))
            seen.append(len(store.telemetry_since(0, 100_000)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for b in range(batches):
            store.write_telemetry([row(T0 + b * batch + i, soc_pct=float(i)) for i in range(batch)])
    finally:
        done.set()
        thread.join(timeout=10)
    assert not thread.is_alive() and not errors
    assert seen[-1] == batch * batches
    assert all(n % batch == 0 for n in seen), "a reader saw half a batch"
    assert seen == sorted(seen)


def test_database_file_is_healthy_and_in_wal_mode(tmp_path: Path):
    path = tmp_path / "history.db"
    s = HistoryStore(path)
    for b in range(5):
        s.write_telemetry([row(T0 + b * 1000 + i, soc_pct=float(i)) for i in range(100)])
    s.record_optimization_run(T0, "arbitrage", "optimal", plan={"steps": [1, 2, 3]})
    s.prune(T0 + 15 * DAY)
    s.telemetry_since(0, 10)
    s.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_history_in_a_directory_with_a_hash_in_its_name_can_be_read(tmp_path: Path):
    s = HistoryStore(tmp_path / "site#2" / "history.db")
    try:
        s.write_telemetry([row(T0, soc_pct=42.0)])
        assert [r["soc_pct"] for r in s.telemetry_since(0, 10)] == [42.0]
    finally:
        s.close()


# -- recorder -------------------------------------------------------------------------------------

class RunningClock(LoopTimers):
    """Plant time that follows real time from a fixed start and can jump forward."""

    speed = 1.0

    def __init__(self, start: float = T0) -> None:
        self._t0 = start
        self._m0 = time.monotonic()

    def now(self) -> float:
        return self._t0 + (time.monotonic() - self._m0) * self.speed

    def monotonic(self) -> float:
        return time.monotonic()

    def jump(self, seconds: float) -> None:
        self._t0 += seconds


class Counter:
    """The recorder's context: setpoint 1, 2, 3 … so every row says which sample it was."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, now: float) -> dict[str, Any]:
        self.n += 1
        return {"setpoint_w": float(self.n), "import_price_eur_per_kwh": 0.30, "export_price_eur_per_kwh": 0.05}


def no_context(now: float) -> dict[str, Any]:
    return {}




def history_config(tmp_path: Path, sample_s: float, flush_s: float) -> ConfigStore:
    cfg = parse_config(EmsConfig, {"history": {"sample_interval_s": sample_s, "flush_interval_s": flush_s}})
    return ConfigStore(tmp_path / "ems.yaml", cfg)


def publish_plant(bus: TelemetryBus, now: float, soc_max_age_s: float = 5.0) -> None:
    bus.publish({
        "battery.soc_pct": Measurement(55.0, now, "sim", soc_max_age_s),
        "grid.power_w": Measurement(1234, now, "sim", 1e6),  # an int reading is stored as a number
        "bess.power_w": Measurement(-200.0, now, "sim", 1e6),
        "battery.status_text": Measurement("running", now, "sim", 1e6),
    })


async def stop(task: asyncio.Task[None], rec: HistoryRecorder, samples: Counter) -> None:
    """Cancel the recorder at a moment no batch is on its way to the executor.

    Cancelling during a flush loses that batch (see the xfail tests at the end), which is not what these
    tests are about; every sample is then either written or pending.
    """
    await until(lambda: samples.n == len(rec.pending) + rec.rows_written, what="no flush in flight")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_recorder_writes_sampled_rows_in_batches(tmp_path: Path, store: HistoryStore):
    clock, bus, setpoints = RunningClock(), TelemetryBus(), Counter()
    publish_plant(bus, clock.now(), soc_max_age_s=1e6)
    rec = HistoryRecorder(store, bus, clock, history_config(tmp_path, 0.1, 0.3), setpoints)

    async def main() -> int:
        task = asyncio.create_task(rec.run())
        await until(lambda: rec.batches_written >= 2, what="two batches")
        written_while_running = len(store.telemetry_since(0, 10_000))
        await stop(task, rec, setpoints)
        return written_while_running

    written_while_running = asyncio.run(main())
    assert written_while_running >= 2
    rows = store.telemetry_since(0, 10_000)
    assert rec.batches_written < rec.rows_written == len(rows) == setpoints.n
    assert [r["setpoint_w"] for r in rows] == [float(i) for i in range(1, setpoints.n + 1)]
    assert all(r["soc_pct"] == 55.0 and r["grid_power_w"] == 1234.0 for r in rows)
    assert rows == sorted(rows, key=lambda r: r["ts"])
    # Each row stands for the time since the one before (the first for one interval), priced as recorded.
    assert all(r["import_price_eur_per_kwh"] == 0.30 for r in rows)
    got = store.sums(0, 1e12, ["dt_s", "import_wh", "cost_eur"])
    assert 0.1 <= got["dt_s"] <= rows[-1]["ts"] - rows[0]["ts"] + 0.1 + 0.01  # (ts and dt_s are kept to ms)
    assert got["import_wh"] == pytest.approx(1234.0 * got["dt_s"] / 3600)
    assert got["cost_eur"] == pytest.approx(got["import_wh"] / 1000 * 0.30)


def test_stale_measurement_is_recorded_as_null_not_repeated(tmp_path: Path, store: HistoryStore):
    clock, bus, setpoints = RunningClock(), TelemetryBus(), Counter()
    publish_plant(bus, clock.now(), soc_max_age_s=5.0)
    rec = HistoryRecorder(store, bus, clock, history_config(tmp_path, 0.1, 0.2), setpoints)

    async def main() -> int:
        task = asyncio.create_task(rec.run())
        await until(lambda: setpoints.n >= 3, what="fresh samples")
        clock.jump(60.0)  # the SoC reading is now a minute old; the grid reading is still fresh
        last_fresh = setpoints.n
        await until(lambda: setpoints.n >= last_fresh + 3, what="stale samples")
        await stop(task, rec, setpoints)
        return last_fresh

    last_fresh = asyncio.run(main())
    rows = store.telemetry_since(0, 10_000)
    fresh = [r for r in rows if r["setpoint_w"] <= last_fresh]
    stale = [r for r in rows if r["setpoint_w"] > last_fresh]
    assert len(fresh) == last_fresh and len(stale) >= 3
    assert all(r["soc_pct"] == 55.0 for r in fresh)
    assert all(r["soc_pct"] is None for r in stale)
    assert all(r["grid_power_w"] == 1234.0 for r in rows)


def test_cancelling_the_recorder_writes_the_pending_rows_before_it_returns(tmp_path: Path, store: HistoryStore):
    clock, bus, setpoints = RunningClock(), TelemetryBus(), Counter()
    publish_plant(bus, clock.now(), soc_max_age_s=1e6)
    rec = HistoryRecorder(store, bus, clock, history_config(tmp_path, 0.1, 3600), setpoints)

    async def main() -> tuple[int, int]:
        task = asyncio.create_task(rec.run())
        await until(lambda: setpoints.n >= 4, what="samples")
        before = len(store.telemetry_since(0, 10_000))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # No await between the task ending and this read: the rows were written synchronously.
        return before, len(store.telemetry_since(0, 10_000))

    before, after = asyncio.run(main())
    assert before == 0  # the flush interval had not passed yet
    assert after == setpoints.n == rec.rows_written
    assert rec.batches_written == 1 and rec.pending == []


class FailingStore:
    """A real store that can be told to fail writes (a full or read-only disk)."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store
        self.failures_left = 0
        self.attempts = 0

    def write_telemetry(self, rows):
        self.attempts += 1
        if self.failures_left:
            self.failures_left -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return self.store.write_telemetry(rows)

    def prune(self, now: float, config: Any = None) -> None:
        self.store.prune(now, config)

    def check_integrity(self) -> str:
        return self.store.check_integrity()

    def status(self) -> dict[str, Any]:
        return self.store.status()


def test_failed_flush_keeps_the_newest_rows_pending_and_writes_them_later(
        tmp_path: Path, store: HistoryStore, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(recorder_mod, "MAX_PENDING_ROWS", 5)
    failing = FailingStore(store)
    rec = HistoryRecorder(failing, TelemetryBus(), RunningClock(), history_config(tmp_path, 0.1, 0.1), no_context)

    async def main() -> None:
        failing.failures_left = 2
        rec.pending = [row(T0 + i, soc_pct=float(i)) for i in range(8)]
        await rec.flush()
        assert [r["soc_pct"] for r in rec.pending] == [3.0, 4.0, 5.0, 6.0, 7.0]  # bounded, newest kept
        rec.pending.append(row(T0 + 8, soc_pct=8.0))
        await rec.flush()
        assert [r["soc_pct"] for r in rec.pending] == [4.0, 5.0, 6.0, 7.0, 8.0]
        assert store.telemetry_since(0, 100) == [] and rec.rows_written == 0
        await rec.flush()  # the disk has space again

    asyncio.run(main())
    assert [r["soc_pct"] for r in store.telemetry_since(0, 100)] == [4.0, 5.0, 6.0, 7.0, 8.0]
    assert rec.pending == [] and rec.rows_written == 5 and rec.batches_written == 1 and failing.attempts == 3


def test_recorder_keeps_running_through_write_failures_without_losing_rows(tmp_path: Path, store: HistoryStore):
    clock, bus, setpoints = RunningClock(), TelemetryBus(), Counter()
    publish_plant(bus, clock.now(), soc_max_age_s=1e6)
    failing = FailingStore(store)
    failing.failures_left = 3
    rec = HistoryRecorder(failing, bus, clock, history_config(tmp_path, 0.1, 0.1), setpoints)

    async def main() -> None:
        task = asyncio.create_task(rec.run())
        await until(lambda: failing.failures_left == 0 and rec.batches_written >= 2, what="recovery")
        await stop(task, rec, setpoints)

    asyncio.run(main())
    rows = store.telemetry_since(0, 10_000)
    assert failing.attempts > rec.batches_written  # some flushes failed ...
    assert [r["setpoint_w"] for r in rows] == [float(i) for i in range(1, setpoints.n + 1)]  # ... none lost


def test_recorder_prunes_old_raw_rows_periodically(tmp_path: Path, store: HistoryStore,
                                                   monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(recorder_mod, "PRUNE_INTERVAL_S", 0.2)
    clock, bus = RunningClock(), TelemetryBus()
    old = clock.now() - 3 * DAY  # past the default 48 h of raw rows
    store.write_telemetry([row(old, soc_pct=1.0), row(old + 1, soc_pct=3.0)])
    publish_plant(bus, clock.now(), soc_max_age_s=1e6)
    rec = HistoryRecorder(store, bus, clock, history_config(tmp_path, 0.1, 0.1), no_context)

    async def main() -> None:
        task = asyncio.create_task(rec.run())
        await until(lambda: not [r for r in store.telemetry_since(0, 10_000) if r["soc_pct"] != 55.0],
                    what="old rows pruned")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    recent = store.telemetry_since(0, 10_000)
    assert recent and all(r["ts"] > old + DAY and r["soc_pct"] == 55.0 for r in recent)
    kept = store.state_range(old - DAY, clock.now(), 20 * 96)
    assert kept["tier"] == "1min"
    assert kept["rows"][0]["ts"] == old - old % 60 and kept["rows"][0]["soc_pct"] == pytest.approx(2.0)


class GatedStore(FailingStore):
    """The first write waits on a gate (a slow SD card); later writes go straight through."""

    def __init__(self, store: HistoryStore) -> None:
        super().__init__(store)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def write_telemetry(self, rows):
        if not self.entered.is_set():
            self.entered.set()
            self.gate.wait(10)
        return super().write_telemetry(rows)


def test_cancelling_during_a_slow_flush_still_leaves_every_row_on_disk(tmp_path: Path, store: HistoryStore):
    clock, bus, setpoints = RunningClock(), TelemetryBus(), Counter()
    publish_plant(bus, clock.now(), soc_max_age_s=1e6)
    gated = GatedStore(store)
    rec = HistoryRecorder(gated, bus, clock, history_config(tmp_path, 0.1, 0.2), setpoints)

    async def main() -> int:
        task = asyncio.create_task(rec.run())
        try:
            await until(gated.entered.is_set, what="flush in progress")
            threading.Timer(1.0, gated.gate.set).start()  # the slow write finishes a second later
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return len(store.telemetry_since(0, 10_000))
        finally:
            gated.gate.set()

    on_disk_when_stopped = asyncio.run(main())
    assert on_disk_when_stopped == setpoints.n


def test_cancelling_while_a_flush_waits_for_a_worker_thread_loses_no_rows(tmp_path: Path, store: HistoryStore):
    clock, bus, setpoints = RunningClock(), TelemetryBus(), Counter()
    publish_plant(bus, clock.now(), soc_max_age_s=1e6)
    rec = HistoryRecorder(store, bus, clock, history_config(tmp_path, 0.1, 0.2), setpoints)
    busy = threading.Event()

    async def main() -> None:
        pool = concurrent.futures.ThreadPoolExecutor(1)
        asyncio.get_running_loop().set_default_executor(pool)
        pool.submit(busy.wait, 10)  # the only worker is busy (another blocking job, e.g. a prune)
        task = asyncio.create_task(rec.run())
        try:
            await until(lambda: setpoints.n > len(rec.pending) + rec.rows_written, what="a batch handed to the pool")
            threading.Timer(1.0, busy.set).start()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            busy.set()

    asyncio.run(main())  # also waits for the pool to finish
    assert len(store.telemetry_since(0, 10_000)) == setpoints.n

"""The grid-safety soak end to end: the real runtime through a day of every fault, judged by the oracle.

Virtual time: a plant day passes in well under a minute of CPU; nothing here asserts wall-clock times
(the bench measures them). One test breaks a rule on purpose (a PCS sink that ignores DSO trips,
wrapped around the real one in a test-only hook, nothing in `ems.safety` changed) and shows the oracle
catches it; one does a real SIGKILL to `ems run` to bound what the in-process kill models.
"""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from appliance import demo_config
from ems.runtime import Runtime
from ems.safety.rules import PowerControlDecision
from ems.soak.faults import DEVICES, KINDS, Fault
from ems.soak.report import summarize, write_outputs
from ems.soak.runner import SoakOptions, run_soak
from support import wait_until

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def day_of_every_fault(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """One plant day with at least one fault of every kind (device faults on every device), seed 1."""
    [segment] = run_soak(SoakOptions(days=1.0, seed=1, each_kind=True))
    summary = summarize([segment], days=1.0, seed=1, wall_s=segment["wall_s"], workers=1)
    write_outputs(tmp_path_factory.mktemp("soak-report"), summary, [segment])
    return segment, summary


def test_a_day_of_every_fault_kind_breaks_no_grid_or_battery_limit(day_of_every_fault):
    segment, summary = day_of_every_fault
    assert summary["violations"] == 0, json.dumps(segment["violations"], indent=1)
    assert set(summary["faults_by_kind"]) == set(KINDS)
    device_faults = {(f["kind"], f["params"]["device"]) for f in segment["faults"] if "device" in f["params"]}
    assert {d for _, d in device_faults} == set(DEVICES)


def test_every_demanded_state_was_reached_within_its_allowed_time(day_of_every_fault):
    _segment, summary = day_of_every_fault
    reactions = summary["reaction_s"]
    assert {"dso_trip", "dso_limit", "dso_14a", "ems_kill", "bms_limit_drop", "device_silent[pcs]"} <= set(reactions)
    for kind, r in reactions.items():
        assert r["never_reached"] == 0, (kind, r)
        assert r["max"] is None or r["max"] <= r["allowed_s"], (kind, r)
    # The DSO box is polled every second: a trip is obeyed within one poll + 100 ms.
    assert reactions["dso_trip"]["allowed_s"] == pytest.approx(1.1)


def test_a_killed_ems_loses_at_most_its_unwritten_batch_and_comes_back(day_of_every_fault):
    segment, summary = day_of_every_fault
    (kill,) = segment["kills"]
    assert segment["incarnations"] == 2
    assert 0 <= kill["rows_lost"] <= kill["unwritten_rows"] <= 300 / 10 + 1  # one flush interval of rows
    assert all(task["restarts"] == 0 for task in segment["ems"]["tasks"].values()), segment["ems"]["tasks"]
    assert summary["findings"]["ems_down_s"] > 0


def test_the_report_prices_the_day_and_draws_the_worst_events(day_of_every_fault, tmp_path: Path):
    segment, summary = day_of_every_fault
    money = summary["money"]
    assert money["quarters"] == 96 and money["cost_without_battery_eur"] != money["cost_with_battery_eur"]
    assert money["discharged_kwh"] > 0 and money["charged_kwh"] > 0
    assert segment["timelines"], "no timeline kept"
    write_outputs(tmp_path, summary, [segment])
    page = (tmp_path / "report.html").read_text()
    assert "<svg" in page and "PASS: no violation" in page and "<script" not in page and "http://" not in page
    assert json.loads((tmp_path / "report.json").read_text())["violations"] == 0
    lines = (tmp_path / "faults.jsonl").read_text().splitlines()
    assert len(lines) == 2 * len(segment["faults"])  # a start and an end for each


class IgnoresTrips:
    """A broken PCS sink, for this test only: on a DSO trip it keeps the PCS enabled at the request."""

    def __init__(self, inner: Any):
        self.inner = inner

    @property
    def online(self) -> bool:
        return getattr(self.inner, "online", True)

    @property
    def max_resend_s(self) -> float | None:
        return getattr(self.inner, "max_resend_s", None)

    async def apply(self, decision: PowerControlDecision) -> None:
        if decision.remote_shutdown_requested:
            decision = replace(decision, remote_shutdown_requested=False, setpoint_w=decision.requested_w,
                               limit_pct=100.0, state="normal")
        await self.inner.apply(decision)

    async def safe_state(self) -> None:
        await self.inner.safe_state()


def ignore_trips(runtime: Runtime) -> None:
    runtime.safety.sink = IgnoresTrips(runtime.safety.sink)


def test_the_oracle_catches_an_ems_that_ignores_dso_trips():
    trips = [Fault(1, "dso_trip", 2400.0, 300.0), Fault(2, "dso_trip", 5400.0, 120.0)]
    [segment] = run_soak(SoakOptions(days=0.1, seed=2, tamper=ignore_trips), faults=trips)
    assert [f["kind"] for f in segment["fault_log"] if f["event"] == "start"] == ["dso_trip", "dso_trip"]
    caught = [v for v in segment["violations"] if v["check"] == "dso_trip"]
    assert {v["faults"][0].split()[0] for v in caught} == {"#1", "#2"}, segment["violations"]
    assert all("dso_trip" in v["faults"][0] for v in caught)
    assert [r["reaction_s"] for r in segment["reactions"] if r["kind"] == "dso_trip"] == [None, None]


def test_the_same_faults_over_real_modbus_tcp_break_no_limit():
    """A short soak through pymodbus and 127.0.0.1 sockets: the loopback's shortcut changes nothing.
    The faults are written out, not drawn: each one the loopback models differently from TCP."""
    faults = [Fault(1, "dso_trip", 1200.0, 120.0), Fault(2, "device_garbage", 1500.0, 60.0, {"device": "meter"}),
              Fault(3, "device_silent", 1800.0, 60.0, {"device": "dso"}),
              Fault(4, "device_silent", 2100.0, 60.0, {"device": "pcs"})]
    [segment] = run_soak(SoakOptions(days=0.03, seed=3, transport="tcp"), faults=faults)
    assert [f["id"] for f in segment["fault_log"] if f["event"] == "start"] == [1, 2, 3, 4]
    assert segment["violations"] == [], segment["violations"]
    reached = {r["fault"]: (r["check"], r["reaction_s"], r["allowed_s"]) for r in segment["reactions"]}
    assert {k: v[0] for k, v in reached.items()} == {1: "dso_trip", 2: "input_loss", 3: "input_loss",
                                                      4: "pcs_fallback"}
    assert all(s is not None and s <= allowed for _, s, allowed in reached.values()), reached
    assert segment["transport"] == "tcp" and segment["ems"]["devices"]["dso"]["cycles"] > 1000


def test_ems_soak_prints_one_json_line_and_writes_its_report(tmp_path: Path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "ems", "--log-level", "ERROR", "soak", "--days", "0.05",
                           "--seed", "4", "--workers", "1", "--rates", "dso_trip=40,meter_spike=40",
                           "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["violations"] == 0 and summary["faults_injected"] > 0 and summary["days"] == 0.05
    assert {"dso_trip"} <= set(summary["reaction_s"]) and summary["plant_days_per_wall_minute"] > 0
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.html", "violations.json", "faults.jsonl"}


def test_ems_soak_refuses_unusable_arguments():
    proc = subprocess.run([sys.executable, "-m", "ems", "soak", "--rates", "dso_trip=often"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and "dso_trip=often" in proc.stderr


def test_a_real_sigkill_loses_at_most_the_rows_of_one_flush_interval(ems_factory):
    """What the soak's in-process kill models, done to a real `ems run`: SIGKILL between two flushes
    loses only the rows sampled since the last one, and the database stays sound for the restart."""
    speed, sample_s, flush_s = 10.0, 0.2, 1.0
    ems = ems_factory(demo_config(simulator={"speed": speed, "step_s": 0.2},
                                  history={"sample_interval_s": sample_s, "flush_interval_s": flush_s}))
    wait_until(lambda: ems.get("/api/state")[1]["runtime"]["history_rows_written"] >= 20, 30)
    before_kill = ems.get("/api/state")[1]["ts"]  # plant time
    ems.proc.send_signal(signal.SIGKILL)
    ems.proc.wait(timeout=10)
    db = sqlite3.connect(ems.data_dir / "history.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        newest, rows = db.execute("SELECT max(ts), count(*) FROM telemetry").fetchone()
    finally:
        db.close()
    # Rows not written yet span at most one flush interval (+ a sample and the request's own time).
    assert before_kill - newest <= (flush_s + 2 * sample_s + 1.0) * speed, (before_kill, newest)
    again = ems_factory(demo_config(simulator={"speed": speed, "step_s": 0.2},
                                    history={"sample_interval_s": sample_s, "flush_interval_s": flush_s}),
                        subdir="ems")
    wait_until(lambda: again.get("/api/state")[1]["runtime"]["history_rows_written"] >= 5, 30)
    assert again.stop() == 0
    db = sqlite3.connect(ems.data_dir / "history.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM telemetry").fetchone()[0] >= rows + 5
    finally:
        db.close()

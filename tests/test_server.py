"""The running appliance over real HTTP: state, live events, errors as JSON, clean stop, crash safety."""
from __future__ import annotations

import http.client
import json
import random
import signal
import socket
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from appliance import demo_config, start_ems
from support import wait_until

FAST = demo_config(simulator={"speed": 30.0, "step_s": 0.2}, web={"sse_interval_s": 0.5},
                   history={"sample_interval_s": 0.1, "flush_interval_s": 0.5})


@pytest.fixture(scope="module")
def shared_ems(tmp_path_factory):
    """One running appliance for the read-only tests of this module."""
    ems = start_ems(tmp_path_factory.mktemp("shared"), FAST)
    yield ems
    ems.stop()


def read_events(ems, count: int, timeout_s: float = 10.0) -> list[tuple[float, dict]]:
    """Read `count` SSE events as the admin, returning (arrival time, data) for each."""
    url = urlparse(ems.base_url)
    cookie = ems.login().cookie
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout_s)
    conn.request("GET", "/api/events", headers={"Cookie": cookie})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type").startswith("text/event-stream")
    events: list[tuple[float, dict]] = []
    event_name, data = None, []
    while len(events) < count:
        line = resp.fp.readline().decode()
        assert line, "stream ended"
        line = line.rstrip("\n")
        if line.startswith("event:"):
            event_name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data.append(line.split(":", 1)[1].strip())
        elif line == "" and data:
            assert event_name == "state"
            events.append((time.monotonic(), json.loads("\n".join(data))))
            event_name, data = None, []
    conn.close()
    return events


def fresh_soc(state: dict) -> dict | None:
    """The SoC point when it is fresh (as the dashboard shows it), else None."""
    soc = state["plant"]["battery"]["soc_pct"]
    return soc if soc is not None and soc["stale"] is False else None


def test_state_has_soc_power_timestamps_and_sources(ems_factory):
    ems = ems_factory(FAST)

    def ready():
        # Started as a user sees it: a fresh SoC, the safety loop out of its start-up wait for fresh inputs,
        # and the loop lag measured. (Right after start the simulator's first reading may already be stale.)
        status, state = ems.get("/api/state")
        started = fresh_soc(state) and state["power_control"]["state"] and state["power_control"]["healthy"]
        return (status, state) if started and state["runtime"]["loop_lag_ms"]["samples"] else None

    status, state = wait_until(ready, 15)
    assert status == 200
    soc = state["plant"]["battery"]["soc_pct"]
    assert 0 <= soc["value"] <= 100 and soc["source"] == "sim" and soc["stale"] is False
    for group in ("bess", "pv", "load", "grid"):
        point = state["plant"][group]["power_w"]
        assert isinstance(point["value"], float) and point["ts"] > 1e9 and point["source"] == "sim"
    p = state["plant"]
    balance = p["load"]["power_w"]["value"] - p["pv"]["power_w"]["value"] - p["bess"]["power_w"]["value"]
    assert balance == pytest.approx(p["grid"]["power_w"]["value"], abs=1e-6)
    assert state["power_control"]["state"] == "normal"
    assert "mode" not in state["power_control"] and "setpoint_w" not in state["power_control"]
    # The expected profit is the current plan's, in the same snapshot: none before the first plan.
    if state["strategy"].get("planned_at") is None:
        assert state["expected_profit_24h_eur"] is None
    elif not state["strategy"]["fallback"]:
        assert isinstance(state["expected_profit_24h_eur"], float)
    lag = state["runtime"]["loop_lag_ms"]
    assert lag["samples"] > 0 and lag["p99"] is not None


def test_events_stream_incrementally(ems_factory):
    ems = ems_factory(FAST)
    ems.login()
    started = time.monotonic()
    events = read_events(ems, 3)
    assert events[0][0] - started < 2.0, "first event must not wait for the stream to fill a buffer"
    gaps = [b[0] - a[0] for a, b in zip(events, events[1:])]
    assert all(0.3 < g < 2.0 for g in gaps), gaps  # one event per sse_interval_s (0.5 s), as they happen
    stamps = [e[1]["ts"] for e in events]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


@pytest.mark.parametrize("path, field", [
    ("/api/history/state?hours=abc", "hours"),
    ("/api/history/state?hours=-1", "hours"),
    ("/api/history/state?hours=1&points=1", "points"),
    ("/api/monitoring/telemetry?minutes=99999", "minutes"),
    ("/api/monitoring/telemetry?limit=0", "limit"),
    ("/api/monitoring/telemetry?limit=1.5", "limit"),
    ("/api/history/optimization?days=x", "days"),
])
def test_bad_query_strings_get_400_naming_the_field(shared_ems, path, field):
    status, body = shared_ems.get(path)
    assert status == 400
    assert body["field"] == field and body["error"]


def test_unknown_api_path_and_method_are_json_errors(shared_ems):
    ems = shared_ems
    assert ems.get("/api/nothing-here") == (404, {"error": "not found: GET /api/nothing-here"})
    status, body = ems.post("/api/state", b"{}")
    assert status == 405 and "error" in body


def test_config_section_change_over_http_is_validated_saved_and_applied(ems_factory):
    ems = ems_factory(FAST)
    status, body = ems.post("/api/grid_connection/config", b'{"max_power_kw": -3}')
    assert status == 400 and body["field"] == "grid_connection.max_power_kw"
    status, body = ems.post("/api/grid_connection/config", b'{"max_power_kw": 3')
    assert status == 400 and body["field"] == "body"
    status, body = ems.post("/api/grid_connection/config", b'{"max_powr_kw": 3}')
    assert status == 400 and "did you mean 'max_power_kw'" in body["error"]

    status, body = ems.post("/api/grid_connection/config", b'{"max_power_kw": 12.5}')
    assert status == 200 and body["grid_connection"]["max_power_kw"] == 12.5
    assert yaml.safe_load(ems.config_path.read_text())["grid_connection"]["max_power_kw"] == 12.5
    assert Path(str(ems.config_path) + ".bak").exists()
    assert ems.get("/api/config/grid_connection")[1]["grid_connection"]["max_power_kw"] == 12.5
    config_notes = lambda: [n["message"] for n in ems.get("/api/notifications")[1]["notifications"]
                            if n["category"] == "config"]
    notes = wait_until(lambda: (lambda m: m if "settings 'grid_connection' changed and applied" in m else None)(
        config_notes()), 5)
    # The import limit is safety-relevant: who changed it from what to what is told too (and audited).
    assert "admin changed grid_connection.max_power_kw: 15.0 → 12.5" in notes


def test_sigterm_stops_within_5s_flushes_history_and_leaves_plant_safe(ems_factory):
    ems = ems_factory(demo_config(simulator={"speed": 30.0, "step_s": 0.2},
                                  history={"sample_interval_s": 0.1, "flush_interval_s": 3600}))
    wait_until(lambda: ems.get("/api/state")[1]["runtime"]["tasks"]["history"]["state"] == "running", 5)
    # The loop-lag monitor wakes every 0.1 s on the recorder's event loop: 10 of its samples mean the recorder
    # (sampling every 0.1 s) has had 10 chances to take a row, however loaded the machine.
    lag_samples = lambda: ems.get("/api/state")[1]["runtime"]["loop_lag_ms"]["samples"]
    first = lag_samples()
    wait_until(lambda: lag_samples() >= first + 10, 10)
    t0 = time.monotonic()
    assert ems.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < 5.0
    log = "".join(ems.lines)
    assert "safe setpoint written" in log and "stopped cleanly" in log
    db = sqlite3.connect(ems.data_dir / "history.db")
    rows = db.execute("SELECT count(*) FROM telemetry").fetchone()[0]
    assert rows >= 5, "the pending batch must be flushed on SIGTERM (flush interval was an hour)"


def test_kill_9_at_a_random_moment_leaves_an_intact_history(ems_factory):
    ems = ems_factory(demo_config(simulator={"speed": 30.0, "step_s": 0.2},
                                  history={"sample_interval_s": 0.1, "flush_interval_s": 0.1}))
    wait_until(lambda: ems.get("/api/state")[1]["runtime"]["history_rows_written"] > 0, 15)
    time.sleep(random.uniform(0.0, 1.5))  # a random moment, not a wait: rows are being written all the time
    ems.proc.kill()
    ems.proc.wait(timeout=5)
    db = sqlite3.connect(ems.data_dir / "history.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows_before = db.execute("SELECT count(*) FROM telemetry").fetchone()[0]
    assert rows_before > 0
    db.close()
    # The appliance restarts on the same data dir and keeps recording.
    again = ems_factory(yaml.safe_load(ems.config_path.read_text()), subdir="again")
    again.stop()
    assert sqlite3.connect(ems.data_dir / "history.db").execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_history_endpoints_return_recorded_rows(ems_factory):
    ems = ems_factory(FAST)
    # Rows from before the plant's first fresh reading honestly record the SoC as unknown: wait until the
    # newest 50 rows were all recorded after that reading, as a user looking at the history a little later.
    fresh_ts = wait_until(lambda: (fresh_soc(ems.get("/api/state")[1]) or {}).get("ts"), 15)

    def recorded_since_fresh():
        rows = ems.get("/api/monitoring/telemetry?minutes=60&limit=50")[1]["rows"]
        return rows if len(rows) == 50 and rows[0]["ts"] >= fresh_ts else None

    rows = wait_until(recorded_since_fresh, 30)
    assert len(rows) <= 50
    assert all(r["soc_pct"] is not None and r["ts"] > 1e9 for r in rows)
    assert [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)
    status, body = ems.get("/api/history/state?hours=1&points=20")
    assert status == 200 and 0 < len(body["rows"]) <= 21
    # The planner has run by now: the optimization history lists its runs (each recorded just after the
    # planner counts it).
    planned_before = ems.get("/api/plan")[1]["runs"]
    status, body = ems.get("/api/history/optimization?days=7")
    planned_after = ems.get("/api/plan")[1]["runs"]
    assert status == 200 and planned_before - 1 <= len(body["runs"]) <= planned_after, (planned_before, body)
    assert all(r["ts"] > 1e9 and r["strategy"] and r["status"] for r in body["runs"])


def test_systemd_gets_ready_and_watchdog_notifications(ems_factory, tmp_path):
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(10)
    ems = ems_factory(FAST, env={"NOTIFY_SOCKET": sock_path})
    messages = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (any("READY=1" in m for m in messages)
                                               and any("WATCHDOG=1" in m for m in messages)):
        messages.append(sock.recv(4096).decode())
    assert any("READY=1" in m and "STATUS=serving on http://127.0.0.1:" in m for m in messages), messages
    assert any("WATCHDOG=1" in m for m in messages), messages
    ems.stop()
    sock.close()


def test_changed_battery_limits_apply_without_restart(ems_factory):
    noon = demo_config(simulator={"speed": 1.0, "step_s": 0.2, "start": "2024-06-15T12:00:00+02:00"})
    ems = ems_factory(noon)
    wait_until(lambda: abs(ems.get("/api/state")[1]["plant"]["bess"]["power_w"]["value"]) > 1000, 5)
    bess = ems.get("/api/config/bess")[1]["bess"]
    status, _ = ems.post("/api/config/bess", json.dumps({**bess, "max_charge_power_kw": 0.3,
                                                         "max_discharge_power_kw": 0.3}).encode())
    assert status == 200

    def clamped():
        plant = ems.get("/api/state")[1]["plant"]
        return abs(plant["bess"]["power_w"]["value"]) <= 300.0 + 1e-6

    # Several consecutive plant readings within the new limit: the running safety loop uses the new section.
    wait_until(clamped, 5)
    readings: set[float] = set()

    def three_more_clamped() -> bool:
        bess = ems.get("/api/state")[1]["plant"]["bess"]["power_w"]
        assert abs(bess["value"]) <= 300.0 + 1e-6, bess
        readings.add(bess["ts"])
        return len(readings) >= 3

    wait_until(three_more_clamped, 10)
    assert ems.proc.poll() is None

"""The audit log on its own: append-only lines, a hash chain that shows tampering, crash tolerance, exports."""
from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path

from ems.audit import Actor, AuditLog

ADMIN = Actor("root", 1, "admin", "session", "192.168.1.20")


def test_entries_survive_a_restart_in_order_and_the_chain_continues(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, now=lambda: 1_750_000_000.0)
    log.record(ADMIN, "config", "power_control", [("power_control.enabled", True, False)])
    again = AuditLog(path, now=lambda: 1_750_000_100.0)
    again.record(ADMIN, "config", "power_control", [("power_control.enabled", False, True)])
    entries = again.recent(10)
    assert [e["seq"] for e in entries] == [2, 1] and entries[0]["new"] is True
    assert again.verify() == {"ok": True, "entries": 2}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_torn_last_line_from_a_power_cut_is_skipped_and_never_glued_to_the_next(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    AuditLog(path).record(ADMIN, "config", "bess", [("bess.capacity_kwh", 10, 12)])
    with open(path, "ab") as fh:
        fh.write(b'{"seq": 2, "field": "bess.min_so')  # the write that the power cut interrupted
    log = AuditLog(path)
    log.record(ADMIN, "config", "bess", [("bess.min_soc_pct", 10, 15)])
    assert [e["field"] for e in log.recent(5)] == ["bess.min_soc_pct", "bess.capacity_kwh"]
    assert log.verify()["ok"]
    assert all(json.loads(line) for line in path.read_bytes().splitlines()[::2])


def test_the_newest_entries_come_from_the_end_of_a_long_file(tmp_path: Path):
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(3000):
        log.record(ADMIN, "config", "bess", [("bess.capacity_kwh", i, i + 1)])
    newest = log.recent(3)
    assert [e["seq"] for e in newest] == [3000, 2999, 2998]


def test_the_csv_export_cannot_smuggle_a_spreadsheet_formula(tmp_path: Path):
    log = AuditLog(tmp_path / "audit.jsonl")
    log.record(Actor("=HYPERLINK(\"http://evil\")", 2, "operator", "session", "10.0.0.1"), "config", "mqtt",
               [("mqtt.client_id", "ems", "+cmd|' /C calc'!A0")])
    rows = list(csv.reader(io.StringIO(b"".join(log.export_csv()).decode())))
    assert rows[0][:4] == ["seq", "ts", "time_utc", "user"]
    assert rows[1][3].startswith("'=") and rows[1][12].startswith("'+")


def test_in_memory_log_for_tests_and_fakes():
    log = AuditLog(None)
    log.record(ADMIN, "config", "web", [("web.allow_registration", False, True)])
    assert log.recent(1)[0]["field"] == "web.allow_registration" and log.verify()["ok"]

"""The web app on a fake façade: no Runtime, no devices, no sockets — routes called as WSGI in-process.

This is the seam the web boundary exists for: a route test needs only the few readers and commands the
app uses, so it runs in milliseconds and shows exactly what a route does with what the EMS tells it.
"""
from __future__ import annotations

import io
import json
import threading
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from ems.api.app import create_app
from ems.api.facade import EmsFacade, PlanView, RuntimeSnapshot, SimulatorControl
from ems.config.schema import EmsConfig
from ems.errors import ApiError
from ems.notifications import Notifications
from ems.state import Measurement, PlantState
from ems.users.auth import Security

NOW = 1_750_000_000.0


class FakeConfig:
    def __init__(self) -> None:
        self.config = EmsConfig()
        self.saved: list[tuple[str, Any]] = []

    def section_plain(self, section: str) -> Any:
        return {"mode": self.config.strategy.mode} if section == "strategy" else {}

    def update_section(self, section: str, data: Any) -> EmsConfig:
        self.saved.append((section, data))
        return self.config


class FakeHistory:
    def telemetry_since(self, since_ts: float, limit: int) -> list[dict[str, Any]]:
        return [{"ts": since_ts, "soc_pct": 42.0}][:limit]

    def state_range(self, since_ts: float, until_ts: float, max_points: int,
                    channels: Any = None) -> dict[str, Any]:
        return {"tier": "raw", "bucket_s": 10, "channels": ["soc_pct"], "rows": []}

    def energy_flows(self, since_ts: float, until_ts: float) -> dict[str, Any]:
        return {"from": since_ts, "to": until_ts, "flows_kwh": {}}

    def optimization_runs(self, since_ts: float, limit: int = 500) -> list[dict[str, Any]]:
        return []


class FakeAnalytics:
    def daily(self, days: int) -> dict[str, Any]:
        return {"days": []}

    def summary(self, days: int) -> dict[str, Any]:
        return {"days": days}

    def plan_vs_actual(self, day: str | None) -> dict[str, Any]:
        return {"day": day, "steps": []}


def snapshot() -> RuntimeSnapshot:
    plant = PlantState().with_updates({"battery.soc_pct": Measurement(63.5, NOW - 1, "modbus", 10.0),
                                       "grid.power_w": Measurement(1500.0, NOW - 1, "modbus", 10.0)})
    return RuntimeSnapshot(now=NOW, plant=plant, config=EmsConfig(), power_control={"state": "normal", "reasons": []},
                           devices={"bms": {"online": True}}, plan=PlanView(None, None, 0, "waiting for prices"),
                           version="test", uptime_s=12.0, speed=1.0, loop_lag_ms={"p99": 1.0}, tasks={},
                           history_rows_written=7)


@pytest.fixture
def web(tmp_path):
    security = Security.open(tmp_path)
    admin = security.users.create("admin1", "correct-horse-battery-9", role="admin")
    token, _ = security.tokens.create(admin.id, "test")
    events: list[Any] = []

    def post_event(body: Any) -> str:
        if not isinstance(body, dict) or body.get("type") != "dso_trip":
            raise ApiError(400, "must be dso_trip here", "type")
        events.append(body)
        return "simulator event dso_trip"

    stopping = threading.Event()
    stopping.set()
    facade = EmsFacade(security=security, config=FakeConfig(), notifications=Notifications(lambda: NOW),
                       history=FakeHistory(), analytics=FakeAnalytics(), now=lambda: NOW, snapshot=snapshot,
                       plan=lambda: PlanView(None, None, 0, None), forecast_json=lambda: {"prices": []},
                       profiles=lambda: {}, test_modbus=lambda device: {"ok": True},
                       simulator=SimulatorControl(lambda: ("bms",), post_event), stopping=stopping)
    app = create_app(facade)

    def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        raw = b"" if body is None else json.dumps(body).encode()
        environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path.split("?")[0],
                                   "QUERY_STRING": path.partition("?")[2], "CONTENT_TYPE": "application/json",
                                   "CONTENT_LENGTH": str(len(raw)), "wsgi.input": io.BytesIO(raw),
                                   "HTTP_AUTHORIZATION": f"Bearer {token}", "REMOTE_ADDR": "127.0.0.1"}
        setup_testing_defaults(environ)
        status: list[str] = []
        chunks = app(environ, lambda s, headers, exc_info=None: status.append(s))
        text = b"".join(chunks).decode()
        return int(status[0].split()[0]), json.loads(text) if text else None

    yield call, events
    security.close()


def test_state_route_shows_the_facade_snapshot(web):
    call, _ = web
    status, body = call("GET", "/api/state")
    assert status == 200
    assert body["plant"]["battery"]["soc_pct"]["value"] == 63.5
    assert body["plant"]["battery"]["soc_pct"]["source"] == "modbus"
    max_kw = EmsConfig().grid_connection.max_power_kw
    assert body["grid_connection"]["utilisation_pct"] == pytest.approx(1500 / (max_kw * 10), abs=0.05)
    assert body["strategy"] == {"mode": "auto", "active": "self_consumption", "reason": "waiting for prices"}
    assert body["runtime"]["history_rows_written"] == 7


def test_simulator_event_goes_through_the_facade_and_bad_ones_name_the_field(web):
    call, events = web
    assert call("POST", "/api/simulator/events", {"type": "dso_trip"}) == (200, {"applied": "simulator event dso_trip"})
    assert events == [{"type": "dso_trip"}]
    status, body = call("POST", "/api/simulator/events", {"type": "nonsense"})
    assert status == 400 and body["field"] == "type"
    assert len(events) == 1


def test_query_errors_are_400_naming_the_parameter(web):
    call, _ = web
    status, body = call("GET", "/api/monitoring/telemetry?minutes=abc")
    assert status == 400 and body["field"] == "minutes"
    status, body = call("GET", "/api/monitoring/telemetry?minutes=5&limit=1")
    assert status == 200 and body["rows"] == [{"ts": NOW - 300, "soc_pct": 42.0}]

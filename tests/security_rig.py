"""The EMS's web stack without a plant, for the security tests: the real app on the real ConfigStore,
Security (users, sessions, tokens, throttles), Notifications and AuditLog — called as WSGI in-process, or
served by the real cheroot server on 127.0.0.1. Only the plant's readers (state, plan, history, forecasts)
are stand-ins, since no route under test needs a plant."""
from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from appliance import demo_config
from ems.api.app import create_app
from ems.api.facade import EmsFacade, PlanView, RuntimeSnapshot
from ems.api.server import WebServer
from ems.audit import AuditLog
from ems.config import ConfigStore
from ems.devices.profile import load_library
from ems.notifications import Notifications
from ems.resources import profiles_dir
from ems.state import PlantState
from ems.users.auth import SESSION_COOKIE, Security, SecuritySettings
from ems.users.passwords import ScryptParams

PASSWORD = "correct-horse-battery-9"
ROLES = ("admin", "operator", "viewer")


class _History:
    def telemetry_since(self, since_ts: float, limit: int) -> list[dict[str, Any]]:
        return []

    def state_range(self, since_ts: float, until_ts: float, max_points: int, channels: Any = None) -> dict[str, Any]:
        return {"tier": "raw", "bucket_s": 10, "channels": [], "rows": []}

    def energy_flows(self, since_ts: float, until_ts: float) -> dict[str, Any]:
        return {"from": since_ts, "to": until_ts, "flows_kwh": {}}

    def optimization_runs(self, since_ts: float, limit: int = 500) -> list[dict[str, Any]]:
        return []


class _Analytics:
    def daily(self, days: int) -> dict[str, Any]:
        return {"days": []}

    def summary(self, days: int) -> dict[str, Any]:
        return {"days": days}

    def plan_vs_actual(self, day: str | None) -> dict[str, Any]:
        return {"day": day, "steps": []}


@dataclass
class Caller:
    """A signed-in user: the session cookie with its CSRF token, and an API token."""

    username: str
    role: str
    user_id: int
    cookie: str
    csrf: str
    token: str

    def session_headers(self) -> dict[str, str]:
        return {"Cookie": f"{SESSION_COOKIE}={self.cookie}", "X-CSRF-Token": self.csrf}

    def token_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Rig:
    def __init__(self, tmp_path: Path, config: dict[str, Any] | None = None):
        self.tmp_path = tmp_path
        self.config_path = tmp_path / "ems.yaml"
        self.config_path.write_text(yaml.safe_dump(config if config is not None else demo_config()))
        self.data_dir = tmp_path / "data"
        self.store = ConfigStore.open(self.config_path)
        self.security = Security.open(self.data_dir, settings=SecuritySettings(scrypt=ScryptParams(n=16)))
        self.notifications = Notifications(time.time)
        self.audit = AuditLog(self.data_dir / "audit.jsonl")
        self.stopping = threading.Event()
        profiles, _broken = load_library(profiles_dir())
        self.tested: list[Any] = []
        self.facade = EmsFacade(
            security=self.security, config=self.store, notifications=self.notifications, history=_History(),
            analytics=_Analytics(), now=time.time, snapshot=self.snapshot, plan=lambda: PlanView(None, None, 0, None),
            forecast_json=lambda: {"prices": []}, profiles=lambda: profiles, test_modbus=self._test_modbus,
            simulator=None, stopping=self.stopping, audit=self.audit)
        self.app = create_app(self.facade)
        self.callers: dict[str, Caller] = {}
        self.server: WebServer | None = None

    def _test_modbus(self, device: Any) -> dict[str, Any]:
        self.tested.append(device)
        return {"ok": False, "errors": ["nothing listens here"]}

    def snapshot(self) -> RuntimeSnapshot:
        return RuntimeSnapshot(now=time.time(), plant=PlantState(), config=self.store.config,
                               power_control={"state": "normal", "reasons": []}, devices={},
                               plan=PlanView(None, None, 0, None), version="test", uptime_s=1.0, speed=1.0,
                               loop_lag_ms={"p99": 0.0}, tasks={}, history_rows_written=0)

    def add_users(self) -> dict[str, Caller]:
        for role in ROLES:
            name = f"{role}1"
            user = self.security.users.create(name, PASSWORD, role=role)
            result = self.security.login(name, PASSWORD, "127.0.0.1")
            assert result.ok, result.message
            token, _ = self.security.tokens.create(user.id, "test")
            assert result.set_session_cookie and result.csrf_token
            self.callers[role] = Caller(name, role, user.id, result.set_session_cookie, result.csrf_token, token)
        return self.callers

    # -- in-process WSGI ------------------------------------------------------------------------------------
    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             raw: bytes | None = None, addr: str = "127.0.0.1", as_role: str | None = None,
             content_type: str = "application/json") -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body or text). `headers` values may be any str: Latin-1, as WSGI passes them."""
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method, "PATH_INFO": path.split("?")[0], "QUERY_STRING": path.partition("?")[2],
            "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(data)), "wsgi.input": io.BytesIO(data),
            "REMOTE_ADDR": addr, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "HTTP_HOST": "127.0.0.1:8080",
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.errors": io.StringIO(),
            "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
            "SCRIPT_NAME": ""}
        all_headers = dict(self.callers[as_role].session_headers()) if as_role else {}
        all_headers.update(headers or {})
        for name, value in all_headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            else:
                environ["HTTP_" + key] = value
        answer: dict[str, Any] = {}

        def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            answer["status"] = int(status.split()[0])
            answer["headers"] = dict(response_headers)

        chunks = self.app(environ, start_response)
        try:
            out = b""
            for chunk in chunks:
                out += chunk if isinstance(chunk, bytes) else chunk.encode()
                if answer["headers"].get("Content-Type", "").startswith("text/event-stream"):
                    break  # one chunk of a live stream is enough
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        text = out.decode("utf-8", errors="replace")
        try:
            parsed: Any = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return answer["status"], answer["headers"], parsed

    # -- over a real socket ---------------------------------------------------------------------------------
    def serve(self, threads: int = 8) -> str:
        self.server = WebServer(self.app, "127.0.0.1", 0, threads=threads)
        host, port = self.server.start()
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.stopping.set()
        if self.server is not None:
            self.server.stop()
        self.security.close()


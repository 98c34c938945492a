"""The running appliance: `ems run` as a process on an ephemeral port with its own data dir, and a
browser-like HTTP client for it. Tests get started processes from the `ems_factory` fixture (conftest)."""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ems.resources import demo_config_text
from ems.users.auth import Security
from support import free_port

SERVING = re.compile(r"serving on http://([\d.]+):(\d+)")


@dataclass
class EmsProcess:
    proc: subprocess.Popen[str]
    data_dir: Path
    config_path: Path
    base_url: str = ""
    lines: list[str] = field(default_factory=list)
    admin_password: str = ""
    session: "Session | None" = None

    def login(self, username: str = "admin", password: str | None = None) -> "Session":
        session = Session(self.base_url)
        status, body = session.request("POST", "/login", {"username": username,
                                                          "password": password or self.admin_password})
        assert status == 200, body
        session.csrf = body["csrf_token"]
        return session

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        """GET as the admin (logged in on first use)."""
        self.session = self.session or self.login()
        return self.session.request("GET", path, timeout=timeout)

    def post(self, path: str, body: bytes, timeout: float = 5.0) -> tuple[int, Any]:
        self.session = self.session or self.login()
        return self.session.request("POST", path, raw=body, timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


class Session:
    """A browser-like client: keeps the session cookie and sends the CSRF token on changes."""

    def __init__(self, base_url: str, bearer: str | None = None):
        self.base_url = base_url
        self.cookie: str | None = None
        self.csrf: str | None = None
        self.bearer = bearer

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        all_headers = {"Content-Type": "application/json"}
        if self.cookie:
            all_headers["Cookie"] = self.cookie
        if self.csrf and method != "GET":
            all_headers["X-CSRF-Token"] = self.csrf
        if self.bearer:
            all_headers["Authorization"] = f"Bearer {self.bearer}"
        all_headers.update(headers or {})
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                self._keep_cookie(resp.headers)
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            self._keep_cookie(err.headers)
            payload = err.read()
            try:
                return err.code, json.loads(payload)
            except ValueError:
                return err.code, payload.decode(errors="replace")

    def _keep_cookie(self, headers: Any) -> None:
        for value in headers.get_all("Set-Cookie") or []:
            if value.startswith("ems_session="):
                token = value.split(";", 1)[0]
                self.cookie = None if token == "ems_session=" or "Max-Age=0" in value or \
                    "expires=Thu, 01 Jan 1970" in value else token


def demo_config(modbus: bool = False, **overrides: dict[str, Any]) -> dict[str, Any]:
    """The bundled demo config with sections overridden (merged key by key).

    modbus=False: the simulator is read directly (fast, exact energy balance). modbus=True: the demo as
    shipped, BMS/PCS/meter/DSO served over Modbus TCP — on free ports, so several EMS can run at once.
    """
    cfg = yaml.safe_load(demo_config_text())
    if modbus:
        cfg["modbus"] = [{**d, "port": free_port()} for d in cfg["modbus"]]
    else:
        cfg["modbus"] = []
        cfg["simulator"]["serve_modbus"] = False
    for section, values in overrides.items():
        cfg.setdefault(section, {}).update(values)
    return cfg


def start_ems(tmp_path: Path, config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
              timeout_s: float = 20.0, keep_config: bool = False, one_time_admin: bool = False) -> EmsProcess:
    """`ems run` on a free port with tmp_path/ems.yaml and tmp_path/data; `keep_config` starts it again on
    the files an earlier run left (a restart: what the settings page saved must still be there).

    The admin's password is generated; unless `one_time_admin`, it is then made the admin's own (as after the
    first-run setup), so a login lands where it was going instead of in the setup."""
    data_dir = tmp_path / "data"
    config_path = tmp_path / "ems.yaml"
    if not keep_config:
        config_path.write_text(yaml.safe_dump(config if config is not None else demo_config()))
    security = Security.open(data_dir)
    admin_password = security.users.ensure_admin() or security.reset_password("admin")
    if not one_time_admin:
        admin = security.users.get_by_username("admin")
        assert admin is not None
        security.users.set_password(admin.id, admin_password)
    security.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ems", "run", "--config", str(config_path), "--data-dir", str(data_dir),
         "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    ems = EmsProcess(proc, data_dir, config_path, admin_password=admin_password)
    found: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            ems.lines.append(line)
            match = SERVING.search(line)
            if match:
                found.put(f"http://{match.group(1)}:{match.group(2)}")

    threading.Thread(target=pump, daemon=True).start()
    try:
        ems.base_url = found.get(timeout=timeout_s)
    except queue.Empty:
        proc.kill()
        raise AssertionError("ems run did not start serving:\n" + "".join(ems.lines[-30:])) from None
    return ems


def create_user(admin: Session, username: str, password: str, role: str, name: str = "") -> dict[str, Any]:
    """Create a user through the API as `admin` (a logged-in Session)."""
    status, body = admin.request("POST", "/api/users", {"username": username, "password": password,
                                                        "role": role, "name": name})
    assert status == 201, body
    return body["user"]

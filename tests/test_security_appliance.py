"""The running appliance (`ems run`) as a viewer and an operator on the LAN meet it: no response carries a
stored secret, and safety-relevant changes are the admin's, in the audit log (issue 17, classes 1 and 3)."""
from __future__ import annotations

import http.client
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from appliance import create_user, demo_config
from security_rig import Rig

SECRETS = ("mqtt-pw-Zq8vLx2", "owm-key-9f3b1c7e", "entsoe-tok-44c2a1")
VIEWER_PW = "copper-owl-42-meadow"
OPERATOR_PW = "tidal-ferry-9-lantern"


def get_routes(tmp_path: Path) -> list[str]:
    """Every GET route of the app, as a concrete path (from the app's own route table)."""
    tmp_path.mkdir(exist_ok=True)
    rig = Rig(tmp_path)
    try:
        rules = sorted({r.rule for r in rig.app.routes if r.method == "GET"})
    finally:
        rig.close()
    paths = []
    for rule in rules:
        path = re.sub(r"<[^>]*:int>", "1", rule)
        path = re.sub(r"<path:[^>]*>", "js/util.js", path)
        paths.append(re.sub(r"<[^>]*>", "x", path))
    return paths + ["/api/modbus/profiles?profile=hithium_ess_5016", "/api/nothing-here", "/login?next=/users"]


def read(base: str, path: str, cookie: str) -> tuple[int, str]:
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=15)
    try:
        conn.request("GET", path, headers={"Cookie": cookie})
        resp = conn.getresponse()
        if resp.getheader("Content-Type", "").startswith("text/event-stream"):
            text = b""
            while text.count(b"event: state") < 2:  # two live events are plenty
                line = resp.readline()
                if not line:
                    break
                text += line
            return resp.status, text.decode("utf-8", "replace")
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def test_a_viewer_sees_no_stored_secret_in_any_response(ems_factory, server, tmp_path):
    # The weather service answers with an error quoting the key, as services do: the EMS shows the error.
    server.serve({"cod": 401, "message": "Invalid API key owm-key-9f3b1c7e for /forecast"}, status=401)
    cfg = demo_config(mqtt={"enabled": False, "broker": "broker.lan", "username": "ems", "password": SECRETS[0]},
                      forecast={"use_weather": True, "openweathermap_api_key": SECRETS[1],
                                "openweathermap_base_url": server.url.rsplit("/", 2)[0], "entsoe_token": SECRETS[2],
                                "http_timeout_s": 1})
    ems = ems_factory(cfg)
    admin = ems.login()
    create_user(admin, "vera", VIEWER_PW, "viewer")
    viewer = ems.login("vera", VIEWER_PW)
    assert all(s in ems.config_path.read_text() for s in SECRETS)  # they are stored, just never shown
    checked = 0
    for path in get_routes(tmp_path / "routes"):
        status, text = read(ems.base_url, path, viewer.cookie)
        assert status < 500, (path, status)
        for secret in SECRETS:
            assert secret not in text, f"{path} shows {secret}"
        checked += 1
    assert checked >= 20
    status, body = viewer.request("GET", "/api/mqtt/config")
    assert body["mqtt"]["password"] == {"set": True}


def test_an_operator_cannot_switch_power_control_off_and_the_admins_change_is_audited(ems_factory):
    ems = ems_factory()
    admin = ems.login()
    create_user(admin, "olga", OPERATOR_PW, "operator")
    operator = ems.login("olga", OPERATOR_PW)
    section = admin.request("GET", "/api/config/power_control")[1]["power_control"]
    assert section["enabled"] is True

    status, body = operator.request("POST", "/api/config/power_control", {**section, "enabled": False})
    assert (status, body["field"]) == (403, "power_control.enabled")
    assert ems.get("/api/state")[1]["power_control"]["enabled"] is True
    assert operator.request("GET", "/api/audit")[0] == 403

    status, body = admin.request("POST", "/api/config/power_control", {**section, "enabled": False})
    assert status == 200 and body["changed"] == ["power_control.enabled"]
    status, audit = admin.request("GET", "/api/audit")
    assert status == 200 and audit["chain"]["ok"]
    [entry] = [e for e in audit["entries"] if e["field"] == "power_control.enabled"]
    assert (entry["user"], entry["role"], entry["remote_addr"]) == ("admin", "admin", "127.0.0.1")
    assert (entry["old"], entry["new"]) == (True, False) and entry["ts"] > 1e9
    status, csv_text = read(ems.base_url, "/api/audit/export?format=csv", admin.cookie)
    assert status == 200 and csv_text.startswith("seq,ts,time_utc,user") and "power_control.enabled" in csv_text
    assert ems.get("/api/state")[1]["power_control"]["enabled"] is False


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, json.dumps({"x": "\ud800"}).encode()])
def test_malformed_bodies_reachable_without_a_login_are_4xx(ems_factory, body):
    ems = ems_factory()
    url = urlsplit(ems.base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("POST", "/login", body=body, headers={"Content-Type": "application/json"})
    status = conn.getresponse().status
    conn.close()
    assert 400 <= status < 500
    assert ems.proc.poll() is None

"""HTTP input as an attacker on the LAN sends it: open redirects, foreign Host and Origin, malformed JSON and
headers, big bodies, missing security headers (issue 17, classes 5, 6, 8, 9 and 10)."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ems.api.http import MAX_JSON_DEPTH
from security_rig import PASSWORD, Rig


@pytest.fixture
def rig(tmp_path: Path):
    r = Rig(tmp_path)
    r.add_users()
    yield r
    r.close()


# -- class 5: next= ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [
    "/%09/evil.example/x",  # the one from the report: a tab, which browsers drop
    "/%0a/evil.example", "/%0d%0a/evil.example", "/%20/evil.example", "//evil.example", "/\\evil.example",
    "/%5Cevil.example", "/%2F%2Fevil.example", "/%252F%252Fevil.example", "https://evil.example/",
    "javascript:alert(1)", "/%00/evil.example", "%2F%2Fevil.example",
])
def test_next_never_leads_off_site(rig: Rig, target: str):
    status, headers, _ = rig.call("POST", "/login", raw=f"username=admin1&password={PASSWORD}&next={target}".encode(),
                                  content_type="application/x-www-form-urlencoded")
    assert status == 303
    assert urlsplit(headers["Location"]).path == "/" and urlsplit(headers["Location"]).netloc == "127.0.0.1:8080"


def test_next_keeps_a_real_path_on_this_site(rig: Rig):
    status, headers, _ = rig.call("POST", "/login", raw=f"username=admin1&password={PASSWORD}"
                                                       "&next=/monitoring%3Frange%3Dday".encode(),
                                  content_type="application/x-www-form-urlencoded")
    assert status == 303 and headers["Location"].endswith("/monitoring?range=day")


# -- class 6: Host and Origin -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/health", "/login", "/static/css/app.css", "/api/nothing-here"])
def test_a_foreign_host_gets_421_before_any_route(rig: Rig, path: str):
    status, headers, body = rig.call("GET", path, headers={"Host": "evil.example:8080"})
    assert status == 421 and body["field"] == "Host"
    assert headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "[::1]:8080", "127.0.0.2"])
def test_loopback_hosts_are_served(rig: Rig, host: str):
    assert rig.call("GET", "/api/health", headers={"Host": host})[0] == 200


def test_the_gateways_names_and_configured_hosts_are_served(rig: Rig):
    import socket
    short = socket.gethostname().split(".")[0]
    for host in (short, f"{short}.local", f"{short}.local:8080"):
        assert rig.call("GET", "/api/health", headers={"Host": host})[0] == 200, host
    assert rig.call("GET", "/api/health", headers={"Host": "ems.plant.example"})[0] == 421
    rig.store.update_section("web", {**rig.store.section_plain("web"), "allowed_hosts": ["ems.plant.example"]})
    assert rig.call("GET", "/api/health", headers={"Host": "ems.plant.example"})[0] == 200


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:9999", "file://"])
def test_a_foreign_origin_cannot_change_anything(rig: Rig, origin: str):
    body = {**rig.store.section_plain("bess"), "capacity_kwh": 12}
    status, _, answer = rig.call("POST", "/api/config/bess", body, as_role="admin", headers={"Origin": origin})
    assert status == 403 and answer["field"] == "Origin"
    status, _, answer = rig.call("POST", "/login", {"username": "admin1", "password": PASSWORD},
                                 headers={"Origin": origin})
    assert status == 403
    assert rig.store.config.bess.capacity_kwh == 10.0
    assert rig.call("POST", "/api/config/bess", body, as_role="admin", headers={"Origin": "http://127.0.0.1:8080"})[0] \
        == 200


def test_a_cross_site_fetch_without_origin_is_refused_too(rig: Rig):
    status, _, _ = rig.call("POST", "/api/strategy/auto", as_role="operator", headers={"Sec-Fetch-Site": "cross-site"})
    assert status == 403


# -- classes 8 and 9: bodies and headers ---------------------------------------------------------------------------

def test_deeply_nested_json_is_400_not_500(rig: Rig):
    for depth in (MAX_JSON_DEPTH + 1, 900, 5000):
        raw = b"[" * depth + b"]" * depth
        status, _, body = rig.call("POST", "/api/notifications/ack", raw=raw, as_role="viewer")
        assert status in (400, 413) and body["field"], depth


@pytest.mark.parametrize("path, body", [
    ("/api/users", {"username": "mallory", "password": "tidal-basin-4711", "email": "\ud800@example.com"}),
    ("/api/users", {"username": "mallory", "password": "tidal-basin-4711\udfff"}),
    ("/api/me/tokens", {"name": "scada \ud83d"}),
    ("/api/config/mqtt", {"client_id": "ems-\udc80"}),
])
def test_lone_surrogates_that_would_reach_storage_are_400(rig: Rig, path: str, body: dict):
    raw = json.dumps(body).encode()  # json escapes them as \\ud800: valid JSON, invalid Unicode
    status, _, answer = rig.call("POST", path, raw=raw, as_role="admin")
    assert status == 400 and answer["field"], answer
    assert "Unicode" in answer["error"]


def test_lone_surrogates_in_a_login_are_400_too(rig: Rig):
    status, _, answer = rig.call("POST", "/login", raw=b'{"username": "admin1", "password": "x\\ud800xxxxxxxxx"}')
    assert status == 400 and answer["field"] == "password"


@pytest.mark.parametrize("name", ["X-CSRF-Token", "Authorization", "Host", "Origin"])
def test_non_utf8_bytes_in_headers_are_400_for_anyone(rig: Rig, name: str):
    latin1 = b"\xff\xfe\xc3(".decode("latin-1")  # what WSGI hands over for those bytes
    for path, method in (("/api/state", "GET"), ("/api/notifications/ack", "POST"), ("/api/health", "GET")):
        status, _, body = rig.call(method, path, raw=b'{"up_to_id": 1}', headers={name: latin1})
        assert status == 400 and body["field"] == name, (name, path, status, body)


def test_body_limits_are_per_endpoint(rig: Rig):
    padded = lambda section, size: json.dumps(section).encode()[:-1] + b" " * size + b"}"
    bess = rig.store.section_plain("bess")
    status, _, body = rig.call("POST", "/api/config/bess", raw=padded(bess, 20_000), as_role="admin")
    assert (status, body["field"]) == (413, "body")
    tariffs = {"enabled": True, "high_load_windows": [
        {"start": "17:00", "end": "19:00", "multiplier": 1.25, "months": list(range(1, 13))}] * 48}
    status, _, _ = rig.call("POST", "/api/config/grid_tariffs", raw=padded(tariffs, 40_000), as_role="admin")
    assert status == 200  # the largest section gets the room it needs, no more
    status, _, body = rig.call("POST", "/api/config/grid_tariffs", raw=padded(tariffs, 70_000), as_role="admin")
    assert status == 413
    status, _, body = rig.call("POST", "/api/notifications/ack", raw=b'{"up_to_id": 1, "pad": "' + b"x" * 20_000 + b'"}',
                               as_role="viewer")
    assert status == 413


def test_a_flood_of_problems_is_reported_briefly(rig: Rig):
    many = {f"k{i}": i for i in range(1200)}  # under the 16 KiB limit
    status, _, body = rig.call("POST", "/api/config/bess", many, as_role="admin")
    assert status == 400 and len(json.dumps(body)) < 5000


# -- class 10: static responses carry the security headers -------------------------------------------------------

@pytest.mark.parametrize("path", ["/static/css/app.css", "/static/js/util.js", "/static/nothing.css", "/login"])
def test_static_and_error_responses_carry_the_security_headers(rig: Rig, path: str):
    status, headers, _ = rig.call("GET", path)
    assert status in (200, 404)
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"


def test_the_gateways_own_addresses_are_served_and_other_addresses_are_not(rig: Rig):
    from ems.api.origin import own_addresses
    mine = sorted(own_addresses())
    assert "127.0.0.1" in mine
    for address in mine:
        host = f"[{address}]:8080" if ":" in address else f"{address}:8080"
        assert rig.call("GET", "/api/health", headers={"Host": host})[0] == 200, host
    foreign = next(a for a in ("203.0.113.9", "198.51.100.4", "10.254.254.254") if a not in mine)
    assert rig.call("GET", "/api/health", headers={"Host": f"{foreign}:8080"})[0] == 421

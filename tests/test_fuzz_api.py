"""A bounded fuzz run against the running appliance: ~2,000 generated requests over every route of the app's own
route table, as anonymous, viewer and operator — malformed JSON, wrong types, junk headers (bytes that are not
UTF-8), odd methods, paths and query strings. Not one answer may be a 5xx, and `ems run` must be alive after.
The count of requests sent is printed (issue 17: "500s from malformed input")."""
from __future__ import annotations

import http.client
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import Session, create_user, demo_config
from ems.api.app import CONFIG_ROUTES
from security_rig import Rig

EXAMPLES_PER_CALLER = 700  # × 3 callers ≈ 2,100 requests
MAX_RSS_MB = 150.0
PASSWORDS = {"viewer": "copper-owl-42-meadow", "operator": "tidal-ferry-9-lantern"}
QUERY_KEYS = ["limit", "minutes", "hours", "days", "points", "profile", "next", "format", "day", "channels", "range",
              "registered", "x"]
SECTION_PATHS = {path for paths in CONFIG_ROUTES.values() for path in paths}

# Text a client can put in a header: Latin-1 (as bytes on the wire), without CR/LF.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=60)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=False),
                         st.text(max_size=30), st.sampled_from(["", "/dev/null", "00:00", "24:00", "\ud800", "NE7",
                                                                "manual", "auto", "tcp", "rtu", "dso", "1e999"]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)), max_leaves=15)


def route_table(tmp_path: Path) -> list[tuple[str, str]]:
    tmp_path.mkdir(exist_ok=True)
    rig = Rig(tmp_path)
    try:
        return sorted({(r.method, r.rule) for r in rig.app.routes})
    finally:
        rig.close()


def fill(rule: str, draw: Any) -> str:
    def value(match: re.Match[str]) -> str:
        if ":int" in match.group(0):
            return str(draw(st.integers(-5, 10**15)))
        if match.group(0).startswith("<path"):
            return draw(st.sampled_from(["css/app.css", "js/util.js", "../../etc/passwd", "vendor/../css/app.css",
                                         "nothing.js", "%2e%2e/x"]))
        return quote(draw(st.text(max_size=20)), safe="")
    return re.sub(r"<[^>]*>", value, rule)


@st.composite
def requests(draw: Any, routes: list[tuple[str, str]], sections: dict[str, Any]) -> dict[str, Any]:
    method, rule = draw(st.sampled_from(routes))
    if draw(st.integers(0, 19)) == 0:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PROPFIND"]))
    path = fill(rule, draw)
    if draw(st.booleans()):
        query = draw(st.dictionaries(st.sampled_from(QUERY_KEYS), st.one_of(
            st.integers(-10**6, 10**9).map(str), st.floats(allow_nan=True).map(str), st.text(max_size=20)), max_size=3))
        path += "?" + urlencode(query)
    kind = draw(st.sampled_from(["none", "json", "json", "section", "raw", "form", "deep"]))
    content_type = "application/json"
    body: bytes | None = None
    if kind == "json":
        body = json.dumps(draw(json_values)).encode()
    elif kind == "section" and rule in SECTION_PATHS:
        section = dict(sections.get(rule) or {})
        if section and isinstance(section, dict):
            key = draw(st.sampled_from(sorted(section)))
            section[key] = draw(json_values)
        body = json.dumps(section).encode()
    elif kind == "raw":
        body = draw(st.binary(max_size=300))
        content_type = draw(st.sampled_from(["application/json", "text/plain", "application/octet-stream"]))
    elif kind == "deep":
        depth = draw(st.integers(10, 3000))
        body = (b'{"a":' * depth + b"1" + b"}" * depth) if draw(st.booleans()) else b"[" * depth + b"]" * depth
    elif kind == "form":
        body = urlencode(draw(st.dictionaries(st.sampled_from(["username", "password", "next", "csrf_token", "name"]),
                                              st.text(max_size=30), max_size=4))).encode()
        content_type = "application/x-www-form-urlencoded"
    headers = {"Content-Type": content_type}
    for name in ("X-CSRF-Token", "Authorization", "Origin", "Accept-Language"):
        if draw(st.integers(0, 7)) == 0:
            headers[name] = draw(header_text)
    return {"method": method, "path": path, "body": body, "headers": headers,
            "keep_csrf": draw(st.integers(0, 9)) > 0}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Client:
    def __init__(self, base: str, session: Session | None, login: Any):
        self.base = urlsplit(base)
        self.session = session
        self.login = login
        self.sent = 0
        self.statuses: dict[int, int] = {}

    def send(self, req: dict[str, Any]) -> int:
        headers = dict(req["headers"])
        if self.session is not None:
            headers["Cookie"] = self.session.cookie or ""
            if req["keep_csrf"] and "X-CSRF-Token" not in headers:
                headers["X-CSRF-Token"] = self.session.csrf or ""
        conn = http.client.HTTPConnection(self.base.hostname, self.base.port, timeout=20)
        try:
            conn.putrequest(req["method"], req["path"], skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value.encode("latin-1"))
            body = req["body"]
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            if (resp.getheader("Content-Type") or "").startswith("text/event-stream"):
                resp.readline()  # a live stream: its first line is answer enough
            else:
                resp.read()
            status = resp.status
        finally:
            conn.close()
        self.sent += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 401 and self.session is not None:
            self.session = self.login()  # the fuzz logged itself out (or changed its password): carry on
        return status


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    from appliance import start_ems
    tmp = tmp_path_factory.mktemp("fuzz")
    ems = start_ems(tmp, demo_config(web={"allow_registration": True}))
    admin = ems.login()
    for role, password in PASSWORDS.items():
        create_user(admin, f"{role}1", password, role)
    sections = {path: admin.request("GET", path)[1].get(section)
                for section, paths in CONFIG_ROUTES.items() for path in paths}
    routes = route_table(tmp / "routes")
    yield ems, routes, sections
    ems.stop()


@pytest.mark.parametrize("caller", ["anonymous", "viewer", "operator"])
def test_fuzzed_requests_never_get_a_5xx_and_the_ems_stays_up(fuzzed, caller):
    ems, routes, sections = fuzzed
    login = (lambda: None) if caller == "anonymous" else (lambda: ems.login(f"{caller}1", PASSWORDS[caller]))
    client = Client(ems.base_url, login(), login)
    failures: list[tuple[int, dict[str, Any]]] = []
    started = time.monotonic()

    @settings(max_examples=EXAMPLES_PER_CALLER, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(requests(routes, sections))
    def one(req: dict[str, Any]) -> None:
        status = client.send(req)
        if status >= 500:
            failures.append((status, req))
        assert status < 500, req

    try:
        one()
    finally:
        print(f"\nfuzz as {caller}: {client.sent} requests in {time.monotonic() - started:.1f} s, "
              f"statuses {dict(sorted(client.statuses.items()))}, ems run RSS {rss_mb(ems.proc.pid):.1f} MB")
    assert not failures
    assert client.sent >= EXAMPLES_PER_CALLER * 0.9
    assert ems.proc.poll() is None, "ems run died"
    # systemd runs the service with MemoryMax=200M: a flood of logins and bodies must leave a wide margin.
    assert rss_mb(ems.proc.pid) < MAX_RSS_MB
    assert Session(ems.base_url).request("GET", "/api/health")[0] == 200

"""Every route × every kind of caller, generated from the app's own route table and the permission table.

A new route without a permission decision cannot even be created (the app refuses to build); a route
with one is checked here against ROLE_ACTIONS for: nobody, a bad token, a viewer, an operator and an
admin (by session with CSRF, and by API token).
"""
from __future__ import annotations

import json
import re
from urllib.parse import urlparse
import urllib.error
import urllib.request

import bottle
import pytest
import yaml

from ems.api.app import CONFIG_ROUTES, create_app
from ems.api.auth_plugin import UNDECLARED, check_declared, route_action
from ems.api.server import WebServer
from ems.config import ConfigStore
from ems.resources import demo_config_text
from ems.runtime import Listen, Runtime
from ems.users.permissions import ROLE_ACTIONS

PASSWORD = "correct-horse-battery-9"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("routes")
    config = yaml.safe_load(demo_config_text())
    config["web"]["allow_registration"] = True  # /register is a public route only while registration is open
    (tmp / "ems.yaml").write_text(yaml.safe_dump(config))
    rt = Runtime(ConfigStore.open(tmp / "ems.yaml"), tmp, Listen("127.0.0.1", 0))
    rt.stopping.set()  # live-event streams answer and end at once
    app = create_app(rt.facade())
    server = WebServer(app, "127.0.0.1", 0, threads=8)
    host, port = server.start()
    callers = {"nobody": {}, "bad token": {"Authorization": "Bearer ems_not-a-real-token"}}
    for role in ("viewer", "operator", "admin"):
        user = rt.security.users.create(f"{role}1", PASSWORD, role=role)
        token, session = rt.security.sessions.create(user.id, user.credential_version)
        callers[role] = {"Cookie": f"ems_session={token}", "X-CSRF-Token": session.csrf_token}
        plaintext, _ = rt.security.tokens.create(user.id, "test")
        callers[f"{role} token"] = {"Authorization": f"Bearer {plaintext}"}
    READER.update(callers["viewer token"])
    yield app, f"http://{host}:{port}", callers, rt
    server.stop()
    rt.history.close()


def concrete(rule: str) -> str:
    """A request path for a rule: ids that do not exist, so allowed changes are harmless (404)."""
    path = re.sub(r"<[^>]*:int>", "999999", rule)
    path = re.sub(r"<path:[^>]*>", "css/app.css", path)
    return re.sub(r"<[^>]*>", "no-such-id", path)


def call(base: str, method: str, path: str, headers: dict[str, str]) -> int:
    """The status; a page's redirect to the login form counts as 401 (that is how pages say it).
    A config section is posted back as it is (a harmless change that any caller allowed to configure may
    make: posting `{}` would reset it to defaults, which for some sections only an admin may)."""
    data = b"{}" if method in ("POST", "PUT", "PATCH", "DELETE") else None
    if method == "POST" and path in CONFIG_PATHS:
        data = current_section(base, path)
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **headers})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        if err.code == 303 and urlparse(err.headers["Location"]).path == "/login" and path != "/logout":
            return 401  # a protected page sends the caller to the login form
        return err.code


CONFIG_PATHS = {path: section for section, paths in CONFIG_ROUTES.items() for path in paths}
READER: dict[str, str] = {}  # headers of a caller who may read every section (set by the fixture)


def current_section(base: str, path: str) -> bytes:
    req = urllib.request.Request(base + path, headers=READER)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.dumps(json.loads(resp.read())[CONFIG_PATHS[path]]).encode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect to /login is an answer, not something to follow
        return None


# Routes whose allowed call would end the caller's own credentials are checked last, per caller.
LAST = {("GET", "/logout"), ("POST", "/logout")}


def test_every_route_declares_a_permission_decision(served):
    app, *_ = served
    assert app.routes
    for route in app.routes:
        assert route_action(route) is not UNDECLARED, f"{route.method} {route.rule}"


def test_an_app_with_an_undeclared_route_refuses_to_build():
    app = bottle.Bottle()
    app.route("/api/new-thing", "GET", lambda: "x")
    with pytest.raises(RuntimeError, match="without a permission decision"):
        check_declared(app)
    app2 = bottle.Bottle()
    app2.route("/api/x", "GET", lambda: "x", action="do_anything")
    with pytest.raises(RuntimeError, match="unknown actions"):
        check_declared(app2)


@pytest.mark.parametrize("caller", ["nobody", "bad token", "viewer", "operator", "admin",
                                    "viewer token", "operator token", "admin token"])
def test_every_route_answers_each_caller_as_the_permission_table_says(served, caller):
    app, base, callers, _ = served
    role = caller.split()[0] if caller.split()[0] in ROLE_ACTIONS else None
    routes = sorted(((r.method, r.rule, route_action(r)) for r in app.routes), key=lambda r: r[:2] in LAST)
    checked = 0
    for method, rule, action in routes:
        status = call(base, method, concrete(rule), callers[caller])
        where = f"{caller}: {method} {rule} -> {status}"
        if action is None:
            assert status not in (401, 403), where
        elif role is None:
            assert status == 401, where
        elif action in ROLE_ACTIONS[role]:
            assert status not in (401, 403) and status < 500, where
        else:
            assert status == 403, where
        checked += 1
    assert checked == len(app.routes)


def test_session_changes_without_the_csrf_token_are_refused(served):
    app, base, _, rt = served
    admin = rt.security.users.get_by_username("admin1")
    token, _session = rt.security.sessions.create(admin.id, admin.credential_version)  # a fresh, live session
    admin_cookie_only = {"Cookie": f"ems_session={token}"}
    wrong = {**admin_cookie_only, "X-CSRF-Token": "not-the-token"}
    changing = [(r.method, r.rule) for r in app.routes
                if r.method in ("POST", "PUT", "DELETE") and route_action(r) is not None]
    assert changing
    for method, rule in changing:
        without = call(base, method, concrete(rule), admin_cookie_only)
        with_wrong = call(base, method, concrete(rule), wrong)
        assert (without, with_wrong) == (403, 403), f"{method} {rule}"


def test_every_response_carries_the_security_headers(served):
    _, base, callers, _ = served
    for path, headers in (("/api/state", callers["viewer"]), ("/login", {}), ("/api/nothing", {})):
        req = urllib.request.Request(base + path, headers=headers)
        try:
            resp = urllib.request.urlopen(req, timeout=5)
        except urllib.error.HTTPError as err:
            resp = err
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "same-origin"

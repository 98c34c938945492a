"""The Bottle application: pages, the JSON API and the live event stream, built on the `EmsFacade`.

Handlers run in cheroot's worker threads. They only read immutable snapshots (plant state, config)
and the history store's per-thread read connections; changes go through the façade's config access,
which hands notifications to the event loop. Every error leaves as JSON `{"error": ..., "field": ...}`
with a 4xx code (5xx only for our own bugs, without a traceback), mapped in `http.error_plugin`.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any, Iterator

import bottle
from bottle import request as brequest

from .. import __version__
from ..errors import ApiError
from ..config.schema import ModbusDeviceConfig
from ..config.validate import parse_config
from ..devices.profile import profile_to_json
from ..optimizer.strategies import STRATEGIES, STRATEGY_NAMES
from ..resources import web_dir
from .account_routes import install as install_account_routes
from .history_routes import install as install_history_routes
from .auth_plugin import SECURITY_HEADERS, AuthPlugin, check_declared, current_auth
from .facade import EmsFacade
from .http import error_plugin, json_body, number_query
from .http import json_response as _json
from .views import plan_json, state_json

log = logging.getLogger(__name__)

# Navigation tabs: (path, label, the action needed to see it).
NAV = [("/", "Dashboard", "read"), ("/monitoring", "Monitoring", "read"), ("/users", "Users", "manage_users")]

# Config sections that can be read and changed over HTTP, with the paths SPEC.md names for some.
CONFIG_ROUTES = {
    "bess": ["/api/config/bess"],
    "strategy": ["/api/config/strategy"],
    "forecast": ["/api/config/forecast"],
    "power_control": ["/api/config/power_control"],
    "history": ["/api/config/history"],
    "mqtt": ["/api/config/mqtt", "/api/mqtt/config"],
    "modbus": ["/api/config/modbus", "/api/modbus/config"],
    "site": ["/api/config/site"],
    "feedin_limitation": ["/api/config/feedin_limitation", "/api/feedin_limitation/config"],
    "grid_connection": ["/api/config/grid_connection", "/api/grid_connection/config"],
    "grid_tariffs": ["/api/config/grid_tariffs"],
}
def create_app(ems: EmsFacade) -> bottle.Bottle:
    app = bottle.Bottle(catchall=True)
    app.install(error_plugin)
    app.install(AuthPlugin(ems.security))
    web = web_dir()
    lookup = [str(web / "templates")]
    sse_slots = threading.BoundedSemaphore(max(1, ems.config.config.web.threads - 4))

    def page(name: str, title: str, active: str, **extra: Any) -> str:
        auth = current_auth()
        me: dict[str, Any] = ems.security.whoami(auth) if auth.ok else {"authenticated": False, "actions": []}
        nav = [(path, label) for path, label, action in NAV if action in me["actions"]]
        return bottle.template(name, template_lookup=lookup, title=title, active=active, nav=nav,
                               version=__version__, me=me, csrf_token=me.get("csrf_token") or "", **extra)

    @app.error(404)
    @app.error(405)
    @app.error(500)
    def error_page(err: bottle.HTTPError) -> str:
        for header, value in SECURITY_HEADERS.items():
            bottle.response.set_header(header, value)
        message = {404: "not found", 405: "method not allowed"}.get(err.status_code, "internal error")
        if bottle.request.path.startswith("/api/"):
            bottle.response.content_type = "application/json"
            return json.dumps({"error": f"{message}: {bottle.request.method} {bottle.request.path}"})
        return bottle.template("error.tpl", template_lookup=lookup, code=err.status_code, message=message)

    @app.get("/", action="read")
    def dashboard() -> str:
        return page("dashboard.tpl", "Dashboard", "/")

    @app.get("/monitoring", action="read")
    def monitoring() -> str:
        sim = ems.simulator
        return page("monitoring.tpl", "Monitoring", "/monitoring", simulator=sim is not None,
                    devices=list(sim.device_names()) if sim else [])

    @app.get("/static/<path:path>", action=None)
    def static(path: str) -> Any:
        return bottle.static_file(path, root=str(web / "static"))

    @app.get("/api/health", action=None)
    def health() -> str:
        return _json({"status": "ok", "version": __version__})

    @app.get("/api/state", action="read")
    def state() -> str:
        return _json(state_json(ems.snapshot()))

    @app.get("/api/notifications", action="read")
    def notifications() -> str:
        limit = int(number_query("limit", 50, 1, 500, integer=True))
        principal = current_auth().principal
        acked = ems.notifications.acknowledged(principal.user_id) if principal else 0
        items = ems.notifications.recent(limit)
        return _json({"notifications": [n.to_json() for n in items], "acknowledged_up_to": acked,
                      "unacknowledged": sum(1 for n in items if n.id > acked and n.level != "info")})

    for section, paths in CONFIG_ROUTES.items():
        def get_section(section: str = section) -> str:
            return _json({section: ems.config.section_plain(section)})

        def set_section(section: str = section) -> str:
            ems.config.update_section(section, json_body())
            return _json({section: ems.config.section_plain(section), "saved": True})

        for path in paths:
            app.route(path, "GET", get_section, action="read")
            app.route(path, "POST", set_section, action="configure")

    @app.get("/api/forecast", action="read")
    def forecast() -> str:
        return _json(ems.forecast_json())

    @app.get("/api/plan", action="read")
    def plan() -> str:
        return _json(plan_json(ems.plan()))

    @app.get("/api/strategies", action="read")
    def strategies() -> str:
        cfg = ems.config.config.strategy
        plan = ems.plan().plan
        return _json({"strategies": [s.describe() for s in STRATEGIES.values()], "mode": cfg.mode,
                      "current": cfg.current, "active": plan.strategy if plan else None})

    @app.post("/api/strategy", action="operate")
    def set_strategy() -> str:
        body = json_body()
        name = body.get("strategy") if isinstance(body, dict) else None
        if name not in STRATEGY_NAMES:
            raise ApiError(400, f"must be one of {', '.join(STRATEGY_NAMES)} (got {str(name)[:40]!r})", "strategy")
        section = {**ems.config.section_plain("strategy"), "mode": "manual", "current": name}
        ems.config.update_section("strategy", section)
        return _json({"strategy": ems.config.section_plain("strategy")})

    @app.post("/api/strategy/auto", action="operate")
    def set_auto() -> str:
        ems.config.update_section("strategy", {**ems.config.section_plain("strategy"), "mode": "auto"})
        return _json({"strategy": ems.config.section_plain("strategy")})

    @app.post("/api/simulator/events", action="operate")
    def simulator_event() -> str:
        if ems.simulator is None:
            raise ApiError(409, "the simulator is off: events only drive the simulated plant", "simulator.enabled")
        return _json({"applied": ems.simulator.post_event(json_body())})

    @app.get("/api/modbus/profiles", action="read")
    def modbus_profiles() -> str:
        key = brequest.query.get("profile")
        profiles = ems.profiles()
        if key:
            if key not in profiles:
                raise ApiError(404, f"no profile {key[:64]!r} (allowed: {', '.join(sorted(profiles))})", "profile")
            return _json({"profile": profile_to_json(profiles[key])})
        return _json({"profiles": [{"key": k, "vendor": p.meta.vendor, "model": p.meta.model, "kind": p.meta.kind,
                                    "verified": p.meta.verified} for k, p in sorted(profiles.items())]})

    @app.post("/api/modbus/test", action="configure")
    def modbus_test() -> str:
        device = parse_config(ModbusDeviceConfig, json_body(), "device")
        profiles = ems.profiles()
        if device.profile not in profiles:
            raise ApiError(400, f"{device.profile!r} is not a known profile "
                                f"(allowed: {', '.join(sorted(profiles))})", "device.profile")
        return _json(ems.test_modbus(device))

    @app.post("/api/notifications/ack", action="own_account")
    def ack_notifications() -> str:
        body = json_body()
        up_to = body.get("up_to_id") if isinstance(body, dict) else None
        if isinstance(up_to, bool) or not isinstance(up_to, int) or up_to < 0:
            raise ApiError(400, f"must be a notification id (got {str(up_to)[:40]!r})", "up_to_id")
        principal = current_auth().principal
        assert principal is not None
        ems.notifications.acknowledge(principal.user_id, up_to)
        return _json({"acknowledged_up_to": ems.notifications.acknowledged(principal.user_id)})

    @app.get("/api/events", action="read")
    def events() -> Iterator[str]:
        if not sse_slots.acquire(blocking=False):
            raise ApiError(503, "too many live-event clients; close another tab", "events")
        bottle.response.content_type = "text/event-stream"
        bottle.response.set_header("Cache-Control", "no-cache")
        bottle.response.set_header("X-Accel-Buffering", "no")
        interval_s = ems.config.config.web.sse_interval_s

        def stream() -> Iterator[str]:
            try:
                yield "retry: 3000\n\n"
                while not ems.stopping.is_set():
                    yield f"event: state\ndata: {json.dumps(state_json(ems.snapshot()), allow_nan=False)}\n\n"
                    ems.stopping.wait(interval_s)
            finally:
                sse_slots.release()
        return stream()

    install_account_routes(app, ems, page)
    install_history_routes(app, ems)
    check_declared(app)
    return app

"""The Bottle application: pages, the JSON API and the live event stream, built on the `EmsFacade`.

Handlers run in cheroot's worker threads. They only read immutable snapshots (plant state, config)
and the history store's per-thread read connections; changes go through the façade's config access,
which hands notifications to the event loop. Every error leaves as JSON `{"error": ..., "field": ...}`
with a 4xx code (5xx only for our own bugs, without a traceback), mapped in `http.error_plugin`.

Before any route runs, the Host must be one of the gateway's (`origin.HostGuard`, 421 otherwise) and a
state-changing request must not come from another site (403). Config changes are parsed and validated
here, in the web thread, within a per-section body limit; safety- and security-relevant keys are for
admins only and every change lands in the audit log (`ems.audit`) with who, when and from where. Stored
secrets never leave: GETs show `{"set": …}` (`ems.config.guard`), and as a last line every response body
is scrubbed of the current secret values.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import bottle
from bottle import request as brequest

from .. import __version__
from .. import i18n
from ..audit import AUDIT_FILE, AuditLog
from ..errors import ApiError
from ..config.guard import FieldChange
from ..config.store import ConfigChange
from ..config.paths import device_path_problem
from ..config.schema import ModbusDeviceConfig
from ..config.validate import parse_config
from ..devices.profile import Profile, profile_to_json
from ..devices.overrides import OverrideError, with_overrides
from ..devices.serial_ports import serial_ports
from ..optimizer.strategies import STRATEGIES, STRATEGY_NAMES
from ..resources import web_dir
from ..safety.reasons import reason_words
from .account_routes import install as install_account_routes
from .history_routes import install as install_history_routes
from .mqtt_routes import install as install_mqtt_routes
from .openapi import install as install_openapi
from .auth_plugin import (SECURITY_HEADERS, AuthPlugin, check_declared, current_actor, current_auth,
                          install_security_headers)
from .facade import ConfigAccess, EmsFacade, GuardedConfigAccess
from .http import error_plugin, header, json_body, number_query, request_language
from .http import json_response as _json
from .origin import HostGuard
from .server import LIMITS_KEY, SSE_SLOTS_KEY, ConnectionLimits
from .settings_form import settings_form, setup_steps
from .compression import gzip_plugin
from .revalidation import revalidation_plugin
from .deltas import delta
from .static_files import IMMUTABLE, REVALIDATE, StaticFiles, accepts_gzip
from .streams import StreamSlots
from .views import plan_json, state_json

log = logging.getLogger(__name__)

# Navigation tabs: (path, label, the action needed to see it).
NAV = [("/", i18n.mark("Dashboard"), "read"), ("/monitoring", i18n.mark("Monitoring"), "read"),
       ("/analytics", i18n.mark("Analytics"), "read"), ("/forecasts", i18n.mark("Forecasts"), "read"),
       ("/settings", i18n.mark("Settings"), "read"),
       ("/users", i18n.mark("Users"), "manage_users")]

# Config sections that can be read and changed over HTTP, with the paths SPEC.md names for some.
CONFIG_ROUTES = {
    "web": ["/api/config/web"],
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
# A section's body limit: enough for the largest valid section with room for formatting, no more
# (the schema bounds its lists: 48 tariff windows or feed-in rules, 32 Modbus devices).
SECTION_BODY_BYTES = {"grid_tariffs": 64 * 1024, "modbus": 64 * 1024, "feedin_limitation": 32 * 1024}
DEFAULT_SECTION_BODY_BYTES = 16 * 1024
SSE_SPARE_THREADS = 2  # room for a stream that replaces one still finishing its last tick
FULL_STATE_EVERY_S = 60.0  # a delta stream still sends the whole state this often
MODBUS_PORT = 502
# Where a device not configured yet may be: the plant's LAN (RFC 1918, IPv6 ULA), link-local, the gateway itself.
LAN_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                        "169.254.0.0/16", "127.0.0.0/8", "fc00::/7", "fe80::/10",
                                                        "::1/128"))
REDACTED = "********"


class _UnguardedConfig:
    """A config access without `apply_change` (a test's fake): changes go through `update_section` as they
    are, with nothing to audit. The real ConfigStore is guarded."""

    def __init__(self, config: ConfigAccess):
        self._config = config

    @property
    def config(self) -> Any:
        return self._config.config

    def section_plain(self, section: str) -> Any:
        return self._config.section_plain(section)

    def update_section(self, section: str, data: Any) -> Any:
        return self._config.update_section(section, data)

    def apply_change(self, section: str, data: Any, may_change_admin_only: bool = True, role: str = "admin",
                     record: Callable[[Any], object] | None = None) -> ConfigChange:
        return ConfigChange(self._config.update_section(section, data), section, ())

    def secrets(self) -> list[str]:
        return []


def guarded(config: ConfigAccess) -> GuardedConfigAccess:
    return config if isinstance(config, GuardedConfigAccess) else _UnguardedConfig(config)


def _default_audit(ems: EmsFacade) -> AuditLog:
    """The audit log beside the config file when the runtime gives none (in memory for a fake config)."""
    path = getattr(ems.config, "path", None)
    return AuditLog(Path(path).parent / AUDIT_FILE if isinstance(path, Path) else None)


def secret_scrubber(secrets: Callable[[], list[str]]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Bottle plugin: every text a route returns (pages, JSON, event streams) with each stored secret replaced
    by ********. The config routes never show secrets anyway; this catches any other path (an error message
    quoting a URL with a key in it, a notification)."""
    def scrub(text: str, values: list[str]) -> str:
        for value in values:
            text = text.replace(value, REDACTED)
        return text

    def forms(values: list[str]) -> list[str]:
        out = set()
        for value in values:
            if len(value) >= 4:
                out |= {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
        return sorted(out, key=len, reverse=True)

    def plugin(callback: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            out = callback(*args, **kwargs)
            values = forms(secrets())
            if not values:
                return out
            if isinstance(out, str):
                return scrub(out, values)
            if isinstance(out, (bottle.HTTPResponse, bytes, dict)) or not hasattr(out, "__iter__"):
                return out

            def stream(items: Iterator[Any]) -> Iterator[Any]:
                try:
                    for item in items:
                        yield scrub(item, forms(secrets())) if isinstance(item, str) else item
                finally:
                    close = getattr(items, "close", None)
                    if close is not None:
                        close()
            return stream(iter(out))
        return wrapper
    return plugin


def connection_test_refusal(device: ModbusDeviceConfig, configured: Sequence[ModbusDeviceConfig],
                            profile: Profile) -> i18n.Msg | None:
    """Why `/api/modbus/test` must not try `device` (None: it may). The test is a commissioning tool, not a
    port scanner for whoever may use it: it reaches a configured device's own address, or — for a device
    not configured yet — a literal address in a private, link-local or loopback range on the Modbus port
    (502, or the profile's default port). Host names are not resolved (no DNS-based detours), and serial
    ports must be character devices under /dev."""
    if device.connection_type == "rtu":
        port = device.serial_port or ""
        if any(d.connection_type == "rtu" and d.serial_port == port for d in configured):
            return None
        return device_path_problem(port, must_exist=True)
    host = (device.host or "").strip()
    if any(d.connection_type == "tcp" and (d.host or "").strip().lower() == host.lower() and d.port == device.port
           for d in configured):
        return None
    allowed_ports = {MODBUS_PORT, profile.connection.port} | {d.port for d in configured if d.host == host}
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return i18n.Msg(i18n.mark("{host} is not a configured device: a new device is tested by its IP address "
                                  "(allowed: a configured device, or a private/link-local address on the Modbus "
                                  "port)"), {"host": repr(host[:64])})
    if not any(ip in network for network in LAN_NETWORKS) or str(ip).endswith(".255"):
        return i18n.Msg(i18n.mark("{host} is not a private or link-local address (allowed: the LAN of the plant)"),
                        {"host": host[:64]})
    if ip.is_loopback and not any((d.host or "").strip() == host for d in configured):
        return i18n.Msg(i18n.mark("{host} is the gateway itself: only configured devices there may be tested"),
                        {"host": host[:64]})
    if device.port not in allowed_ports:
        return i18n.Msg(i18n.mark("port {port} is not a Modbus port (allowed: {allowed}, or a configured device's)"),
                        {"port": device.port, "allowed": [str(p) for p in sorted(allowed_ports)]})
    return None


def create_app(ems: EmsFacade) -> bottle.Bottle:
    app = bottle.Bottle(catchall=True)
    # Bottle wraps the first plugin installed around the later ones: the scrubber sees every final body, the
    # error plugin answers errors of the auth checks too (a header that is not UTF-8: 400).
    config = guarded(ems.config)
    app.install(gzip_plugin)  # outermost: compresses what the scrubber has cleaned
    app.install(revalidation_plugin)  # tags the cleaned body; a reload that has it gets a 304
    app.install(secret_scrubber(config.secrets))
    app.install(error_plugin)
    app.install(AuthPlugin(ems.security))
    install_security_headers(app)
    web = web_dir()
    lookup = [str(web / "templates")]
    static_files = StaticFiles(web / "static")
    audit = ems.audit if ems.audit is not None else _default_audit(ems)
    web_cfg = lambda: ems.config.config.web
    sse = StreamSlots(capacity=max(4, web_cfg().threads), per_user=lambda: web_cfg().sse_per_user)
    app.config[SSE_SLOTS_KEY] = sse.capacity + SSE_SPARE_THREADS
    app.config[LIMITS_KEY] = lambda: ConnectionLimits(web_cfg().request_timeout_s, web_cfg().max_connections_per_address)
    hosts = HostGuard(lambda: web_cfg().allowed_hosts, lambda: web_cfg().host)
    modbus_test_lock = threading.Lock()

    @app.hook("before_request")
    def check_host_and_origin() -> None:
        """421 for a Host that is not the gateway's (DNS rebinding), 403 for a cross-site change."""
        refusal: tuple[int, str, str | None] | None
        try:
            host = header("Host")
            refusal = (None if hosts.host_allowed(host) else (421, f"this EMS does not answer to {str(host)[:80]!r}; "
                                                                   "open it by its address or add the name to "
                                                                   "web.allowed_hosts", "Host"))
            if refusal is None:
                why = hosts.cross_site(bottle.request.method, host, header("Origin"), header("Sec-Fetch-Site"))
                refusal = None if why is None else (403, f"cross-site request refused ({why})", "Origin")
        except ApiError as exc:
            refusal = (exc.status, exc.message, exc.field)
        if refusal is not None:
            status, message, field = refusal
            headers = {"Content-Type": "application/json", "Cache-Control": "no-store", **SECURITY_HEADERS}
            raise bottle.HTTPResponse(json.dumps({"error": message, "field": field}), status, headers)

    def page(name: str, title: str, active: str, **extra: Any) -> str:
        """A page in the reader's language: `_` translates in the template, the catalog script in the page's."""
        auth = current_auth()
        me: dict[str, Any] = ems.security.whoami(auth) if auth.ok else {"authenticated": False, "actions": []}
        lang = request_language()
        _ = i18n.translator(lang)
        nav = [(path, _(label)) for path, label, action in NAV if action in me["actions"]]
        bottle.response.set_header("Vary", "Accept-Language, Cookie")
        # Not written to the browser's disk cache (pages only some roles see, the sign-in pages), unless the
        # revalidation plugin finds the route one every reader may see: then `private, no-cache` with an ETag.
        bottle.response.set_header("Cache-Control", "no-store")
        # What base.tpl needs: a page template hands it on whole (`rebase('base.tpl', **base_env)`), since
        # Bottle gives a base template only the arguments of the rebase call.
        base_env: dict[str, Any] = dict(
            title=_(title), active=active, nav=nav, version=__version__, me=me,
            csrf_token=me.get("csrf_token") or "", _=_, lang=lang, languages=i18n.LANGUAGES,
            lang_cookie=i18n.LANG_COOKIE, i18n_src=f"/i18n/{lang}.js?v={i18n.script_version(lang)}",
            static=static_files.url, site_name=ems.config.config.site.name,
            site_timezone=ems.config.config.site.timezone)
        return bottle.template(name, template_lookup=lookup, base_env=base_env, **base_env, **extra)

    @app.error(404)
    @app.error(405)
    @app.error(500)
    def error_page(err: bottle.HTTPError) -> str:
        for name, value in SECURITY_HEADERS.items():
            bottle.response.set_header(name, value)
        message = {404: "not found", 405: "method not allowed"}.get(err.status_code, "internal error")
        if bottle.request.path.startswith("/api/"):
            bottle.response.content_type = "application/json"
            return json.dumps({"error": f"{message}: {bottle.request.method} {bottle.request.path}"})
        lang = request_language()
        return bottle.template("error.tpl", template_lookup=lookup, code=err.status_code, message=message,
                               _=i18n.translator(lang), lang=lang, static=static_files.url)

    @app.get("/", action="read")
    def dashboard() -> str:
        return page("dashboard.tpl", "Dashboard", "/",
                    strategies=[(name, strategy.title) for name, strategy in STRATEGIES.items()])

    @app.get("/monitoring", action="read")
    def monitoring() -> str:
        sim = ems.simulator
        return page("monitoring.tpl", "Monitoring", "/monitoring", simulator=sim is not None,
                    devices=list(sim.device_names()) if sim else [])

    @app.get("/analytics", action="read")
    def analytics_page() -> str:
        return page("analytics.tpl", "Analytics", "/analytics")

    @app.get("/forecasts", action="read")
    def forecasts_page() -> str:
        return page("forecasts.tpl", "Forecasts", "/forecasts")

    @app.get("/settings", action="read")
    def settings_page() -> str:
        return page("settings.tpl", "Settings", "/settings")

    @app.get("/api/settings/form", action="read")
    def settings_form_api() -> str:
        """What the settings page needs in one request: the translated form, the stored values (secrets as
        {"set": …}) and what the caller may change."""
        principal = current_auth().principal
        strategies = [(name, strategy.title) for name, strategy in STRATEGIES.items()]
        sections = settings_form(request_language(), strategies)
        return _json({"sections": sections, "setup": setup_steps(request_language()),
                      "values": {s["name"]: ems.config.section_plain(s["name"]) for s in sections},
                      "may": {action: principal is not None and principal.can(action)
                              for action in ("configure", "configure_safety", "commission")}})

    @app.get("/setup", action="configure_safety")
    def setup_page() -> str:
        """The first-run setup: an own password, then site, battery, grid, devices and prices; skippable and
        resumable (each step saves as the settings page does)."""
        auth = current_auth()
        me = ems.security.whoami(auth)
        one_time = bool((me.get("user") or {}).get("one_time_credential"))
        return page("setup.tpl", "First-run setup", "/setup", one_time=one_time)

    @app.get("/help", action="read")
    def help_page() -> str:
        return page("help.tpl", "Help", "/help", document=i18n.document("help", request_language()))

    @app.get("/i18n/<lang>.js", action=None)
    def i18n_script(lang: str) -> Any:
        """The page scripts' catalog; kept for a year when asked for by its current version."""
        if lang not in i18n.LANGUAGES:
            raise bottle.HTTPError(404)
        bottle.response.content_type = "text/javascript; charset=utf-8"
        current = brequest.query.get("v") == i18n.script_version(lang)
        bottle.response.set_header("Cache-Control", IMMUTABLE if current else REVALIDATE)
        bottle.response.set_header("Vary", "Accept-Encoding")
        if accepts_gzip(header("Accept-Encoding")):
            bottle.response.set_header("Content-Encoding", "gzip")
            return i18n.script_body_gzip(lang)
        return i18n.script_body(lang)

    @app.get("/static/<path:path>", action=None)
    def static(path: str) -> Any:
        return static_files.respond(path, brequest.query.get("v"), header("Accept-Encoding"), header("If-None-Match"))

    @app.get("/api/health", action=None)
    def health() -> str:
        return _json({"status": "ok", "version": __version__})

    @app.get("/api/state", action="read")
    def state() -> str:
        bottle.response.set_header("Vary", "Accept-Language, Cookie")
        return _json(_in_words(state_json(ems.snapshot()), request_language()))

    @app.get("/api/notifications", action="read")
    def notifications() -> str:
        limit = int(number_query("limit", 50, 1, 500, integer=True))
        principal = current_auth().principal
        acked = ems.notifications.acknowledged(principal.user_id) if principal else 0
        items = ems.notifications.recent(limit)
        lang = request_language()
        bottle.response.set_header("Vary", "Accept-Language, Cookie")
        return _json({"notifications": [n.to_json(lang) for n in items], "acknowledged_up_to": acked,
                      "unacknowledged": sum(1 for n in items if n.id > acked and n.level != "info")})

    def change_config(section: str, data: Any) -> list[FieldChange]:
        """Apply a section change as the caller: admin-only keys refused to others (403 naming the key),
        every change audited (who, when, from where, old → new) before it takes effect."""
        who = current_actor()
        principal = current_auth().principal
        may = principal is not None and principal.can("configure_safety")

        def record(change: Any) -> None:
            audit.record(who, "config", section, [(c.path, c.old, c.new) for c in change.changes])

        change = config.apply_change(section, data, may_change_admin_only=may, role=who.role, record=record)
        for c in change.changes:
            if c.admin_only:
                ems.notifications.add("warning", "config", i18n.mark("{user} changed {setting}: {old} → {new}"),
                                      user=who.user, setting=c.path, old=_short(c.old), new=_short(c.new))
        return list(change.changes)

    for section, paths in CONFIG_ROUTES.items():
        def get_section(section: str = section) -> str:
            return _json({section: ems.config.section_plain(section)})

        def set_section(section: str = section) -> str:
            changed = change_config(section, json_body(SECTION_BODY_BYTES.get(section, DEFAULT_SECTION_BODY_BYTES)))
            return _json({section: ems.config.section_plain(section), "saved": True,
                          "changed": [c.path for c in changed]})

        for path in paths:
            app.route(path, "GET", get_section, action="read")
            app.route(path, "POST", set_section, action="configure")

    @app.get("/api/audit", action="audit")
    def audit_entries() -> str:
        limit = int(number_query("limit", 200, 1, 5000, integer=True))
        return _json({"entries": audit.recent(limit), "chain": audit.verify(),
                      "export": {"csv": "/api/audit/export?format=csv", "jsonl": "/api/audit/export?format=jsonl"}})

    @app.get("/api/audit/export", action="audit")
    def audit_export() -> Any:
        fmt = brequest.query.get("format") or "csv"
        if fmt not in ("csv", "jsonl"):
            raise ApiError(400, i18n.mark("must be csv or jsonl (got {got})"), "format", got=repr(fmt[:20]))
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        bottle.response.content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
        bottle.response.set_header("Content-Disposition", f'attachment; filename="phoenyra-audit-{stamp}.{fmt}"')
        bottle.response.set_header("Cache-Control", "no-store")
        return audit.export_csv() if fmt == "csv" else audit.export_jsonl()

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
            raise ApiError(400, i18n.mark("must be one of {allowed} (got {got})"), "strategy",
                           allowed=", ".join(STRATEGY_NAMES), got=repr(str(name)[:40]))
        change_config("strategy", {**ems.config.section_plain("strategy"), "mode": "manual", "current": name})
        return _json({"strategy": ems.config.section_plain("strategy")})

    @app.post("/api/strategy/auto", action="operate")
    def set_auto() -> str:
        json_body()  # bounded and checked like every body, though it carries nothing
        change_config("strategy", {**ems.config.section_plain("strategy"), "mode": "auto"})
        return _json({"strategy": ems.config.section_plain("strategy")})

    @app.post("/api/simulator/events", action="operate")
    def simulator_event() -> str:
        if ems.simulator is None:
            raise ApiError(409, i18n.mark("the simulator is off: events only drive the simulated plant"),
                           "simulator.enabled")
        return _json({"applied": ems.simulator.post_event(json_body())})

    @app.get("/api/modbus/profiles", action="read")
    def modbus_profiles() -> str:
        key = brequest.query.get("profile")
        profiles = ems.profiles()
        if key:
            if key not in profiles:
                raise ApiError(404, i18n.mark("no profile {key} (allowed: {allowed})"), "profile",
                               key=repr(key[:64]), allowed=", ".join(sorted(profiles)))
            return _json({"profile": profile_to_json(profiles[key])})
        return _json({"profiles": [{"key": k, "vendor": p.meta.vendor, "model": p.meta.model, "kind": p.meta.kind,
                                    "verified": p.meta.verified, "description": p.meta.description,
                                    "notes": p.meta.notes, "sunspec": p.sunspec is not None,
                                    "defaults": {"port": p.connection.port, "unit_id": p.connection.unit_id,
                                                 "baudrate": p.connection.baudrate, "parity": p.connection.parity,
                                                 "stopbits": p.connection.stopbits,
                                                 "poll_interval_s": p.connection.poll_interval_s,
                                                 "timeout_s": p.connection.timeout_s}}
                                   for k, p in sorted(profiles.items())]})

    @app.get("/api/modbus/serial_ports", action="commission")
    def modbus_serial_ports() -> str:
        """The gateway's serial ports for the wizard's RTU picker (a pty or another /dev path may be typed)."""
        return _json({"serial_ports": serial_ports()})

    @app.post("/api/modbus/test", action="commission")
    def modbus_test() -> str:
        device = parse_config(ModbusDeviceConfig, json_body(), "device")
        profiles = ems.profiles()
        if device.profile not in profiles:
            raise ApiError(400, i18n.mark("{profile} is not a known profile (allowed: {allowed})"), "device.profile",
                           profile=repr(device.profile), allowed=", ".join(sorted(profiles)))
        try:
            profile = with_overrides(profiles[device.profile], device.register_overrides)
        except OverrideError as exc:
            raise ApiError(400, exc.message, f"device.register_overrides.{exc.key}") from exc
        refusal = connection_test_refusal(device, ems.config.config.modbus, profile)
        if refusal:
            raise ApiError(403, refusal.msgid, "device.serial_port" if device.connection_type == "rtu" else "device.host",
                           **refusal.params)
        if not modbus_test_lock.acquire(blocking=False):
            raise ApiError(409, i18n.mark("another connection test is running; try again when it has finished"),
                           "device")
        try:
            return _json(ems.test_modbus(device))
        finally:
            modbus_test_lock.release()

    @app.post("/api/notifications/ack", action="own_account")
    def ack_notifications() -> str:
        body = json_body()
        up_to = body.get("up_to_id") if isinstance(body, dict) else None
        if isinstance(up_to, bool) or not isinstance(up_to, int) or up_to < 0:
            raise ApiError(400, i18n.mark("must be a notification id (got {got})"), "up_to_id",
                           got=repr(str(up_to)[:40]))
        principal = current_auth().principal
        assert principal is not None
        ems.notifications.acknowledge(principal.user_id, up_to)
        return _json({"acknowledged_up_to": ems.notifications.acknowledged(principal.user_id)})

    @app.get("/api/events", action="read")
    def events() -> Iterator[str]:
        principal = current_auth().principal
        assert principal is not None
        slot = sse.open(principal.user_id)
        if slot == "user":
            bottle.response.set_header("Retry-After", "2")
            raise ApiError(429, i18n.mark("you have {n} live views open already; one is closing, try again in a "
                                          "moment"), "events", n=web_cfg().sse_per_user)
        if isinstance(slot, str):
            bottle.response.set_header("Retry-After", "5")
            raise ApiError(503, i18n.mark("no room for another live view right now; try again shortly"), "events")
        bottle.response.content_type = "text/event-stream"
        bottle.response.set_header("Cache-Control", "no-cache")
        bottle.response.set_header("X-Accel-Buffering", "no")
        interval_s = ems.config.config.web.sse_interval_s
        ticks = max(1, math.ceil(interval_s / 0.25))
        # ?deltas=1 (the pages): the whole state first and every FULL_STATE_EVERY_S, changes in between.
        deltas = brequest.query.get("deltas") == "1"
        full_every = max(1, round(FULL_STATE_EVERY_S / interval_s))
        lang = request_language()  # read here: the stream runs after the request's context

        def stream() -> Iterator[str]:
            sent: dict[str, Any] | None = None
            count = 0
            try:
                yield "retry: 3000\n\n"
                while not (ems.stopping.is_set() or slot.ended.is_set()):
                    key = ems.override_key()
                    state = _in_words(state_json(ems.snapshot()), lang)
                    if deltas and sent is not None and count % full_every:
                        yield f"event: delta\ndata: {json.dumps(delta(sent, state), allow_nan=False)}\n\n"
                    else:
                        yield f"event: state\ndata: {json.dumps(state, allow_nan=False)}\n\n"
                    sent, count = state, count + 1
                    for _ in range(ticks):  # the EMS stopping or the place given away ends the stream promptly
                        if ems.stopping.wait(interval_s / ticks) or slot.ended.is_set():
                            break
                        if ems.override_key() != key:
                            break  # a DSO order or a safety rule: on screen now, not at the next tick
            finally:
                slot.close()
        return stream()

    install_account_routes(app, ems, page, audit)
    install_history_routes(app, ems)
    install_mqtt_routes(app, ems)
    install_openapi(app)  # last: describes the routes installed above
    check_declared(app)
    return app


def _in_words(state: dict[str, Any], lang: str) -> dict[str, Any]:
    """The state with the safety reasons in words in the reader's language beside the technical texts:
    `power_control.reason_words[i]` says what `reason_codes[i]` means."""
    pc = state.get("power_control")
    if isinstance(pc, dict):
        codes = pc.get("reason_codes")
        pc["reason_words"] = reason_words([str(c) for c in codes] if isinstance(codes, list) else [], lang)
    return state


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit - 1] + "…"

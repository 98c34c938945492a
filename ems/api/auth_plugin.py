"""Every route declares one action (`read`, `operate`, …, or None for public); this plugin enforces it.

A route without a declaration is a programming error caught when the app is created, so no endpoint
can be added without deciding who may use it. API calls get JSON 401/403/429; pages redirect to /login.
Security headers go on every response — routes, static files, errors — from an `after_request` hook
(`install_security_headers`): a static file's response object would otherwise replace them.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable
from urllib.parse import quote

import bottle

from .. import i18n
from ..audit import Actor
from ..resources import web_dir
from ..users import permissions
from ..users.auth import CSRF_FORM_FIELD, CSRF_HEADER, SESSION_COOKIE, AuthRequest, AuthResult, Security
from .http import header, request_language

log = logging.getLogger(__name__)

UNDECLARED = object()
AUTH_KEY = "ems.auth"

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
                                "form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def route_action(route: bottle.Route) -> Any:
    return route.config.get("action", UNDECLARED)


def check_declared(app: bottle.Bottle) -> None:
    """Refuse to build an app with a route that has no permission decision or an unknown action."""
    undeclared = [f"{r.method} {r.rule}" for r in app.routes if route_action(r) is UNDECLARED]
    if undeclared:
        raise RuntimeError(f"routes without a permission decision: {undeclared}")
    unknown = permissions.unknown_actions(route_action(r) for r in app.routes)
    if unknown:
        raise RuntimeError(f"routes with unknown actions: {sorted(unknown)}")


def install_security_headers(app: bottle.Bottle) -> None:
    """SECURITY_HEADERS on every response of `app`, whatever produced it."""
    def add_headers() -> None:
        for name, value in SECURITY_HEADERS.items():
            bottle.response.set_header(name, value)
    app.add_hook("after_request", add_headers)


def current_auth() -> AuthResult:
    return bottle.request.environ.get(AUTH_KEY) or AuthResult(401, "login required")


def client_address() -> str:
    # Not request.remote_addr: that trusts X-Forwarded-For, which would let anyone dodge the login throttle.
    return str(bottle.request.environ.get("REMOTE_ADDR") or "unknown")


def current_actor() -> Actor:
    """Who makes this request, for the audit log: the signed-in user (or "anonymous") and the socket peer."""
    principal = current_auth().principal
    if principal is None:
        return Actor("anonymous", role="anonymous", via="none", remote_addr=client_address())
    return Actor(principal.username, principal.user_id, principal.role, principal.via, client_address())


def is_tls() -> bool:
    return bottle.request.urlparts.scheme == "https"


class AuthPlugin:
    name = "ems_auth"
    api = 2

    def __init__(self, security: Security):
        self.security = security

    def apply(self, callback: Callable[..., Any], route: bottle.Route) -> Callable[..., Any]:
        action = route_action(route)
        if action is UNDECLARED:
            return callback  # check_declared refuses such an app before it serves anything

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            request = bottle.request
            csrf = header(CSRF_HEADER)  # ApiError 400 for a value that is not UTF-8 (error_plugin answers it)
            if csrf is None and request.content_type.startswith("application/x-www-form-urlencoded"):
                csrf = request.forms.get(CSRF_FORM_FIELD)
            result = self.security.authorize(AuthRequest(
                method=request.method, client_addr=client_address(),
                session_cookie=request.get_cookie(SESSION_COOKIE),
                authorization=header("Authorization"), csrf_token=csrf), action)
            if result.clear_session_cookie:
                bottle.response.delete_cookie(SESSION_COOKIE, path="/")
            if not result.ok:
                return self._refuse(result)
            request.environ[AUTH_KEY] = result
            return callback(*args, **kwargs)

        return wrapper

    @staticmethod
    def _refuse(result: AuthResult) -> Any:
        path = bottle.request.path
        page = not path.startswith("/api/") and bottle.request.method == "GET"
        if page and result.status == 401:
            target = path + (f"?{bottle.request.query_string}" if bottle.request.query_string else "")
            return bottle.redirect(f"/login?next={quote(target, safe='/')}", 303)
        bottle.response.status = result.status
        if page:
            lang = request_language()
            return bottle.template("error.tpl", template_lookup=[str(web_dir() / "templates")],
                                   code=result.status, message=result.message, _=i18n.translator(lang), lang=lang)
        bottle.response.content_type = "application/json"
        for name, value in result.headers().items():
            bottle.response.set_header(name, value)
        return json.dumps({"error": result.message, "field": result.field})

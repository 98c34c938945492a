"""Login, logout, registration, own account, API tokens and user administration (pages + JSON API).

Each route declares its action for the AuthPlugin; the flows themselves live in `ems.users.auth.Security`.
"""
from __future__ import annotations

import logging
from typing import Any, Callable
from urllib.parse import urlparse

import bottle

from ..errors import ApiError
from ..users.auth import SESSION_COOKIE, AuthResult
from .auth_plugin import client_address, current_auth, is_tls
from .facade import EmsFacade
from .http import json_body
from .http import json_response as _json

log = logging.getLogger(__name__)

Page = Callable[..., str]


def _body() -> dict[str, Any]:
    """A JSON object body, or the form fields of an HTML form post."""
    request = bottle.request
    if request.content_type.startswith("application/json"):
        body = json_body()
        if not isinstance(body, dict):
            raise ApiError(400, "must be a JSON object", "body")
        return body
    return {k: request.forms.getunicode(k) for k in request.forms.keys()}


def _safe_next(target: str | None) -> str:
    """Only same-site paths: `next=//evil.example` must not become an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _same_origin() -> bool:
    origin = bottle.request.get_header("Origin")
    if not origin or origin == "null":
        return origin is None
    return urlparse(origin).netloc == bottle.request.get_header("Host")


def _apply_cookie(ems: EmsFacade, result: AuthResult) -> None:
    if result.set_session_cookie:
        bottle.response.set_cookie(SESSION_COOKIE, result.set_session_cookie,
                                   **ems.security.cookie_options(secure=is_tls()))
    elif result.clear_session_cookie:
        bottle.response.delete_cookie(SESSION_COOKIE, path="/")


def install(app: bottle.Bottle, ems: EmsFacade, page: Page) -> None:
    security = ems.security
    wants_html = lambda: not bottle.request.content_type.startswith("application/json")

    @app.get("/login", action=None)
    def login_page() -> str:
        if current_auth().principal is not None:
            return bottle.redirect(_safe_next(bottle.request.query.get("next")), 303)
        return page("login.tpl", "Log in", "/login", next=_safe_next(bottle.request.query.get("next")), error=None,
                    allow_registration=ems.config.config.web.allow_registration)

    @app.post("/login", action=None)
    def login() -> Any:
        if not _same_origin():
            raise ApiError(403, "cross-site login refused", "Origin")
        body = _body()
        result = security.login(body.get("username"), body.get("password"), client_address(),
                                bottle.request.get_cookie(SESSION_COOKIE))
        for header, value in result.headers().items():
            bottle.response.set_header(header, value)
        _apply_cookie(ems, result)
        if wants_html():
            if result.ok:
                return bottle.redirect(_safe_next(body.get("next")), 303)
            bottle.response.status = result.status
            return page("login.tpl", "Log in", "/login", next=_safe_next(body.get("next")), error=result.message,
                        allow_registration=ems.config.config.web.allow_registration,
                        username=str(body.get("username") or "")[:64])
        if not result.ok:
            return _json({"error": result.message, "field": result.field}, result.status)
        return _json(security.whoami(result))

    @app.post("/logout", action=None)
    def logout() -> Any:
        # POST only: a GET could be triggered by any page (<img src=/logout>).
        if not _same_origin():
            raise ApiError(403, "cross-site logout refused", "Origin")
        _apply_cookie(ems, security.logout(bottle.request.get_cookie(SESSION_COOKIE)))
        if wants_html():
            return bottle.redirect("/login", 303)
        return _json({"logged_out": True})

    @app.get("/register", action=None)
    def register_page() -> str:
        if not ems.config.config.web.allow_registration:
            bottle.response.status = 403
            return page("error.tpl", "Registration closed", "/register", code=403,
                        message="Self-registration is turned off; ask an administrator for an account.")
        return page("register.tpl", "Register", "/register", error=None)

    @app.post("/register", action=None)
    def register() -> Any:
        if not ems.config.config.web.allow_registration:
            raise ApiError(403, "self-registration is turned off", "web.allow_registration")
        if not _same_origin():
            raise ApiError(403, "cross-site registration refused", "Origin")
        body = {k: v for k, v in _body().items() if k in ("username", "password", "name", "email")}
        try:
            user = security.users.create_from_json(body, force_role="viewer")
        except ApiError as exc:
            if wants_html():
                bottle.response.status = exc.status
                return page("register.tpl", "Register", "/register", error=f"{exc.field}: {exc.message}",
                            form={k: str(body.get(k) or "")[:100] for k in ("username", "name", "email")})
            raise
        ems.notifications.add("info", "users", f"new account '{user.username}' registered (viewer)")
        if wants_html():
            return bottle.redirect("/login", 303)
        return _json({"user": user.to_json()}, 201)

    # -- own account --------------------------------------------------------------------------------------
    @app.get("/api/me", action="own_account")
    def me() -> str:
        return _json(security.whoami(current_auth()))

    @app.post("/api/me/password", action="own_account")
    def change_own_password() -> str:
        body = _body()
        auth = current_auth()
        assert auth.principal is not None
        result = security.change_own_password(auth.principal, body.get("current_password"),
                                              body.get("new_password"), client_address())
        if not result.ok:
            for header, value in result.headers().items():
                bottle.response.set_header(header, value)
            return _json({"error": result.message, "field": result.field}, result.status)
        _apply_cookie(ems, result)
        return _json({"changed": True, "csrf_token": result.csrf_token})

    @app.get("/api/me/tokens", action="own_account")
    def my_tokens() -> str:
        principal = current_auth().principal
        assert principal is not None
        return _json({"tokens": [t.to_json() for t in security.tokens.list_for_user(principal.user_id)]})

    @app.post("/api/me/tokens", action="own_account")
    def create_token() -> str:
        principal = current_auth().principal
        assert principal is not None
        plaintext, token = security.tokens.create(principal.user_id, _body().get("name", "API token"))
        return _json({"token": plaintext, "info": token.to_json(),
                      "note": "shown once: store it now"}, 201)

    @app.delete("/api/me/tokens/<token_id>", action="own_account")
    def revoke_my_token(token_id: str) -> str:
        principal = current_auth().principal
        assert principal is not None
        return _json({"revoked": security.tokens.revoke(token_id, user_id=principal.user_id).to_json()})

    # -- administration -----------------------------------------------------------------------------------
    @app.get("/users", action="manage_users")
    def users_page() -> str:
        return page("users.tpl", "Users", "/users")

    @app.get("/api/users", action="manage_users")
    def list_users() -> str:
        return _json({"users": [u.to_json() for u in security.users.list_users()],
                      "tokens": [t.to_json() for t in security.tokens.list_all()]})

    @app.post("/api/users", action="manage_users")
    def create_user() -> str:
        user = security.users.create_from_json(_body())
        ems.notifications.add("info", "users", f"account '{user.username}' created ({user.role})")
        return _json({"user": user.to_json()}, 201)

    @app.put("/api/users/<user_id:int>", action="manage_users")
    def update_user(user_id: int) -> str:
        return _json({"user": security.update_user(user_id, _body()).to_json()})

    @app.delete("/api/users/<user_id:int>", action="manage_users")
    def delete_user(user_id: int) -> str:
        user = security.delete_user(user_id)
        ems.notifications.add("info", "users", f"account '{user.username}' deleted")
        return _json({"deleted": user.to_json()})

    @app.post("/api/users/<user_id:int>/password", action="manage_users")
    def set_password(user_id: int) -> str:
        return _json({"user": security.set_password(user_id, _body().get("password")).to_json()})

    @app.delete("/api/tokens/<token_id>", action="manage_users")
    def revoke_token(token_id: str) -> str:
        return _json({"revoked": security.tokens.revoke(token_id).to_json()})

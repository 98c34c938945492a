"""Login, logout, registration, own account, API tokens and user administration (pages + JSON API).

Each route declares its action for the AuthPlugin; the flows themselves live in `ems.users.auth.Security`.
Cross-site posts (login CSRF, logout by another page) are refused for every route by the app's Origin check.
"""
from __future__ import annotations

import logging
from typing import Any, Callable
from urllib.parse import quote, unquote, urlsplit

import bottle

from .. import i18n
from ..audit import AuditLog
from ..errors import ApiError
from ..users.auth import SESSION_COOKIE, AuthResult
from .auth_plugin import client_address, current_actor, current_auth, is_tls
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
            raise ApiError(400, i18n.mark("must be a JSON object"), "body")
        return body
    return {k: request.forms.getunicode(k) for k in request.forms.keys()}


def _safe_next(target: Any) -> str:
    """Only a path on this site: `next=//evil.example` must not become an open redirect, nor anything a
    browser would read as one. Browsers drop tabs and newlines from URLs and read a backslash as a slash, so
    `/\t/evil.example` and `/\\evil.example` lead off-site: the target is judged after percent-decoding
    (repeatedly), and refused ("/" instead) if it holds a control character, whitespace or a backslash,
    starts with `//`, or has a scheme or a host."""
    if not isinstance(target, str) or not target.startswith("/") or len(target) > 2000:
        return "/"
    decoded = target
    for _ in range(3):
        once = unquote(decoded)
        if once == decoded:
            break
        decoded = once
    else:
        return "/"  # still changing after three rounds: nothing a real link needs
    for text in (target, decoded):
        if any(ord(ch) < 0x21 or ord(ch) == 0x7F or ch in "\\" or ch.isspace() for ch in text) \
                or text.startswith("//") or not text.startswith("/"):
            return "/"
        parts = urlsplit(text)
        if parts.scheme or parts.netloc:
            return "/"
    return quote(target, safe=_PRINTABLE_ASCII)  # a Location header is ASCII; é becomes %C3%A9


_PRINTABLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))


def _apply_cookie(ems: EmsFacade, result: AuthResult) -> None:
    if result.set_session_cookie:
        bottle.response.set_cookie(SESSION_COOKIE, result.set_session_cookie,
                                   **ems.security.cookie_options(secure=is_tls()))
    elif result.clear_session_cookie:
        bottle.response.delete_cookie(SESSION_COOKIE, path="/")


def install(app: bottle.Bottle, ems: EmsFacade, page: Page, audit: AuditLog | None = None) -> None:
    """Account routes; user administration is recorded in `audit` (who did what to which account)."""
    security = ems.security
    wants_html = lambda: not bottle.request.content_type.startswith("application/json")

    def record(field: str, old: Any, new: Any) -> None:
        if audit is not None:
            audit.record(current_actor(), "users", "users", [(field, old, new)])

    @app.get("/login", action=None)
    def login_page() -> str:
        if current_auth().principal is not None:
            return bottle.redirect(_safe_next(bottle.request.query.getunicode("next")), 303)
        return page("login.tpl", "Log in", "/login", next=_safe_next(bottle.request.query.getunicode("next")),
                    error=None, allow_registration=ems.config.config.web.allow_registration,
                    registered=bottle.request.query.get("registered") == "1")

    @app.post("/login", action=None)
    def login() -> Any:
        body = _body()
        result = security.login(body.get("username"), body.get("password"), client_address(),
                                bottle.request.get_cookie(SESSION_COOKIE))
        for header, value in result.headers().items():
            bottle.response.set_header(header, value)
        _apply_cookie(ems, result)
        if wants_html():
            if result.ok:
                return bottle.redirect(_after_login(result, _safe_next(body.get("next"))), 303)
            bottle.response.status = result.status
            return page("login.tpl", "Log in", "/login", next=_safe_next(body.get("next")), error=result.message,
                        allow_registration=ems.config.config.web.allow_registration,
                        username=str(body.get("username") or "")[:64])
        if not result.ok:
            return _json({"error": result.message, "field": result.field}, result.status)
        return _json(security.whoami(result))

    def _after_login(result: AuthResult, target: str) -> str:
        """An admin still on the generated one-time password goes to the first-run setup, which asks for an
        own password first (and can be skipped); everyone else where they were going."""
        principal = result.principal
        user = security.users.get(principal.user_id) if principal is not None else None
        if user is not None and user.one_time_credential and principal is not None and principal.can("configure_safety"):
            return "/setup"
        return target

    @app.post("/language", action=None)
    def choose_language() -> Any:
        """The language switch (a form in the user menu and under the login page): remembered for a year in a
        cookie, for signed-in and signed-out pages alike. The Origin check refuses it cross-site."""
        body = _body()
        lang = body.get("lang")
        if lang not in i18n.LANGUAGES:
            raise ApiError(400, f"must be one of {', '.join(i18n.LANGUAGES)}", "lang")
        bottle.response.set_cookie(i18n.LANG_COOKIE, str(lang), max_age=365 * 24 * 3600, path="/", samesite="lax",
                                   secure=is_tls())
        if wants_html():
            return bottle.redirect(_safe_next(body.get("next")), 303)
        return _json({"lang": lang})

    @app.post("/logout", action=None)
    def logout() -> Any:
        # POST only: a GET could be triggered by any page (<img src=/logout>).
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
            raise ApiError(403, i18n.mark("self-registration is turned off; ask an administrator for an account"),
                           "web.allow_registration")
        body = {k: v for k, v in _body().items() if k in ("username", "password", "name", "email")}
        result, user = security.register(body, client_address())
        for name, value in result.headers().items():
            bottle.response.set_header(name, value)
        if user is not None:
            ems.notifications.add("info", "users", i18n.mark("new account '{user}' registered itself ({role})"),
                                  user=user.username, role=i18n.Msg("viewer"))
        if result.status != 202:
            if wants_html():
                bottle.response.status = result.status
                return page("register.tpl", "Register", "/register", error=f"{result.field or 'registration'}: "
                                                                           f"{result.message}",
                            form={k: str(body.get(k) or "")[:100] for k in ("username", "name", "email")})
            return _json({"error": result.message, "field": result.field}, result.status)
        # The same answer whether the name was free or taken: it must not tell which accounts exist.
        if wants_html():
            return bottle.redirect("/login?registered=1", 303)
        return _json({"registered": True, "message": result.message}, 202)

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
        ems.notifications.add("info", "users", i18n.mark("account '{user}' created ({role})"), user=user.username,
                              role=i18n.Msg(user.role))
        record(f"users[{user.username}]", None, {"role": user.role})
        return _json({"user": user.to_json()}, 201)

    @app.put("/api/users/<user_id:int>", action="manage_users")
    def update_user(user_id: int) -> str:
        body = _body()
        before = security.users.get(user_id)
        user = security.update_user(user_id, body)
        for key in ("role", "disabled"):
            if before is not None and getattr(before, key) != getattr(user, key):
                record(f"users[{user.username}].{key}", getattr(before, key), getattr(user, key))
        return _json({"user": user.to_json()})

    @app.delete("/api/users/<user_id:int>", action="manage_users")
    def delete_user(user_id: int) -> str:
        user = security.delete_user(user_id)
        ems.notifications.add("info", "users", i18n.mark("account '{user}' deleted"), user=user.username)
        record(f"users[{user.username}]", {"role": user.role}, None)
        return _json({"deleted": user.to_json()})

    @app.post("/api/users/<user_id:int>/password", action="manage_users")
    def set_password(user_id: int) -> str:
        user = security.set_password(user_id, _body().get("password"))
        record(f"users[{user.username}].password", "set", "changed")
        return _json({"user": user.to_json()})

    @app.delete("/api/tokens/<token_id>", action="manage_users")
    def revoke_token(token_id: str) -> str:
        return _json({"revoked": security.tokens.revoke(token_id).to_json()})

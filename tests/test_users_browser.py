"""Users, roles and the user menu as people see them in a real browser (headless Chromium).

Every test also watches the browser: no console errors (a CSP violation is one), no script errors, no
JavaScript dialogs, and no request to any host but the appliance.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from appliance import Session, create_user, demo_config
from browser import Watch, chromium_page, login_through_form
from support import wait_until

pytestmark = pytest.mark.browser

XSS_NAME = '<img src=x onerror=alert(1)>'
OPERATOR_PW = "tidal-ferry-9-lantern"
VIEWER_PW = "copper-owl-42-meadow"
NEW_PW = "granite-kite-17-harbour"


def cookie_header(page: Any) -> str:
    cookies = [c for c in page.context.cookies() if c["name"] == "ems_session"]
    assert cookies, "the login set the session cookie"
    return f"ems_session={cookies[0]['value']}"


def test_admin_logs_in_through_the_form_and_the_menu_shows_role_rights_and_alerts(ems_factory, tmp_path):
    # A DSO trip from the first second: the EMS reports it as a warning or an error.
    ems = ems_factory(demo_config(simulator={"dso_script": [{"at_s": 0, "mode": "trip"}]}))
    admin = ems.login()

    def notifications() -> list[dict[str, Any]]:
        return admin.request("GET", "/api/notifications")[1]["notifications"]

    alerts = wait_until(lambda: [n for n in notifications() if n["level"] in ("warning", "error")], 10)
    assert any("trip" in n["message"].lower() for n in alerts)

    with chromium_page() as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, "admin", ems.admin_password)
        assert page.locator("meta[name=csrf-token]").get_attribute("content")
        assert page.locator("[data-testid=conn-status]").count() == 1, "the dashboard streams live data"

        button = page.locator("[data-testid=user-menu-button]")
        panel = page.locator("[data-testid=user-menu-panel]")
        assert button.get_attribute("aria-expanded") == "false" and panel.is_hidden()
        badge = page.locator("[data-testid=notif-badge]")
        expect(badge).to_have_text(str(len(alerts)))

        button.focus()
        page.keyboard.press("Enter")
        assert button.get_attribute("aria-expanded") == "true" and panel.is_visible()
        assert page.inner_text("[data-testid=menu-role]") == "admin"
        assert page.inner_text("[data-testid=menu-username]") == "admin"
        rights = page.locator("[data-testid=menu-rights] li")
        assert sorted(rights.evaluate_all("els => els.map(e => e.dataset.action)")) == \
            ["audit", "commission", "configure", "configure_safety", "manage_users", "operate", "own_account", "read"]
        assert page.locator("[data-testid=menu-users]").get_attribute("href") == "/users"
        assert page.locator("[data-testid=menu-help]").get_attribute("href") == "/help"

        items = page.locator("[data-testid=notif]")
        expect(items.first).to_be_visible()
        shown = items.evaluate_all(
            "els => els.map(e => [Number(e.dataset.id), e.dataset.level,"
            " e.querySelector('.notif-message').textContent])")
        by_id = {n["id"]: n for n in notifications()}
        assert [(by_id[i]["level"], by_id[i]["message"]) for i, _, _ in shown] == [(lv, m) for _, lv, m in shown]
        assert {n["id"] for n in alerts} <= {i for i, _, _ in shown}
        stamps = [by_id[i]["ts"] for i, _, _ in shown]
        assert stamps == sorted(stamps, reverse=True), "newest first"
        page.screenshot(path=str(tmp_path / "menu-admin.png"))
        assert badge.is_hidden(), "opening the menu marks the alerts as seen"

        page.keyboard.press("Escape")
        assert panel.is_hidden() and button.get_attribute("aria-expanded") == "false"
        assert page.evaluate("document.activeElement.id") == "user-menu-button", "focus returns to the button"
        page.reload(wait_until="load")
        # The notifications poll has answered once the badge is drawn from it (it then carries a level).
        page.wait_for_function("() => document.getElementById('notif-badge').hasAttribute('data-level')",
                               timeout=15000)
        assert page.locator("[data-testid=notif-badge]").is_hidden(), "seen warnings stay seen"
        watch.assert_clean()


def test_viewer_sees_no_controls_that_would_change_anything(ems_factory, tmp_path):
    ems = ems_factory()
    admin = ems.login()
    create_user(admin, "olga", OPERATOR_PW, "operator", "Olga Operator")
    create_user(admin, "vera", VIEWER_PW, "viewer", "Vera Viewer")
    with chromium_page() as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, "vera", VIEWER_PW)
        page.click("[data-testid=user-menu-button]")
        assert page.inner_text("[data-testid=menu-role]") == "viewer"
        assert page.inner_text("[data-testid=menu-name]") == "Vera Viewer"
        assert page.locator("[data-testid=menu-users]").count() == 0
        assert page.locator("nav a[href='/users']").count() == 0
        rights = page.locator("[data-testid=menu-rights] li").evaluate_all("els => els.map(e => e.dataset.action)")
        assert sorted(rights) == ["own_account", "read"]

        # Outside the user menu and the own-account dialog the viewer's dashboard has no control at all.
        outside = page.locator("form, button, input, select, textarea").evaluate_all(
            "els => els.filter(e => !e.closest('#user-menu, #account-dialog')).map(e => e.outerHTML)")
        assert outside == []
        # Inside them: the logout form, the language switch, and forms for the viewer's own account (allowed to
        # every role).
        forms = page.locator("form").evaluate_all(
            "els => els.map(e => ({'/logout': 'logout', '/language': 'language'})[e.getAttribute('action')]"
            " || e.dataset.requires)")
        assert "logout" in forms and "language" in forms
        assert set(forms) <= {"logout", "language", "own_account"}, forms
        page.screenshot(path=str(tmp_path / "menu-viewer.png"))

        watch.expect_refusal(403, ems.base_url + "/users")
        watch.expect_refusal(404, ems.base_url + "/favicon.ico")  # the browser's probe on that bare refusal
        response = page.goto(ems.base_url + "/users", wait_until="load")
        assert response is not None and response.status == 403
        assert page.locator("[data-testid=users-table]").count() == 0

        operator = page.context.browser.new_page()
        op_watch = Watch(operator)
        login_through_form(operator, ems.base_url, "olga", OPERATOR_PW)
        operator.click("[data-testid=user-menu-button]")
        assert operator.inner_text("[data-testid=menu-role]") == "operator"
        assert operator.locator("[data-testid=menu-users]").count() == 0, "operators do not manage users"
        op_watch.assert_clean()
        watch.assert_clean()


def test_admin_manages_users_in_the_page_and_html_in_names_stays_text(ems_factory, tmp_path):
    ems = ems_factory()
    admin = ems.login()
    with chromium_page() as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, "admin", ems.admin_password)
        page.goto(ems.base_url + "/users", wait_until="load")
        page.locator("[data-testid=user-row][data-username=admin]").wait_for()
        form = page.locator("[data-testid=create-user-form]")
        watch.expect_refusal(400, ems.base_url + "/api/users")

        # A refused password is explained next to the password field, and nothing is created.
        page.fill("[data-testid=new-username]", "mallory")
        page.fill("[data-testid=new-name]", XSS_NAME)
        page.fill("[data-testid=new-password]", "password123")
        page.click("[data-testid=create-user]")
        password_error = form.locator("[data-error-for=password]")
        password_error.wait_for(state="visible")
        assert "common" in password_error.inner_text()
        assert page.locator("[data-testid=user-row][data-username=mallory]").count() == 0

        page.fill("[data-testid=new-password]", VIEWER_PW)
        page.select_option("[data-testid=new-role]", "operator")
        page.click("[data-testid=create-user]")
        row = page.locator("[data-testid=user-row][data-username=mallory]")
        row.wait_for()
        assert row.locator(".user-name").inner_text() == XSS_NAME
        assert page.locator("main img").count() == 0, "the name's markup must not become an element"
        assert row.locator("[data-testid=role-select]").input_value() == "operator"

        # Change the role, then disable: the server has it, and the row says so.
        row.locator("[data-testid=role-select]").select_option("viewer")
        expect(page.locator("#users-status")).to_contain_text("now viewer")
        row.locator("[data-testid=toggle-disabled]").click()
        expect(row.locator("[data-testid=user-state]")).to_have_text("disabled")
        _, users = admin.request("GET", "/api/users")
        mallory = next(u for u in users["users"] if u["username"] == "mallory")
        assert (mallory["role"], mallory["disabled"]) == ("viewer", True)

        # Setting a password: a refused one is explained next to its field; an accepted one works at once.
        row.locator("[data-testid=set-password]").click()
        watch.expect_refusal(400, f"{ems.base_url}/api/users/{mallory['id']}/password")
        pw_form = page.locator("[data-testid=password-form][data-username=mallory]")
        pw_form.locator("input[type=password]").fill("short")
        pw_form.locator("button[type=submit]").click()
        pw_error = pw_form.locator("[data-error-for=password]")
        pw_error.wait_for(state="visible")
        assert "at least 10 characters" in pw_error.inner_text()
        pw_form.locator("input[type=password]").fill(NEW_PW)
        pw_form.locator("button[type=submit]").click()
        expect(page.locator("#users-status")).to_contain_text("New password")

        create_user(admin, "second", OPERATOR_PW, "operator")
        page.reload(wait_until="load")
        page.locator("[data-testid=user-row][data-username=second]").wait_for()
        page.screenshot(path=str(tmp_path / "users.png"), full_page=True)

        # Delete needs a second click; then the account is gone.
        delete = page.locator("[data-testid=user-row][data-username=second] [data-testid=delete-user]")
        delete.click()
        assert page.locator("[data-testid=user-row][data-username=second]").count() == 1, "one click is not enough"
        delete.click()
        page.locator("[data-testid=user-row][data-username=second]").wait_for(state="detached")
        _, users = admin.request("GET", "/api/users")
        assert "second" not in [u["username"] for u in users["users"]]

        # The name is text in the menu of that user too.
        admin.request("PUT", f"/api/users/{mallory['id']}", {"disabled": False})
        other = page.context.browser.new_page()
        other_watch = Watch(other)
        login_through_form(other, ems.base_url, "mallory", NEW_PW)
        assert other.inner_text("[data-testid=menu-name]") == XSS_NAME
        assert other.locator("header img").count() == 0
        other_watch.assert_clean()
        watch.assert_clean()


def test_own_password_change_and_api_tokens_from_the_account_dialog(ems_factory):
    ems = ems_factory()
    with chromium_page() as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, "admin", ems.admin_password)
        page.click("[data-testid=user-menu-button]")
        page.click("[data-testid=menu-account]")
        dialog = page.locator("[data-testid=account-dialog]")
        expect(dialog).to_be_visible()

        # The password change ends the old session; the page carries on with the new one's CSRF token.
        old_csrf = page.locator("meta[name=csrf-token]").get_attribute("content")
        page.fill("#own-current-password", ems.admin_password)
        page.fill("#own-new-password", NEW_PW)
        page.click("[data-testid=own-password-form] button[type=submit]")
        expect(page.locator("[data-testid=own-password-form] [data-error-for=_]")).to_contain_text("changed")
        assert page.locator("meta[name=csrf-token]").get_attribute("content") != old_csrf
        assert Session(ems.base_url).request("POST", "/login", {"username": "admin",
                                                                "password": NEW_PW})[0] == 200

        page.fill("#own-token-name", "Home <b>Assistant</b>")
        page.click("[data-testid=own-token-form] button[type=submit]")
        value = page.locator("#own-new-token-value")
        expect(value).to_have_value(re.compile(r"^ems_"))
        token = value.input_value()
        assert page.locator("[data-testid=own-token] .token-name").inner_text() == "Home <b>Assistant</b>"
        machine = Session(ems.base_url, bearer=token)
        assert machine.request("GET", "/api/state")[0] == 200

        page.keyboard.press("Escape")
        expect(value).to_have_value("")  # the plaintext token does not stay in the page once closed
        page.goto(ems.base_url + "/users", wait_until="load")
        revoke = page.locator("[data-testid=token-row] [data-testid=revoke-token]")
        revoke.click()
        revoke.click()
        page.locator("[data-testid=token-row]").wait_for(state="detached")
        assert machine.request("GET", "/api/state")[0] == 401
        watch.assert_clean()


def test_logout_returns_to_login_and_the_old_cookie_is_refused(ems_factory):
    ems = ems_factory(demo_config(web={"allow_registration": True}))  # so the login page offers to register
    with chromium_page() as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, "admin", ems.admin_password)
        old_cookie = cookie_header(page)
        old_session = Session(ems.base_url)
        old_session.cookie = old_cookie
        assert old_session.request("GET", "/api/state")[0] == 200

        page.click("[data-testid=user-menu-button]")
        with page.expect_navigation(url=re.compile(r".*/login$")):
            page.click("[data-testid=logout]")
        assert page.locator("[data-testid=user-menu]").count() == 0, "no menu when nobody is logged in"
        assert page.locator("[data-testid=conn-status]").count() == 0, "no live indicator on the login page"
        assert page.locator("[data-testid=register-link] a").get_attribute("href") == "/register"

        assert old_session.request("GET", "/api/state")[0] == 401
        page.goto(ems.base_url + "/", wait_until="load")
        assert urlparse(page.url).path == "/login"
        watch.assert_clean()


def test_a_page_brought_back_after_a_logout_leaves_for_the_login(ems_factory):
    """The dashboard is kept by the browser (revalidated on a reload); Back after a logout must not leave the
    old session's page on screen, whether the browser shows it from its cache or restores it from memory."""
    ems = ems_factory()
    with chromium_page() as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, "admin", ems.admin_password)
        page.goto(ems.base_url + "/help", wait_until="load")
        page.click("[data-testid=user-menu-button]")
        with page.expect_navigation(url=re.compile(r".*/login$")):
            page.click("[data-testid=logout]")
        page.go_back()
        expect(page).to_have_url(re.compile(r".*/login(\?.*)?$"), timeout=10000)

        # Signed in again, then signed out elsewhere (another tab) while this page stays: a restore from the
        # browser's memory (a `pageshow` that is `persisted`) asks who is signed in and leaves.
        login_through_form(page, ems.base_url, "admin", ems.admin_password)
        page.goto(ems.base_url + "/help", wait_until="load")
        status = page.evaluate("""() => fetch('/logout', {method: 'POST', headers: {'X-CSRF-Token':
            document.querySelector('meta[name=csrf-token]').content}}).then(r => r.status)""")
        assert status in (200, 204, 303)
        watch.expect_refusal(401, ems.base_url + "/api/me")
        with page.expect_navigation(url=re.compile(r".*/login\?next=%2Fhelp$")):
            page.evaluate("window.dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))")
        watch.assert_clean()


def test_admin_turns_registration_on_and_finds_the_change_in_the_audit_log(ems_factory):
    ems = ems_factory()
    with chromium_page() as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, "admin", ems.admin_password)
        page.goto(ems.base_url + "/users", wait_until="load")
        box = page.locator("[data-testid=allow-registration]")
        expect(box).not_to_be_checked()  # off by default
        expect(page.locator("[data-testid=audit-table] tbody")).to_contain_text("No changes recorded yet.")
        box.check()
        page.click("[data-testid=save-registration]")
        expect(page.locator("[data-testid=registration-form] [data-error-for=_]")).to_contain_text("on")
        row = page.locator("[data-testid=audit-row]").first
        expect(row).to_contain_text("web.allow_registration")
        expect(row).to_contain_text("admin (admin)")
        expect(page.locator("[data-testid=audit-chain]")).to_have_text("chain intact")
        assert page.locator("[data-testid=audit-csv]").get_attribute("href") == "/api/audit/export?format=csv"
        page.goto(ems.base_url + "/login", wait_until="load")
        watch.assert_clean()
    assert ems.get("/api/config/web")[1]["web"]["allow_registration"] is True

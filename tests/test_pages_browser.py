"""Every page as every role sees it, in headless Chromium: no console error, no failed request, nothing from
outside, no sideways scrolling on a phone; a screenshot of each at 1280 and 360 px in build/screenshots/."""
from __future__ import annotations


import pytest

from appliance import create_user, demo_config
from browser import Watch, chromium_page, login_through_form, no_horizontal_scroll, shoot

pytestmark = pytest.mark.browser
PAGES = {"dashboard": "/", "monitoring": "/monitoring", "analytics": "/analytics", "forecasts": "/forecasts",
         "settings": "/settings", "help": "/help", "users": "/users"}
ADMIN_ONLY = {"users"}
PASSWORDS = {"operator": "tidal-ferry-9-lantern", "viewer": "copper-owl-42-meadow"}


@pytest.mark.parametrize("role", ["admin", "operator", "viewer"])
def test_every_page_a_role_may_open_loads_clean_at_desktop_and_phone_width(ems_factory, role):
    ems = ems_factory(demo_config(simulator={"start": "2024-06-15T09:00:00+02:00"}))
    if role == "admin":
        username, password = "admin", ems.admin_password
    else:
        username, password = role, PASSWORDS[role]
        create_user(ems.login(), username, password, role)
    with chromium_page() as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, username, password)
        failed: list[str] = []
        # A fetch still running when the test moves to the next page is aborted by the browser: not a failure.
        page.on("requestfailed", lambda r: failed.append(f"{r.failure} {r.url}")
                if "ERR_ABORTED" not in str(r.failure) and "/api/events" not in r.url else None)
        page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        for name, path in PAGES.items():
            if name in ADMIN_ONLY and role != "admin":
                continue
            for width, height in ((1280, 800), (360, 740)):
                page.set_viewport_size({"width": width, "height": height})
                page.goto(ems.base_url + path, wait_until="load")
                page.wait_for_timeout(700)  # the page's own requests after load
                assert no_horizontal_scroll(page), f"{path} scrolls sideways at {width}"
                if role == "admin" or name == "settings":
                    shoot(page, f"page-{name}-{role}-{width}")
        assert failed == [], "failed or refused requests"
        watch.assert_clean()

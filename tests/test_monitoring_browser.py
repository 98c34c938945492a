"""The monitoring page in a real browser: live power control, grid, devices and battery, and the
simulator's event buttons that an operator uses to rehearse a DSO trip — which a viewer never sees."""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from appliance import create_user, demo_config
from browser import Watch, chromium_page, login_through_form

pytestmark = pytest.mark.browser

VIEWER_PW = "copper-owl-42-meadow"
SIM = {"speed": 10.0, "step_s": 0.2, "start": "2024-06-15T12:00:00+02:00"}
DEVICES = ["bms", "dso", "meter", "pcs"]

ONLINE_DEVICES = """() => Array.from(document.querySelectorAll('[data-testid=devices-table] [data-testid=device-row]'))
  .filter(r => r.querySelector('[data-testid=device-state]').textContent === 'online')
  .map(r => r.dataset.device).sort()"""


def open_monitoring(page: Any, base_url: str) -> None:
    page.goto(base_url + "/monitoring", wait_until="load")
    assert urlparse(page.url).path == "/monitoring"
    page.wait_for_function("() => document.getElementById('conn-status').textContent.trim() === 'live'",
                           timeout=15000)


def test_operator_trips_the_dso_and_power_control_shuts_down(ems_factory, tmp_path):
    ems = ems_factory(demo_config(modbus=True, simulator=SIM))
    with chromium_page() as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, "admin", ems.admin_password)
        open_monitoring(page, ems.base_url)
        assert page.locator("nav a[aria-current=page]").inner_text() == "Monitoring"

        page.wait_for_function(f"() => ({ONLINE_DEVICES})().length === 4", timeout=30000)
        assert page.evaluate(ONLINE_DEVICES) == DEVICES
        row = page.locator("[data-testid=device-row][data-device=bms]")
        assert row.locator("td").nth(1).inner_text() == "bms"
        assert row.locator("td").nth(2).inner_text() == ems.get("/api/state")[1]["devices"]["bms"]["profile"]

        expect(page.locator("[data-testid=pc-state]")).to_have_text("normal", timeout=15000)
        assert page.inner_text("[data-testid=pc-setpoint]") != "—"
        assert page.locator("[data-testid=pc-disabled]").is_hidden(), "power control is enabled in the demo"
        grid = ems.get("/api/state")[1]["grid_connection"]
        assert page.inner_text("[data-testid=grid-max]") == f"{grid['max_power_kw']:.1f} kW"
        util = page.locator("[data-testid=grid-utilisation]")
        pct = float(util.inner_text().rstrip(" %"))
        expected_level = "ok" if pct < 50 else ("warn" if pct <= 80 else "bad")
        assert util.get_attribute("data-level") == expected_level
        assert page.inner_text("[data-testid=batt-soc]").endswith("%")
        expect(page.locator("[data-testid=batt-current]")).to_contain_text("A")
        assert page.inner_text("[data-testid=batt-source]") == ems.get("/api/state")[1]["plant"]["battery"]["soc_pct"][
            "source"], "where the values come from"
        page.click("[data-testid=json-view] summary")
        expect(page.locator("[data-testid=json-view-body]")).to_contain_text('"power_control"')
        buttons = page.locator("[data-testid=sim-events] button")
        assert buttons.count() == 3 + 2 * len(DEVICES) + 2, "DSO trip/limit/normal, offline/online each, alarm/clear"

        page.click("[data-testid=sim-dso-trip]")
        expect(page.locator("[data-testid=sim-result]")).to_contain_text("dso_trip")
        expect(page.locator("[data-testid=pc-state]")).to_have_text("shutdown", timeout=10000)
        assert page.locator("[data-testid=pc-state]").get_attribute("data-state") == "shutdown"
        assert page.locator("[data-testid=pc-reasons] li:not(.muted)").count() >= 1, "the page says why"
        trip = page.locator("[data-testid=pc-reasons] li[data-code=dso_trip]")
        assert trip.count() == 1 and trip.inner_text() == "DSO trip", "each reason carries its code"
        page.screenshot(path=str(tmp_path / "monitoring-trip.png"), full_page=True)

        page.click("[data-testid=sim-dso-normal]")
        expect(page.locator("[data-testid=pc-state]")).to_have_text(
            re.compile(r"^(normal|limited)$"), timeout=15000)

        # A limit outside 0–100 is refused in the page; nothing is sent.
        page.fill("[data-testid=sim-dso-limit-pct]", "150")
        page.click("[data-testid=sim-dso-limit]")
        expect(page.locator("[data-testid=sim-result]")).to_contain_text("0 to 100")
        page.click("[data-testid=sim-dso-normal]")
        expect(page.locator("[data-testid=sim-result]")).to_contain_text("dso_normal")
        page.fill("[data-testid=sim-dso-limit-pct]", "")  # an empty field is no order, not a 0 % limit
        page.click("[data-testid=sim-dso-limit]")
        expect(page.locator("[data-testid=sim-result]")).to_contain_text("0 to 100")

        # A device that drops out: the error with its age; once it answers again the cell is cleared.
        meter = page.locator("[data-testid=device-row][data-device=meter]")
        page.click("[data-testid=sim-offline-meter]")
        expect(meter.locator("[data-testid=device-state]")).to_have_text("offline", timeout=15000)
        expect(meter.locator("[data-testid=device-error]")).to_contain_text("ago")
        page.click("[data-testid=sim-online-meter]")
        expect(meter.locator("[data-testid=device-state]")).to_have_text("online", timeout=20000)
        expect(meter.locator("[data-testid=device-error]")).to_have_text("—", timeout=10000)
        assert "recovered" in (meter.locator("[data-testid=device-error]").get_attribute("title") or "")

        page.click("[data-testid=sim-alarm]")
        alarm = page.locator("[data-testid=batt-alarm]").first
        expect(alarm).to_contain_text(re.compile("insulation", re.I), timeout=15000)
        shown = alarm.inner_text()
        api_alarms = ems.get("/api/state")[1]["plant"]["battery"]["alarms"]["value"]
        texts = [a if isinstance(a, str) else a.get("text") or a.get("name") for a in api_alarms]
        assert any(t and t in shown for t in texts), (shown, api_alarms)
        watch.assert_clean()


def test_viewer_sees_the_monitoring_but_no_simulator_controls(ems_factory):
    ems = ems_factory(demo_config(modbus=True, simulator=SIM))
    create_user(ems.login(), "vera", VIEWER_PW, "viewer", "Vera Viewer")
    with chromium_page() as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, "vera", VIEWER_PW)
        open_monitoring(page, ems.base_url)
        page.wait_for_function("() => document.querySelectorAll('[data-testid=device-row]').length === 4",
                               timeout=30000)
        assert page.locator("[data-testid=sim-events]").count() == 0
        outside = page.locator("form, button, input, select, textarea").evaluate_all(
            "els => els.filter(e => !e.closest('#user-menu, #account-dialog')).map(e => e.outerHTML)")
        assert outside == [], "a viewer gets no control on the monitoring page"
        watch.assert_clean()

"""The monitoring page in a real browser: live power control, grid, devices and battery, and the
simulator's event buttons that an operator uses to rehearse a DSO trip — which a viewer never sees."""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from appliance import create_user, demo_config
from browser import Watch, chromium_page, login_through_form, no_horizontal_scroll, shoot
from support import wait_until

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
        assert trip.count() == 1, "each reason carries its code"
        assert trip.inner_text() == "The grid operator has ordered a shutdown", "in words a site owner reads"
        assert trip.get_attribute("title") == "DSO trip", "the technical text one hover away"
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
            "els => els.filter(e => !e.closest('#user-menu, #account-dialog, [data-range-picker]')).map(e => e.outerHTML)")
        assert outside == [], "a viewer gets no control on the monitoring page (choosing what to see is no control)"
        assert page.locator("[data-range-picker] button").count() == 10
        watch.assert_clean()


CHECKED = "() => Array.from(document.querySelectorAll('[data-range-picker]')).map(p => " \
          "p.dataset.rangePicker + ':' + p.querySelector('[aria-checked=true]').dataset.range).join(' ')"
CHART = """(id) => { const c = Chart.getChart(document.getElementById(id));
  return {type: c.scales.x.type, min: c.scales.x.min, max: c.scales.x.max, sets: c.data.datasets.length,
          points: c.data.datasets.map(d => d.data.filter(p => p.y !== null).length),
          ticks: c.scales.x.ticks.map(t => t.label)}; }"""


def picked(page: Any) -> str:
    return str(page.evaluate(CHECKED))


HISTORY = {"sample_interval_s": 1.0, "flush_interval_s": 1.0}  # rows on disk within a second, not a minute
FEEDIN_60 = {"enabled": True, "mode": "fixed", "fixed_limit_pct": 60.0}


def test_history_charts_and_sankey_share_one_range_both_ways(ems_factory):
    ems = ems_factory(demo_config(simulator=SIM, history=HISTORY, feedin_limitation=FEEDIN_60))
    # Some history first: the simulated noon has PV, so energy flows from PV within seconds of plant time.
    wait_until(lambda: ems.get("/api/history/energy_flows?hours=1")[1]["totals_kwh"]["pv"] > 0, 30, 0.2)
    create_user(ems.login(), "vera", VIEWER_PW, "viewer", "Vera Viewer")
    with chromium_page() as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, "vera", VIEWER_PW)
        open_monitoring(page, ems.base_url)
        history = page.locator("[data-testid=history-panel]")
        expect(history).to_have_attribute("data-loaded", "day", timeout=15000)
        assert picked(page) == "chart:day sankey:day", "a first visit shows the last day"
        assert page.evaluate("location.hash") == "#range=day"

        # The feed-in limitation in force: its mode, its percentage and what the site may export now.
        expect(page.locator("[data-testid=feedin-mode]")).to_have_text("Fixed")
        assert page.inner_text("[data-testid=feedin-pct]") == "60 %"
        assert "feed-in rating (15.0 kW)" in page.inner_text("[data-testid=feedin-reference]")
        expect(page.locator("[data-testid=feedin-export]")).to_have_text("9.00 kW")

        # The chart's picker moves the Sankey's, which fetches the new range.
        page.click("[data-testid=chart-range] button[data-range=week]")
        assert picked(page) == "chart:week sankey:week"
        expect(page.locator("[data-testid=sankey]")).to_have_attribute("data-range", "week", timeout=15000)
        expect(history).to_have_attribute("data-loaded", "week", timeout=15000)
        # ... and the Sankey's picker moves the chart's.
        page.click("[data-testid=sankey-range] button[data-range=hour]")
        assert picked(page) == "chart:hour sankey:hour"
        expect(history).to_have_attribute("data-loaded", "hour", timeout=15000)
        expect(page.locator("[data-testid=sankey]")).to_have_attribute("data-range", "hour", timeout=15000)

        # The charts: a time axis over the hour that ends at the EMS's now, every series with points.
        power = page.evaluate(CHART, "hist-power")
        assert power["type"] == "linear" and power["max"] - power["min"] == pytest.approx(3600, abs=1)
        assert power["sets"] == 4 and min(power["points"]) >= 1, power
        assert all(re.fullmatch(r"\d\d:\d\d", tick) for tick in power["ticks"]), power["ticks"]
        soc = page.evaluate(CHART, "hist-soc")
        assert soc["points"][0] >= 1
        state_ts = ems.get("/api/state")[1]["ts"]
        assert abs(power["max"] - state_ts) < 120, "the plant's clock, not the browser's"

        # The Sankey: one band per flow with energy, as wide as the API's kWh, labelled in kWh.
        flows = ems.get("/api/history/energy_flows?hours=1")[1]["flows_kwh"]
        links = page.locator("[data-testid=sankey-link]")
        expect(links.first).to_be_visible()
        drawn = {links.nth(i).get_attribute("data-flow"): float(links.nth(i).get_attribute("data-kwh") or 0)
                 for i in range(links.count())}
        assert "pv_to_load" in drawn and drawn["pv_to_load"] > 0
        assert set(drawn) <= {k for k, v in flows.items() if v > 0}, (drawn, flows)
        for key, value in drawn.items():
            assert value <= flows[key] + 1e-6, "the page's figure is from a moment before this one"
        assert (page.locator("[data-testid=sankey-node][data-node='from:pv']").text_content() or "").startswith("PV")
        expect(page.locator("[data-testid=flow-pv]")).to_contain_text("kWh")
        expect(page.locator("[data-testid=sankey-empty]")).to_be_hidden()

        # The arrow keys move the range too, in both pickers at once.
        page.focus("[data-testid=chart-range] button[aria-checked=true]")
        page.keyboard.press("ArrowRight")
        assert picked(page) == "chart:day sankey:day"

        # The range survives a reload (the address) and a new visit (storage).
        page.click("[data-testid=sankey-range] button[data-range=month]")
        page.reload(wait_until="load")
        expect(history).to_have_attribute("data-loaded", "month", timeout=15000)
        assert picked(page) == "chart:month sankey:month"
        page.goto(ems.base_url + "/monitoring", wait_until="load")
        expect(history).to_have_attribute("data-loaded", "month", timeout=15000)
        assert picked(page) == "chart:month sankey:month" and page.evaluate("location.hash") == "#range=month"
        shoot(page, "monitoring-history-1280")
        watch.assert_clean()


def test_the_history_and_sankey_read_german_and_fit_a_phone(ems_factory):
    ems = ems_factory(demo_config(simulator=SIM, history=HISTORY))
    wait_until(lambda: ems.get("/api/history/energy_flows?hours=1")[1]["totals_kwh"]["pv"] > 0, 30, 0.2)
    with chromium_page(locale="de-AT", viewport=(360, 800)) as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, "admin", ems.admin_password)
        page.goto(ems.base_url + "/monitoring#range=hour", wait_until="load")
        expect(page.locator("[data-testid=history-panel]")).to_have_attribute("data-loaded", "hour", timeout=15000)
        assert page.locator("#sankey-title").inner_text() == "Energieflüsse"
        labels = page.locator("[data-testid=chart-range] button").all_inner_texts()
        assert labels == ["60 Min.", "Tag", "Woche", "Monat", "Jahr"]
        expect(page.locator("[data-testid=sankey-link]").first).to_be_visible(timeout=15000)
        assert (page.locator("[data-testid=sankey-node][data-node='to:load']").text_content() or "").startswith("Haus")
        expect(page.locator("[data-testid=flow-pv]")).to_contain_text(re.compile(r"\d,\d+ kWh"))
        feedin = ems.get("/api/state")[1]["feedin_limitation"]
        mode_words = {"off": "Aus", "fixed": "Fest", "dynamic": "Nach Tageszeit"}
        expect(page.locator("[data-testid=feedin-mode]")).to_have_text(mode_words[feedin["mode"]])
        assert no_horizontal_scroll(page)
        shoot(page, "monitoring-history-360-de")
        watch.assert_clean()

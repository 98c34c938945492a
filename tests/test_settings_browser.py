"""Commissioning from the browser: the settings page as an operator, an admin and a viewer see it (headless
Chromium against the real `ems run`), applied to the running plant and still there after a restart.

Screenshots of the page at 1280 and 360 px land in build/screenshots/ (or $EMS_SCREENSHOT_DIR) for people
to look at.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

import pytest
from playwright.sync_api import expect

from appliance import create_user, demo_config, start_ems
from browser import Watch, chromium_page, login_through_form, no_horizontal_scroll, shoot
from support import free_port, wait_until

pytestmark = pytest.mark.browser

OPERATOR_PW = "tidal-ferry-9-lantern"
VIEWER_PW = "copper-owl-42-meadow"
def form(page: Any, section: str) -> Any:
    return page.locator(f"[data-testid=settings-form-{section}]")


def logout(page: Any) -> None:
    page.click("[data-testid=user-menu-button]")
    with page.expect_navigation():
        page.click("[data-testid=logout]")


def state(admin: Any) -> dict[str, Any]:
    status, body = admin.request("GET", "/api/state")
    assert status == 200
    return body


def test_operator_and_admin_commission_the_plant_from_the_settings_page(ems_factory, tmp_path):
    ems = ems_factory()
    admin = ems.login()
    create_user(admin, "olga", OPERATOR_PW, "operator", "Olga Operator")
    grid = admin.request("GET", "/api/config/grid_connection")[1]["grid_connection"]
    export_rating_kw = grid["max_feedin_kw"] or grid["max_power_kw"]  # what feed-in percentages refer to

    with chromium_page() as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, "olga", OPERATOR_PW)
        page.click("nav a[href='/settings']")
        expect(form(page, "bess")).to_be_visible()
        shoot(page, "settings-operator-1280")

        # What an operator may not change is shown, disabled, and marked.
        pc = form(page, "power_control")
        assert pc.locator("[data-testid=field-enabled]").is_disabled()
        assert pc.locator(".pill-admin").count() >= 10
        assert pc.locator("[data-testid=save-power_control]").count() == 1  # others in the section could change

        # A lower discharge limit: saved, applied to the running safety loop, and the plant obeys it.
        bess = form(page, "bess")
        bess.locator("[data-testid=field-max_discharge_power_kw]").fill("1.5")
        bess.locator("[data-testid=save-bess]").click()
        expect(bess.page.locator("[data-testid=status-bess]")).to_contain_text("Saved and applied")
        limit = wait_until(lambda: (state(admin)["power_control"].get("limit_w") or 1e9) <= 1500.0, 10)
        assert limit
        assert abs(state(admin)["plant"]["bess"]["power_w"]["value"]) <= 1500.0 + 1.0

        # A bad value: the server's message next to the field it names; nothing saved.
        watch.expect_refusal(400, ems.base_url + "/api/config/bess")
        bess = form(page, "bess")
        bess.locator("[data-testid=field-min_soc_pct]").fill("120")
        bess.locator("[data-testid=save-bess]").click()
        error = bess.locator("[data-error-for=min_soc_pct]")
        expect(error).to_contain_text("100")
        assert bess.locator("[data-testid=field-min_soc_pct]").get_attribute("aria-invalid") == "true"
        stored_min_soc = admin.request("GET", "/api/config/bess")[1]["bess"]["min_soc_pct"]
        assert stored_min_soc != 120
        bess.locator("[data-testid=field-min_soc_pct]").fill(f"{stored_min_soc:g}")
        bess.locator("[data-testid=save-bess]").click()
        expect(page.locator("[data-testid=status-bess]")).to_contain_text("Nothing changed")

        # Forcing an admin-only key past the disabled field: the server refuses it, naming the key.
        watch.expect_refusal(403, ems.base_url + "/api/config/power_control")
        refused = page.evaluate("""() => fetch('/api/config/power_control', {method: 'POST', headers: {
            'Content-Type': 'application/json',
            'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content},
            body: JSON.stringify({enabled: false})}).then(r => r.json().then(b => [r.status, b.field]))""")
        assert refused[0] == 403 and "enabled" in refused[1]

        # Unsaved changes are not lost silently: leaving asks first, and staying keeps them.
        form(page, "strategy").locator("[data-testid=field-horizon_h]").fill("12")
        dialogs: list[str] = []
        page.on("dialog", lambda d: dialogs.append(d.type))  # Watch answers "stay"
        page.click("nav a[href='/']", no_wait_after=True)
        wait_until(lambda: "beforeunload" in dialogs, 5)
        assert page.url.endswith("/settings")
        assert form(page, "strategy").locator("[data-testid=field-horizon_h]").input_value() == "12"
        watch.dialogs.clear()  # the one dialog this test asked for
        form(page, "strategy").locator("[data-testid=save-strategy]").click()
        expect(page.locator("[data-testid=status-strategy]")).to_contain_text("Saved and applied")
        assert admin.request("GET", "/api/config/strategy")[1]["strategy"]["horizon_h"] == 12
        logout(page)
        login_through_form(page, ems.base_url, "admin", ems.admin_password)
        page.goto(ems.base_url + "/settings", wait_until="load")
        expect(form(page, "feedin_limitation")).to_be_visible()

        # A feed-in rule as a table row: the export limit follows it.
        assert state(admin)["power_control"].get("export_limit_w") != 0.4 * export_rating_kw * 1000.0
        feedin = form(page, "feedin_limitation")
        feedin.locator("[data-testid=field-enabled]").check()
        feedin.locator("[data-testid=field-mode]").select_option("dynamic")
        feedin.locator("[data-testid=add-row-dynamic_rules]").click()
        row = feedin.locator("[data-testid=row]").first
        row.locator("[data-testid=field-limit_pct]").fill("40")
        feedin.locator("[data-testid=save-feedin_limitation]").click()
        confirm = page.locator("[data-testid=settings-confirm]")
        expect(confirm).to_be_visible()
        assert "Time-based rules" in page.inner_text("[data-testid=settings-confirm-list]")
        page.click("[data-testid=settings-confirm-ok]")
        expect(page.locator("[data-testid=status-feedin_limitation]")).to_contain_text("Saved and applied")
        expected_w = 0.4 * export_rating_kw * 1000.0
        wait_until(lambda: abs((state(admin)["power_control"].get("export_limit_w") or 0) - expected_w) < 1.0, 10)

        # Power control off: an admin, after confirming; cancelling saves nothing.
        pc = form(page, "power_control")
        pc.locator("[data-testid=field-enabled]").uncheck()
        pc.locator("[data-testid=save-power_control]").click()
        expect(confirm).to_be_visible()
        assert "Power control on" in page.inner_text("[data-testid=settings-confirm-list]")
        page.click("[data-testid=settings-confirm-cancel]")
        assert admin.request("GET", "/api/config/power_control")[1]["power_control"]["enabled"] is True
        pc.locator("[data-testid=save-power_control]").click()
        page.click("[data-testid=settings-confirm-ok]")
        expect(page.locator("[data-testid=status-power_control]")).to_contain_text("Saved and applied")
        assert admin.request("GET", "/api/config/power_control")[1]["power_control"]["enabled"] is False
        entries = admin.request("GET", "/api/audit")[1]["entries"]
        off = [e for e in entries if e["field"] == "power_control.enabled"]
        assert off and off[-1]["user"] == "admin" and off[-1]["old"] is True and off[-1]["new"] is False
        assert any(e["field"].startswith("bess.max_discharge_power_kw") and e["user"] == "olga" for e in entries)
        shoot(page, "settings-admin-1280")

        page.set_viewport_size({"width": 360, "height": 740})
        page.reload(wait_until="load")
        expect(form(page, "grid_tariffs")).to_be_visible()
        assert no_horizontal_scroll(page), "the page must not scroll sideways on a phone"
        shoot(page, "settings-admin-360")
        watch.assert_clean()

    # Still there after a restart: the page wrote ems.yaml, not just the running config.
    ems.stop()
    again = start_ems(tmp_path / "ems", keep_config=True)
    try:
        session = again.login()
        assert session.request("GET", "/api/config/bess")[1]["bess"]["max_discharge_power_kw"] == 1.5
        assert session.request("GET", "/api/config/power_control")[1]["power_control"]["enabled"] is False
        rules = session.request("GET", "/api/config/feedin_limitation")[1]["feedin_limitation"]["dynamic_rules"]
        assert rules == [{"start": "00:00", "end": "24:00", "limit_pct": 40.0}]
    finally:
        again.stop()


def test_a_viewer_sees_every_setting_and_can_change_none_on_a_phone_in_german(ems_factory):
    ems = ems_factory()
    admin = ems.login()
    create_user(admin, "vera", VIEWER_PW, "viewer", "Vera Viewer")
    with chromium_page(locale="de-AT", viewport=(360, 740)) as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, "vera", VIEWER_PW)
        page.goto(ems.base_url + "/settings", wait_until="load")
        expect(form(page, "bess")).to_be_visible()
        assert "Batterie" in page.inner_text("#section-title-bess")
        inputs = page.locator("[data-testid=settings-forms] input, [data-testid=settings-forms] select")
        assert inputs.count() > 40
        assert inputs.evaluate_all("els => els.filter(e => !e.disabled).length") == 0
        assert page.locator("[data-testid=settings-forms] button[type=submit]").count() == 0
        assert "Bediener" in page.inner_text("[data-testid=settings-role-note]")
        assert no_horizontal_scroll(page)
        shoot(page, "settings-viewer-360-de")
        page.set_viewport_size({"width": 1280, "height": 800})
        shoot(page, "settings-viewer-1280-de")
        watch.assert_clean()


def test_the_mqtt_form_tests_a_real_broker_before_saving_and_the_uplink_connects(ems_factory, tmp_path):
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _listening(port), 10, 0.05)
        ems = ems_factory()
        admin = ems.login()
        with chromium_page() as page:
            watch = Watch(page)
            login_through_form(page, ems.base_url, "admin", ems.admin_password)
            page.goto(ems.base_url + "/settings#section-mqtt", wait_until="load")
            mqtt = form(page, "mqtt")
            expect(mqtt).to_be_visible()
            mqtt.locator("[data-testid=field-broker]").fill("127.0.0.1")
            status = mqtt.locator("[data-testid=status-mqtt]")

            mqtt.locator("[data-testid=field-port]").fill(str(free_port()))  # nothing listens there
            mqtt.locator("[data-testid=test-mqtt]").click()
            expect(status).to_contain_text("refused", timeout=15000)
            assert status.get_attribute("data-test-ok") == "0"

            mqtt.locator("[data-testid=field-port]").fill(str(port))
            mqtt.locator("[data-testid=test-mqtt]").click()
            expect(status).to_contain_text("Connected in", timeout=15000)
            assert status.get_attribute("data-test-ok") == "1"
            assert admin.request("GET", "/api/config/mqtt")[1]["mqtt"]["enabled"] is False, "a test saves nothing"

            mqtt.locator("[data-testid=field-enabled]").check()
            mqtt.locator("[data-testid=save-mqtt]").click()
            page.click("[data-testid=settings-confirm-ok]")  # where the data goes is admin-only
            expect(page.locator("[data-testid=status-mqtt]")).to_contain_text("Saved and applied")
            wait_until(lambda: admin.request("GET", "/api/state")[1]["mqtt"].get("connected"), 15)
            page.set_viewport_size({"width": 360, "height": 740})
            assert no_horizontal_scroll(page)
            shoot(page, "settings-mqtt-360")
            watch.assert_clean()
    finally:
        broker.terminate()
        broker.wait(timeout=10)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def pty_pair(tmp_path):
    """(EMS end, device end) of a socat pty pair, as /dev/pts paths (the wizard takes devices under /dev)."""
    ems_end, device_end = tmp_path / "ems-end", tmp_path / "device-end"
    proc = subprocess.Popen(["socat", f"pty,raw,echo=0,link={ems_end}", f"pty,raw,echo=0,link={device_end}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: ems_end.exists() and device_end.exists(), 5, 0.02)
        yield os.path.realpath(ems_end), os.path.realpath(device_end)
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_the_modbus_wizard_tests_devices_over_tcp_and_rtu_and_shows_live_values(ems_factory, pty_pair, tmp_path):
    ems_end, device_end = pty_pair
    log = tmp_path / "sim-device.log"
    with log.open("w") as out:
        meter = subprocess.Popen([sys.executable, "-m", "ems", "sim-device", "--profile", "eastron_sdm630", "--rtu",
                                  device_end, "--unit-id", "7"], stdout=subprocess.DEVNULL, stderr=out)
    try:
        wait_until(lambda: "serving" in log.read_text(), 20, 0.05)
        ems = ems_factory(demo_config(modbus=True))
        admin = ems.login()
        with chromium_page() as page:
            watch = Watch(page)
            login_through_form(page, ems.base_url, "admin", ems.admin_password)
            page.goto(ems.base_url + "/settings#section-modbus", wait_until="load")
            devices = form(page, "modbus")
            expect(devices.locator("[data-testid=device-row]")).to_have_count(4)

            # TCP: the configured BMS, read once; decoded values beside the profile's registers.
            devices.locator("[data-device=bms] [data-testid=edit-device]").click()
            editor = devices.locator("[data-testid=device-editor]")
            expect(editor.locator("[data-testid=register-table] tr[data-register]").first).to_be_visible()
            assert "Hithium" in editor.locator("[data-testid=profile-info]").inner_text()
            editor.locator("[data-testid=test-device]").click()
            result = editor.locator("[data-testid=device-test-result]")
            expect(result).to_have_attribute("data-test-ok", "1", timeout=15000)
            soc = editor.locator("tr[data-register=soc_pct] [data-testid=register-value]")
            expect(soc).to_contain_text("%")
            assert editor.locator("tr.has-value").count() >= 5
            read_soc = float(soc.inner_text().split()[0].replace(",", "."))

            # A site's correction of a register: the scale halved, the same device read again decodes half.
            row = editor.locator("tr[data-register=soc_pct]")
            row.locator("input[data-override=scale]").fill("0.5")
            assert "is-overridden" in (row.get_attribute("class") or "")
            editor.locator("[data-testid=test-device]").click()

            def shown_soc() -> float | None:
                try:
                    return float(soc.inner_text().split()[0].replace(",", "."))
                except (ValueError, IndexError):
                    return None       # between answers the cell may hold no number

            # The answer may come before or after this line runs: wait for the halved value itself.
            wait_until(lambda: (v := shown_soc()) is not None and abs(v - read_soc / 2) <= 1.0, 15, 0.1)
            row.locator("[data-testid=reset-register]").click()
            assert row.locator("input[data-override=scale]").input_value() == "1"
            assert "is-overridden" not in (row.get_attribute("class") or "")
            row.locator("input[data-override=scale]").fill("0.5")
            editor.locator("[data-testid=device-done]").click()

            # RTU on a real serial line: a new meter at the wrong address first (the exact error), then right.
            devices.locator("[data-testid=add-device]").click()
            editor = devices.locator("[data-testid=device-editor]")
            editor.locator("[data-testid=field-name]").fill("meter2")
            editor.locator("[data-testid=field-role]").select_option("meter")
            editor.locator("[data-testid=field-profile]").select_option("eastron_sdm630")
            editor.locator("[data-testid=field-connection_type]").select_option("rtu")
            assert editor.locator("[data-testid=field-host]").is_hidden()
            editor.locator("[data-testid=field-serial_port]").fill(ems_end)
            editor.locator("[data-testid=field-unit_id]").fill("9")
            editor.locator("[data-testid=field-timeout_s]").fill("0.5")
            editor.locator("[data-testid=test-device]").click()
            result = editor.locator("[data-testid=device-test-result]")
            expect(result).to_have_attribute("data-test-ok", "0", timeout=20000)
            assert editor.locator("[data-testid=device-test-error]").count() >= 1
            editor.locator("[data-testid=field-unit_id]").fill("7")
            editor.locator("[data-testid=test-device]").click()
            expect(result).to_have_attribute("data-test-ok", "1", timeout=20000)
            expect(editor.locator("tr.has-value").first).to_be_visible()
            shoot(page, "settings-modbus-rtu-1280")
            editor.locator("[data-testid=device-done]").click()

            # Saved as a whole list: one enabled device per role, so the second meter is kept off for now.
            watch.expect_refusal(400, ems.base_url + "/api/config/modbus")
            devices.locator("[data-testid=save-modbus]").click()  # first as it is: the server says why not
            page.click("[data-testid=settings-confirm-ok]")
            expect(page.locator("[data-testid=status-modbus]")).to_contain_text("one per role", timeout=10000)
            devices.locator("[data-device=meter2] [data-testid=edit-device]").click()
            editor = devices.locator("[data-testid=device-editor]")
            editor.locator("[data-testid=field-enabled]").uncheck()
            editor.locator("[data-testid=device-done]").click()
            expect(devices.locator("[data-testid=device-row]")).to_have_count(5)
            devices.locator("[data-testid=save-modbus]").click()
            page.click("[data-testid=settings-confirm-ok]")
            expect(page.locator("[data-testid=status-modbus]")).to_contain_text("Saved and applied", timeout=10000)
            saved = admin.request("GET", "/api/config/modbus")[1]["modbus"]
            added = [d for d in saved if d["name"] == "meter2"]
            assert added and added[0]["connection_type"] == "rtu" and added[0]["unit_id"] == 7
            assert added[0]["enabled"] is False
            assert added[0]["serial_port"] == ems_end
            bms = next(d for d in saved if d["name"] == "bms")
            assert bms["register_overrides"]["soc_pct"]["scale"] == 0.5
            # ...and the running poller decodes with it: the state's SoC is the device's halved.
            def state_soc() -> float:  # None while the pollers restart with the new list
                value = admin.request("GET", "/api/state")[1]["plant"]["battery"]["soc_pct"]["value"]
                return 1e9 if value is None else float(value)
            wait_until(lambda: state_soc() <= read_soc / 2 + 2, 15)
            page.set_viewport_size({"width": 360, "height": 740})
            assert no_horizontal_scroll(page)
            watch.assert_clean()
    finally:
        meter.terminate()
        meter.wait(timeout=10)


def test_the_first_login_asks_for_an_own_password_and_walks_through_a_resumable_skippable_setup(ems_factory):
    ems = ems_factory(one_time_admin=True)
    admin = ems.login()  # the API client, with the one-time password too
    new_password = "harbour-lamp-31-quill"
    with chromium_page() as page:
        watch = Watch(page)
        page.goto(ems.base_url + "/", wait_until="load")
        page.fill("[data-testid=login-username]", "admin")
        page.fill("[data-testid=login-password]", ems.admin_password)
        with page.expect_navigation(url=ems.base_url + "/setup"):
            page.click("[data-testid=login-submit]")
        expect(page.locator("[data-testid=setup-password]")).to_be_visible()
        assert page.locator("[data-testid=setup-nav]").is_hidden(), "no step before an own password"

        # Skippable: the dashboard, with a reminder that leads back.
        page.goto(ems.base_url + "/", wait_until="load")
        banner = page.locator("[data-testid=one-time-banner]")
        expect(banner).to_be_visible()
        with page.expect_navigation(url=ems.base_url + "/setup"):
            banner.locator("a").click()

        # The password: a wrong current one is named at its field, then the own one is set.
        watch.expect_refusal(400, ems.base_url + "/api/me/password")
        page.fill("[data-testid=setup-current-password]", "not-the-one-time-password")
        page.fill("[data-testid=setup-new-password]", new_password)
        page.click("[data-testid=setup-password-save]")
        expect(page.locator("#setup-password-form [data-error-for=current_password]")).not_to_be_empty()
        page.fill("[data-testid=setup-current-password]", ems.admin_password)
        page.click("[data-testid=setup-password-save]")
        step = page.locator("[data-testid=setup-step]")
        expect(step.locator(".setup-title")).to_have_text("Site and PV")

        step.locator("[data-testid=settings-form-site] [data-testid=field-name]").fill("Hof Müller")
        step.locator("[data-testid=settings-form-forecast] [data-testid=field-latitude_deg]").fill("47.32")
        step.locator("[data-testid=settings-form-forecast] [data-testid=field-pv_peak_kwp]").fill("12.5")
        page.click("[data-testid=setup-next]")
        expect(step.locator(".setup-title")).to_have_text("Battery")
        step.locator("[data-testid=field-capacity_kwh]").fill("100")
        step.locator("[data-testid=field-capacity_kwh]").fill("12")
        page.click("[data-testid=setup-next]")
        expect(step.locator(".setup-title")).to_have_text("Grid connection")

        # Resumable: a reload comes back to the same step.
        page.reload(wait_until="load")
        expect(step.locator(".setup-title")).to_have_text("Grid connection")
        step.locator("[data-testid=field-max_power_kw]").fill("20")
        page.click("[data-testid=setup-next]")
        page.click("[data-testid=settings-confirm-ok]")  # a grid limit is safety-relevant
        expect(step.locator(".setup-title")).to_have_text("Devices")
        expect(step.locator("[data-testid=add-device]")).to_be_enabled()
        assert admin.request("GET", "/api/me")[0] == 401, "the change of password ended the old sessions"
        page.click("[data-testid=setup-next]")
        expect(step.locator(".setup-title")).to_have_text("Prices")
        step.locator("[data-testid=field-price_source]").select_option("bundled")
        page.click("[data-testid=setup-next]")
        expect(page.locator("[data-testid=setup-done]")).to_be_visible()
        shoot(page, "setup-done-1280")

        session = ems.login(password=new_password)
        assert session.request("GET", "/api/config/site")[1]["site"]["name"] == "Hof Müller"
        forecast = session.request("GET", "/api/config/forecast")[1]["forecast"]
        assert (forecast["latitude_deg"], forecast["pv_peak_kwp"], forecast["price_source"]) == (47.32, 12.5, "bundled")
        assert session.request("GET", "/api/config/bess")[1]["bess"]["capacity_kwh"] == 12
        assert session.request("GET", "/api/config/grid_connection")[1]["grid_connection"]["max_power_kw"] == 20
        assert session.request("GET", "/api/me")[1]["user"]["one_time_credential"] is False

        # The next login lands on the dashboard, with the site's name in the header.
        logout(page)
        login_through_form(page, ems.base_url, "admin", new_password)
        assert page.inner_text("[data-testid=site-name]") == "Hof Müller"
        assert page.locator("[data-testid=one-time-banner]").count() == 0
        watch.assert_clean()

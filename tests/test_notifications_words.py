"""The server's own messages in words a site owner understands, in the reader's language, with the technical
detail one click away: notifications (DSO orders, safety stops, Modbus devices, limits, the grid connection,
the optimizer), the safety reasons beside their codes, and API errors."""
from __future__ import annotations

from typing import Any

import pytest

from appliance import demo_config
from ems import i18n
from ems.notifications import Notifications
from ems.safety.reasons import Reason, ReasonCode, reason_words
from ems.safety.reasons import why as reasons_in_words
from support import wait_until

GERMAN = {"Accept-Language": "de-AT,de;q=0.9"}
SIM = {"speed": 10.0, "step_s": 0.2, "start": "2024-06-15T12:00:00+02:00"}


def test_a_notification_keeps_words_params_and_detail_apart():
    notes = Notifications(lambda: 1.0)
    because = reasons_in_words([Reason(ReasonCode.STALE_INPUT, "no fresh value: battery.soc_pct"),
                                Reason(ReasonCode.TEMPERATURE, "battery temperature 70 °C above 55 °C")])
    item = notes.add("error", "safety", i18n.mark(
        "safety stop: the battery is held at 0 W because {why}; it resumes by itself when that is "
        "resolved"), "no fresh value: battery.soc_pct, battery temperature 70 °C above 55 °C", why=because)
    # English words with the detail: what the log and MQTT carry.
    assert item.message.startswith("safety stop: the battery is held at 0 W because a reading it needs is missing")
    assert item.message.endswith("(no fresh value: battery.soc_pct, battery temperature 70 °C above 55 °C)")
    german = item.to_json("de")
    assert german["message"].startswith("Sicherheitsstopp: die Batterie wird auf 0 W gehalten, denn ein "
                                        "benötigter Messwert fehlt oder ist veraltet, die Batterie ist zu heiß")
    assert german["detail"] == "no fresh value: battery.soc_pct, battery temperature 70 °C above 55 °C"
    assert item.to_json() == {"id": 1, "ts": 1.0, "level": "error", "category": "safety", "message": item.message}


def test_numbers_follow_the_language_and_every_reason_code_has_words():
    assert i18n.render("the grid operator limits the battery to {pct} % of its power", {"pct": 37.5}, "de") == \
        "Der Netzbetreiber begrenzt die Batterie auf 37,5 % ihrer Leistung"
    assert i18n.render("the grid operator limits the battery to {pct} % of its power", {"pct": 30.0}, "en") == \
        "the grid operator limits the battery to 30 % of its power"
    german = i18n.catalog("de")
    assert all(code.words in german for code in ReasonCode), "every reason has words a site owner reads"
    assert reason_words(["dso_trip", "no_such_code"], "de") == ["der Netzbetreiber hat eine Abschaltung angeordnet",
                                                                 "no_such_code"]


def _notes(session: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    status, body = session.request("GET", "/api/notifications", headers=headers)
    assert status == 200, body
    return list(body["notifications"])


def test_a_german_reader_gets_the_dso_trip_and_a_lost_device_in_german_words(ems_factory):
    ems = ems_factory(demo_config(modbus=True, simulator=SIM))
    admin = ems.login()
    wait_until(lambda: all(d.get("online") for d in ems.get("/api/state")[1]["devices"].values()), 30)
    assert admin.request("POST", "/api/simulator/events", {"type": "dso_trip"})[0] == 200

    def trip_note(headers: dict[str, str]) -> dict[str, Any] | None:
        return next((n for n in _notes(admin, headers) if n["category"] == "dso"), None)

    german = wait_until(lambda: trip_note(GERMAN), 15)
    assert german["level"] == "error"
    assert german["message"].startswith("Der Netzbetreiber hat eine Abschaltung angeordnet")
    assert "DSO trip" in german["detail"], "the technical detail stays as it is, in English"
    english = trip_note({"Accept-Language": "en-GB"})
    assert english is not None and english["id"] == german["id"]
    assert english["message"].startswith("the grid operator has ordered a shutdown (trip)")

    # The state's reasons: the technical texts and, beside each code, the words in the reader's language.
    status, state = admin.request("GET", "/api/state", headers=GERMAN)
    pc = state["power_control"]
    assert pc["reasons"][0] == "DSO trip" and pc["reason_words"][0] == "der Netzbetreiber hat eine Abschaltung angeordnet"
    assert len(pc["reason_words"]) == len(pc["reason_codes"])

    # A Modbus device that stops answering, then answers again.
    assert admin.request("POST", "/api/simulator/events", {"type": "device_offline", "device": "meter"})[0] == 200
    lost = wait_until(lambda: next((n for n in _notes(admin, GERMAN) if n["category"] == "modbus"
                                    and "antwortet nicht" in n["message"]), None), 20)
    assert lost["message"].startswith("Das Gerät meter antwortet nicht") and lost["detail"], lost
    assert admin.request("POST", "/api/simulator/events", {"type": "device_online", "device": "meter"})[0] == 200
    wait_until(lambda: next((n for n in _notes(admin, GERMAN) if n["category"] == "modbus"
                             and n["message"] == "Das Gerät meter antwortet wieder"), None), 30)


def test_an_api_error_comes_back_in_the_readers_language(ems_factory):
    ems = ems_factory()
    admin = ems.login()
    for path, body, field, german in (
            ("/api/strategy", {"strategy": "gold"}, "strategy", "muss eines von "),
            ("/api/notifications/ack", {"up_to_id": "x"}, "up_to_id", "muss eine ganze Zahl sein")):
        status, answer = admin.request("POST", path, body, headers=GERMAN)
        assert status == 400 and answer["field"] == field and answer["error"].startswith(german), answer
        status, answer = admin.request("POST", path, body, headers={"Accept-Language": "en"})
        assert status == 400 and answer["error"].startswith("must be "), answer
    status, answer = admin.request("GET", "/api/notifications?limit=nine", headers=GERMAN)
    assert status == 400 and answer == {"error": "muss eine ganze Zahl sein (erhalten: 'nine')", "field": "limit"}
    # A config problem is refused at the field it names (the body check answers first).
    status, answer = admin.request("POST", "/api/config/mqtt", {"password": {"set": "yes"}}, headers=GERMAN)
    assert status == 400 and answer["field"] == "mqtt.password", answer


@pytest.mark.browser
def test_the_panel_shows_words_and_the_detail_opens_on_click(ems_factory):
    from browser import Watch, chromium_page, login_through_form
    from playwright.sync_api import expect

    ems = ems_factory(demo_config(simulator={"dso_script": [{"at_s": 0, "mode": "trip"}]}))
    wait_until(lambda: any(n["category"] == "dso" for n in ems.get("/api/notifications")[1]["notifications"]), 15)
    with chromium_page(locale="de-AT") as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, "admin", ems.admin_password)
        page.click("[data-testid=user-menu-button]")
        trip = page.locator("[data-testid=notif][data-level=error]").filter(
            has_text="Der Netzbetreiber hat eine Abschaltung angeordnet").first
        expect(trip).to_be_visible()
        detail = trip.locator("[data-testid=notif-detail]")
        assert detail.locator("summary").inner_text() == "Technische Details"
        assert detail.get_attribute("open") is None and detail.locator("code").is_hidden()
        detail.locator("summary").click()
        expect(detail.locator("code")).to_be_visible()
        assert "DSO trip" in detail.locator("code").inner_text()
        detail.locator("summary").focus()
        page.keyboard.press("Enter")  # the keyboard closes it again
        expect(detail.locator("code")).to_be_hidden()
        watch.assert_clean()

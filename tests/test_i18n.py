"""German and English: every visible string has a German text, the language follows the browser or the
user's choice, and pages really come out in German (server-rendered and script-rendered text alike)."""
from __future__ import annotations

import html.parser
import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ems import i18n
from ems.api.settings_form import (CHOICES, DEVICE_CHOICES, DEVICE_FIELDS, DEVICE_TEXTS, DEVICES_INTRO, DEVICES_TITLE,
                                    REGISTER_COLUMNS, SECTIONS, SETUP_STEPS, TESTS)
from ems.optimizer.strategies import STRATEGIES
from ems.users.permissions import ACTIONS

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted((ROOT / "web" / "templates").glob("*.tpl"))
SCRIPTS = sorted((ROOT / "web" / "static" / "js").glob("*.js"))
SERVER_SOURCES = sorted((ROOT / "ems").rglob("*.py"))  # i18n.mark(...) anywhere in the server

_TEMPLATE_MSGID = re.compile(r"\b_\(\s*(['\"])(.*?)(?<!\\)\1")
# i18n.mark("a msgid") — also split over lines as adjacent literals: i18n.mark("first part " "second part")
_MARKED = re.compile(r"i18n\.mark\(\s*((?:\"(?:[^\"\\\n]|\\.)*\"\s*)+)\)")   # escapes (\") inside
_LITERAL = re.compile(r"\"((?:[^\"\\\n]|\\.)*)\"")
_PAGE_TITLE = re.compile(r"\bpage\(\s*\"[\w.]+\",\s*\"(.*?)\"")
_PAGE_MESSAGE = re.compile(r"\bmessage=\"(.*?)\"")
_ERROR_PAGE_MESSAGES = re.compile(r"message = \{404: \"(.*?)\", 405: \"(.*?)\"\}\.get\(err\.status_code, \"(.*?)\"\)")
# Text that is the same in both languages: the product's name, protocol words, units.
SAME_IN_BOTH = {"Phoenyra EMS", "Authorization: Bearer <token>", "Name", "Status", "Online", "Offline", "online",
                "offline", "live", "Support", "Arbitrage", "Normal", "normal", "{n} min", "Broker", "Port", "TLS",
                "Modbus RTU (RS-485)", "Status: {text}", "Solver", "PV", "ENTSO-E",
                "band: 10–90 %", "null"}
UNITS_ONLY = re.compile(r"^(?:[\s·%/()]|k?Wh?|ct|V|A|°C|kΩ)*$")


def template_msgids() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in TEMPLATES:
        for match in _TEMPLATE_MSGID.finditer(path.read_text(encoding="utf-8")):
            found.setdefault(match.group(2).replace("\\'", "'"), path.name)
    for action, description in ACTIONS.items():  # base.tpl lists what the role may do, capitalised
        found.setdefault(description[:1].upper() + description[1:], f"ACTIONS[{action}]")
    for role in ("viewer", "operator", "admin"):  # the role pill
        found.setdefault(role, "role pill")
    return found


def script_msgids() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in SCRIPTS:
        for msgid in i18n.msgids_in_script(path.read_text(encoding="utf-8")):
            found.setdefault(msgid, path.name)
    return found


def server_msgids() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in SERVER_SOURCES:
        text = path.read_text(encoding="utf-8")
        for match in _MARKED.finditer(text):
            found.setdefault("".join(json.loads(f'"{part}"') for part in _LITERAL.findall(match.group(1))), path.name)
        for match in _PAGE_TITLE.finditer(text):
            found.setdefault(match.group(1), path.name)
        if "error.tpl" in text:
            for match in _PAGE_MESSAGE.finditer(text):
                found.setdefault(match.group(1), path.name)
        for match in _ERROR_PAGE_MESSAGES.finditer(text):
            for msgid in match.groups():
                found.setdefault(msgid, path.name)
    found.setdefault("An unexpected error occurred.", "error.tpl")
    for section, (title, intro, keys) in SECTIONS.items():  # the settings form's tables
        for msgid in (title, intro, *(text for pair in keys.values() for text in pair if text)):
            found.setdefault(msgid, f"settings_form[{section}]")
    device_texts = [DEVICES_TITLE, DEVICES_INTRO, *(text for pair in DEVICE_FIELDS.values() for text in pair if text),
                    *DEVICE_CHOICES.values(), *REGISTER_COLUMNS.values(), *DEVICE_TEXTS.values()]
    setup_texts = [text for _id, title, intro, _parts in SETUP_STEPS for text in (title, intro)]
    for msgid in (*CHOICES.values(), *(label for _url, label in TESTS.values()), *device_texts, *setup_texts):
        found.setdefault(msgid, "settings_form")
    for strategy in STRATEGIES.values():  # titles shown in the settings form and on the dashboard
        found.setdefault(strategy.title, "STRATEGIES")
    return found


def all_msgids() -> dict[str, str]:
    return {**server_msgids(), **script_msgids(), **template_msgids()}


def test_every_msgid_has_a_german_text_with_the_same_placeholders():
    german = i18n.catalog("de")
    msgids = all_msgids()
    assert len(msgids) > 150, "the extraction finds the pages' strings"
    missing = sorted(f"{where}: {msgid!r}" for msgid, where in msgids.items() if msgid not in german)
    assert missing == [], "strings without a German translation"
    placeholders = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
    moved = [msgid for msgid in msgids if set(placeholders.findall(msgid)) != set(placeholders.findall(german[msgid]))]
    assert moved == [], "a translation must keep every placeholder"
    untranslated = [m for m in msgids if german[m] == m and m not in SAME_IN_BOTH and re.search("[a-z]{3}", m)]
    assert untranslated == [], "German text identical to the English one (add it to SAME_IN_BOTH if right)"


def test_the_german_catalog_holds_nothing_the_pages_no_longer_use():
    unused = sorted(set(i18n.catalog("de")) - set(all_msgids()))
    assert unused == []


class VisibleText(html.parser.HTMLParser):
    """The text a reader sees in a template, once the template code is taken out."""

    ATTRIBUTES = ("aria-label", "placeholder", "title", "alt")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []  # (where, text): "text" or "tag[attribute]"
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in self.ATTRIBUTES and value:
                self.found.append((f"{tag}[{name}]", value))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.found.append(("text", data.strip()))


def visible_template_text(source: str) -> list[str]:
    code_free = re.sub(r"<%.*?%>", "", source, flags=re.S)  # <% blocks %>
    code_free = re.sub(r"^\s*%.*$", "", code_free, flags=re.M)  # % lines
    code_free = re.sub(r"\{\{.*?\}\}", "", code_free, flags=re.S)  # {{expressions}}
    parser = VisibleText()
    parser.feed(code_free)
    return [text if where == "text" else f"{where}={text}" for where, text in parser.found
            if re.search(r"[A-Za-zÄÖÜäöü]{2,}", text.replace("Phoenyra EMS", "")) and not UNITS_ONLY.match(text)
            and "Authorization: Bearer" not in text]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_no_template_shows_text_outside_the_translation_function(template):
    assert visible_template_text(template.read_text(encoding="utf-8")) == []


def test_the_text_finder_finds_an_untranslated_sentence():
    """The check above can fail: plain text, an attribute and a split sentence are all caught."""
    found = visible_template_text('<p>{{_("Fine")}} but not this</p>\n<input placeholder="Type here">\n% x = 1\n')
    assert found == ["but not this", "input[placeholder]=Type here"]


@pytest.mark.parametrize("cookie, header, expected", [
    (None, "de-AT,de;q=0.9,en;q=0.8", "de"),
    (None, "fr-FR, en;q=0.5, de;q=0.7", "de"),  # the best we speak, by quality
    (None, "en-US,en;q=0.9,de;q=0.8", "en"),
    (None, "fr-CH, it", "en"),  # nothing we speak: English
    (None, "de;q=0", "en"),  # "not German"
    (None, "de;q=banana, en", "en"),  # a malformed quality drops that entry only
    (None, None, "en"),
    ("de", "en-US", "de"),  # the user's choice wins over the browser
    ("xx", "de", "de"),  # an unknown cookie is ignored
])
def test_the_language_follows_the_choice_then_the_browser(cookie, header, expected):
    assert i18n.negotiate(cookie, header) == expected


def test_translations_fill_placeholders_the_translation_may_move():
    de = i18n.translator("de")
    en = i18n.translator("en")
    assert de("Log out") == "Abmelden" and en("Log out") == "Log out"
    assert de("never seen") == "never seen", "a missing translation shows English, never a key or an error"
    assert i18n.fill("{n} of {total} done, {unknown}", {"n": 2, "total": 5}) == "2 of 5 done, {unknown}"


def test_two_catalog_files_that_disagree_on_a_msgid_are_refused(tmp_path):
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "a.json").write_text(json.dumps({"Save": "Speichern"}))
    (tmp_path / "de" / "b.json").write_text(json.dumps({"Save": "Sichern"}))
    with pytest.raises(i18n.CatalogError, match="Save"):
        i18n._load("de", tmp_path)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_the_server_speaks_the_browsers_language_and_remembers_a_choice(ems_factory):
    ems = ems_factory()
    status, headers, body = _get(ems.base_url + "/login", {"Accept-Language": "de-AT,de;q=0.9"})
    assert status == 200 and '<html lang="de">' in body
    assert "Anmelden" in body and "Benutzername" in body and "Log in" not in body
    assert "Accept-Language" in headers.get("Vary", "")
    _, _, english = _get(ems.base_url + "/login", {"Accept-Language": "en-US"})
    assert '<html lang="en">' in english and "Username" in english

    # The switch under the login page: a form post that sets the cookie and comes back.
    opener = urllib.request.build_opener(NoRedirect)
    form = b"lang=de&next=%2Flogin"
    req = urllib.request.Request(ems.base_url + "/language", data=form, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded",
                                          "Origin": ems.base_url})
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(req, timeout=10)
    assert answer.value.code == 303 and answer.value.headers["Location"].endswith("/login")
    cookie = answer.value.headers["Set-Cookie"]
    assert cookie.startswith("ems_lang=de;") and "Max-Age=31536000" in cookie and "SameSite=lax" in cookie.replace(
        "SameSite=Lax", "SameSite=lax")
    _, _, chosen = _get(ems.base_url + "/login", {"Accept-Language": "en-US", "Cookie": "ems_lang=de"})
    assert "Anmelden" in chosen, "the remembered choice wins over the browser's language"

    bad = urllib.request.Request(ems.base_url + "/language", data=b'{"lang": "fr"}', method="POST",
                                 headers={"Content-Type": "application/json", "Origin": ems.base_url})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(bad, timeout=10)
    assert refused.value.code == 400 and json.loads(refused.value.read())["field"] == "lang"

    status, _, missing = _get(ems.base_url + "/no-such-page", {"Accept-Language": "de"})
    assert status == 404 and "nicht gefunden" in missing and "Fehler" in missing


def test_the_scripts_catalog_is_cached_by_its_version(ems_factory):
    ems = ems_factory()
    version = i18n.script_version("de")
    status, headers, body = _get(f"{ems.base_url}/i18n/de.js?v={version}")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert "immutable" in headers["Cache-Control"]
    assert body.startswith("window.EMS_I18N=")
    payload = json.loads(body[len("window.EMS_I18N="):].rstrip().rstrip(";"))
    assert (payload["lang"], payload["locale"]) == ("de", "de-AT")
    assert payload["messages"]["reconnecting…"] == "verbinde neu…"
    # Only what the scripts translate: the server renders templates, notifications and refusals itself.
    assert set(payload["messages"]) == set(script_msgids()) and "Log out" not in payload["messages"]
    _, stale, _ = _get(f"{ems.base_url}/i18n/de.js?v=old")
    assert stale["Cache-Control"] == "no-cache", "an old version's URL must not be kept a year"
    assert _get(f"{ems.base_url}/i18n/fr.js")[0] == 404


@pytest.mark.browser
def test_pages_in_german_show_no_english_text_the_catalog_translates(ems_factory):
    """Server- and script-rendered text alike: a visible text that equals an English msgid with a different
    German text is a string the page forgot to translate. Data (names, a device's own status text) is marked
    translate="no", as HTML means it."""
    from browser import Watch, chromium_page, login_through_form

    ems = ems_factory()
    german = i18n.catalog("de")
    english_only = {m for m, text in german.items() if text != m and len(m) > 3}
    collect = """() => {
        const out = [];
        const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        while (walk.nextNode()) {
            const el = walk.currentNode.parentElement;
            // translate="no" marks data: names, the devices' own status texts
            if (!el || el.closest('script,style,[hidden],[translate=no]')) continue;
            const text = walk.currentNode.textContent.trim();
            if (text) out.push(text);
        }
        for (const el of document.querySelectorAll('[aria-label],[title],[placeholder]'))
            for (const a of ['aria-label', 'title', 'placeholder'])
                if (el.getAttribute(a)) out.push(el.getAttribute(a));
        return out;
    }"""
    with chromium_page(locale="de-AT") as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, "admin", ems.admin_password)
        assert page.locator("html").get_attribute("lang") == "de"
        for path, expect_text in (("/", "Ladezustand"), ("/monitoring", "Leistungssteuerung"), ("/users", "Konten"),
                                  ("/analytics", "Vollzyklen"), ("/forecasts", "Preis aus dem Netz"),
                                  ("/settings", "Nutzbare Kapazität"), ("/help", "Alarme und Sicherheit")):
            page.goto(ems.base_url + path, wait_until="load")
            page.wait_for_function("() => document.body.getAttribute('data-conn') === 'up' || "
                                   "!document.getElementById('conn-status')", timeout=15000)
            page.wait_for_timeout(500)  # one more state event after the first: script-rendered text is in
            page.click("[data-testid=user-menu-button]")
            shown = page.evaluate(collect)
            assert expect_text in shown
            left_in_english = sorted({text for text in shown if text in english_only})
            assert left_in_english == [], f"{path}: English text the catalog translates"
            page.keyboard.press("Escape")

        # The switch in the user menu: English, remembered across pages and a reload.
        page.click("[data-testid=user-menu-button]")
        with page.expect_navigation():
            page.click("[data-testid=user-menu-panel] [data-testid=lang-en]")
        assert page.locator("html").get_attribute("lang") == "en"
        page.goto(ems.base_url + "/monitoring", wait_until="load")
        assert page.locator("#pc-title").inner_text() == "Power control"
        watch.assert_clean()


def test_the_help_is_one_document_per_language_with_the_same_sections(ems_factory):
    ids = re.compile(r'<section id="([\w-]+)"')
    documents = {lang: i18n.document("help", lang) for lang in i18n.LANGUAGES}
    assert ids.findall(documents["de"]) == ids.findall(documents["en"]) == [
        "help-pages", "help-strategies", "help-safety", "help-technical", "help-support"]

    ems = ems_factory()
    admin = ems.login()
    for lang, heading, strategy in (("de", "Alarme und Sicherheit", "Lastspitzenkappung"),
                                    ("en", "Alarms and safety", "Peak shaving")):
        req = urllib.request.Request(ems.base_url + "/help", headers={"Cookie": admin.cookie or "",
                                                                    "Accept-Language": lang})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read().decode()
        assert heading in body and strategy in body and 'data-testid="menu-help"' in body

"""Headless Debian Chromium driven by Playwright (never `playwright install`), and what every browser
test shares: the watch on what must never happen in a page, and logging in through the form."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import pytest

CHROMIUM = "/usr/bin/chromium"
# Where the test run leaves screenshots for people to look at.
SCREENSHOTS = Path(os.environ.get("EMS_SCREENSHOT_DIR", Path(__file__).resolve().parent.parent / "build" / "screenshots"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def chromium_page(locale: str | None = None, viewport: tuple[int, int] = (1280, 800)) -> Iterator["object"]:
    """A page in headless Debian Chromium; `locale` sets navigator.language and Accept-Language."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            options: dict[str, Any] = {"viewport": {"width": viewport[0], "height": viewport[1]}}
            if locale:
                options["locale"] = locale
            page = browser.new_page(**options)
            yield page
        finally:
            browser.close()


class Watch:
    """Records what must never happen in a page: console errors (a CSP violation is one), script errors,
    JavaScript dialogs, and requests to any host but the appliance."""

    def __init__(self, page: Any):
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.foreign: list[str] = []
        self.allowed: list[tuple[str, str]] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("dialog", self._dialog)
        page.on("request", lambda req: self.foreign.append(req.url)
                if urlparse(req.url).hostname not in ("127.0.0.1", None) and not req.url.startswith("data:")
                else None)

    def expect_refusal(self, status: int, url: str) -> None:
        """A refusal the test provokes on purpose: Chromium logs every 4xx response as a console error."""
        self.allowed.append((f"status of {status} ", f"({url})"))

    def _console(self, msg: Any) -> None:
        if msg.type != "error":
            return
        text = f"{msg.text} ({msg.location.get('url', '')})"
        if not any(status in text and text.endswith(url) for status, url in self.allowed):
            self.errors.append(text)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def assert_clean(self) -> None:
        assert self.errors == [], "console errors (CSP violations count)"
        assert self.dialogs == [], "no JavaScript dialog may open"
        assert self.foreign == [], "the appliance must not load anything from outside"


def login_through_form(page: Any, base_url: str, username: str, password: str) -> None:
    """Log in as a person does: the dashboard URL sends an anonymous visitor to the form."""
    page.goto(base_url + "/", wait_until="load")
    assert urlparse(page.url).path == "/login", "an anonymous visitor is sent to the login page"
    page.fill("[data-testid=login-username]", username)
    page.fill("[data-testid=login-password]", password)
    with page.expect_navigation(url=base_url + "/"):
        page.click("[data-testid=login-submit]")


def shoot(page: Any, name: str) -> None:
    """A full-page screenshot into SCREENSHOTS as <name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def no_horizontal_scroll(page: Any) -> bool:
    """The page fits its viewport's width (a phone must never scroll sideways)."""
    return bool(page.evaluate("() => document.scrollingElement.scrollWidth <= document.scrollingElement.clientWidth"))

"""The dashboard as a user sees it in a real browser: live values that move, nothing loaded from outside."""
from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest

from browser import chromium_page
from conftest import demo_config

pytestmark = pytest.mark.browser


def test_dashboard_shows_live_soc_and_power_that_change(ems_factory, tmp_path):
    ems = ems_factory(demo_config(simulator={"speed": 60.0, "step_s": 0.5}, web={"sse_interval_s": 1.0}))
    with chromium_page() as page:
        errors: list[str] = []
        foreign: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda req: foreign.append(req.url)
                if urlparse(req.url).hostname not in ("127.0.0.1", None) and not req.url.startswith("data:")
                else None)
        page.goto(ems.base_url + "/", wait_until="load")
        assert urlparse(page.url).path == "/login", "the dashboard needs a login"
        page.fill("[data-testid=login-username]", "admin")
        page.fill("[data-testid=login-password]", ems.admin_password)
        with page.expect_navigation(url=ems.base_url + "/"):
            page.click("[data-testid=login-submit]")
        # A function, not an expression string: evaluating a string would need 'unsafe-eval', which the CSP forbids.
        page.wait_for_function("() => document.getElementById('conn-status').textContent.trim() === 'live'",
                               timeout=15000)

        def read() -> tuple[str, str]:
            return (page.inner_text("[data-testid=kpi-soc-value]"),
                    page.inner_text("[data-testid=kpi-bess-power-value]"))

        first = read()
        assert first[0].endswith("%") and first[0] != "—", first
        assert "kW" in first[1], first
        seen = {first}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (len({s for s, _ in seen}) > 1 and len({p for _, p in seen}) > 1):
            page.wait_for_timeout(500)
            seen.add(read())
        assert len({s for s, _ in seen}) > 1, f"SoC never changed: {seen}"
        assert len({p for _, p in seen}) > 1, f"BESS power never changed: {seen}"

        # The planner has made a plan by now: a real strategy and an expected profit in euros.
        page.wait_for_function("() => document.querySelector('[data-testid=kpi-profit-value]')"
                               ".textContent.includes('€')", timeout=15000)
        api_state = ems.get("/api/state")[1]
        names = {"arbitrage": "Arbitrage", "peak_shaving": "Peak shaving",
                 "self_consumption": "Self-consumption", "load_balancing": "Load balancing"}
        assert page.inner_text("[data-testid=kpi-strategy-value]") == names[api_state["strategy"]["active"]]
        assert page.inner_text("[data-testid=kpi-profit-value]").startswith(
            f"{api_state['expected_profit_24h_eur']:.2f}")
        assert page.locator("nav a[aria-current=page]").inner_text() == "Dashboard"
        points = page.evaluate("Chart.getChart('power-chart').data.datasets[0].data.length")
        assert points >= 2
        page.screenshot(path=str(tmp_path / "dashboard.png"))
        assert errors == []
        assert foreign == [], "the appliance must not load anything from outside"

"""The analytics page as a site owner sees it (headless Chromium against the real `ems run` on a fast
simulated plant): money against no battery, days, strategies, optimizations and plan vs actual, each as
the API computes it."""
from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from appliance import demo_config
from browser import Watch, chromium_page, login_through_form, no_horizontal_scroll, shoot
from support import wait_until

pytestmark = pytest.mark.browser
SIM_START = "2024-06-15T09:00:00+02:00"

READ_CHARTS = """() => ({
  bars: Chart.getChart('an-bars').data.labels,
  bar_values: Chart.getChart('an-bars').data.datasets[0].data,
  pie: Chart.getChart('an-pie').data.labels.length,
  pva: Chart.getChart('an-pva').data.datasets.map(d => d.data.length),
})"""


def test_analytics_shows_the_money_days_strategies_and_plan_vs_actual_the_api_computes(ems_factory):
    ems = ems_factory(demo_config(simulator={"speed": 120.0, "step_s": 0.5, "start": SIM_START},
                                  history={"sample_interval_s": 5.0, "flush_interval_s": 1.0}))
    admin = ems.login()

    def summary() -> dict[str, Any]:
        return admin.request("GET", "/api/analytics/summary?days=30")[1]

    wait_until(lambda: (summary().get("covered_h") or 0) > 0.25 and summary()["last_optimizations"], 60, 0.5)
    with chromium_page(locale="en-GB") as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, "admin", ems.admin_password)
        page.click("nav a[href='/analytics']")
        page.wait_for_function("() => window.Chart && Chart.getChart('an-pva') && Chart.getChart('an-bars')",
                               timeout=15000)
        expect(page.locator("[data-testid=an-run]").first).to_be_visible()
        body = summary()
        assert page.inner_text("[data-testid=an-savings-value]").endswith("€")
        shown_runs = page.locator("[data-testid=an-run]").count()  # at 120x a new run may land between the reads
        assert 1 <= shown_runs <= len(body["last_optimizations"]) <= shown_runs + 2
        assert "1 of 30 days with data" in page.inner_text("[data-testid=an-days-sub]")

        charts = page.evaluate(READ_CHARTS)
        daily = [d for d in admin.request("GET", "/api/analytics/daily?days=30")[1]["days"] if d["covered_h"] > 0]
        assert charts["bars"] == [d["date"] for d in daily]
        assert charts["bar_values"] == pytest.approx([d["savings_eur"] for d in daily], abs=0.05)
        assert charts["pie"] >= 1
        steps = admin.request("GET", "/api/analytics/plan_vs_actual")[1]["steps"]
        assert charts["pva"][0] >= 1 and abs(charts["pva"][0] - len(steps)) <= 1  # a quarter may close meanwhile
        shoot(page, "analytics-1280")
        page.set_viewport_size({"width": 360, "height": 740})
        page.wait_for_timeout(300)
        assert no_horizontal_scroll(page)
        shoot(page, "analytics-360")
        watch.assert_clean()

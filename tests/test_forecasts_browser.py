"""The forecasts page in a real browser: the price with its published/forecast boundary, PV and load with
their bands and where they come from, and how right the plans' forecasts were (fast simulated plant)."""
from __future__ import annotations


import pytest

from appliance import demo_config
from browser import Watch, chromium_page, login_through_form, no_horizontal_scroll, shoot
from support import wait_until

pytestmark = pytest.mark.browser
SIM_START = "2024-06-15T09:00:00+02:00"

READ_CHARTS = """() => ({
  price: Chart.getChart('fc-price').data.datasets.map(d => d.data.filter(v => v !== null).length),
  price_labels: Chart.getChart('fc-price').data.labels.length,
  pv: Chart.getChart('fc-pv').data.datasets.map(d => d.data.length),
  load: Chart.getChart('fc-load').data.datasets.map(d => d.data.length),
})"""


def test_the_forecasts_page_shows_what_the_api_forecasts_and_how_right_it_was(ems_factory):
    ems = ems_factory(demo_config(simulator={"speed": 120.0, "step_s": 0.5, "start": SIM_START},
                                  history={"sample_interval_s": 5.0, "flush_interval_s": 1.0}))
    admin = ems.login()
    forecast = wait_until(lambda: (lambda f: f if f.get("pv") and f.get("load") and (f.get("consumer_price") or
                                                                                     f.get("price")) else None)(
        admin.request("GET", "/api/forecast")[1]), 60, 0.5)
    wait_until(lambda: admin.request("GET", "/api/analytics/plan_vs_actual")[1]["summary"]["steps_compared"], 60, 0.5)
    price = forecast.get("consumer_price") or forecast["price"]
    with chromium_page(locale="en-GB") as page:
        watch = Watch(page)
        login_through_form(page, ems.base_url, "admin", ems.admin_password)
        page.click("nav a[href='/forecasts']")
        page.wait_for_function("() => window.Chart && ['fc-price', 'fc-pv', 'fc-load'].every(id => Chart.getChart(id))",
                               timeout=15000)
        charts = page.evaluate(READ_CHARTS)
        # The plant runs at 120× here: the forecast window moves on by a step or two between the reads.
        assert abs(charts["price_labels"] - len(price["values"])) <= 2
        published = sum(1 for f in price["is_forecast"] if not f)
        assert abs(charts["price"][0] - published) <= 2, "the solid line is the published prices"
        assert 0 < published < len(price["values"]) and charts["price"][1] > 0, "both sides of the boundary drawn"
        assert abs(charts["pv"][0] - len(forecast["pv"]["values"])) <= 2
        meta = page.inner_text("[data-testid=fc-pv-meta]")
        assert "model" in meta and str(forecast["pv"]["model"]) in meta
        if forecast["pv"].get("quantiles", {}).get("p10"):
            assert len(charts["pv"]) == 3 and "band" in meta
        page.wait_for_selector("[data-testid=fc-accuracy-row]", timeout=15000)
        shoot(page, "forecasts-1280")
        page.set_viewport_size({"width": 360, "height": 740})
        page.wait_for_timeout(300)
        assert no_horizontal_scroll(page)
        shoot(page, "forecasts-360")
        watch.assert_clean()

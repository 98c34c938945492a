"""The dashboard as a user sees it in a real browser: live values that move, the optimizer's plan,
nothing loaded from outside."""
from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from appliance import demo_config
from browser import Watch, chromium_page, login_through_form
from playwright.sync_api import expect
from support import wait_until

pytestmark = pytest.mark.browser
# Plant time from a fixed instant (a June morning: PV rising, the battery busy), not from the wall clock,
# so the plant, the prices and the plans are the same on every run.
SIM_START = "2024-06-15T09:00:00+02:00"

# Page functions, not expression strings: evaluating a string would need 'unsafe-eval', which the CSP forbids.
READ_PLAN_CHARTS = """() => {
  const plan = Chart.getChart('plan-chart');
  const price = Chart.getChart('price-soc-chart');
  const byLabel = (chart, label) => chart.data.datasets.find(d => d.label === label);
  return {
    labels: plan.data.labels,
    lengths: plan.data.datasets.map(d => d.data.length),
    bess_type: byLabel(plan, 'BESS').type || plan.config.type,
    bess_kw: byLabel(plan, 'BESS').data,
    grid_kw: byLabel(plan, 'Grid').data,
    price_labels: price.data.labels,
    price_ct: byLabel(price, 'Import price').data,
    price_stepped: byLabel(price, 'Import price').stepped,
    soc_pct: byLabel(price, 'SoC').data,
    reason: document.querySelector('[data-testid=strategy-reason]').textContent,
    fallback_shown: !document.querySelector('[data-testid=strategy-fallback]').hidden,
    empty_shown: !document.querySelector('[data-testid=plan-empty]').hidden,
  };
}"""


def admin_site_timezone(ems: Any) -> str:
    return ems.get("/api/config/site")[1]["site"]["timezone"]


def log_in(page: Any, ems: Any) -> None:
    login_through_form(page, ems.base_url, "admin", ems.admin_password)
    page.wait_for_function("() => document.getElementById('conn-status').textContent.trim() === 'live'",
                           timeout=15000)


def test_dashboard_shows_live_soc_and_power_that_change(ems_factory, tmp_path):
    ems = ems_factory(demo_config(simulator={"speed": 60.0, "step_s": 0.5, "start": SIM_START},
                                  web={"sse_interval_s": 1.0}))
    with chromium_page() as page:
        watch = Watch(page)
        log_in(page, ems)

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
        names = {"arbitrage": "Arbitrage", "peak_shaving": "Peak shaving",
                 "self_consumption": "Self-consumption", "load_balancing": "Load balancing"}

        def kpis_show(api_state: dict[str, Any]) -> bool:
            return page.inner_text("[data-testid=kpi-strategy-value]") == names[api_state["strategy"]["active"]] \
                and page.inner_text("[data-testid=kpi-profit-value]").startswith(
                    f"{api_state['expected_profit_24h_eur']:.2f}")

        # A re-plan may land between reading the page and the API: the cards follow the live state within
        # a few events.
        wait_until(lambda: kpis_show(ems.get("/api/state")[1]), 15, interval_s=0.3)
        assert page.locator("nav a[aria-current=page]").inner_text() == "Dashboard"
        points = page.evaluate("() => Chart.getChart('power-chart').data.datasets[0].data.length")
        assert points >= 2
        page.screenshot(path=str(tmp_path / "dashboard.png"))
        watch.assert_clean()


def _mismatch(shown: dict[str, Any], body: dict[str, Any], state_reason: Any) -> str:
    """Why the charts do not (yet) show the API's plan; "" when they do."""
    plan = body.get("plan")
    if not plan:
        return "the API has no plan yet"
    steps = plan["steps"]
    if len(shown["labels"]) != len(steps) or set(shown["lengths"]) != {len(steps)}:
        return f"{shown['lengths']} points on the plan chart, {len(steps)} steps in the plan"
    if shown["soc_pct"] != [s["soc_pct"] for s in steps]:
        return "the SoC series is not the plan's"
    for key, field, scale in (("bess_kw", "bess_power_w", 1000), ("grid_kw", "grid_power_w", 1000),
                              ("price_ct", "import_price_eur_per_kwh", 0.01)):
        if shown[key] != pytest.approx([s[field] / scale for s in steps]):
            return f"the {key} series is not the plan's"
    if shown["reason"] != plan["reason"] or shown["reason"] != state_reason:
        return f"reason {shown['reason']!r} vs plan {plan['reason']!r} / state {state_reason!r}"
    return ""


def page_shows_api_plan(page: Any, ems: Any, newer_than: float | None = None,
                        timeout_s: float = 30.0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Wait (bounded) until the charts show the plan /api/plan returns (planned after `newer_than`)."""
    why = "never compared"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = ems.get("/api/plan")[1]
        state_reason = ems.get("/api/state")[1]["strategy"].get("reason")
        shown = page.evaluate(READ_PLAN_CHARTS)
        if newer_than is not None and (body.get("planned_at") or 0) <= newer_than:
            why = "the planner has not re-planned yet"
        elif body == ems.get("/api/plan")[1]:  # the plan did not change while the page was read
            why = _mismatch(shown, body, state_reason)
            if not why:
                return body, shown
        page.wait_for_timeout(300)
    raise AssertionError(why)


def test_dashboard_charts_the_current_plan_and_says_why(ems_factory, tmp_path):
    ems = ems_factory(demo_config(simulator={"speed": 60.0, "step_s": 0.5, "start": SIM_START},
                                  web={"sse_interval_s": 1.0}))
    with chromium_page() as page:
        watch = Watch(page)
        log_in(page, ems)
        page.wait_for_function("() => { const c = Chart.getChart('plan-chart');"
                               " return !!c && c.data.labels.length >= 4; }", timeout=30000)

        # The planner re-plans every few real seconds at this speed: compare until the page has caught up.
        body, shown = page_shows_api_plan(page, ems)
        # ...and the page follows the next plan by itself (the live state shows a new profit; this comes
        # well before the 60 s periodic refresh).
        body, shown = page_shows_api_plan(page, ems, newer_than=body["planned_at"])

        steps = body["plan"]["steps"]
        assert len(steps) >= 4
        site = ZoneInfo(admin_site_timezone(ems))
        assert shown["labels"] == [datetime.fromtimestamp(s["ts"], site).strftime("%H:%M") for s in steps], \
            "x axis: the site's wall time of each plan step, wherever the browser is"
        assert shown["price_labels"] == shown["labels"]
        assert shown["bess_type"] == "bar"
        assert shown["bess_kw"] == pytest.approx([s["bess_power_w"] / 1000 for s in steps])
        assert shown["grid_kw"] == pytest.approx([s["grid_power_w"] / 1000 for s in steps])
        assert shown["price_ct"] == pytest.approx([s["import_price_eur_per_kwh"] * 100 for s in steps])
        assert shown["price_stepped"], "a price holds for its whole step"
        assert shown["reason"].strip(), "the strategy card says why"
        assert shown["fallback_shown"] == body["plan"]["fallback"]
        assert not shown["empty_shown"]
        assert page.inner_text("[data-testid=strategy-reason]") == body["plan"]["reason"]

        page.screenshot(path=str(tmp_path / "dashboard-plan.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        # Chart.js resizes the canvases asynchronously; its resize callback narrows the x ticks when done.
        page.wait_for_function("() => ['plan-chart', 'price-soc-chart'].every(id => "
                               "Chart.getChart(id).options.scales.x.ticks.maxTicksLimit === 4)", timeout=5000)
        boxes = [page.locator(f"[data-testid={t}]").bounding_box() for t in ("plan-chart", "price-soc-chart")]
        assert boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"], "on a phone the charts stack"
        assert all(b["x"] + b["width"] <= 390 for b in boxes), "the charts fit the phone's width"
        page.screenshot(path=str(tmp_path / "dashboard-plan-phone.png"), full_page=True)
        watch.assert_clean()


def test_dashboard_says_no_plan_yet_while_the_battery_is_silent(ems_factory):
    # The Modbus devices are configured but nothing answers on their ports: no SoC, so the planner waits.
    ems = ems_factory(demo_config(modbus=True, simulator={"enabled": False}))
    with chromium_page() as page:
        watch = Watch(page)
        log_in(page, ems)
        page.wait_for_function("() => !document.querySelector('[data-testid=plan-empty]').hidden", timeout=15000)
        assert ems.get("/api/plan")[1]["plan"] is None
        assert page.inner_text("[data-testid=plan-empty]").startswith("No plan yet")
        assert page.locator("[data-testid=price-soc-empty]").is_visible()
        assert page.evaluate("() => Chart.getChart('plan-chart').data.labels.length") == 0
        page.wait_for_function("() => document.querySelector('[data-testid=strategy-reason]').textContent !== ''",
                               timeout=15000)
        assert page.inner_text("[data-testid=strategy-reason]") == ems.get("/api/state")[1]["strategy"]["reason"]
        assert not page.locator("[data-testid=strategy-fallback]").is_visible()
        watch.assert_clean()


def test_an_operator_switches_strategy_on_the_dashboard_and_sees_the_new_plan_and_its_cost(ems_factory):
    # Wear so dear that cycling the battery never pays: load balancing (which flattens the grid profile
    # whatever it costs) then plans at a loss, and the card must say so; auto plans no loss.
    ems = ems_factory(demo_config(simulator={"start": SIM_START}, bess={"degradation_cost_eur_per_kwh": 5.0}))
    admin = ems.login()
    with chromium_page() as page:
        watch = Watch(page)
        log_in(page, ems)
        page.wait_for_function("() => document.querySelector('[data-testid=strategy-choice]').value === 'auto'")
        page.select_option("[data-testid=strategy-choice]", "load_balancing")
        page.click("[data-testid=strategy-apply]")
        status = page.locator("[data-testid=strategy-status]")
        expect(status).to_have_text("New plan: Load balancing.", timeout=20000)
        assert page.inner_text("[data-testid=kpi-strategy-value]") == "Load balancing"
        strategy = admin.request("GET", "/api/config/strategy")[1]["strategy"]
        assert (strategy["mode"], strategy["current"]) == ("manual", "load_balancing")
        profit = admin.request("GET", "/api/state")[1]["expected_profit_24h_eur"]
        assert profit < 0, "the scenario: this plan loses money against no battery"
        loss = page.locator("[data-testid=strategy-loss]")
        expect(loss).to_be_visible()
        assert "more than running without the battery" in loss.inner_text()
        assert page.inner_text("[data-testid=strategy-reason]") == \
            admin.request("GET", "/api/plan")[1]["plan"]["reason"]

        page.select_option("[data-testid=strategy-choice]", "auto")
        page.click("[data-testid=strategy-apply]")
        expect(status).to_contain_text("New plan:", timeout=20000)
        assert admin.request("GET", "/api/config/strategy")[1]["strategy"]["mode"] == "auto"
        expect(loss).to_be_hidden()
        watch.assert_clean()


def test_a_dso_order_overrides_the_strategy_and_the_dashboard_says_so_in_words(ems_factory):
    ems = ems_factory(demo_config(simulator={"start": SIM_START}, web={"sse_interval_s": 0.5}))
    admin = ems.login()
    with chromium_page() as page:
        watch = Watch(page)
        log_in(page, ems)
        banner = page.locator("[data-testid=override-banner]")
        expect(banner).to_be_hidden()
        badge = page.locator("[data-testid=notif-badge]")
        alerts_before = int(badge.inner_text() or 0) if badge.is_visible() else 0

        assert admin.request("POST", "/api/simulator/events", {"type": "dso_trip"})[0] == 200
        expect(banner).to_be_visible(timeout=10000)  # well under a second here; the bound only keeps CI calm
        # The notification about it arrives with the live stream, not with the menu's 30 s poll.
        expect(badge).to_have_text(str(alerts_before + 1), timeout=10000)
        assert banner.get_attribute("data-kind") == "shutdown"
        assert page.inner_text("[data-testid=override-title]") == "Grid operator: shutdown"
        assert "0 W" in page.inner_text("[data-testid=override-text]")
        assert "is-overridden" in (page.locator("[data-testid=kpi-strategy]").get_attribute("class") or "")

        assert admin.request("POST", "/api/simulator/events", {"type": "dso_limit", "limit_pct": 30})[0] == 200
        expect(banner).to_have_attribute("data-kind", "limited", timeout=10000)
        assert "30 %" in page.inner_text("[data-testid=override-text]")

        assert admin.request("POST", "/api/simulator/events", {"type": "dso_normal"})[0] == 200
        expect(banner).to_be_hidden(timeout=10000)
        watch.assert_clean()


def test_the_dashboard_shows_every_flow_now_and_todays_energy_and_savings(ems_factory):
    ems = ems_factory(demo_config(simulator={"speed": 60.0, "step_s": 0.5, "start": SIM_START},
                                  history={"sample_interval_s": 5.0, "flush_interval_s": 1.0}))
    admin = ems.login()
    wait_until(lambda: admin.request("GET", "/api/analytics/daily?days=1")[1]["days"][-1]["covered_h"] > 0, 30, 0.5)
    with chromium_page() as page:
        watch = Watch(page)
        log_in(page, ems)
        for node in ("pv", "grid", "house", "bess"):
            expect(page.locator(f"[data-testid=flow-{node}] .flow-kw")).to_contain_text("kW", timeout=10000)
        plant = admin.request("GET", "/api/state")[1]["plant"]
        shown_pv = float(page.inner_text("#flow-pv-kw").split()[0])
        assert shown_pv == pytest.approx(plant["pv"]["power_w"]["value"] / 1000, abs=1.0)  # 60x: it moves meanwhile
        assert page.inner_text("#flow-grid-dir") in ("importing", "exporting", "idle")
        assert page.inner_text("#flow-bess-dir") in ("charging", "discharging", "idle")
        expect(page.locator("[data-testid=flow-today]")).to_contain_text("today: PV", timeout=10000)
        assert "saved" in page.inner_text("[data-testid=flow-today]")
        watch.assert_clean()


READ_POWER_CHART = """() => {
  const c = Chart.getChart('power-chart');
  const x = c.scales.x;
  return {
    type: x.type, min: x.min, max: x.max, left: x.left, width: x.width,
    tick_limit: c.options.scales.x.ticks.maxTicksLimit,
    xs: c.data.datasets[0].data.map(p => p.x),
    nulls: c.data.datasets[0].data.map((p, i) => c.data.datasets.every(d => d.data[i].y === null)),
    pixels: c.getDatasetMeta(0).data.map(el => el.x),
    scale_pixels: c.data.datasets[0].data.map(p => x.getPixelForValue(p.x)),
    ticks: x.ticks.map(t => ({ value: t.value, label: t.label })),
  };
}"""


def test_the_power_chart_has_a_time_axis_that_spaces_points_by_their_timestamps(ems_factory, tmp_path):
    # The seed comes from a telemetry answer made here (the test's own intervals: 10 s, a two-minute
    # outage, then 3 s); the live points after it are the real stream's, every 0.5 s.
    ems = ems_factory(demo_config(simulator={"start": SIM_START}, web={"sse_interval_s": 0.5}))
    site = ZoneInfo(admin_site_timezone(ems))
    seed: dict[str, Any] = {}

    def telemetry(route: Any) -> None:
        now = float(ems.get("/api/state")[1]["ts"])
        before = [now - 600 + 10 * i for i in range(19)]      # now-600 ... now-420, every 10 s
        after = [now - 300 + 3 * i for i in range(100)]       # now-300 ... now-3, every 3 s
        seed.update(now=now, before=before, after=after)
        rows = [{"ts": ts, "pv_power_w": 1000.0, "load_power_w": 800.0, "grid_power_w": -200.0,
                 "bess_power_w": 0.0} for ts in before + after]
        route.fulfill(status=200, content_type="application/json",
                      body=json.dumps({"minutes": 15, "rows": rows}))

    with chromium_page() as page:
        watch = Watch(page)
        page.route("**/api/monitoring/telemetry*", telemetry)
        log_in(page, ems)
        page.wait_for_function("() => { const c = Chart.getChart('power-chart');"
                               " const d = c && c.data.datasets[0].data;"
                               " return !!d && d.length > 130; }",
                               timeout=20000)
        shown = page.evaluate(READ_POWER_CHART)

        assert shown["type"] == "linear", "the x axis is a time axis, not one slot per point"
        xs = shown["xs"]
        assert all(b > a for a, b in zip(xs, xs[1:])), "points carry their timestamps, oldest first"
        assert shown["max"] == xs[-1] and shown["min"] == xs[-1] - 15 * 60, "the window: the last 15 min"
        before, after = seed["before"], seed["after"]
        assert xs[:len(before)] == pytest.approx(before)
        # The outage is a gap: one point without values between the two runs breaks every line.
        assert shown["nulls"][len(before)] and before[-1] < xs[len(before)] < after[0]
        assert xs[len(before) + 1:len(before) + 1 + len(after)] == pytest.approx(after)
        assert not any(shown["nulls"][:len(before)] + shown["nulls"][len(before) + 1:len(before) + 1 + len(after)])
        assert xs[-1] > after[-1], "live points follow the seed"

        # Pixels are linear in time: a 10 s step is 10/3 of a 3 s step, and every point sits at its instant.
        px = shown["pixels"]
        assert px == pytest.approx(shown["scale_pixels"], abs=0.01)
        per_s = shown["width"] / (shown["max"] - shown["min"])
        for x, p in zip(xs, px):
            assert p == pytest.approx(shown["left"] + (x - shown["min"]) * per_s, abs=0.05)
        ten_s, three_s = px[1] - px[0], px[len(before) + 2] - px[len(before) + 1]
        assert ten_s == pytest.approx(three_s * 10 / 3, rel=1e-3)

        # Ticks: whole minutes, labelled with the site's clock time.
        ticks = shown["ticks"]
        assert 2 <= len(ticks) <= shown["tick_limit"], ticks
        assert all(tk["value"] % 60 == 0 and shown["min"] <= tk["value"] <= shown["max"] for tk in ticks), ticks
        assert [tk["label"] for tk in ticks] == \
            [datetime.fromtimestamp(tk["value"], site).strftime("%H:%M") for tk in ticks]

        # The tooltip names the time of the point under the pointer.
        box = page.locator("[data-testid=power-chart]").bounding_box()
        page.mouse.move(box["x"] + px[5], box["y"] + box["height"] / 2)
        page.wait_for_function("() => { const tt = Chart.getChart('power-chart').tooltip;"
                               " return !!tt && tt.opacity > 0 && tt.title.length > 0; }", timeout=5000)
        title = page.evaluate("() => Chart.getChart('power-chart').tooltip.title[0]")
        assert title in {datetime.fromtimestamp(x, site).strftime("%H:%M:%S") for x in xs[3:8]}, title

        # On a phone the axis keeps to fewer ticks.
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_function("() => Chart.getChart('power-chart').options.scales.x.ticks.maxTicksLimit === 4",
                               timeout=5000)
        page.wait_for_function("() => { const x = Chart.getChart('power-chart').scales.x;"
                               " return x.ticks.length >= 2 && x.ticks.length <= 4; }", timeout=5000)
        page.screenshot(path=str(tmp_path / "dashboard-power-chart.png"), full_page=True)
        watch.assert_clean()

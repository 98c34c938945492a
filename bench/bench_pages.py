"""What each page costs a phone on the gateway's Wi-Fi: bytes and requests cold and warm, first contentful
paint in headless Chromium, and the live stream's bytes per minute.

Against `ems run` on the Modbus demo (started as the tests start it, `tests/appliance.py`), once it has made
its first plan (a running appliance, not one still starting). Per page, in a fresh browser context (cold
cache): the encoded bytes of every response (headers and body) and the number of requests, then the page
again in the same context (warm: the versioned static files come from the cache, the page and its data are
revalidated, `ems/api/revalidation.py`); the baseline beside each is the same page's bytes uncompressed
(what it cost before gzip and caching). German readers also load the scripts' German catalog: each page's
cold bytes in German are a figure of their own. The live stream: bytes per minute with `?deltas=1`
(what the pages open) beside the whole state every tick (what it was). A DSO trip to the dashboard's
override banner: from the simulator event to the banner on screen, beside the stream's tick (the banner does
not wait for it, `EmsFacade.override_key`). Targets (the pages issue): ≤ 120 KB cold, ≤ 10 KB warm, first
paint ≤ 300 ms locally, the banner within 2 s.
"""
from __future__ import annotations

import http.client
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from appliance import demo_config, start_ems  # the tests' way of starting the appliance
from browser import CHROMIUM, CHROMIUM_ARGS
from support import wait_until

PAGES = {"dashboard": "/", "monitoring": "/monitoring", "analytics": "/analytics", "forecasts": "/forecasts",
         "settings": "/settings", "users": "/users", "help": "/help"}
SSE_SECONDS = 30.0
TRIPS = 8


def trip_to_banner_ms(context: Any, base: str, session: Any) -> list[float]:
    """Milliseconds from posting a DSO trip (simulator event) to the dashboard's banner being visible."""
    page = context.new_page()
    page.goto(base + "/", wait_until="load")
    banner = page.locator("[data-testid=override-banner]")
    page.wait_for_selector("#conn-status[data-state=live]", timeout=15000)
    out = []
    for _ in range(TRIPS):
        page.wait_for_timeout(700)  # a trip at a random point of the stream's 2 s tick
        start = time.monotonic()
        assert session.request("POST", "/api/simulator/events", {"type": "dso_trip"})[0] == 200
        banner.wait_for(state="visible", timeout=10000)
        out.append((time.monotonic() - start) * 1000.0)
        assert session.request("POST", "/api/simulator/events", {"type": "dso_normal"})[0] == 200
        banner.wait_for(state="hidden", timeout=10000)
    page.close()
    return sorted(out)


def page_load(context: Any, url: str) -> dict[str, float]:
    page = context.new_page()
    seen: list[Any] = []
    page.on("requestfinished", lambda r: seen.append(r))
    page.goto(url, wait_until="load")
    page.wait_for_timeout(1500)  # the page's own fetches after load
    fcp = page.evaluate("() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || -1")
    encoded = raw = 0.0
    count = 0
    for request in seen:
        if "/api/events" in request.url:
            continue
        sizes = request.sizes()
        response = request.response()
        wire = sizes["responseBodySize"] + sizes["responseHeadersSize"]
        if wire <= 0:
            continue  # served from the browser's cache: no request went out
        encoded += wire
        try:
            raw += len(response.body()) if response is not None else 0
        except Exception:  # a body the browser did not keep (a redirect)
            pass
        count += 1
    page.close()
    return {"encoded": encoded, "raw": raw, "requests": count, "fcp_ms": fcp}


def sse_bytes_per_min(base: str, cookie: str, query: str) -> float:
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=15)
    conn.request("GET", "/api/events" + query, headers={"Cookie": cookie})
    resp = conn.getresponse()
    total, end = 0, time.monotonic() + SSE_SECONDS
    while time.monotonic() < end:
        line = resp.fp.readline()
        if not line:
            break
        total += len(line)
    conn.close()
    return total * 60.0 / SSE_SECONDS


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        ems = start_ems(Path(tmp), demo_config(modbus=True))
        try:
            session = ems.login()
            wait_until(lambda: (ems.get("/api/plan")[1] or {}).get("plan"), 60, interval_s=0.5)
            cookie = session.cookie or ""
            name, value = cookie.split("=", 1)
            host = urlsplit(ems.base_url).hostname
            figures: dict[str, float] = {}
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                # One page first, not measured: the first paint of whichever page came first would otherwise
                # include Chromium starting its renderer, not the page.
                warm_up = browser.new_context()
                warm_up.new_page().goto(ems.base_url + "/login", wait_until="load")
                warm_up.close()
                for page_name, path in PAGES.items():
                    context = browser.new_context(viewport={"width": 390, "height": 844})
                    context.add_cookies([{"name": name, "value": value, "domain": host, "path": "/"}])
                    cold = page_load(context, ems.base_url + path)
                    warm = page_load(context, ems.base_url + path)
                    context.close()
                    figures[f"page_{page_name}_cold_kb"] = round(cold["encoded"] / 1024, 1)
                    figures[f"page_{page_name}_uncompressed_baseline_kb"] = round(cold["raw"] / 1024, 1)
                    figures[f"page_{page_name}_warm_kb"] = round(warm["encoded"] / 1024, 1)
                    figures[f"page_{page_name}_requests_cold"] = cold["requests"]
                    figures[f"page_{page_name}_requests_warm"] = warm["requests"]
                    figures[f"page_{page_name}_first_paint_ms"] = round(cold["fcp_ms"], 1)
                    german = browser.new_context(viewport={"width": 390, "height": 844}, locale="de-AT")
                    german.add_cookies([{"name": name, "value": value, "domain": host, "path": "/"}])
                    figures[f"page_{page_name}_cold_de_kb"] = round(page_load(german, ems.base_url + path)["encoded"]
                                                                    / 1024, 1)
                    german.close()
                context = browser.new_context(viewport={"width": 390, "height": 844})
                context.add_cookies([{"name": name, "value": value, "domain": host, "path": "/"}])
                trips = trip_to_banner_ms(context, ems.base_url, session)
                context.close()
                figures["dso_trip_to_banner_ms_p50"] = round(trips[len(trips) // 2], 1)
                figures["dso_trip_to_banner_ms_max"] = round(trips[-1], 1)
                figures["sse_tick_baseline_ms"] = ems.get("/api/config/web")[1]["web"]["sse_interval_s"] * 1000.0
                browser.close()
            figures["sse_deltas_kb_per_min"] = round(sse_bytes_per_min(ems.base_url, cookie, "?deltas=1") / 1024, 1)
            figures["sse_whole_state_baseline_kb_per_min"] = round(sse_bytes_per_min(ems.base_url, cookie, "") / 1024, 1)
        finally:
            ems.stop()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

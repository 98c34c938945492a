"""Big but valid config bodies must not stall the event loop the safety loop runs on: they are bounded, and
parsed and validated in the web thread; the loop only gets the finished config (issue 17, class 8).

What that costs the loop in milliseconds is a benchmark's figure (`bench/bench_security.py`,
largest_body_loop_lag_p99_ms beside the idle baseline), not a timed assertion here: this test asserts where the
work happens, which no load on the machine can change."""
from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from appliance import demo_config
from ems.api.app import SECTION_BODY_BYTES, create_app
from ems.api.server import WebServer
from ems.config import ConfigStore
from ems.runtime import Listen, Runtime

PASSWORD = "correct-horse-battery-9"


def largest_grid_tariffs_body(multiplier: float) -> bytes:
    """The biggest grid_tariffs section the API accepts: 48 windows (the schema's limit), every month each,
    padded with whitespace to one byte under the section's body limit."""
    windows = [{"start": f"{h:02d}:{m:02d}", "end": f"{h:02d}:{m + 29:02d}", "multiplier": multiplier,
                "months": list(range(1, 13))} for h in range(24) for m in (0, 30)]
    body = json.dumps({"enabled": True, "network_level": "NE7", "base_tariff_eur_per_kwh": 0.1095,
                       "power_price_eur_per_kw_month": 0.0, "high_load_windows": windows}, indent=2).encode()
    limit = SECTION_BODY_BYTES["grid_tariffs"]
    assert len(body) < limit
    return body[:-1] + b" " * (limit - len(body) - 1) + b"}"


def test_the_largest_grid_tariffs_body_is_validated_in_the_web_thread_and_applied_on_the_loop(tmp_path: Path,
                                                                                              monkeypatch):
    (tmp_path / "ems.yaml").write_text(yaml.safe_dump(demo_config(simulator={"speed": 1.0})))
    runtime = Runtime(ConfigStore.open(tmp_path / "ems.yaml"), tmp_path / "data", Listen("127.0.0.1", 0))
    admin = runtime.security.users.create("admin1", PASSWORD, role="admin")
    token, _ = runtime.security.tokens.create(admin.id, "bench")
    validated_in: list[str] = []  # the thread each change was parsed, validated and written in
    applied_in: list[str] = []  # the thread each change reached the runtime's subscribers in
    apply_change = ConfigStore.apply_change

    def recording_apply_change(self: ConfigStore, *args: object, **kwargs: object) -> object:
        validated_in.append(threading.current_thread().name)
        return apply_change(self, *args, **kwargs)

    monkeypatch.setattr(ConfigStore, "apply_change", recording_apply_change)
    started = threading.Event()
    loop_box: dict[str, asyncio.AbstractEventLoop] = {}
    stop_box: dict[str, asyncio.Event] = {}

    async def main() -> None:
        loop_box["loop"] = asyncio.get_running_loop()
        stop_box["stop"] = asyncio.Event()
        await runtime.start()
        runtime.config.subscribe("grid_tariffs", lambda *_: applied_in.append(threading.current_thread().name))
        started.set()
        await stop_box["stop"].wait()
        await runtime.stop()

    loop_thread = threading.Thread(target=lambda: asyncio.run(main()), name="ems-loop", daemon=True)
    loop_thread.start()
    assert started.wait(20)
    web = WebServer(create_app(runtime.facade()), "127.0.0.1", 0, threads=12)
    host, port = web.start()
    try:
        def post(body: bytes) -> int:
            req = urllib.request.Request(f"http://{host}:{port}/api/config/grid_tariffs", data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status

        bodies = [largest_grid_tariffs_body(1.25), largest_grid_tariffs_body(1.5)]
        deadline = time.monotonic() + 60
        for i in range(20):  # each a real change: validated, written, applied by the subscribers on the loop
            assert post(bodies[i % 2]) == 200
            assert time.monotonic() < deadline
        assert runtime.config.config.grid_tariffs.high_load_windows[0].multiplier == 1.5
        assert len(runtime.config.config.grid_tariffs.high_load_windows) == 48
        assert len(validated_in) == 20 and "ems-loop" not in validated_in, validated_in
        deadline = time.monotonic() + 10
        while len(applied_in) < 20 and time.monotonic() < deadline:  # the subscribers run after the answer
            time.sleep(0.05)
        assert applied_in == ["ems-loop"] * 20, "the loop gets the finished config, once per change"
    finally:
        web.stop()
        loop = loop_box["loop"]
        loop.call_soon_threadsafe(stop_box["stop"].set)
        loop_thread.join(timeout=15)

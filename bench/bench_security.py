"""Robustness under hostile input: `ems run`'s RSS after a fuzz run, and the event loop's lag during one.

A seeded fuzz load (BENCH_FUZZ_REQUESTS, default 2,000 requests over every route of the app's route table, as
anonymous, viewer and operator: junk JSON, deep nesting, wrong types, non-UTF-8 headers, big bodies, logins)
is sent twice:
- to `ems run` (the demo, real speed) in its own process: RSS before and after (the unit runs with
  MemoryMax=200M) and how many answers were 5xx (must be 0);
- to the runtime on an event loop in this process with a lag probe (a 10 ms sleep, how late it wakes)
  while the load runs: lag p50/p99 during the fuzz, against the same probe with no load; then the same
  probe while an admin posts the largest grid_tariffs body the API accepts, 20 times.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import yaml

from ems.api.app import CONFIG_ROUTES, create_app
from ems.api.server import WebServer
from ems.config import ConfigStore
from ems.resources import demo_config_text
from ems.runtime import Listen, Runtime
from ems.users.auth import Security
from test_security_loop import largest_grid_tariffs_body  # the body the test posts, at the section's limit

REQUESTS = int(os.environ.get("BENCH_FUZZ_REQUESTS", "2000"))
SERVING = re.compile(r"serving on http://([\d.]+):(\d+)")
PASSWORD = "correct-horse-battery-9"
JUNK = ["", "null", "[]", "{}", '{"a": 1}', "1e999", '"\\ud800"', "[" * 2000 + "]" * 2000, '{"username": 5}',
        '{"up_to_id": -1}', '{"strategy": "nope"}', '{"type": "dso_trip"}', "\xff\xfe"]


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_config_file(directory: Path) -> Path:
    """The shipped demo (simulated Modbus devices), on free ports so a run never collides with another."""
    cfg = yaml.safe_load(demo_config_text())
    cfg["modbus"] = [{**d, "port": free_port()} for d in cfg["modbus"]]
    path = directory / "ems.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def routes_of(tmp: Path) -> list[tuple[str, str]]:
    (tmp / "ems.yaml").write_text(demo_config_text())
    rt = Runtime(ConfigStore.open(tmp / "ems.yaml"), tmp, Listen("127.0.0.1", 0))
    try:
        return sorted({(r.method, r.rule) for r in create_app(rt.facade()).routes})
    finally:
        rt.history.close()


def concrete(rule: str, rnd: random.Random) -> str:
    path = re.sub(r"<[^>]*:int>", lambda m: str(rnd.choice([1, 2, 999999, -1])), rule)
    path = re.sub(r"<path:[^>]*>", lambda m: rnd.choice(["css/app.css", "../x", "js/util.js"]), path)
    return re.sub(r"<[^>]*>", lambda m: quote(rnd.choice(["x", "é", "../..", "%00"]), safe=""), path)


def fuzz_requests(routes: list[tuple[str, str]], sections: dict[str, object], seed: int, n: int) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        method, rule = rnd.choice(routes)
        path = concrete(rule, rnd)
        if rnd.random() < 0.4:
            path += "?" + urlencode({rnd.choice(["limit", "hours", "days", "minutes", "next", "format", "profile"]):
                                     rnd.choice(["-1", "1e9", "abc", "50", "/%09/evil", "csv"])})
        body = rnd.choice(JUNK).encode("utf-8", "surrogatepass")
        if rule in sections and rnd.random() < 0.6:
            section = sections[rule]
            if isinstance(section, dict) and section:
                section = {**section, rnd.choice(sorted(section)): rnd.choice([None, -1, 1e12, "x" * 200, [], {}, True])}
            body = json.dumps(section).encode()
        if rnd.random() < 0.02:
            body = b'{"pad": "' + b"x" * 300_000 + b'"}'
        headers = {"Content-Type": "application/json"}
        if rnd.random() < 0.1:
            headers[rnd.choice(["X-CSRF-Token", "Authorization", "Origin"])] = "\xff\xfe junk"
        out.append({"method": method, "path": path, "body": body if method != "GET" else None, "headers": headers,
                    "caller": rnd.choice(["anonymous", "viewer", "operator"])})
    return out


def send(host: str, port: int, req: dict, auth: dict[str, dict[str, str]]) -> int:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.putrequest(req["method"], req["path"], skip_accept_encoding=True)
        for name, value in {**req["headers"], **auth.get(req["caller"], {})}.items():
            conn.putheader(name, value.encode("latin-1"))
        if req["body"] is not None:
            conn.putheader("Content-Length", str(len(req["body"])))
        conn.endheaders(req["body"])
        resp = conn.getresponse()
        if (resp.getheader("Content-Type") or "").startswith("text/event-stream"):
            resp.readline()
        else:
            resp.read()
        return resp.status
    except OSError:
        return 0
    finally:
        conn.close()


def tokens(security: Security) -> dict[str, dict[str, str]]:
    auth = {}
    for role in ("viewer", "operator", "admin"):
        user = security.users.create(f"{role}1", PASSWORD, role=role)
        token, _ = security.tokens.create(user.id, "bench")
        auth[role] = {"Authorization": f"Bearer {token}"}
    return auth


def sections_of(host: str, port: int, auth: dict[str, str]) -> dict[str, object]:
    out = {}
    for section, paths in CONFIG_ROUTES.items():
        for path in paths:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request("GET", path, headers=auth)
            out[path] = json.loads(conn.getresponse().read()).get(section) or {}
            conn.close()
    return out


def rss_phase(routes: list[tuple[str, str]]) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="ems-bench-fuzz-"))
    security = Security.open(tmp)
    security.users.ensure_admin()
    auth = tokens(security)
    security.close()
    proc = subprocess.Popen([sys.executable, "-m", "ems", "run", "--config", str(demo_config_file(tmp)),
                             "--data-dir", str(tmp), "--port", "0"], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    host, port = "", 0
    for line in proc.stderr:
        m = SERVING.search(line)
        if m:
            host, port = m.group(1), int(m.group(2))
            break
    stderr = proc.stderr
    threading.Thread(target=lambda: [None for _ in stderr], daemon=True).start()  # keep the pipe drained
    try:
        time.sleep(10)
        before = rss_mb(proc.pid)
        reqs = fuzz_requests(routes, sections_of(host, port, auth["viewer"]), seed=17, n=REQUESTS)
        statuses = [send(host, port, r, auth) for r in reqs]
        for r, st in zip(reqs, statuses):
            if st >= 500:
                print("5xx", st, r["caller"], r["method"], r["path"], r["headers"], (r["body"] or b"")[:200],
                      file=sys.stderr)
        time.sleep(2)
        after = rss_mb(proc.pid)
        alive = proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {"fuzz_requests": float(len(statuses)), "fuzz_5xx": float(sum(1 for s in statuses if s >= 500)),
            "fuzz_rss_before_mb": round(before, 1), "fuzz_rss_after_mb": round(after, 1),
            "fuzz_process_alive": 1.0 if alive else 0.0, "fuzz_unit_memory_max_mb": 200.0}


class LagProbe:
    def __init__(self) -> None:
        self.measuring = threading.Event()
        self.samples_ms: list[float] = []

    async def run(self) -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(0.01)
            if self.measuring.is_set():
                self.samples_ms.append(max(0.0, (time.monotonic() - t0 - 0.01) * 1000.0))

    def take(self) -> tuple[float, float]:
        data = sorted(self.samples_ms)
        self.samples_ms = []
        pct = lambda p: data[min(len(data) - 1, int(p * len(data)))]
        return round(pct(0.5), 2), round(pct(0.99), 2)


def lag_phase(routes: list[tuple[str, str]]) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="ems-bench-lag-"))
    runtime = Runtime(ConfigStore.open(demo_config_file(tmp)), tmp / "data", Listen("127.0.0.1", 0))
    auth = tokens(runtime.security)
    probe, started, box = LagProbe(), threading.Event(), {}

    async def main() -> None:
        box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
        await runtime.start()
        task = asyncio.create_task(probe.run())
        started.set()
        await box["stop"].wait()
        task.cancel()
        await runtime.stop()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    started.wait(30)
    web = WebServer(create_app(runtime.facade()), "127.0.0.1", 0, threads=runtime.config.config.web.threads)
    host, port = web.start()
    time.sleep(10)
    probe.measuring.set()
    time.sleep(10)
    idle = probe.take()
    reqs = fuzz_requests(routes, sections_of(host, port, auth["viewer"]), seed=18, n=REQUESTS)
    for r in reqs:
        send(host, port, r, auth)
    loaded = probe.take()
    # The biggest config body the API takes, 20 times (each a real change, written and applied): what a
    # config change costs the loop at the body limit.
    bodies = [largest_grid_tariffs_body(1.25), largest_grid_tariffs_body(1.5)]
    for i in range(20):
        send(host, port, {"method": "POST", "path": "/api/config/grid_tariffs", "caller": "admin", "body": bodies[i % 2],
                          "headers": {"Content-Type": "application/json"}}, auth)
    largest = probe.take()
    probe.measuring.clear()
    web.stop()
    box["loop"].call_soon_threadsafe(box["stop"].set)
    thread.join(timeout=15)
    return {"fuzz_loop_lag_p50_ms": loaded[0], "fuzz_loop_lag_p99_ms": loaded[1],
            "largest_body_loop_lag_p50_ms": largest[0], "largest_body_loop_lag_p99_ms": largest[1],
            "idle_loop_lag_p50_ms": idle[0], "idle_loop_lag_p99_ms": idle[1]}


def main() -> None:
    routes = routes_of(Path(tempfile.mkdtemp(prefix="ems-bench-routes-")))
    results = {**rss_phase(routes), **lag_phase(routes)}
    print(json.dumps(results))


if __name__ == "__main__":
    main()

"""The appliance process under the demo load: start-to-serving, steady RSS, event-loop lag, disk writes.

Demo configuration at real speed, one live-event client and one /api/state poll per second (a dashboard
tab), measured for BENCH_SECONDS (default 130 s: two history flushes). Baselines from the same run: a bare
interpreter's start time and RSS, and the lag of an idle asyncio loop measured the same way.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from ems.users.auth import Security

SECONDS = float(os.environ.get("BENCH_SECONDS", "130"))
SERVING = re.compile(r"serving on http://([\d.]+):(\d+)")

IDLE_LOOP = """
import asyncio, json, sys
from ems.supervisor import LoopLagMonitor
async def main():
    mon = LoopLagMonitor()
    task = asyncio.create_task(mon.run())
    await asyncio.sleep(float(sys.argv[1]))
    task.cancel()
    print(json.dumps(mon.stats()))
asyncio.run(main())
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes")


def bare_interpreter() -> tuple[float, float]:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    start_s = time.perf_counter() - t0
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    time.sleep(1.0)
    rss = rss_mb(proc.pid)
    proc.wait()
    return start_s, rss


def main() -> None:
    base_start_s, base_rss_mb = bare_interpreter()
    tmp = Path(tempfile.mkdtemp(prefix="ems-bench-"))
    security = Security.open(tmp)
    password = security.users.ensure_admin()
    security.close()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ems", "run", "--data-dir", str(tmp), "--port", "0"],
                            stderr=subprocess.PIPE, text=True)
    url = None
    assert proc.stderr is not None
    for line in proc.stderr:
        m = SERVING.search(line)
        if m:
            url = f"http://{m.group(1)}:{m.group(2)}"
            break
    assert url
    while True:
        try:
            urllib.request.urlopen(url + "/api/health", timeout=2).read()
            break
        except OSError:
            time.sleep(0.01)
    start_to_serving_s = time.perf_counter() - t0
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    login = urllib.request.Request(url + "/login", method="POST", headers={"Content-Type": "application/json"},
                                   data=json.dumps({"username": "admin", "password": password}).encode())
    with urllib.request.urlopen(login, timeout=10) as resp:
        cookie = resp.headers["Set-Cookie"].split(";", 1)[0]

    def get(path: str, timeout: float = 5) -> bytes:
        return urllib.request.urlopen(urllib.request.Request(url + path, headers={"Cookie": cookie}),
                                      timeout=timeout).read()

    stop = threading.Event()

    def sse_client() -> None:
        with urllib.request.urlopen(urllib.request.Request(url + "/api/events", headers={"Cookie": cookie}),
                                    timeout=10) as resp:
            while not stop.is_set() and resp.readline():
                pass

    threading.Thread(target=sse_client, daemon=True).start()
    time.sleep(5)
    writes0 = write_bytes(proc.pid)
    t_writes0 = time.monotonic()
    rss_samples = []
    end = time.monotonic() + SECONDS
    while time.monotonic() < end:
        get("/api/state")
        rss_samples.append(rss_mb(proc.pid))
        time.sleep(1.0)
    writes_mb_per_h = (write_bytes(proc.pid) - writes0) / 1e6 * 3600 / (time.monotonic() - t_writes0)
    state = json.loads(get("/api/state"))
    lag = state["runtime"]["loop_lag_ms"]
    stop.set()
    proc.terminate()
    proc.wait(timeout=10)

    idle = json.loads(subprocess.run([sys.executable, "-c", IDLE_LOOP, str(min(SECONDS, 30))],
                                     capture_output=True, text=True, check=True).stdout)
    steady_rss = sorted(rss_samples)[len(rss_samples) // 2]
    print(json.dumps({
        "start_to_serving_s": round(start_to_serving_s, 3),
        "baseline_python_start_s": round(base_start_s, 3),
        "start_to_serving_vs_python_start_ratio": round(start_to_serving_s / base_start_s, 2),
        "steady_rss_mb": round(steady_rss, 1),
        "max_rss_mb": round(max(rss_samples), 1),
        "baseline_python_rss_mb": round(base_rss_mb, 1),
        "loop_lag_p50_ms": lag["p50"],
        "loop_lag_p99_ms": lag["p99"],
        "loop_lag_max_ms": lag["max"],
        "baseline_idle_loop_lag_p50_ms": idle["p50"],
        "baseline_idle_loop_lag_p99_ms": idle["p99"],
        "disk_writes_mb_per_h": round(writes_mb_per_h, 3),
    }))


if __name__ == "__main__":
    main()

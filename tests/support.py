"""Helpers the test modules share (import them from here; test modules never import each other):
free ports, local market time, a settable clock, bounded waits, and a local HTTP server with payloads
in the real formats of the price and weather services."""
from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
import urllib.parse
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


# Ports handed out come from below Linux's ephemeral range (32768-60999): a port from bind(("", 0)) is one the
# kernel may also give the next outgoing connection as its local port, and an EMS's pollers connect out while its
# simulated devices are still binding theirs - a device whose port a poller's socket took never comes up.
FREE_PORTS = range(20000, 32768)
_handed_out: set[int] = set()
_ports = random.Random()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, none of the kernel's outgoing ports, and not
    handed out before in this process."""
    for _ in range(200):
        port = _ports.choice(FREE_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {FREE_PORTS.start}-{FREE_PORTS.stop - 1} after 200 tries")


def local_ts(*args: int) -> float:
    """Epoch seconds of a wall-clock time in the market's time zone: local_ts(2024, 6, 20, 14)."""
    from ems.forecast.series import MARKET_TZ  # imported here: conftest loads this module for every test

    return datetime(*args, tzinfo=MARKET_TZ).timestamp()


class FakeClock:
    """A `now()` callable that stands still until the test sets or moves `t`."""

    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- bounded waits --------------------------------------------------------------------------------

async def until(predicate: Callable[[], Any], timeout_s: float = 5.0, what: str = "condition") -> Any:
    """Bounded wait on the event loop: poll `predicate` until truthy (returned) or fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s")
        await asyncio.sleep(0.005)


def wait_until(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.1) -> Any:
    """Poll `predicate` until it returns something truthy (bounded); returns that value or raises."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s (last: {last!r})")


# -- a local stand-in for the price and weather services ------------------------------------------

class PayloadServer:
    """An HTTP server on 127.0.0.1 (ephemeral port) answering every GET with the current (status, body,
    delay) and recording the query strings it was asked. The delay is capped so a test never hangs."""

    def __init__(self) -> None:
        self.status = 200
        self.body: bytes = b""
        self.content_type = "application/json"
        self.delay_s = 0.0
        self.fail_first = 0
        self.truncate = False
        self.queries: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's naming
                server.queries.append(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query)))
                if server.delay_s:
                    time.sleep(min(server.delay_s, 3.0))  # a slow service, as the client under test meets it
                status, body = server.status, server.body
                if len(server.queries) <= server.fail_first:
                    status, body = 502, b"bad gateway"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", server.content_type)
                    self.send_header("Content-Length", str(len(body) + (500 if server.truncate else 0)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1/marketdata"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def serve(self, body: bytes | str | Any, status: int = 200, delay_s: float = 0.0,
              content_type: str = "application/json", fail_first: int = 0) -> None:
        """Answer with `body`; the first `fail_first` requests from now on get HTTP 502 instead."""
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        self.body = body.encode() if isinstance(body, str) else body
        self.status, self.delay_s, self.content_type = status, delay_s, content_type
        self.fail_first = len(self.queries) + fail_first

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def awattar_day(day_start_ts: float, prices_eur_per_mwh: list[float], step_s: int = 3600) -> dict[str, Any]:
    """A day in aWATTar's documented format (timestamps in ms)."""
    return {"object": "list", "data": [
        {"start_timestamp": int((day_start_ts + i * step_s) * 1000),
         "end_timestamp": int((day_start_ts + (i + 1) * step_s) * 1000),
         "marketprice": p, "unit": "Eur/MWh"} for i, p in enumerate(prices_eur_per_mwh)]}


def owm_payload(start_ts: float, clouds_pct: float, n: int = 16, temp_c: float = 22.0) -> dict[str, Any]:
    """OpenWeatherMap's /data/2.5/forecast format: 3-hourly entries."""
    return {"cod": "200", "message": 0, "cnt": n, "list": [
        {"dt": int(start_ts + i * 10800), "main": {"temp": temp_c, "humidity": 60},
         "weather": [{"id": 803, "main": "Clouds"}], "clouds": {"all": clouds_pct},
         "wind": {"speed": 3.1, "deg": 250}, "dt_txt": "…"} for i in range(n)],
        "city": {"name": "Vienna", "coord": {"lat": 48.2, "lon": 16.37}}}

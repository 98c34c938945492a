"""Slow and greedy clients: drip-fed connections hold no worker, requests must arrive in time, one address
holds a bounded number of connections, and live-event streams are bounded per user (issue 17, class 7)."""
from __future__ import annotations

import http.client
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from appliance import demo_config
from security_rig import Rig


class Drip:
    """`count` connections that send a request a byte at a time (slowloris), for at most `max_s` seconds."""

    def __init__(self, address: tuple[str, int], count: int, payload: bytes, every_s: float = 0.5,
                 max_s: float = 30.0):
        self.sockets = [socket.create_connection(address, timeout=5) for _ in range(count)]
        self.payload = payload
        self.every_s = every_s
        self.max_s = max_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_s
        for i in range(len(self.payload)):
            if self.stop.is_set() or time.monotonic() > deadline:
                break
            for s in self.sockets:
                try:
                    s.send(self.payload[i:i + 1])
                except OSError:
                    pass
            self.stop.wait(self.every_s)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for s in self.sockets:
            s.close()


def timed_get(base: str, path: str, timeout_s: float = 5.0) -> tuple[int, float]:
    url = urlsplit(base)
    started = time.monotonic()
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.monotonic() - started
    finally:
        conn.close()


HEAD_DRIP = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"x" * 200 + b"\r\n\r\n"
BODY_DRIP = (b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
             + b'{"username": "' + b"x" * 380 + b'"}')


def test_20_slow_connections_do_not_stop_the_health_check_answering_within_1_s(ems_factory):
    ems = ems_factory(demo_config(web={"threads": 4}))  # fewer workers than slow clients, by far
    address = (urlsplit(ems.base_url).hostname, urlsplit(ems.base_url).port)
    heads = Drip(address, 15, HEAD_DRIP)
    bodies = Drip(address, 5, BODY_DRIP)
    try:
        time.sleep(1.5)  # every slow connection has been handed to a worker by now, and sent some bytes
        answers = [timed_get(ems.base_url, "/api/health") for _ in range(5)]
        assert all(status == 200 for status, _ in answers), answers
        assert max(elapsed for _, elapsed in answers) < 1.0, answers
        assert ems.get("/api/state", timeout=5)[0] == 200
    finally:
        heads.close()
        bodies.close()
    assert ems.proc.poll() is None


def test_a_request_that_does_not_arrive_in_time_is_cut_off(tmp_path: Path):
    rig = Rig(tmp_path, demo_config(web={"request_timeout_s": 2}))
    base = rig.serve(threads=4)
    try:
        address = (urlsplit(base).hostname, urlsplit(base).port)
        drip = Drip(address, 1, HEAD_DRIP, every_s=0.3)
        sock = drip.sockets[0]
        sock.settimeout(10)
        started = time.monotonic()
        answer = b""
        while time.monotonic() - started < 10:
            try:
                chunk = sock.recv(4096)
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
        drip.close()
        assert answer.startswith(b"HTTP/1.1 408") or answer == b"", answer
        assert time.monotonic() - started < 8, "the deadline is the request's, not each byte's"
    finally:
        rig.close()


def test_one_address_holds_a_bounded_number_of_connections(tmp_path: Path):
    rig = Rig(tmp_path, demo_config(web={"max_connections_per_address": 6}))
    base = rig.serve(threads=4)
    address = (urlsplit(base).hostname, urlsplit(base).port)
    idle = [socket.create_connection(address, timeout=5) for _ in range(6)]
    try:
        time.sleep(0.5)
        status, elapsed = timed_get(base, "/api/health")
        assert status == 503 and elapsed < 2.0  # refused at once, not queued
        for s in idle[:3]:
            s.close()
        time.sleep(0.5)
        assert timed_get(base, "/api/health")[0] == 200
    finally:
        for s in idle[3:]:
            s.close()
        rig.close()


# -- live-event streams per user -------------------------------------------------------------------------------------

class EventStream:
    def __init__(self, base: str, headers: dict[str, str]):
        url = urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        self.conn.request("GET", "/api/events", headers=headers)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        if self.status != 200:
            self.resp.read()

    def next_event(self) -> bool:
        """True when a state event arrives, False when the server ended the stream."""
        while True:
            line = self.resp.readline()  # de-chunked: b"" when the server ends the stream
            if not line:
                return False
            if line.startswith(b"event: state"):
                return True

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def streams_rig(tmp_path: Path):
    rig = Rig(tmp_path, demo_config(web={"sse_per_user": 2, "sse_interval_s": 0.5, "threads": 4}))
    rig.add_users()
    base = rig.serve(threads=4)
    yield rig, base
    rig.close()


def test_a_users_third_tab_replaces_their_oldest_and_nobody_else_is_refused(streams_rig):
    rig, base = streams_rig
    viewer = rig.callers["viewer"].token_headers()
    opened = [EventStream(base, viewer) for _ in range(2)]
    try:
        assert all(s.status == 200 and s.next_event() for s in opened)
        third = EventStream(base, viewer)
        assert third.status == 200 and third.next_event()
        opened.append(third)
        deadline = time.monotonic() + 5
        ended = False
        while time.monotonic() < deadline and not ended:  # the oldest tab's stream ends within a tick or two
            ended = not opened[0].next_event()
        assert ended
        assert opened[1].next_event() and third.next_event()
        others = [EventStream(base, rig.callers[role].token_headers()) for role in ("admin", "operator")]
        opened += others
        assert all(s.status == 200 and s.next_event() for s in others)
    finally:
        for s in opened:
            s.close()


def test_many_streams_of_one_user_cannot_take_every_place(streams_rig):
    rig, base = streams_rig
    capacity = 4  # max(4, web.threads)
    viewer = rig.callers["viewer"]
    # One account opening streams as fast as it can ends its own oldest: it never holds more than two.
    opened = [EventStream(base, viewer.token_headers()) for _ in range(capacity + 2)]
    try:
        time.sleep(1.5)
        admin = EventStream(base, rig.callers["admin"].token_headers())
        opened.append(admin)
        assert admin.status == 200 and admin.next_event()
    finally:
        for s in opened:
            s.close()

"""cheroot serving the Bottle app from its own threads, so the event loop never waits on HTTP.

Slow clients cannot take the workers. cheroot hands every new or readable connection to a worker thread,
which then blocks reading the request — so a handful of connections that drip a byte every few seconds
(slowloris) would hold every worker and the UI and API would stop answering. Here (`GuardedConnection`):
- a worker only *collects* what has arrived (non-blocking) and hands the connection back to cheroot's
  selector until the request head — and a body of up to `PREREAD_BODY_BYTES` — is complete; only then does
  it run the request. Waiting connections hold no thread;
- a request must arrive completely within `web.request_timeout_s` (head and body, larger bodies too: each
  read gets only the time that is left), else 408 and the connection is closed; a head above
  `MAX_HEAD_BYTES` gets 431;
- one client address may hold at most `web.max_connections_per_address` connections (503 beyond), so
  it cannot exhaust file descriptors or memory either.
Live-event streams (SSE) hold a thread for as long as they run: they get threads of their own on top of
`web.threads` (the app says how many, `SSE_SLOTS_KEY`), so streams never take the threads requests need.
"""
from __future__ import annotations

import _pyio  # type: ignore[import-not-found]  # cheroot's reader is the pure-Python BufferedReader
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from cheroot import makefile, server as cheroot_server, wsgi

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
PREREAD_BODY_BYTES = 64 * 1024
LARGEST_BODY_BYTES = 256 * 1024  # cheroot answers 413 itself above this (ems.api.http has the per-route limits)
LIMITS_KEY = "ems.web_limits"  # app.config: a callable returning ConnectionLimits (live settings)
SSE_SLOTS_KEY = "ems.sse_slots"  # app.config: threads to add for live-event streams
_CONTENT_LENGTH = re.compile(rb"\r?\ncontent-length[ \t]*:[ \t]*(\d{1,12})[ \t]*\r?\n", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r?\ntransfer-encoding[ \t]*:[^\r\n]*chunked", re.IGNORECASE)


@dataclass(frozen=True)
class ConnectionLimits:
    request_timeout_s: float = 10.0
    max_connections_per_address: int = 32


class _AddressCounts:
    """Open connections per client address (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, address: str, limit: int) -> bool:
        with self._lock:
            count = self._counts.get(address, 0)
            if count >= limit:
                return False
            self._counts[address] = count + 1
            return True

    def remove(self, address: str) -> None:
        with self._lock:
            count = self._counts.get(address, 0) - 1
            if count > 0:
                self._counts[address] = count
            else:
                self._counts.pop(address, None)

    def get(self, address: str) -> int:
        with self._lock:
            return self._counts.get(address, 0)


class _DeadlineSocketIO(socket.SocketIO):
    """A socket reader that never waits past `deadline` (monotonic; None: only the socket's own timeout)."""

    deadline: float | None = None
    base_timeout: float | None = None

    def __init__(self, sock: socket.socket, mode: str):
        super().__init__(sock, mode)  # type: ignore[arg-type]  # typeshed knows only the literal modes
        self.sock = sock

    def readinto(self, b: Any) -> int | None:
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out")
            self.sock.settimeout(remaining if self.base_timeout is None else min(remaining, self.base_timeout))
        return super().readinto(b)


class _Reader(makefile.StreamReader):
    """cheroot's buffered socket reader on a `_DeadlineSocketIO`."""

    def __init__(self, sock: socket.socket, bufsize: int = _pyio.DEFAULT_BUFFER_SIZE):
        self.deadline_io = _DeadlineSocketIO(sock, "rb")
        _pyio.BufferedReader.__init__(self, self.deadline_io, bufsize)
        self.bytes_read = 0


class GuardedConnection(cheroot_server.HTTPConnection):
    """An HTTP connection that runs a request only once it has arrived (see the module doc)."""

    def __init__(self, server: Any, sock: socket.socket, mf: Any = makefile.MakeFile):
        super().__init__(server, sock, mf)
        self.rfile = _Reader(sock, self.rbufsize)
        self._pending = bytearray()
        self._first_byte_mono: float | None = None
        self._counted: str | None = None
        self._closed = False

    # -- cheroot's entry point (a worker thread) -------------------------------------------------------
    def communicate(self) -> bool:
        limits: ConnectionLimits = self.server.ems_limits()
        if self._counted is None:
            address = str(self.remote_addr or "unknown")
            if not self.server.ems_addresses.add(address, limits.max_connections_per_address):
                log.warning("refused a connection from %s: %d open already", address,
                            self.server.ems_addresses.get(address))
                self._answer(503, "too many connections from your address")
                return False
            self._counted = address
        open_ = self._collect()
        ready = self._complete()
        if ready is None:
            self._answer(431, "request head too large")
            return False
        if not ready:
            if not open_:
                return False  # the client went away mid-request
            if self._first_byte_mono is not None and \
                    time.monotonic() - self._first_byte_mono > limits.request_timeout_s:
                self._answer(408, "request not complete in time")
                return False
            return True  # back to the selector: wait for more, holding no thread
        # The request (or at least its head) is here: hand it to cheroot's parser, with what is left of the time.
        started = self._first_byte_mono or time.monotonic()
        self._inject()
        self.rfile.deadline_io.deadline = started + limits.request_timeout_s
        self.rfile.deadline_io.base_timeout = self.server.timeout
        try:
            return bool(super().communicate())
        finally:
            self.rfile.deadline_io.deadline = None
            try:
                self.socket.settimeout(self.server.timeout)
            except OSError:
                pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._counted is not None:
                self.server.ems_addresses.remove(self._counted)
        super().close()

    # -- internals -------------------------------------------------------------------------------------
    def _collect(self) -> bool:
        """Move bytes already buffered and bytes waiting on the socket into `_pending`, without blocking.
        False when the client closed its side."""
        rfile = self.rfile
        with rfile._read_lock:
            buffered = rfile._read_buf[rfile._read_pos:]
            rfile._reset_read_buf()
        if buffered:
            self._pending += buffered
        is_open = True
        try:
            self.socket.setblocking(False)
            while len(self._pending) <= MAX_HEAD_BYTES + PREREAD_BODY_BYTES:
                chunk = self.socket.recv(65536)
                if not chunk:
                    is_open = False
                    break
                self._pending += chunk
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            is_open = False
        finally:
            try:
                self.socket.settimeout(self.server.timeout)
            except OSError:
                is_open = False
        if self._pending and self._first_byte_mono is None:
            self._first_byte_mono = time.monotonic()
        return is_open

    def _complete(self) -> bool | None:
        """True when the head (and a small body) is all here, False if not yet, None if the head is too large."""
        data = bytes(self._pending[:MAX_HEAD_BYTES + 4])
        while data.startswith(b"\r\n"):  # stray CRLF between requests (RFC 9112 allows ignoring them)
            data = data[2:]
            del self._pending[:2]
        end = data.find(b"\r\n\r\n")
        sep = 4
        if end < 0:
            end, sep = data.find(b"\n\n"), 2
        if end < 0:
            return None if len(self._pending) > MAX_HEAD_BYTES else False
        head = data[:end + sep]
        if _CHUNKED.search(head):
            return True  # a chunked body is read by the worker, within the deadline
        match = _CONTENT_LENGTH.search(head)
        length = int(match.group(1)) if match else 0
        if length > PREREAD_BODY_BYTES:
            return True  # a large body is read by the worker, within the deadline (or refused by size)
        return len(self._pending) >= end + sep + length

    def _inject(self) -> None:
        """Put the collected bytes where cheroot's parser reads first: the reader's buffer."""
        rfile = self.rfile
        with rfile._read_lock:
            rfile._read_buf = bytes(self._pending) + rfile._read_buf[rfile._read_pos:]
            rfile._read_pos = 0
        self._pending = bytearray()
        self._first_byte_mono = None

    def _answer(self, status: int, message: str) -> None:
        reason = {408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}[status]
        body = ('{"error": "%s", "field": "connection"}' % message).encode()
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n" + ("Retry-After: 5\r\n" if status == 503 else "") + "\r\n").encode()
        try:
            self.socket.settimeout(1.0)
            self.socket.sendall(head + body)
        except OSError:
            pass


class GuardedServer(wsgi.Server):
    """cheroot's WSGI server with `GuardedConnection`s."""

    ConnectionClass = GuardedConnection

    def __init__(self, *args: Any, limits: Callable[[], ConnectionLimits] = ConnectionLimits, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.ems_limits = limits
        self.ems_addresses = _AddressCounts()


class WebServer:
    def __init__(self, app: Any, host: str, port: int, threads: int):
        config = getattr(app, "config", {})
        limits = config.get(LIMITS_KEY) or ConnectionLimits
        sse_slots = int(config.get(SSE_SLOTS_KEY) or 0)
        self._server = GuardedServer((host, port), app, numthreads=threads + sse_slots, server_name="phoenyra-ems",
                                     timeout=int(max(2, limits().request_timeout_s)), limits=limits)
        self._server.max_request_body_size = LARGEST_BODY_BYTES
        self._server.shutdown_timeout = 1
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        """Bind (raises OSError if the port is taken) and serve in a background thread."""
        self._server.prepare()
        self._thread = threading.Thread(target=self._server.serve, name="web", daemon=True)
        self._thread.start()
        host, port = self._server.bind_addr[:2]
        log.info("serving on http://%s:%d", host, port)
        return host, port

    def stop(self) -> None:
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

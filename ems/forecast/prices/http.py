"""The blocking HTTP client of the price and weather sources: a GET bounded in total time, retries with backoff."""
from __future__ import annotations

import http.client
import logging
import time
import urllib.error
import urllib.request
from typing import Any, Callable

from ...backoff import backoff_delay

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 8 * 1024 * 1024
USER_AGENT = "phoenyra-ems (+https://phoenyra.example/ems)"


class FetchError(Exception):
    """A download or payload that cannot be used. `retryable` is False where a retry cannot help (HTTP 4xx)."""

    def __init__(self, source: str, message: str, retryable: bool = True):
        self.source = source
        self.message = message
        self.retryable = retryable
        super().__init__(f"{source}: {message}")


def http_get(url: str, timeout_s: float, source: str, headers: dict[str, str] | None = None,
             max_bytes: int = MAX_RESPONSE_BYTES) -> bytes:
    """GET `url` within `timeout_s` in total (connect + every read), or raise FetchError naming what failed.

    Only answers worth repeating soon (HTTP 5xx, 429, a connection dropped mid-answer) are retryable.
    """
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            chunks, size = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise FetchError(source, f"timed out after {timeout_s:g} s while reading", retryable=False)
                chunk = resp.read(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(source, f"response larger than {max_bytes} bytes", retryable=False)
                chunks.append(chunk)
            declared = resp.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) != size:
                raise FetchError(source, f"connection dropped mid-answer (got {size} of {declared} bytes)")
            return b"".join(chunks)
    except urllib.error.HTTPError as exc:
        body = b""
        try:
            body = exc.read(2000)
        except Exception:  # the error body is only for the message
            pass
        text = body.decode("utf-8", "replace").strip().replace("\n", " ")[:200]
        raise FetchError(source, f"HTTP {exc.code} {exc.reason}" + (f": {text}" if text else ""),
                         retryable=exc.code >= 500 or exc.code == 429) from None
    except FetchError:
        raise
    except (ConnectionResetError, http.client.HTTPException) as exc:
        raise FetchError(source, f"connection dropped mid-answer: {type(exc).__name__}: {exc}") from None
    except (TimeoutError, OSError, urllib.error.URLError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        # Unreachable or silent: report offline at once; the caller's schedule retries with backoff.
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            raise FetchError(source, f"timed out after {timeout_s:g} s", retryable=False) from None
        raise FetchError(source, f"cannot connect: {reason}", retryable=False) from None


def with_retries(fn: Callable[[], Any], attempts: int, backoff_s: float,
                 sleep: Callable[[float], None] = time.sleep) -> Any:
    """Call `fn` up to `attempts` times, waiting backoff_s, 2·backoff_s … between retryable failures."""
    for attempt in range(attempts):
        try:
            return fn()
        except FetchError as exc:
            if not exc.retryable or attempt == attempts - 1:
                raise
            delay_s = backoff_delay(attempt, backoff_s)
            log.info("%s (attempt %d of %d, retrying in %.1f s)", exc, attempt + 1, attempts, delay_s)
            sleep(delay_s)
    raise AssertionError("unreachable")

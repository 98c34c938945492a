"""Bottle plugin: pages and JSON answers gzip-compressed for clients that accept it.

A dashboard's first load is mostly Chart.js (compressed once, `static_files`) and JSON (the state, the
plan, the chart seed: 20–60 KB of repetitive keys, a fifth of that compressed). Installed outermost, so it
compresses what the secret scrubber has already cleaned; streams (the live events) and bodies that set their
own encoding pass untouched. Level 6: on a Raspberry Pi 4 a 50 KB JSON body costs about 2 ms.
"""
from __future__ import annotations

import gzip
from typing import Any, Callable

import bottle

from .http import header
from .static_files import accepts_gzip

MIN_BYTES = 1024  # below this the gzip header and a CPU wake-up cost more than they save
COMPRESSIBLE = ("application/json", "text/html", "text/plain", "text/csv", "application/x-ndjson")


def gzip_plugin(callback: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = callback(*args, **kwargs)
        response = bottle.response
        if not isinstance(out, (str, bytes)) or response.get_header("Content-Encoding"):
            return out
        # No type set yet on a str body: Bottle will call it text/html (a page).
        if not (response.content_type or "text/html").startswith(COMPRESSIBLE):
            return out
        body = out.encode("utf-8") if isinstance(out, str) else out
        response.add_header("Vary", "Accept-Encoding")
        try:
            accepted = accepts_gzip(header("Accept-Encoding"))
        except Exception:  # a header that cannot be read: answered plain (the auth plugin reports it)
            accepted = False
        if len(body) < MIN_BYTES or not accepted:
            return out
        response.set_header("Content-Encoding", "gzip")
        return gzip.compress(body, compresslevel=6, mtime=0)
    return wrapper

"""The shipped static files (CSS, scripts, Chart.js) served the way a gateway on a phone's Wi-Fi needs them:
gzip-compressed once, and cacheable for a year under a versioned URL, so a warm page load fetches nothing.

A page names a file by `url("js/dashboard.js")` → `/static/js/dashboard.js?v=<content hash>`. A request
carrying the current hash gets `Cache-Control: public, max-age=31536000, immutable`; any other (an old
page, a hand-typed URL) gets `no-cache` with an ETag, so it is revalidated and never stale. Each file is
read, hashed and compressed on its first request and kept (the whole folder is ~0.4 MB raw, ~0.1 MB
compressed); the files ship read-only in the wheel, so nothing needs watching.

Brotli where it pays: a file may ship with a copy compressed once at the best level beside it,
`<name>.<version>.br` (the version in its name is the content hash of the file it was made from, so a copy
left over from an older file is never served). Browsers that accept `br` get it. Chart.js has one: 61 KB
instead of 71 KB gzipped, on every chart page's cold load. Compressing at run time would need the compiled
`brotli` module in the service and half a second of CPU per file on a Pi; our own small files gain a
kilobyte each, so they stay gzip (`make brotli` remakes the copies; a test checks they are current).
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import mimetypes
import threading
from dataclasses import dataclass
from pathlib import Path

import bottle

from . import revalidation

log = logging.getLogger(__name__)

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# Below this a compressed copy saves less than its headers cost.
MIN_COMPRESS_BYTES = 512
COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml")


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    gzipped: bytes | None
    version: str
    content_type: str
    brotli: bytes | None = None


class StaticFiles:
    """The files under one folder, each loaded once on its first request."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self._files: dict[str, StaticFile] = {}
        self._lock = threading.Lock()

    def _resolve(self, rel: str) -> Path | None:
        try:
            path = (self.root / rel).resolve()
            if not path.is_relative_to(self.root) or not path.is_file() or path.suffix == ".br":
                return None  # a .br copy is served in place of its file, not by its own name
        except (OSError, ValueError):  # a NUL byte, a name too long: not a file we ship
            return None
        return path

    def get(self, rel: str) -> StaticFile | None:
        cached = self._files.get(rel)
        if cached is not None:
            return cached
        path = self._resolve(rel)
        if path is None:
            return None
        # Kept under the file's own name, not the name asked for: `js/./a.js`, `js//a.js` and the like find
        # the same entry, so what is kept is bounded by what ships, whatever URLs an unsigned client sends.
        key = path.relative_to(self.root).as_posix()
        cached = self._files.get(key)
        if cached is not None:
            return cached
        body = path.read_bytes()
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type == "application/javascript":
            content_type += "; charset=utf-8"
        gzipped = None
        if len(body) >= MIN_COMPRESS_BYTES and content_type.startswith(COMPRESSIBLE):
            gzipped = gzip.compress(body, compresslevel=9, mtime=0)
        version = content_version(body)
        copy = _copy_path(path, version)
        entry = StaticFile(body, gzipped, version, content_type, copy.read_bytes() if copy.is_file() else None)
        with self._lock:
            self._files[key] = entry
        return entry

    def url(self, rel: str) -> str:
        """The URL a page uses for a file: with its version, so the browser may keep it for a year."""
        entry = self.get(rel)
        if entry is None:
            log.error("a page names a static file that is not shipped: %s", rel)
            return f"/static/{rel}"
        return f"/static/{rel}?v={entry.version}"

    def respond(self, rel: str, version: str | None, accept_encoding: str | None, if_none_match: str | None) -> bytes:
        """The file's body for the current Bottle response, with its caching and encoding headers set."""
        entry = self.get(rel)
        if entry is None:
            raise bottle.HTTPError(404)
        response = bottle.response
        response.set_header("Cache-Control", IMMUTABLE if version == entry.version else REVALIDATE)
        response.set_header("Vary", "Accept-Encoding")
        response.content_type = entry.content_type
        body, coding = entry.body, None
        if entry.brotli is not None and accepts(accept_encoding, "br"):
            body, coding = entry.brotli, "br"
        elif entry.gzipped is not None and accepts_gzip(accept_encoding):
            body, coding = entry.gzipped, "gzip"
        # A strong validator names one representation (RFC 9110 §8.8.3): the coding is part of the tag.
        etag = f'"{entry.version}-{coding}"' if coding else f'"{entry.version}"'
        response.set_header("ETag", etag)
        if revalidation.matches(if_none_match, etag):
            response.status = 304
            return b""
        if coding:
            response.set_header("Content-Encoding", coding)
        return body


def accepts(accept_encoding: str | None, wanted: str) -> bool:
    """Whether an Accept-Encoding header admits the content coding `wanted`: named, or by `*`, and not at
    q=0. A coding named outright counts before `*` (`*, br;q=0` refuses br), wherever it stands."""
    by_name: bool | None = None
    by_star: bool | None = None
    for part in (accept_encoding or "").split(",")[:32]:
        coding, _, params = part.strip().partition(";")
        coding = coding.strip().lower()
        refused = params.replace(" ", "").lower() in ("q=0", "q=0.", "q=0.0", "q=0.00", "q=0.000")
        if coding == wanted:
            by_name = not refused
        elif coding == "*":
            by_star = not refused
    return by_name if by_name is not None else bool(by_star)


def accepts_gzip(accept_encoding: str | None) -> bool:
    return accepts(accept_encoding, "gzip")


def content_version(body: bytes) -> str:
    """A file's version: the start of its content's SHA-256, in its URL and in its Brotli copy's name."""
    return hashlib.sha256(body).hexdigest()[:12]


def _copy_path(path: Path, version: str) -> Path:
    return path.with_name(f"{path.name}.{version}.br")


def brotli_copy_name(path: Path) -> Path:
    """Where the Brotli copy of `path` as it is now belongs: `<name>.<content hash>.br` beside it."""
    return _copy_path(path, content_version(path.read_bytes()))


def write_brotli_copies(paths: list[str]) -> None:
    """`make brotli`: a fresh best-level Brotli copy of each file, older copies removed. A developer's tool:
    the compiled `brotli` module is installed for it (and the tests), never needed by the service."""
    import brotli  # type: ignore[import-untyped]
    for name in paths:
        path = Path(name)
        for old in path.parent.glob(path.name + ".*.br"):
            old.unlink()
        brotli_copy_name(path).write_bytes(brotli.compress(path.read_bytes(), quality=11))

"""Bottle plugin: pages and plant data are revalidated by ETag on a reload instead of sent again.

A warm page load on a phone re-asks for the page and the JSON its scripts fetch. Most of that has not
changed since the last visit: the page's HTML, the strategy list, the settings form, the device profiles, the
plan until the next re-plan, the analytics until the next day. So a `GET` answered 200 by a route any signed-in
reader may use (permission action `read`), with an HTML or JSON body, gets a weak ETag (a hash of the body the
client receives, after the secret scrubber) and `Cache-Control: private, no-cache`: the browser keeps it for
this user only and must ask again every time; a request whose `If-None-Match` names the current tag gets a
304 without a body. The handler still runs, so the permission check, the session and the data are as fresh as
ever: after a logout a reload gets the login redirect, never a kept page. (A page the Back button restores
from the browser's memory is not asked for again; `menu.js` asks `/api/me` then and leaves a page whose
session has ended.)

Everything else keeps `no-store`: accounts, tokens, the audit log, the user and setup pages and anything
else only some roles see are not written to the browser's disk cache. (The configuration is `read`: every
role sees it, with secrets masked.) Static files have their own versioned caching (`static_files`). The
hash is BLAKE2b over bodies of at most a few hundred KB: well under a millisecond.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable

import bottle

from .auth_plugin import route_action
from .http import header

KEPT_PRIVATELY = "private, no-cache"
REVALIDATED_TYPES = ("application/json", "text/html")
REVALIDATED_ACTION = "read"


def entity_tag(body: bytes) -> str:
    """A weak validator of the body's content: the same text in gzip or plain gives the same tag."""
    return 'W/"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether `If-None-Match` names `tag` (or is `*`), by the weak comparison a GET is judged by
    (RFC 9110 §13.1.2): `W/"x"` and `"x"` match."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque = tag.removeprefix("W/")
    return any(candidate.strip().removeprefix("W/") == opaque for candidate in if_none_match.split(",")[:32])


def revalidation_plugin(callback: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = callback(*args, **kwargs)
        request, response = bottle.request, bottle.response
        if request.method not in ("GET", "HEAD") or response.status_code != 200 or not isinstance(out, (str, bytes)):
            return out
        if route_action(request.route) != REVALIDATED_ACTION or response.get_header("Content-Encoding"):
            return out
        if not (response.content_type or "text/html").startswith(REVALIDATED_TYPES):
            return out
        body = out.encode("utf-8") if isinstance(out, str) else out
        tag = entity_tag(body)
        response.set_header("ETag", tag)
        response.set_header("Cache-Control", KEPT_PRIVATELY)
        try:
            unchanged = matches(header("If-None-Match"), tag)
        except Exception:  # a header that cannot be read: answered in full
            unchanged = False
        if unchanged:
            response.status = 304
            return b""
        return out
    return wrapper

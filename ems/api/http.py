"""HTTP helpers every route module shares: JSON responses, bounded query numbers, JSON bodies, headers, and
the one place where errors become `{"error": ..., "field": ...}` with a 4xx (5xx only for our own bugs,
logged, without a traceback to the client).

Input is bounded before it is looked at: a body is refused above its endpoint's byte limit (a small
default, more only where a setting needs it), JSON nested deeper than `MAX_JSON_DEPTH` is refused, and so
is any string that is not valid Unicode (a lone surrogate from `"\ud800"` would fail later, when written
to disk). Header values are bytes on the wire: one that is not UTF-8 is a 400, not a crash.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable

import bottle

from .. import i18n
from ..errors import ApiError, ConfigError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024  # the default limit of a JSON body; endpoints that need more say so
LARGEST_BODY_BYTES = 256 * 1024  # no endpoint accepts more (checked before the body is read)
MAX_JSON_DEPTH = 16
MAX_PROBLEMS_SHOWN = 50  # a ConfigError lists every problem; a response shows the first ones


def json_response(data: Any, status: int = 200) -> str:
    bottle.response.status = status
    bottle.response.content_type = "application/json"
    bottle.response.set_header("Cache-Control", "no-store")
    return json.dumps(data, allow_nan=False, default=str)


def number_query(name: str, default: float, lo: float, hi: float, integer: bool = False) -> float:
    """A numeric query parameter within [lo, hi], or ApiError 400 naming it."""
    raw = bottle.request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ApiError(400, i18n.mark("must be an integer (got {got})") if integer else
                       i18n.mark("must be a number (got {got})"), name, got=repr(raw[:40])) from None
    if not (lo <= value <= hi):
        raise ApiError(400, i18n.mark("must be between {lo} and {hi} (got {got})"), name, lo=f"{lo:g}",
                       hi=f"{hi:g}", got=raw[:40])
    return value


def json_body(max_bytes: int = MAX_BODY_BYTES) -> Any:
    """The request's JSON body (null when empty): 413 above `max_bytes`, 400 naming `body` (or the
    offending key) for invalid JSON, nesting deeper than MAX_JSON_DEPTH or invalid Unicode."""
    max_bytes = min(max_bytes, LARGEST_BODY_BYTES)
    if (bottle.request.content_length or 0) > max_bytes:
        raise ApiError(413, i18n.mark("body larger than {n} bytes"), "body", n=max_bytes)
    raw = bottle.request.body.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ApiError(413, i18n.mark("body larger than {n} bytes"), "body", n=max_bytes)
    return parse_json(raw)


def parse_json(raw: bytes) -> Any:
    """`json.loads` for untrusted bytes, with the limits of `json_body`."""
    try:
        data = json.loads(raw or b"null")
    except RecursionError:
        raise ApiError(400, i18n.mark("JSON nested deeper than {n} levels"), "body", n=MAX_JSON_DEPTH) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, i18n.mark("not valid JSON: {error}"), "body", error=str(exc)[:200]) from None
    check_plain(data)
    return data


def check_plain(data: Any, path: str = "body") -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH and strings (keys too) that are not valid Unicode.
    Iterative: a deep document cannot exhaust the stack here."""
    stack: list[tuple[Any, str, int]] = [(data, path, 0)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value, where)
        elif isinstance(value, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                raise ApiError(400, i18n.mark("JSON nested deeper than {n} levels"), where, n=MAX_JSON_DEPTH)
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key, where)
                    stack.append((item, f"{where}.{key[:40]}" if where != "body" else key[:40], depth + 1))
            else:
                stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "is not valid Unicode text (a lone surrogate such as \\ud800)", where) from None


def header(name: str) -> str | None:
    """A request header as text. WSGI hands headers over as Latin-1; a value that is not UTF-8 underneath
    (anything a client can send, reachable without a login) is a 400 naming the header."""
    raw = bottle.request.environ.get("HTTP_" + name.upper().replace("-", "_"))
    if raw is None and name.lower() == "content-type":
        raw = bottle.request.environ.get("CONTENT_TYPE")
    if raw is None:
        return None
    try:
        return str(raw).encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise ApiError(400, i18n.mark("is not valid UTF-8"), name) from None


def error_plugin(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Bottle plugin: ApiError/ConfigError → JSON 4xx naming the field; anything else → logged 500."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except ApiError as exc:
            return json_response({"error": exc.text(request_language()), "field": exc.field}, exc.status)
        except ConfigError as exc:
            first = exc.problems[0]
            shown = exc.problems[:MAX_PROBLEMS_SHOWN]
            lang = request_language()
            body: dict[str, Any] = {"error": f"{first.path}: {first.text(lang)}", "field": first.path,
                                    "problems": [{"field": p.path, "message": p.text(lang)} for p in shown]}
            if len(exc.problems) > len(shown):
                body["more_problems"] = len(exc.problems) - len(shown)
            return json_response(body, 400)
        except bottle.HTTPResponse:
            raise
        except Exception:
            log.exception("unhandled error in %s %s", bottle.request.method, bottle.request.path)
            return json_response({"error": i18n.render(i18n.mark("internal error (logged)"), None,
                                                       request_language())}, 500)
    return wrapper


def request_language() -> str:
    """The reader's language for this request (`i18n.negotiate`); a header that cannot be read counts as none,
    so that rendering an error page never fails on it."""
    try:
        accept = header("Accept-Language")
    except ApiError:
        accept = None
    return i18n.negotiate(bottle.request.cookies.get(i18n.LANG_COOKIE), accept)

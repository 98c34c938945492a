"""HTTP helpers every route module shares: JSON responses, bounded query numbers, JSON bodies, and the
one place where errors become `{"error": ..., "field": ...}` with a 4xx (5xx only for our own bugs,
logged, without a traceback to the client)."""
from __future__ import annotations

import json
import logging
from typing import Any, Callable

import bottle

from ..errors import ApiError, ConfigError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024


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
        raise ApiError(400, f"must be {'an integer' if integer else 'a number'} (got {raw[:40]!r})", name) from None
    if not (lo <= value <= hi):
        raise ApiError(400, f"must be between {lo:g} and {hi:g} (got {raw[:40]})", name)
    return value


def json_body() -> Any:
    if (bottle.request.content_length or 0) > MAX_BODY_BYTES:
        raise ApiError(413, f"body larger than {MAX_BODY_BYTES} bytes", "body")
    raw = bottle.request.body.read(MAX_BODY_BYTES + 1)
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"not valid JSON: {exc}", "body") from None


def error_plugin(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Bottle plugin: ApiError/ConfigError → JSON 4xx naming the field; anything else → logged 500."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except ApiError as exc:
            return json_response({"error": exc.message, "field": exc.field}, exc.status)
        except ConfigError as exc:
            first = exc.problems[0]
            return json_response({"error": str(first), "field": first.path,
                                  "problems": [{"field": p.path, "message": p.message} for p in exc.problems]}, 400)
        except bottle.HTTPResponse:
            raise
        except Exception:
            log.exception("unhandled error in %s %s", bottle.request.method, bottle.request.path)
            return json_response({"error": "internal error (logged)"}, 500)
    return wrapper

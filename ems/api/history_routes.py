"""History and analytics routes: raw telemetry, ranged state history, energy flows, money per day, plan vs actual.

Handlers run in web threads and read SQLite through the history's per-thread connections, never on the
event loop. Ranges are `from`/`to` (epoch seconds or ISO 8601 with an offset) or the seed's `hours`
(ending now).
"""
from __future__ import annotations

import math
import re
from datetime import date, datetime

import bottle

from .. import i18n
from ..errors import ApiError
from .facade import EmsFacade
from .http import json_response as _json
from .http import number_query

MAX_SPAN_S = 20 * 366 * 86400
_DAY = re.compile(r"\d{4}-\d\d-\d\d")


def _instant(name: str) -> float | None:
    """`name` from the query as epoch seconds; ApiError 400 naming it when it is neither a number nor ISO time."""
    raw = bottle.request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(400, i18n.mark("must be epoch seconds or an ISO time with offset (got {got})"), name,
                           got=repr(raw[:40])) from None
        if parsed.tzinfo is None:
            raise ApiError(400, i18n.mark("needs a UTC offset, e.g. 2026-06-01T00:00:00+02:00 (got {got})"), name,
                           got=repr(raw[:40])) from None
        value = parsed.timestamp()
    if not math.isfinite(value) or not 0 <= value < 1e11:
        raise ApiError(400, i18n.mark("is not a usable time (got {got})"), name, got=repr(raw[:40]))
    return value


def _range(ems: EmsFacade, default_hours: float) -> tuple[float, float]:
    """[from, to) of the request: explicit times win over `hours` (which ends at `to` or now)."""
    until = _instant("to")
    since = _instant("from")
    until = ems.now() if until is None else until
    if since is None:
        hours = number_query("hours", default_hours, 0.01, 24 * 366 * 20)
        since = until - hours * 3600
    if since >= until:
        raise ApiError(400, i18n.mark("must be before 'to'"), "from")
    if until - since > MAX_SPAN_S:
        raise ApiError(400, i18n.mark("range longer than 20 years"), "from")
    return since, until


def install(app: bottle.Bottle, ems: EmsFacade) -> None:
    @app.get("/api/monitoring/telemetry", action="read")
    def telemetry() -> str:
        minutes = number_query("minutes", 60, 1, 24 * 60)
        limit = int(number_query("limit", 1000, 1, 20_000, integer=True))
        now = ems.now()
        return _json({"minutes": minutes, "rows": ems.history.telemetry_since(now - minutes * 60, limit)})

    @app.get("/api/history/state", action="read")
    def history_state() -> str:
        since, until = _range(ems, 24)
        points = int(number_query("points", 500, 10, 5000, integer=True))
        wanted = bottle.request.query.get("channels")
        channels = [c for c in wanted.split(",") if c] if wanted else None
        try:
            body = ems.history.state_range(since, until, points, channels)
        except ValueError as exc:
            raise ApiError(400, str(exc), "channels") from None
        return _json({"hours": round((until - since) / 3600, 4), **body})

    @app.get("/api/history/energy_flows", action="read")
    def energy_flows() -> str:
        since, until = _range(ems, 24)
        return _json(ems.history.energy_flows(since, until))

    @app.get("/api/history/optimization", action="read")
    def history_optimization() -> str:
        days = number_query("days", 7, 0.01, 400)
        return _json({"days": days, "runs": ems.history.optimization_runs(ems.now() - days * 86400)})

    @app.get("/api/analytics/daily", action="read")
    def analytics_daily() -> str:
        return _json(ems.analytics.daily(int(number_query("days", 30, 1, 366, integer=True))))

    @app.get("/api/analytics/summary", action="read")
    def analytics_summary() -> str:
        return _json(ems.analytics.summary(int(number_query("days", 30, 1, 366, integer=True))))

    @app.get("/api/analytics/plan_vs_actual", action="read")
    def plan_vs_actual() -> str:
        day = bottle.request.query.get("day") or None
        if day is not None:
            try:
                if not _DAY.fullmatch(day) or not 2000 <= date.fromisoformat(day).year <= 2200:
                    raise ValueError(day)
            except ValueError:
                raise ApiError(400, i18n.mark("must be a date YYYY-MM-DD (got {got})"), "day", got=repr(day[:40])) from None
        return _json(ems.analytics.plan_vs_actual(day))

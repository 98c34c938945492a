"""JSON views of the running EMS: what `/api/state`, the live events and `/api/plan` show.

Pure functions of a `RuntimeSnapshot` / `PlanView`, so what the pages read is decided here, in one
place, and can be tested without a runtime.
"""
from __future__ import annotations

from typing import Any

from ..localtime import minute_of_day, site_zone
from ..safety.feedin import feedin_limit_pct
from ..state import plant_state_to_json
from .facade import PlanView, RuntimeSnapshot

NO_PLAN_STRATEGY = "self_consumption"  # what the real-time layer does while there is no plan


def state_json(s: RuntimeSnapshot) -> dict[str, Any]:
    cfg = s.config
    return {
        "ts": round(s.now, 3),
        "plant": plant_state_to_json(s.plant, s.now),
        "power_control": {"enabled": cfg.power_control.enabled, **s.power_control},
        "grid_connection": grid_json(s),
        "feedin_limitation": feedin_json(s),
        "devices": dict(s.devices),
        "strategy": strategy_json(s),
        "expected_profit_24h_eur": expected_profit_eur(s.plan),
        "runtime": {
            "version": s.version,
            "uptime_s": round(s.uptime_s, 1),
            "simulator": cfg.simulator.enabled,
            "speed": s.speed,
            "loop_lag_ms": dict(s.loop_lag_ms),
            "tasks": dict(s.tasks),
            "history_rows_written": s.history_rows_written,
        },
        "history": dict(s.history),
        "mqtt": dict(s.mqtt),
        "notifications": {"latest_id": s.latest_notification_id},
    }


def grid_json(s: RuntimeSnapshot) -> dict[str, Any]:
    cfg = s.config.grid_connection
    grid_w = s.plant.value("grid.power_w", s.now)
    utilisation = None if grid_w is None else round(abs(grid_w) / (cfg.max_power_kw * 10.0), 1)
    return {"max_power_kw": cfg.max_power_kw, "utilisation_pct": utilisation,
            "monitoring_enabled": cfg.monitoring_enabled}


def feedin_json(s: RuntimeSnapshot) -> dict[str, Any]:
    """The feed-in limitation in force now: mode, percentage and what it is a percentage of.

    The percentage is the configured rule's (`ems.safety.feedin`, the same function the safety loop uses);
    the export limit in W is the safety loop's, which also holds the grid connection's own rating.
    """
    cfg = s.config.feedin_limitation
    try:
        pct = feedin_limit_pct(cfg, minute_of_day(s.now, site_zone(s.config.site.timezone)))
    except (ValueError, OverflowError):
        pct = None
    grid = s.config.grid_connection
    reference_kw = (s.config.forecast.pv_peak_kwp if cfg.pv_integration_enabled
                    else grid.max_feedin_kw if grid.max_feedin_kw is not None else grid.max_power_kw)
    mode = cfg.mode if cfg.enabled else "off"
    return {"enabled": cfg.enabled and mode != "off", "mode": mode, "limit_pct": pct,
            "reference": "pv_peak" if cfg.pv_integration_enabled else "grid_connection", "reference_kw": reference_kw,
            "export_limit_w": s.power_control.get("export_limit_w")}


def strategy_json(s: RuntimeSnapshot) -> dict[str, Any]:
    mode = s.config.strategy.mode
    plan = s.plan.plan
    if plan is None:
        return {"mode": mode, "active": NO_PLAN_STRATEGY,
                "reason": s.plan.last_error or "no plan yet: covering the net load from the battery"}
    return {"mode": mode, "active": plan.strategy, "reason": plan.reason, "status": plan.status,
            "fallback": plan.fallback, "planned_at": s.plan.planned_at}


def expected_profit_eur(view: PlanView) -> float | None:
    plan = view.plan
    if plan is None or plan.expected_profit_eur is None:
        return None
    return round(plan.expected_profit_eur, 2)


def plan_json(view: PlanView) -> dict[str, Any]:
    return {"plan": view.plan.to_json() if view.plan else None, "planned_at": view.planned_at,
            "runs": view.runs, "last_error": view.last_error}

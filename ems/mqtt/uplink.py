"""The uplink's messages, built from what `/api/state` and `/api/plan` show: pure functions, no I/O, no clock.

Every message is a flat JSON object with units in its keys (`soc_pct`, `grid_power_w`), the plant time `ts`
(epoch seconds, UTC) and the site id; the outbox adds the stream's sequence number `seq` and the `boot`
counter. Signs as everywhere: battery power > 0 = discharging, grid power > 0 = import. A value that is missing
or stale is `null` and its key is listed in `stale` — an uplink must never repeat an old reading as current.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

TELEMETRY_POINTS: Mapping[str, str] = {
    "soc_pct": "battery.soc_pct",
    "soh_pct": "battery.soh_pct",
    "battery_power_w": "bess.power_w",
    "pv_power_w": "pv.power_w",
    "load_power_w": "load.power_w",
    "grid_power_w": "grid.power_w",
    "battery_voltage_v": "battery.voltage_v",
    "battery_current_a": "battery.current_a",
    "battery_temperature_c": "battery.temperature_c",
    "max_charge_power_w": "battery.max_charge_power_w",
    "max_discharge_power_w": "battery.max_discharge_power_w",
    "dso_limit_pct": "dso.limit_pct",
}
"""Message key (unit in the name) → plant-state point."""

STATE_KEYS = ("power_control_state", "remote_shutdown_requested", "dso_mode", "dso_limit_pct", "alarms",
              "strategy", "strategy_mode", "devices_online")
"""A change of any of these is a state change (reasons ride along but do not trigger one: they flicker)."""

PLAN_HOURS_MAX = 72


def _point(plant: Mapping[str, Any], path: str) -> tuple[Any, bool]:
    """(value, fresh) of a plant point in `/api/state` form; a missing point is (None, False)."""
    group, _, name = path.partition(".")
    entry = (plant.get(group) or {}).get(name)
    if not isinstance(entry, Mapping):
        return None, False
    if entry.get("stale"):
        return None, False
    return entry.get("value"), True


def _round(value: Any, digits: int = 3) -> Any:
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    return value


def telemetry(state: Mapping[str, Any], site_id: str) -> dict[str, Any]:
    """The periodic telemetry message."""
    plant = state.get("plant") or {}
    pc = state.get("power_control") or {}
    strategy = state.get("strategy") or {}
    grid = state.get("grid_connection") or {}
    out: dict[str, Any] = {"ts": _round(state.get("ts")), "site": site_id}
    stale = []
    for key, path in TELEMETRY_POINTS.items():
        value, fresh = _point(plant, path)
        out[key] = _round(value) if fresh else None
        if not fresh:
            stale.append(key)
    dso_mode, dso_fresh = _point(plant, "dso.mode")
    out.update({
        "dso_mode": dso_mode if dso_fresh else None,
        "power_control_state": pc.get("state"),
        "requested_w": _round(pc.get("requested_w")),
        "setpoint_w": _round(pc.get("effective_setpoint_w")),
        "discharge_limit_w": _round(pc.get("limit_w")),
        "charge_limit_w": _round(pc.get("charge_limit_w")),
        "export_limit_w": _round(pc.get("export_limit_w")),
        "grid_utilisation_pct": _round(grid.get("utilisation_pct")),
        "strategy": strategy.get("active"),
        "strategy_mode": strategy.get("mode"),
        "expected_profit_24h_eur": _round(state.get("expected_profit_24h_eur")),
        "stale": stale,
    })
    return out


def state_facts(state: Mapping[str, Any]) -> dict[str, Any]:
    """The state that a change of is worth a message of its own (`STATE_KEYS`), plus the reasons."""
    plant = state.get("plant") or {}
    pc = state.get("power_control") or {}
    strategy = state.get("strategy") or {}
    dso_mode, dso_fresh = _point(plant, "dso.mode")
    limit, limit_fresh = _point(plant, "dso.limit_pct")
    alarms, alarms_fresh = _point(plant, "battery.alarms")
    return {
        "power_control_state": pc.get("state"),
        "remote_shutdown_requested": bool(pc.get("remote_shutdown_requested")),
        "dso_mode": dso_mode if dso_fresh else None,
        "dso_limit_pct": _round(limit) if limit_fresh else None,
        "alarms": sorted(str(a) for a in alarms) if alarms_fresh and isinstance(alarms, (list, tuple)) else [],
        "strategy": strategy.get("active"),
        "strategy_mode": strategy.get("mode"),
        "reasons": list(pc.get("reasons") or []),
        "reason_codes": list(pc.get("reason_codes") or []),
        "devices_online": {name: bool(d.get("online")) for name, d in (state.get("devices") or {}).items()
                           if isinstance(d, Mapping)},
    }


def state_change(previous: Mapping[str, Any] | None, facts: Mapping[str, Any], ts: float,
                 site_id: str) -> dict[str, Any] | None:
    """The state message when `facts` differ from `previous` in a `STATE_KEYS` key (always for the first)."""
    changed = [k for k in STATE_KEYS if previous is None or previous.get(k) != facts.get(k)]
    if not changed:
        return None
    return {"ts": _round(ts), "site": site_id, **facts, "changed": changed}


def plan_summary(plan_view: Mapping[str, Any], site_id: str) -> dict[str, Any] | None:
    """The plan message: the run's verdict and money, and the plan hour by hour (mean powers, SoC at the hour's
    end, mean prices) — enough for a fleet view, a fraction of the steps' size. None while there is no plan."""
    plan = plan_view.get("plan")
    if not isinstance(plan, Mapping):
        return None
    hours: dict[int, list[Mapping[str, Any]]] = {}
    for step in plan.get("steps") or []:
        hours.setdefault(int(step["ts"] // 3600), []).append(step)

    def mean(steps: Sequence[Mapping[str, Any]], key: str, digits: int) -> float:
        return round(sum(float(s[key]) for s in steps) / len(steps), digits)

    summary = [{"start_ts": hour * 3600, "battery_power_w": mean(steps, "bess_power_w", 1),
                "grid_power_w": mean(steps, "grid_power_w", 1), "pv_power_w": mean(steps, "pv_power_w", 1),
                "load_power_w": mean(steps, "load_power_w", 1), "soc_pct": round(float(steps[-1]["soc_pct"]), 2),
                "import_price_eur_per_kwh": mean(steps, "import_price_eur_per_kwh", 5),
                "export_price_eur_per_kwh": mean(steps, "export_price_eur_per_kwh", 5)}
               for hour, steps in sorted(hours.items())[:PLAN_HOURS_MAX]]
    return {"ts": _round(plan_view.get("planned_at")), "site": site_id, "planned_at": plan_view.get("planned_at"),
            "strategy": plan.get("strategy"), "reason": plan.get("reason"), "status": plan.get("status"),
            "fallback": plan.get("fallback"), "solver": plan.get("solver"),
            "expected_profit_24h_eur": _round(plan.get("expected_profit_eur"), 2),
            "cost_no_battery_eur": _round(plan.get("cost_no_battery_eur"), 2),
            "objective_eur": _round(plan.get("objective_eur"), 2), "start_ts": plan.get("start_ts"),
            "step_s": plan.get("step_s"), "hours": summary}


def notification(item: Mapping[str, Any], site_id: str, secrets: Sequence[str] = ()) -> dict[str, Any]:
    """A notification as raised, with every stored secret replaced by ******** (a failed fetch may quote a URL
    with a key in it; the web scrubs its responses the same way)."""
    message = str(item.get("message", ""))
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        message = message.replace(secret, "********")
    return {"ts": item.get("ts"), "site": site_id, "id": item.get("id"), "level": item.get("level"),
            "category": item.get("category"), "message": message}

"""Analytics from the history: money per local day against the no-battery counterfactual, and plan vs actual.

Everything is summed from the 15-minute tier (local days start on a quarter hour in every time zone
with a whole-quarter offset), so a month of analytics reads ~3,000 rows. The money figures are the
sums of each sample's cost as priced when it was recorded (`ems.history.flows`): savings are exactly
`cost_no_battery_eur − cost_eur`. Definitions, per day:

- full cycles = (charge + discharge kWh) / (2 × usable capacity);
- self-consumption = PV used on site (→ load, → battery) / PV produced;
- self-sufficiency = 1 − load served straight from the grid / load;
- strategy share = time each plan's strategy was in force: a run holds until the next one, at most
  two re-plan intervals (the EMS was off beyond that), clipped to the day and to now.

Plan vs actual compares, for each quarter hour, the plan in force when it began (the last run made at or
before its start that covers it) with what was measured: battery power, SoC, load and PV (the forecast
errors), cost, and the savings the plan expected against those realised.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timedelta
from typing import Any, Callable, Mapping, Sequence
from zoneinfo import ZoneInfo

from ..config.schema import EmsConfig
from ..localtime import site_zone
from ..optimizer.plan import Plan
from . import flows
from .schema import QUARTER_S
from .store import HistoryStore

log = logging.getLogger(__name__)

_SUMS = ("dt_s", "pv_wh", "load_wh", "import_wh", "export_wh", "charge_wh", "discharge_wh", "pv_to_load_wh",
         "pv_to_battery_wh", "grid_to_load_wh", "cost_eur", "cost_no_battery_eur", "priced_s")
_MEANS = ("soc_pct", "bess_power_w", "load_power_w", "pv_power_w", "grid_power_w")
_COLUMNS = tuple(f"{c}_sum" for c in _SUMS) + tuple(f"{c}_{p}" for c in _MEANS for p in ("sum", "n"))
PLAN_ARRAYS = ("bess_power_w", "soc_pct", "grid_power_w", "load_power_w", "pv_power_w", "pv_curtailed_w",
               "import_price_eur_per_kwh", "export_price_eur_per_kwh")


def compact_plan(plan: Plan) -> dict[str, Any]:
    """What the history keeps of a plan: its steps as arrays (a day's plan is ~3 KB compressed)."""
    arrays = {key: [round(float(getattr(s, key)), 5 if "price" in key else 2) for s in plan.steps]
              for key in PLAN_ARRAYS}
    return {"start_ts": plan.start_ts, "step_s": plan.step_s, "soc0_pct": round(plan.soc0_pct, 3), **arrays}


@dataclass
class _Totals:
    """Sums over some quarter hours."""

    sums: dict[str, float]
    soc_sum: float = 0.0
    soc_n: int = 0

    @classmethod
    def empty(cls) -> "_Totals":
        return cls(dict.fromkeys(_SUMS, 0.0))

    def add(self, row: Mapping[str, Any]) -> None:
        for c in _SUMS:
            self.sums[c] += row.get(f"{c}_sum") or 0.0
        self.soc_sum += row.get("soc_pct_sum") or 0.0
        self.soc_n += row.get("soc_pct_n") or 0

    def merge(self, other: "_Totals") -> None:
        for c in _SUMS:
            self.sums[c] += other.sums[c]
        self.soc_sum += other.soc_sum
        self.soc_n += other.soc_n

    def to_json(self, capacity_kwh: float) -> dict[str, Any]:
        s = self.sums
        kwh = {k: s[f"{k}_wh"] / 1000.0 for k in ("pv", "load", "import", "export", "charge", "discharge")}
        pct = lambda part, whole: None if whole <= 1e-9 else round(100.0 * part / whole, 2)
        return {
            "covered_h": round(s["dt_s"] / 3600.0, 3),
            **{f"{k}_kwh": round(v, 3) for k, v in kwh.items()},
            "cost_eur": round(s["cost_eur"], 4),
            "cost_no_battery_eur": round(s["cost_no_battery_eur"], 4),
            "savings_eur": round(s["cost_no_battery_eur"] - s["cost_eur"], 4),
            "priced_pct": pct(s["priced_s"], s["dt_s"]),
            "full_cycles": round((kwh["charge"] + kwh["discharge"]) / (2.0 * capacity_kwh), 4),
            "avg_soc_pct": round(self.soc_sum / self.soc_n, 2) if self.soc_n else None,
            "self_consumption_pct": pct(s["pv_to_load_wh"] + s["pv_to_battery_wh"], s["pv_wh"]),
            "self_sufficiency_pct": None if s["load_wh"] <= 1e-9 else
            round(100.0 * (1.0 - s["grid_to_load_wh"] / s["load_wh"]), 2),
        }


def local_day_bounds(day: date, zone: ZoneInfo) -> tuple[float, float]:
    """[start, end) of a local calendar day as epoch seconds (23 or 25 hours on DST days)."""
    start = datetime.combine(day, dtime(0), zone)
    end = datetime.combine(day + timedelta(days=1), dtime(0), zone)
    return start.timestamp(), end.timestamp()


def strategy_seconds(runs: Sequence[tuple[float, str]], lo: float, hi: float, hold_cap_s: float) -> dict[str, float]:
    """Seconds each strategy was in force within [lo, hi), from (run ts, strategy) oldest first."""
    out: dict[str, float] = {}
    for k, (ts, strategy) in enumerate(runs):
        until = runs[k + 1][0] if k + 1 < len(runs) else hi
        until = min(until, ts + hold_cap_s, hi)
        held = until - max(ts, lo)
        if held > 0:
            out[strategy] = out.get(strategy, 0.0) + held
    return out


def _shares(seconds: Mapping[str, float]) -> dict[str, float]:
    total = sum(seconds.values())
    return {k: round(100.0 * v / total, 2) for k, v in sorted(seconds.items())} if total > 0 else {}


class Analytics:
    """The `/api/analytics/*` answers. Blocking (reads SQLite): called from web threads."""

    def __init__(self, store: HistoryStore, config: Callable[[], EmsConfig], now: Callable[[], float]):
        self.store = store
        self._config = config
        self._now = now

    def _zone(self) -> ZoneInfo:
        return site_zone(self._config().site.timezone)

    def _days(self, days: int) -> list[date]:
        today = datetime.fromtimestamp(self._now(), self._zone()).date()
        return [today - timedelta(days=k) for k in range(days - 1, -1, -1)]

    def _per_day(self, days: int) -> list[tuple[date, float, float, _Totals, dict[str, float]]]:
        zone, now, cfg = self._zone(), self._now(), self._config()
        bounds = [(d, *local_day_bounds(d, zone)) for d in self._days(days)]
        rows = self.store.quarter_rows(bounds[0][1], bounds[-1][2], _COLUMNS)
        runs = self.store.strategy_runs(bounds[0][1], min(bounds[-1][2], now))
        hold = 2.0 * cfg.strategy.replan_interval_min * 60.0
        out = []
        k = 0
        for day, lo, hi in bounds:
            totals = _Totals.empty()
            while k < len(rows) and rows[k]["bucket_ts"] < hi:
                if rows[k]["bucket_ts"] >= lo:
                    totals.add(rows[k])
                k += 1
            out.append((day, lo, hi, totals, strategy_seconds(runs, lo, min(hi, now), hold)))
        return out

    def daily(self, days: int) -> dict[str, Any]:
        capacity = self._config().bess.capacity_kwh
        result = []
        for day, lo, hi, totals, seconds in self._per_day(days):
            result.append({"date": day.isoformat(), "from": lo, "to": hi, **totals.to_json(capacity),
                           "strategy_share_pct": _shares(seconds)})
        return {"timezone": str(self._zone()), "capacity_kwh": capacity, "days": result}

    def summary(self, days: int) -> dict[str, Any]:
        capacity = self._config().bess.capacity_kwh
        total, with_data = _Totals.empty(), 0
        seconds: dict[str, float] = {}
        for _day, _lo, _hi, totals, day_seconds in self._per_day(days):
            total.merge(totals)
            with_data += totals.sums["dt_s"] > 0
            for k, v in day_seconds.items():
                seconds[k] = seconds.get(k, 0.0) + v
        body = total.to_json(capacity)
        per_day = lambda key: round(body[key] / with_data, 4) if with_data else None
        return {"days": days, "days_with_data": with_data, **body,
                "avg_daily_savings_eur": per_day("savings_eur"), "avg_daily_cost_eur": per_day("cost_eur"),
                "avg_daily_cycles": per_day("full_cycles"), "strategy_share_pct": _shares(seconds),
                "last_optimizations": self.store.optimization_runs(0.0, limit=15)}

    # -- plan vs actual -----------------------------------------------------------------------------------
    def plan_vs_actual(self, day: str | None) -> dict[str, Any]:
        zone, now = self._zone(), self._now()
        the_day = datetime.fromtimestamp(now, zone).date() if day is None else date.fromisoformat(day)
        lo, hi = local_day_bounds(the_day, zone)
        hi_now = min(hi, now // QUARTER_S * QUARTER_S + QUARTER_S)
        actual = {r["bucket_ts"]: r for r in self.store.quarter_rows(lo, hi_now, _COLUMNS)}
        plans = self.store.plans(lo, hi_now)
        steps = []
        for ts in range(int(lo), int(hi_now), QUARTER_S):
            planned = _planned_step(plans, ts)
            measured = _measured_step(actual.get(ts))
            if planned is None and measured is None:
                continue
            steps.append({"ts": ts, "planned": planned, "actual": measured})
        return {"date": the_day.isoformat(), "from": lo, "to": hi, "steps": steps, "summary": _compare(steps)}


def _planned_step(plans: Sequence[Mapping[str, Any]], ts: int) -> dict[str, Any] | None:
    """The step at `ts` of the plan in force when the quarter began (the last made at or before its start that
    covers it); only where none exists, the first made during the quarter. A plan made at 10:14 already knew
    how 10:00–10:14 went: crediting it with that quarter would hide the forecast error this is to show."""
    before = [run for run in plans if run["ts"] <= ts]
    during = [run for run in plans if ts < run["ts"] < ts + QUARTER_S]
    for run in [*reversed(before), *during]:
        plan = run["plan"]
        step_s = plan["step_s"]
        k = int((ts - plan["start_ts"]) // step_s)
        if step_s != QUARTER_S or not 0 <= k < len(plan["bess_power_w"]):
            continue
        soc_start = plan["soc0_pct"] if k == 0 else plan["soc_pct"][k - 1]
        grid, bess = plan["grid_power_w"][k], plan["bess_power_w"][k]
        ip, ep = plan["import_price_eur_per_kwh"][k], plan["export_price_eur_per_kwh"][k]
        cost = (max(grid, 0.0) * ip - max(-grid, 0.0) * ep) * step_s / flows.WS_PER_KWH
        cost_nb = flows.no_battery_cost_eur(grid, bess, ip, ep, None, step_s)
        return {"run_id": run["id"], "planned_at": run["ts"], "strategy": run["strategy"],
                "bess_power_w": bess, "soc_pct": round((soc_start + plan["soc_pct"][k]) / 2.0, 3),
                "load_power_w": plan["load_power_w"][k], "pv_power_w": plan["pv_power_w"][k],
                "cost_eur": round(cost, 5), "savings_eur": round(cost_nb - cost, 5)}
    return None


def _measured_step(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None or not row.get("dt_s_sum"):
        return None
    mean = lambda c: None if not row.get(f"{c}_n") else round(row[f"{c}_sum"] / row[f"{c}_n"], 3)
    priced = bool(row.get("priced_s_sum"))
    cost, cost_nb = row.get("cost_eur_sum") or 0.0, row.get("cost_no_battery_eur_sum") or 0.0
    return {"bess_power_w": mean("bess_power_w"), "soc_pct": mean("soc_pct"), "load_power_w": mean("load_power_w"),
            "pv_power_w": mean("pv_power_w"), "covered_s": round(row["dt_s_sum"], 1),
            "cost_eur": round(cost, 5) if priced else None,
            "savings_eur": round(cost_nb - cost, 5) if priced else None}


def _compare(steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    both = [s for s in steps if s["planned"] is not None and s["actual"] is not None]
    errors: dict[str, list[float]] = {k: [] for k in ("bess_power_w", "soc_pct", "load_power_w", "pv_power_w")}
    planned_savings = realised_savings = planned_cost = actual_cost = 0.0
    priced = 0
    for s in both:
        p, a = s["planned"], s["actual"]
        for key, values in errors.items():
            if a[key] is not None:
                values.append(a[key] - p[key])
        if a["savings_eur"] is not None:
            priced += 1
            planned_savings += p["savings_eur"]
            realised_savings += a["savings_eur"]
            planned_cost += p["cost_eur"]
            actual_cost += a["cost_eur"]
    stats = {key: {"mean_abs_error": round(sum(abs(v) for v in vals) / len(vals), 3),
                   "bias": round(sum(vals) / len(vals), 3)} if vals else None for key, vals in errors.items()}
    return {"steps_compared": len(both), "steps_priced": priced,
            "planned_savings_eur": round(planned_savings, 4), "realised_savings_eur": round(realised_savings, 4),
            "realised_pct": round(100.0 * realised_savings / planned_savings, 1) if abs(planned_savings) > 1e-6
            else None,
            "planned_cost_eur": round(planned_cost, 4), "actual_cost_eur": round(actual_cost, 4),
            "errors": stats}

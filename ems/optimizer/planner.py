"""Receding-horizon planning: re-plan every `strategy.replan_interval_min`, on new forecasts, on a strategy
change and when the SoC drifts from the plan; solve off the event loop; never leave the plant without a plan.

The planner only proposes: the real-time layer (`ems.optimizer.realtime`) turns the current step into a request and
the safety loop decides. A failed or infeasible solve becomes the self-consumption fallback plan plus a
notification; every run is recorded in the history for analytics.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from ..bus import TelemetryBus
from ..clock import Clock
from ..config import ConfigStore
from ..forecast.service import ForecastService, ForecastSnapshot
from ..history import HistoryStore
from ..history.analytics import compact_plan
from .. import i18n
from ..notifications import Notifications
from . import (Plan, PlanInputError, PlanInputs, choose_strategy, fallback_self_consumption_plan,
                        leading_finite_steps, optimize, plan_inputs_from_config, resample_mean)
from .strategies import STRATEGIES, Intent

log = logging.getLogger(__name__)

STEP_S = 900
SOC_DRIFT_PCT = 5.0  # re-plan when the measured SoC is this far from the plan's
CHECK_INTERVAL_S = 1.0  # real seconds between "is a re-plan due?" checks
SOLVE_TIME_LIMIT_S = 10.0
MIN_STEPS = 4
STARTUP_GRACE_S = 60.0


@dataclass(frozen=True)
class PlanRecord:
    plan: Plan
    planned_at: float  # plant time
    forecast_ts: float  # the forecast snapshot it was built from


def build_inputs(config: Any, snapshot: ForecastSnapshot, now: float, soc_pct: float) -> PlanInputs:
    """PlanInputs from a forecast snapshot: 15-min steps from the current quarter hour, as far as prices go."""
    if snapshot.consumer_price is None or snapshot.price is None or snapshot.load is None or snapshot.pv is None:
        raise PlanInputError("forecast", "prices, load and PV forecasts are not all available yet")
    start = now // STEP_S * STEP_S
    n = int(config.strategy.horizon_h * 3600 // STEP_S)

    def on_steps(series: Any) -> Any:
        return resample_mean(series.timestamps(), series.values, start, STEP_S, n, interval_s=series.step_s)

    consumer, market = on_steps(snapshot.consumer_price), on_steps(snapshot.price)
    load, pv = on_steps(snapshot.load), on_steps(snapshot.pv)
    usable = min(leading_finite_steps(s) for s in (consumer, market, load, pv))
    if usable < MIN_STEPS:
        raise PlanInputError("forecast", f"only {usable} quarter hours of forecast from now")
    return plan_inputs_from_config(config, start_ts=start, step_s=STEP_S,
                                   consumer_price_eur_per_kwh=consumer[:usable],
                                   market_price_eur_per_kwh=market[:usable],
                                   load_kw=load[:usable], pv_kw=pv[:usable], soc0_pct=soc_pct)


def plan_once(config: Any, inputs: PlanInputs) -> Plan:
    """Choose the strategy (auto or manual), solve, and fall back safely; never raises."""
    if config.strategy.mode == "auto":
        choice = choose_strategy(inputs)
        strategy, reason, figures = choice.strategy, choice.reason, choice.figures
    else:
        strategy, reason, figures = config.strategy.current, "chosen by the operator", None
    plan = optimize(inputs, strategy, reason=reason, time_limit_s=SOLVE_TIME_LIMIT_S, figures=figures)
    return plan if plan.ok else fallback_self_consumption_plan(inputs, plan)


class Planner:
    def __init__(self, config: ConfigStore, clock: Clock, bus: TelemetryBus, forecast: ForecastService,
                 history: HistoryStore, notifications: Notifications):
        self.config = config
        self.clock = clock
        self.bus = bus
        self.forecast = forecast
        self.history = history
        self.notifications = notifications
        self.record: PlanRecord | None = None
        self.last_error: str | None = None
        self.runs = 0
        self._wake = asyncio.Event()
        self._started_mono = clock.monotonic()
        config.subscribe("strategy", lambda _cfg: self.replan_soon())
        for section in ("bess", "grid_connection", "feedin_limitation", "grid_tariffs"):
            config.subscribe(section, lambda _cfg: self.replan_soon())

    def replan_soon(self) -> None:
        """Ask for a new plan at the next check (thread-safe through the config dispatch)."""
        self._wake.set()

    @property
    def plan(self) -> Plan | None:
        return self.record.plan if self.record else None

    def intent(self) -> Intent:
        """What the current plan wants now; outside the plan (or without one): self-consumption."""
        record = self.record
        if record is None:
            return Intent(None, None)
        plan = record.plan
        step = plan.step_at(self.clock.now())
        if step is None:
            return Intent(None, None)
        strategy = STRATEGIES.get(plan.strategy)  # it takes what its real-time rule needs of the plan
        return strategy.intent(plan, step) if strategy is not None else Intent(plan.strategy, step)

    async def run(self) -> None:
        while True:
            reason = self._due()
            if reason:
                await self.replan(reason)
            await self.clock.wait(self._wake, CHECK_INTERVAL_S)

    def _due(self) -> str | None:
        if self._wake.is_set():
            self._wake.clear()
            return "settings changed"
        now = self.clock.now()
        record = self.record
        if record is None:
            return "no plan yet"
        if now - record.planned_at >= self.config.config.strategy.replan_interval_min * 60:
            return "scheduled"
        if self.forecast.snapshot().created_ts > record.forecast_ts:
            return "new forecasts"
        step = record.plan.step_at(now)
        soc = self.bus.snapshot().value("battery.soc_pct", now)
        if step is not None and soc is not None and abs(soc - self._planned_soc(record.plan, now)) > SOC_DRIFT_PCT:
            return "SoC drifted from the plan"
        return None

    @staticmethod
    def _planned_soc(plan: Plan, now: float) -> float:
        k = int((now - plan.start_ts) // plan.step_s)
        return plan.soc0_pct if k <= 0 else plan.steps[min(k, len(plan.steps)) - 1].soc_pct

    async def replan(self, why: str) -> Plan | None:
        cfg = self.config.config
        now = self.clock.now()
        soc = self.bus.snapshot().value("battery.soc_pct", now)
        snapshot = self.forecast.snapshot()
        if soc is None:
            self._fail("no fresh SoC reading: planning waits for the battery",
                       words=i18n.mark("planning waits: the battery's charge level is not known"))
            return None
        loop = asyncio.get_running_loop()
        try:
            # Resampling the forecasts and pricing each step (tariff windows in local time) is ~10 ms of
            # Python: off the event loop, which the safety loop shares.
            inputs = await loop.run_in_executor(None, build_inputs, cfg, snapshot, now, float(soc))
        except PlanInputError as exc:
            # Right after start the forecasts are still being built: that is not worth a notification.
            self._fail(f"cannot plan: {exc}", notify=self.clock.monotonic() - self._started_mono > STARTUP_GRACE_S,
                       words=i18n.mark("no plan could be made: the forecasts or prices it needs are missing"))
            return None
        started = time.perf_counter()
        plan = await loop.run_in_executor(None, plan_once, cfg, inputs)
        duration_ms = (time.perf_counter() - started) * 1000.0
        self.record = PlanRecord(plan, now, snapshot.created_ts)
        self.runs += 1
        self.last_error = None
        log.info("plan (%s): %s %s, expected profit %.2f €, %.0f ms", why, plan.strategy, plan.status,
                 plan.expected_profit_eur or 0.0, duration_ms)
        if plan.fallback:
            self.notifications.add("error", "optimizer", i18n.mark(
                "no optimal plan could be made: the battery follows a simple self-consumption rule until the next "
                "plan"), f"optimization {plan.status}: {plan.message}")
        await loop.run_in_executor(None, self._record_run, now, plan, duration_ms, why)
        return plan

    def _record_run(self, now: float, plan: Plan, duration_ms: float, why: str) -> None:
        try:
            self.history.record_optimization_run(
                ts=now, strategy=plan.strategy, status="fallback" if plan.fallback else plan.status,
                solver=f"{plan.solver} {plan.solver_version}".strip(), objective_eur=plan.objective_eur,
                expected_profit_eur=plan.expected_profit_eur, duration_ms=duration_ms,
                reason=f"{plan.reason} (re-planned: {why})", plan=compact_plan(plan))
        except Exception:
            log.exception("could not record the optimization run")

    def _fail(self, message: str, notify: bool = True, words: str = "") -> None:
        if notify and message != self.last_error:
            self.notifications.add("warning", "optimizer", words or message, message if words else "")
        self.last_error = message

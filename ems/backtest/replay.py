"""Replaying a real year step by step with different battery controllers, and what each one costs.

Controllers (each produces per-step flows over the whole period, same signs and units as the optimizer):
- `no_battery`: the site as it is; the yardstick for savings.
- `greedy`: what a stock hybrid inverter does — PV surplus into the battery, the battery covers the
  load, never charges from or discharges into the grid (`ems.optimizer.plan.greedy_self_consumption_flows`).
- `ems`: the EMS as the runtime runs it — receding horizon (`RecedingHorizon`): a plan when the next
  day's prices are published (13:00) reaching to the end of the known prices, intraday replans every
  few hours, each plan step turned into a battery request by the real-time layer (`ems.dispatch`) and
  clamped to the battery's limits. With perfect forecasts unless a `forecaster` is given (`ems_forecast`).
- `optimum`: perfect foresight — the least cost with every price, load and PV value known in
  advance: the upper bound of what any controller could save with this battery, tariff and data
  (week windows with 3 days of lookahead, within cents of one exact LP over the period; see
  `run_perfect_foresight`).

All controllers share the physics and the rules no controller may break: SoC window, power limits,
grid-connection and feed-in limits, and PV that can only be exported at a negative price is curtailed
(the inverter's export limiter) — so savings measure the battery and its control, nothing else.

Money, per step: import × consumer price − export × feed-in price + degradation × energy discharged.
The consumer price is (market + |market|·surcharge % + surcharge + grid fee) × (1 + VAT), the formula
of `ems.forecast.prices.consumer_price_eur_per_kwh`. Energy left in the battery at the end of the
period is credited at `Site.final_energy_value_eur_per_kwh` (default 0: the period ends), against
what it held at the start; the optimum uses the same value, and EMS plans that reach the end of the
data are told so (they would otherwise keep energy for a future the accounting never sees).
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, time as dtime, timedelta
from typing import Callable, Literal, Optional, Protocol

import numpy as np

from ..config.schema import BessConfig, GridConnectionConfig
from ..dispatch import Intent, realtime_request
from ..optimizer import PlanInputs, choose_strategy, fallback_self_consumption_plan, optimize
from ..optimizer.inputs import MAX_STEPS, PlanInputError
from ..optimizer.model import binary_steps_from_weights, build_model, extract_flows, to_highs
from ..optimizer.plan import Flows, Plan, greedy_self_consumption_flows, no_battery_flows
from ..optimizer.strategies import STRATEGY_NAMES, get_strategy
from ..optimizer.tariffs import LOCAL_TZ, hhmm_to_minutes
from ..state import Measurement, PlantState, PowerPoint
from .data import BacktestData

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
"""progress(controller name, fraction done 0..1): lets a CLI show where a long replay is."""

CONTROLLER_TITLES = {
    "no_battery": "No battery",
    "greedy": "Stock inverter (greedy self-consumption)",
    "ems": "EMS, perfect forecasts",
    "ems_forecast": "EMS, own forecasts",
    "day_at_a_time": "EMS, one day at a time",
    "optimum": "Perfect-foresight optimum",
}
SOC_TOL_KWH = 1e-9
OPTIMUM_TIME_LIMIT_S = 600.0
OPTIMUM_WINDOW_H = 7 * 24.0
OPTIMUM_LOOKAHEAD_H = 72.0
"""The optimum is solved in windows of a week, each seeing 3 more days: a 15-min window is then
960 steps, whose MIP (binaries on money-pump steps) stays near 65 MB peak RSS; a month-long
window's MIP needs ~150 MB, a year-long one ~570 MB (measured: bench/bench_backtest.py, backtest notes)."""
OPTIMUM_MIP_REL_GAP = 1e-4  # the year MIP (binaries on money-pump steps only) proves 1e-4 in seconds, 1e-6 in a minute


# -- the site and its tariff --------------------------------------------------------------------

@dataclass(frozen=True)
class Tariff:
    """What a kWh costs to import and earns to export, from the market price (€/kWh)."""

    surcharge_eur_per_kwh: float = 0.015
    surcharge_pct: float = 0.0
    grid_fee_eur_per_kwh: float = 0.0
    vat_pct: float = 20.0
    feed_in_tariff_eur_per_kwh: Optional[float] = None
    """Fixed feed-in price; None: export earns the market price (spot feed-in contract)."""

    def check(self) -> list[tuple[str, str]]:
        problems = []
        for name, lo, hi in (("surcharge_eur_per_kwh", -1.0, 10.0), ("surcharge_pct", 0.0, 100.0),
                             ("grid_fee_eur_per_kwh", 0.0, 10.0), ("vat_pct", 0.0, 100.0)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi):
                problems.append((name, f"must be {lo:g}..{hi:g} (got {value!r})"))
        fit = self.feed_in_tariff_eur_per_kwh
        if fit is not None and not (isinstance(fit, (int, float)) and math.isfinite(fit) and -10 <= fit <= 10):
            problems.append(("feed_in_tariff_eur_per_kwh", f"must be -10..10 or unset (got {fit!r})"))
        return problems

    def import_price_eur_per_kwh(self, market_eur_per_kwh: np.ndarray) -> np.ndarray:
        m = np.asarray(market_eur_per_kwh, dtype=float)
        net = m + np.abs(m) * self.surcharge_pct / 100.0 + self.surcharge_eur_per_kwh + self.grid_fee_eur_per_kwh
        return net * (1.0 + self.vat_pct / 100.0)

    def export_price_eur_per_kwh(self, market_eur_per_kwh: np.ndarray) -> np.ndarray:
        m = np.asarray(market_eur_per_kwh, dtype=float)
        return m.copy() if self.feed_in_tariff_eur_per_kwh is None else np.full(len(m), self.feed_in_tariff_eur_per_kwh)


@dataclass(frozen=True)
class Site:
    """The battery, grid connection and tariff being backtested.

    `soc0_pct`: SoC at the start (None: the battery's min SoC, i.e. empty). Energy left at the end
    is credited at `final_energy_value_eur_per_kwh` against the energy at the start.
    """

    bess: BessConfig = field(default_factory=lambda: BessConfig(capacity_kwh=10.0, max_charge_power_kw=5.0,
                                                                max_discharge_power_kw=5.0))
    grid: GridConnectionConfig = field(default_factory=GridConnectionConfig)
    tariff: Tariff = field(default_factory=Tariff)
    soc0_pct: Optional[float] = None
    final_energy_value_eur_per_kwh: float = 0.0

    def check(self) -> list[tuple[str, str]]:
        problems = [(f"bess.{k}", m) for k, m in self.bess.check()]
        problems += [(f"tariff.{k}", m) for k, m in self.tariff.check()]
        soc0 = self.soc0_pct
        if soc0 is not None and not (isinstance(soc0, (int, float)) and 0 <= soc0 <= 100):
            problems.append(("soc0_pct", f"must be 0..100 (got {soc0!r})"))
        return problems

    @property
    def start_soc_pct(self) -> float:
        return float(self.bess.min_soc_pct if self.soc0_pct is None else self.soc0_pct)

    @property
    def start_energy_kwh(self) -> float:
        return self.bess.capacity_kwh * self.start_soc_pct / 100.0


# -- how the EMS plans ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RecedingHorizon:
    """The EMS's planning cadence, as the runtime would run it.

    `horizon="known_prices"`: day-ahead prices for tomorrow are known from `publication_hhmm` (local)
    on; each plan reaches to the end of the known prices (35 h at 13:00, 11 h at 13:00 − 2 h …).
    A plan is made when new prices arrive, every `replan_every_h` hours in between (None: only on
    new prices), when a plan runs out, and (with forecasts) when the SoC strays from the plan by
    more than `soc_deviation_pct`. `horizon="calendar_day"`: a plan at each local midnight for that
    day only — the naive reference. `max_horizon_h` caps the horizon. `strategy`: a strategy name or
    "auto" (`ems.optimizer.choose_strategy` per run). `terminal_value_eur_per_kwh`: what the plan
    values a kWh left stored at the horizon's end (None: the optimizer's default, see
    `PlanInputs.terminal_value_eur_per_kwh`).
    """

    strategy: str = "arbitrage"
    horizon: Literal["known_prices", "calendar_day"] = "known_prices"
    publication_hhmm: str = "13:00"
    replan_every_h: Optional[float] = 4.0
    max_horizon_h: Optional[float] = None
    terminal_value_eur_per_kwh: Optional[float] = None
    soc_deviation_pct: float = 5.0
    time_limit_s: float = 10.0

    def check(self) -> list[tuple[str, str]]:
        problems = []
        if self.strategy != "auto" and self.strategy not in STRATEGY_NAMES:
            problems.append(("strategy", f"unknown {self.strategy!r} (allowed: auto, {', '.join(STRATEGY_NAMES)})"))
        if self.horizon not in ("known_prices", "calendar_day"):
            problems.append(("horizon", f"must be known_prices or calendar_day (got {self.horizon!r})"))
        try:
            minutes = hhmm_to_minutes(self.publication_hhmm)
            if not 0 <= minutes < 24 * 60:
                raise ValueError
        except (ValueError, AttributeError):
            problems.append(("publication_hhmm", f"must be HH:MM, 00:00..23:59 (got {self.publication_hhmm!r})"))
        for name in ("replan_every_h", "max_horizon_h"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 < value <= 24 * 31):
                problems.append((name, f"must be a number of hours > 0, or unset (got {value!r})"))
        return problems


# -- the forecaster hook --------------------------------------------------------------------------

@dataclass(frozen=True)
class Forecast:
    """What a forecaster expects for the `n` steps of one planning horizon (kW, €/kWh market price)."""

    load_kw: np.ndarray
    pv_kw: np.ndarray
    market_price_eur_per_kwh: np.ndarray


class Forecaster(Protocol):
    """Supplies the EMS's own forecasts in a backtest (the `ems.forecast` package, once it exists).

    Called at every planning run. `history` holds the data *before* `issue_ts` only (so a forecaster
    cannot peek); `known_market_price_eur_per_kwh` are the day-ahead prices published for the
    horizon (real values — they are known at planning time; a price forecaster may return them
    unchanged). The replay plans on the returned values and lives with the real ones: the battery
    follows the plan through the real-time layer, the grid takes the difference.
    """

    def forecast(self, history: BacktestData, issue_ts: float, start_ts: float, step_s: int, n: int,
                 known_market_price_eur_per_kwh: np.ndarray) -> Forecast: ...


# -- results --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ControllerRun:
    """One controller over the whole period: per-step flows (kW, SoC in kWh at step end) and how
    it got there (`plans` solved, `failed_plans` replaced by the fallback, `strategy_steps` =
    steps executed under each strategy, `runtime_s` wall time)."""

    name: str
    flows: Flows
    runtime_s: float = 0.0
    plans: int = 0
    failed_plans: int = 0
    strategy_steps: dict[str, int] = field(default_factory=dict)
    note: str = ""

    @property
    def title(self) -> str:
        return CONTROLLER_TITLES.get(self.name, self.name)


def _empty_flows(n: int) -> dict[str, np.ndarray]:
    return {k: np.zeros(n) for k in ("charge_kw", "discharge_kw", "soc_kwh", "import_kw", "export_kw", "curtail_kw")}


def _prices(data: BacktestData, site: Site) -> tuple[np.ndarray, np.ndarray]:
    market = data.market_price_eur_per_kwh
    return site.tariff.import_price_eur_per_kwh(market), site.tariff.export_price_eur_per_kwh(market)


def _chunk_inputs(data: BacktestData, site: Site, first: int, stop: int, soc0_pct: float,
                  import_price: np.ndarray, export_price: np.ndarray) -> PlanInputs:
    return PlanInputs(start_ts=data.start_ts + first * data.step_s, step_s=data.step_s,
                      import_price_eur_per_kwh=import_price[first:stop],
                      export_price_eur_per_kwh=export_price[first:stop],
                      load_kw=data.load_kw[first:stop], pv_kw=data.pv_kw[first:stop],
                      soc0_pct=min(100.0, max(0.0, soc0_pct)), bess=site.bess, grid=site.grid,
                      terminal_soc_value_eur_per_kwh=site.final_energy_value_eur_per_kwh)


def _chained(data: BacktestData, site: Site, flows_of: Callable[[PlanInputs], Flows], name: str) -> ControllerRun:
    """A stateless-per-step controller over the whole period, in chunks a PlanInputs allows,
    carrying the stored energy from one chunk to the next."""
    t0 = time.perf_counter()
    pi, pe = _prices(data, site)
    out = _empty_flows(data.n)
    energy = site.start_energy_kwh
    cap = site.bess.capacity_kwh
    for first in range(0, data.n, MAX_STEPS):
        stop = min(data.n, first + MAX_STEPS)
        flows = flows_of(_chunk_inputs(data, site, first, stop, 100.0 * energy / cap, pi, pe))
        for key in out:
            out[key][first:stop] = getattr(flows, key)
        energy = float(flows.soc_kwh[-1])
    return ControllerRun(name, Flows(**out), time.perf_counter() - t0)


def run_no_battery(data: BacktestData, site: Site) -> ControllerRun:
    return _chained(data, site, no_battery_flows, "no_battery")


def run_greedy(data: BacktestData, site: Site) -> ControllerRun:
    return _chained(data, site, greedy_self_consumption_flows, "greedy")


# -- perfect foresight ----------------------------------------------------------------------------

def _plan_flows(plan: Plan, bess: BessConfig) -> Flows:
    """Flows in kW / kWh back from a plan's rows (W, %)."""
    def col(name: str) -> np.ndarray:
        return np.array([getattr(st, name) for st in plan.steps], dtype=float) / 1000.0
    grid = col("grid_power_w")
    soc = np.array([st.soc_pct for st in plan.steps], dtype=float) * bess.capacity_kwh / 100.0
    return Flows(col("charge_w"), col("discharge_w"), soc, np.maximum(grid, 0.0), np.maximum(-grid, 0.0),
                 col("pv_curtailed_w"))


@dataclass(frozen=True, slots=True)
class _Setpoint:
    """A plan step as the real-time layer reads it (see `ems.dispatch.PlanStepLike`)."""

    bess_power_w: float
    grid_power_w: float
    pv_curtailed_w: float


def _export_cap_kw(site: Site) -> float:
    return float(site.grid.max_power_kw if site.grid.max_feedin_kw is None else site.grid.max_feedin_kw)


def _follow(data: BacktestData, site: Site, flows: Flows, first: int, count: int, energy_kwh: float,
            export_price: np.ndarray, out: dict[str, np.ndarray]) -> float:
    """Live `count` steps from `first` on the real data following the battery power of `flows` (an
    arbitrage schedule), as the EMS lives its plans: the same physics for every controller, so a
    solver's tolerance never shows up as energy from nowhere. Returns the stored energy after."""
    dt_h = data.step_s / 3600.0
    cap = _export_cap_kw(site)
    for j in range(count):
        k = first + j
        step = _Setpoint(1000.0 * (flows.discharge_kw[j] - flows.charge_kw[j]),
                         1000.0 * (flows.import_kw[j] - flows.export_kw[j]), 1000.0 * flows.curtail_kw[j])
        c, d, energy_kwh, imp, exp_, cur = _realise("arbitrage", step, None, data.start_ts + k * data.step_s,
                                                    float(data.load_kw[k]), float(data.pv_kw[k]), energy_kwh,
                                                    site.bess, dt_h, cap, float(export_price[k]))
        out["charge_kw"][k], out["discharge_kw"][k], out["soc_kwh"][k] = c, d, energy_kwh
        out["import_kw"][k], out["export_kw"][k], out["curtail_kw"][k] = imp, exp_, cur
    return energy_kwh


def run_perfect_foresight(data: BacktestData, site: Site, *, exact: bool = False,
                          window_h: float = OPTIMUM_WINDOW_H, lookahead_h: float = OPTIMUM_LOOKAHEAD_H,
                          time_limit_s: float = OPTIMUM_TIME_LIMIT_S) -> Optional[ControllerRun]:
    """The least cost a controller knowing all prices, load and PV in advance could reach.

    Default: chained windows of `window_h` (a week), each solved by `optimize` with `lookahead_h`
    (3 days) beyond it in view and the SoC carried over — small in memory (a 15-min year peaks
    near 70 MB) and within cents of the exact optimum (`bench/bench_backtest.py` measures the
    difference). A period that fits in one window plus its lookahead is solved in one LP, exactly.
    `exact=True` solves one LP over the whole period however long: the true bound, but a 15-min
    year needs ~230 MB (LP) to ~570 MB (with money-pump binaries) — not on a gateway running the
    EMS. None if a solve fails (the report then says so; there is no stand-in).
    """
    t0 = time.perf_counter()
    if exact:
        return _exact_optimum(data, site, time_limit_s, t0)
    pi, pe = _prices(data, site)
    step_h = data.step_s / 3600.0
    keep = max(1, min(MAX_STEPS, int(round(window_h / step_h))))
    lookahead = min(MAX_STEPS - keep, max(0, int(round(lookahead_h / step_h))))
    out = _empty_flows(data.n)
    energy = site.start_energy_kwh
    windows = binaries = 0
    first = 0
    while first < data.n:
        horizon_stop = min(data.n, first + keep + lookahead)
        stop = data.n if horizon_stop == data.n else first + keep
        inputs = _chunk_inputs(data, site, first, horizon_stop, 100.0 * energy / site.bess.capacity_kwh, pi, pe)
        if horizon_stop < data.n:  # the lookahead values what is left: the optimizer's default
            inputs = replace(inputs, terminal_soc_value_eur_per_kwh=None)
        plan = optimize(inputs, "arbitrage", reason="perfect foresight", time_limit_s=time_limit_s)
        if plan.status != "optimal":
            log.warning("perfect-foresight window from %s not solved: %s: %s",
                        datetime.fromtimestamp(inputs.start_ts, LOCAL_TZ), plan.status, plan.message)
            return None
        energy = _follow(data, site, _plan_flows(plan, site.bess), first, stop - first, energy, pe, out)
        windows += 1
        first = stop
        binaries += plan.binary_steps
    note = ("one LP, optimal" if windows == 1 else
            f"{windows} windows of {keep * step_h:g} h, each with {lookahead * step_h:g} h lookahead") + \
        (f", {binaries} binary steps" if binaries else "")
    return ControllerRun("optimum", Flows(**out), time.perf_counter() - t0, plans=windows, note=note,
                         strategy_steps={"arbitrage": data.n})


def _period_inputs(data: BacktestData, site: Site) -> PlanInputs:
    """PlanInputs for the whole period, however long.

    PlanInputs refuses horizons beyond a month (MAX_STEPS) to bound the appliance's solve time and
    memory. The exact perfect-foresight LP runs offline and must see the whole period at once to be
    the true bound, so: validate the first step as PlanInputs does, then widen the per-step fields
    to the whole period (already checked in `data.py`: finite values, non-negative powers).
    """
    pi, pe = _prices(data, site)
    if data.n <= MAX_STEPS:
        return _chunk_inputs(data, site, 0, data.n, site.start_soc_pct, pi, pe)
    full = copy.copy(_chunk_inputs(data, site, 0, 1, site.start_soc_pct, pi, pe))
    for name, values in (("import_price_eur_per_kwh", pi), ("export_price_eur_per_kwh", pe),
                         ("load_kw", data.load_kw), ("pv_kw", data.pv_kw)):
        object.__setattr__(full, name, tuple(float(v) for v in values))
    return full


def _exact_optimum(data: BacktestData, site: Site, time_limit_s: float, t0: float) -> Optional[ControllerRun]:
    """One LP (a MIP on money-pump steps, see `ems.optimizer.model`) over the whole period."""
    inputs = _period_inputs(data, site)
    strategy = get_strategy("arbitrage")
    weights = strategy.weights(inputs)
    battery_steps, grid_steps = binary_steps_from_weights(weights, inputs)
    battery = set(battery_steps)
    for _ in range(3):  # as `optimize`: binaries where a solution still charges and discharges at once
        model = build_model(inputs, strategy, battery, grid_steps, weights)
        h = to_highs(model.arrays, time_limit_s)
        if model.arrays.num_integer:
            h.setOptionValue("presolve", "on")
            h.setOptionValue("mip_rel_gap", OPTIMUM_MIP_REL_GAP)
        h.run()
        status = h.modelStatusToString(h.getModelStatus())
        if status != "Optimal":
            log.warning("perfect-foresight optimum not solved: HiGHS %s after %.1f s", status, time.perf_counter() - t0)
            return None
        flows = extract_flows(model, np.asarray(h.getSolution().col_value, dtype=float))
        both = np.flatnonzero((flows.charge_kw > 1e-6) & (flows.discharge_kw > 1e-6))
        if len(both) == 0:
            break
        battery |= {int(k) for k in both}
    else:
        log.warning("perfect-foresight optimum keeps charging and discharging at once")
        return None
    out = _empty_flows(data.n)
    _follow(data, site, flows, 0, data.n, site.start_energy_kwh, _prices(data, site)[1], out)
    flows = Flows(**out)
    note = "one LP over the whole period"
    if model.arrays.num_integer:
        info = h.getInfo()
        gap_eur = abs(float(info.objective_function_value) - float(info.mip_dual_bound))
        note += f", {model.arrays.num_integer} binary steps, proven within {gap_eur:.4f} €"
    return ControllerRun("optimum", flows, time.perf_counter() - t0, plans=1, note=note,
                         strategy_steps={"arbitrage": data.n})


# -- the EMS, receding horizon --------------------------------------------------------------------

def _local_midnight_after(ts: float, days: int) -> float:
    local = datetime.fromtimestamp(ts, LOCAL_TZ)
    return datetime.combine(local.date() + timedelta(days=days), dtime(0), LOCAL_TZ).timestamp()


def known_until_ts(ts: float, policy: RecedingHorizon) -> float:
    """End of the prices known at instant `ts`: tomorrow's end after publication, else today's end
    (`calendar_day`: always today's end)."""
    if policy.horizon == "calendar_day":
        return _local_midnight_after(ts, 1)
    local = datetime.fromtimestamp(ts, LOCAL_TZ)
    published = local.hour * 60 + local.minute >= hhmm_to_minutes(policy.publication_hhmm)
    return _local_midnight_after(ts, 2 if published else 1)


def _realise(strategy: str, step, peak_import_w: Optional[float], ts: float, load_kw: float, pv_kw: float,
             energy_kwh: float, bess: BessConfig, dt_h: float, export_cap_kw: float,
             export_price: float) -> tuple[float, float, float, float, float, float]:
    """One step as the plant lives it: the real-time layer's request for the plan step (on the real
    load and PV), clamped to the BMS limits and the SoC window; PV curtailed as planned, and beyond
    that only what cannot be exported (cap, negative price). Returns c, d, energy, import, export, curtail."""
    curtail = min(pv_kw, step.pv_curtailed_w / 1000.0) if step is not None else 0.0
    site_kw = load_kw - pv_kw + curtail
    state = PlantState(grid=PowerPoint(Measurement(1000.0 * site_kw, ts, "sim", math.inf)),
                       bess=PowerPoint(Measurement(0.0, ts, "sim", math.inf)))
    request_kw = realtime_request(state, ts, Intent(strategy, step, peak_import_w)).power_w / 1000.0
    cap = bess.capacity_kwh
    e_lo = min(cap * bess.min_soc_pct / 100.0, energy_kwh)
    e_hi = max(cap * bess.max_soc_pct / 100.0, energy_kwh)
    c = d = 0.0
    if request_kw > 0:
        d = min(request_kw, bess.max_discharge_power_kw, max(0.0, energy_kwh - e_lo) * bess.discharge_efficiency / dt_h)
        energy_kwh = max(e_lo, energy_kwh - d * dt_h / bess.discharge_efficiency)
    elif request_kw < 0:
        c = min(-request_kw, bess.max_charge_power_kw, max(0.0, e_hi - energy_kwh) / (bess.charge_efficiency * dt_h))
        energy_kwh = min(e_hi, energy_kwh + c * dt_h * bess.charge_efficiency)
    grid = site_kw + c - d
    imp, exp_ = max(grid, 0.0), max(-grid, 0.0)
    allowed = 0.0 if export_price < 0 else export_cap_kw
    if exp_ > allowed + 1e-12:
        extra = min(exp_ - allowed, pv_kw - curtail)
        curtail += extra
        exp_ -= extra
    return c, d, energy_kwh, imp, exp_, curtail


def _check_forecast(fc: Forecast, n: int) -> Forecast:
    arrays = {}
    for name in ("load_kw", "pv_kw", "market_price_eur_per_kwh"):
        arr = np.asarray(getattr(fc, name), dtype=float).reshape(-1)
        if len(arr) != n or not np.all(np.isfinite(arr)):
            raise PlanInputError(f"forecast.{name}", f"must be {n} finite values (got {len(arr)})")
        arrays[name] = arr
    arrays["load_kw"] = np.maximum(arrays["load_kw"], 0.0)
    arrays["pv_kw"] = np.maximum(arrays["pv_kw"], 0.0)
    return Forecast(**arrays)


def run_receding_horizon(data: BacktestData, site: Site, policy: RecedingHorizon = RecedingHorizon(), *,
                         forecaster: Optional[Forecaster] = None, name: Optional[str] = None,
                         progress: Optional[Progress] = None) -> ControllerRun:
    """The EMS over the whole period, planning as `policy` says and living with the real data.

    Without a `forecaster` every plan sees the real load, PV and prices of its horizon (perfect
    forecasts: what the planner can do at best); with one, plans see its forecasts. A failed solve
    is replaced by the fallback plan (greedy self-consumption), as the runtime does, and counted.
    """
    name = name or ("ems_forecast" if forecaster is not None else "ems")
    problems = policy.check() + site.check()
    if problems:
        raise PlanInputError(problems[0][0], problems[0][1])
    t0 = time.perf_counter()
    n, step_s, dt_h = data.n, data.step_s, data.step_s / 3600.0
    bess = site.bess
    pi, pe = _prices(data, site)
    starts = data.step_starts_s()
    known_end = np.array([known_until_ts(t, policy) for t in starts])
    new_prices = np.concatenate(([True], known_end[1:] != known_end[:-1]))
    every_steps = None if policy.replan_every_h is None else max(1, int(round(policy.replan_every_h * 3600 / step_s)))
    max_steps = MAX_STEPS if policy.max_horizon_h is None else \
        max(1, min(MAX_STEPS, int(round(policy.max_horizon_h * 3600 / step_s))))
    export_cap = _export_cap_kw(site)
    out = _empty_flows(n)
    energy = site.start_energy_kwh
    plan: Optional[Plan] = None
    plan_first = last_replan = 0
    peak_w: Optional[float] = None
    plans = failed = 0
    strategy_steps: dict[str, int] = {}
    next_progress = 0.0
    for k in range(n):
        offset = k - plan_first
        planned_energy = None if plan is None or offset <= 0 or offset > len(plan.steps) else \
            plan.steps[offset - 1].soc_pct * bess.capacity_kwh / 100.0
        replan = (plan is None or new_prices[k] or offset >= len(plan.steps)
                  or (every_steps is not None and k - last_replan >= every_steps)
                  or (planned_energy is not None
                      and abs(planned_energy - energy) > policy.soc_deviation_pct * bess.capacity_kwh / 100.0))
        if replan:
            stop = min(n, k + max_steps, k + int(round((known_end[k] - starts[k]) / step_s)))
            plan = _plan(data, site, policy, forecaster, k, stop, energy, pi, pe)
            plans += 1
            failed += 0 if plan.status == "optimal" else 1
            plan_first = last_replan = k
            offset = 0
            peak_w = max((s.grid_power_w for s in plan.steps), default=None)
        step = plan.steps[offset]
        strategy = plan.strategy
        strategy_steps[strategy] = strategy_steps.get(strategy, 0) + 1
        c, d, energy, imp, exp_, cur = _realise(strategy, step, peak_w, float(starts[k]), float(data.load_kw[k]),
                                                float(data.pv_kw[k]), energy, bess, dt_h, export_cap, float(pe[k]))
        out["charge_kw"][k], out["discharge_kw"][k], out["soc_kwh"][k] = c, d, energy
        out["import_kw"][k], out["export_kw"][k], out["curtail_kw"][k] = imp, exp_, cur
        if progress is not None and k / n >= next_progress:
            progress(name, k / n)
            next_progress += 0.05
    if progress is not None:
        progress(name, 1.0)
    note = f"{plans} plans" + (f", {failed} failed (fallback used)" if failed else "")
    return ControllerRun(name, Flows(**out), time.perf_counter() - t0, plans, failed, strategy_steps, note)


def _plan(data: BacktestData, site: Site, policy: RecedingHorizon, forecaster: Optional[Forecaster], first: int,
          stop: int, energy_kwh: float, pi: np.ndarray, pe: np.ndarray) -> Plan:
    """One planning run from step `first` to `stop` (exclusive), from the stored energy now."""
    start_ts = data.start_ts + first * data.step_s
    soc0_pct = min(100.0, max(0.0, 100.0 * energy_kwh / site.bess.capacity_kwh))
    # A plan reaching the end of the data is told that the period ends there, and what energy left
    # over is worth then (as the optimum is): otherwise it would keep energy for a future that the
    # accounting never sees.
    terminal = site.final_energy_value_eur_per_kwh if stop >= data.n else policy.terminal_value_eur_per_kwh
    load, pv = data.load_kw[first:stop], data.pv_kw[first:stop]
    imp_price, exp_price = pi[first:stop], pe[first:stop]
    try:
        if forecaster is not None:
            fc = _check_forecast(forecaster.forecast(data.slice(0, first), start_ts, start_ts, data.step_s,
                                                     stop - first, data.market_price_eur_per_kwh[first:stop].copy()),
                                 stop - first)
            load, pv = fc.load_kw, fc.pv_kw
            imp_price = site.tariff.import_price_eur_per_kwh(fc.market_price_eur_per_kwh)
            exp_price = site.tariff.export_price_eur_per_kwh(fc.market_price_eur_per_kwh)
        inputs = PlanInputs(start_ts=start_ts, step_s=data.step_s, import_price_eur_per_kwh=imp_price,
                            export_price_eur_per_kwh=exp_price, load_kw=load, pv_kw=pv, soc0_pct=soc0_pct,
                            bess=site.bess, grid=site.grid,
                            terminal_soc_value_eur_per_kwh=terminal)
    except Exception as err:  # a bad forecast must not end the replay: plan on the real data, count it
        log.warning("forecast for %s unusable (%s): greedy fallback for this run",
                    datetime.fromtimestamp(start_ts, LOCAL_TZ), err)
        inputs = _chunk_inputs(data, site, first, stop, soc0_pct, pi, pe)
        return fallback_self_consumption_plan(inputs)
    if policy.strategy == "auto":
        choice = choose_strategy(inputs)
        plan = optimize(inputs, choice.strategy, reason=choice.reason, figures=choice.figures,
                        time_limit_s=policy.time_limit_s)
    else:
        plan = optimize(inputs, policy.strategy, reason="fixed strategy", time_limit_s=policy.time_limit_s)
    return plan if plan.ok else fallback_self_consumption_plan(inputs, plan)


# -- money and figures ----------------------------------------------------------------------------

@dataclass(frozen=True)
class PeriodFigures:
    """One controller over one month (`label` "2024-03") or the whole period ("total").

    `cost_eur` = `bill_eur` (imports − exports) + `wear_eur` (degradation) − `final_credit_eur`
    (energy left at the end, see `Site`); `savings_eur` is against no battery; `pct_of_optimum` is
    the savings as % of the perfect-foresight optimum's (None when there is no optimum or it saves
    nothing). `cycles` = energy discharged ÷ capacity; `self_consumption_pct` = share of the PV
    produced that was used on site (neither exported nor curtailed).
    """

    label: str
    cost_eur: float
    bill_eur: float
    wear_eur: float
    final_credit_eur: float
    import_kwh: float
    export_kwh: float
    pv_kwh: float
    curtailed_kwh: float
    discharged_kwh: float
    cycles: float
    self_consumption_pct: float
    savings_eur: float = 0.0
    pct_of_optimum: Optional[float] = None


def month_labels(data: BacktestData) -> tuple[np.ndarray, tuple[str, ...]]:
    """Per step the index of its local calendar month, and the month labels ("2024-01", …)."""
    labels: list[str] = []
    index = np.empty(data.n, dtype=np.int64)
    first = 0
    while first < data.n:
        local = datetime.fromtimestamp(data.start_ts + first * data.step_s, LOCAL_TZ)
        nxt = datetime(local.year + local.month // 12, local.month % 12 + 1, 1, tzinfo=LOCAL_TZ).timestamp()
        stop = min(data.n, int(math.ceil((nxt - data.start_ts) / data.step_s)))
        index[first:stop] = len(labels)
        labels.append(f"{local.year}-{local.month:02d}")
        first = stop
    return index, tuple(labels)


def period_figures(data: BacktestData, site: Site, run: ControllerRun,
                   month_index: np.ndarray, labels: tuple[str, ...]) -> list[PeriodFigures]:
    """Per month and in total (last); savings and % of optimum are filled in by `summarise`."""
    pi, pe = _prices(data, site)
    dt = data.step_s / 3600.0
    f = run.flows
    months = len(labels)

    def per_month(values: np.ndarray) -> np.ndarray:
        return np.bincount(month_index, weights=values, minlength=months)

    bill = per_month(dt * (pi * f.import_kw - pe * f.export_kw))
    discharged = per_month(dt * f.discharge_kw)
    wear = site.bess.degradation_cost_eur_per_kwh * discharged
    credit = np.zeros(months)
    if data.n:
        credit[-1] = site.final_energy_value_eur_per_kwh * (float(f.soc_kwh[-1]) - site.start_energy_kwh)
    imp, exp_ = per_month(dt * f.import_kw), per_month(dt * f.export_kw)
    pv = per_month(dt * data.pv_kw)
    curtailed = per_month(dt * f.curtail_kw)
    pv_out = np.maximum(data.pv_kw - f.curtail_kw, 0.0)
    pv_exported = per_month(dt * np.minimum(f.export_kw, pv_out))
    cap = site.bess.capacity_kwh

    def figures(label: str, k) -> PeriodFigures:
        b, w, cr = float(np.sum(bill[k])), float(np.sum(wear[k])), float(np.sum(credit[k]))
        pv_kwh = float(np.sum(pv[k]))
        used = pv_kwh - float(np.sum(curtailed[k])) - float(np.sum(pv_exported[k]))
        return PeriodFigures(label, b + w - cr, b, w, cr, float(np.sum(imp[k])), float(np.sum(exp_[k])), pv_kwh,
                             float(np.sum(curtailed[k])), float(np.sum(discharged[k])),
                             float(np.sum(discharged[k])) / cap,
                             100.0 * used / pv_kwh if pv_kwh > 1e-9 else 0.0)

    return [figures(label, m) for m, label in enumerate(labels)] + [figures("total", slice(None))]


@dataclass(frozen=True)
class BacktestResult:
    """Everything a report needs: the data, the set-up, each controller's run and its figures
    (`figures[name]`: one PeriodFigures per month, then the total)."""

    data: BacktestData
    site: Site
    policy: RecedingHorizon
    runs: dict[str, ControllerRun]
    labels: tuple[str, ...]
    month_index: np.ndarray
    figures: dict[str, list[PeriodFigures]]
    runtime_s: float

    def total(self, name: str) -> PeriodFigures:
        return self.figures[name][-1]


def summarise(data: BacktestData, site: Site, runs: dict[str, ControllerRun]) -> tuple[
        np.ndarray, tuple[str, ...], dict[str, list[PeriodFigures]]]:
    """Figures per controller, with savings against `no_battery` and % of `optimum` where present."""
    index, labels = month_labels(data)
    raw = {name: period_figures(data, site, run, index, labels) for name, run in runs.items()}
    base = raw.get("no_battery")
    best = raw.get("optimum")
    out: dict[str, list[PeriodFigures]] = {}
    for name, rows in raw.items():
        filled = []
        for i, row in enumerate(rows):
            savings = base[i].cost_eur - row.cost_eur if base is not None else 0.0
            pct = None
            if best is not None and base is not None and name != "no_battery":
                best_savings = base[i].cost_eur - best[i].cost_eur
                if best_savings > 1e-6:
                    pct = 100.0 * savings / best_savings
            filled.append(replace(row, savings_eur=savings, pct_of_optimum=pct))
        out[name] = filled
    return index, labels, out


def run_backtest(data: BacktestData, site: Site = Site(), policy: RecedingHorizon = RecedingHorizon(), *,
                 forecaster: Optional[Forecaster] = None, optimum: bool = True, exact_optimum: bool = False,
                 extra_policies: Optional[dict[str, RecedingHorizon]] = None,
                 progress: Optional[Progress] = None) -> BacktestResult:
    """All controllers over `data`: no battery, greedy, the EMS with perfect forecasts, the EMS with
    `forecaster`'s forecasts (only when one is given: there is no stand-in), any `extra_policies`
    (name → policy, e.g. the day-at-a-time reference), and the perfect-foresight optimum (`optimum`;
    `exact_optimum`: one LP over the whole period, see `run_perfect_foresight`)."""
    problems = site.check() + policy.check()
    if problems:
        raise PlanInputError(problems[0][0], problems[0][1])
    t0 = time.perf_counter()
    runs: dict[str, ControllerRun] = {"no_battery": run_no_battery(data, site), "greedy": run_greedy(data, site)}
    runs["ems"] = run_receding_horizon(data, site, policy, name="ems", progress=progress)
    if forecaster is not None:
        runs["ems_forecast"] = run_receding_horizon(data, site, policy, forecaster=forecaster, name="ems_forecast",
                                                    progress=progress)
    for extra_name, extra in (extra_policies or {}).items():
        runs[extra_name] = run_receding_horizon(data, site, extra, name=extra_name, progress=progress)
    if optimum:
        if progress is not None:
            progress("optimum", 0.0)
        best = run_perfect_foresight(data, site, exact=exact_optimum)
        if best is not None:
            runs["optimum"] = best
        if progress is not None:
            progress("optimum", 1.0)
    index, labels, figures = summarise(data, site, runs)
    return BacktestResult(data, site, policy, runs, labels, index, figures, time.perf_counter() - t0)

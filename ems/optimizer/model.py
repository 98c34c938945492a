"""The battery scheduling LP, built directly as numpy arrays and solved with HiGHS (`highspy`).

Columns, one block of n per step quantity (kW, kWh):
    charge c ≥ 0, discharge d ≥ 0, stored energy s (end of step), grid import i ≥ 0, export e ≥ 0,
    PV curtailment u ∈ [0, pv]; plus whatever the strategy adds (peak, deviations) and binaries.
Rows:
    balance   i − e + d − c − u = load − pv                        (grid point, per step)
    SoC       s_t − s_{t−1} − η_c·Δt·c_t + Δt/η_d·d_t = 0,  s_{−1} = E0
Bounds carry the BMS power limits, the SoC window, the grid-connection and feed-in limits.
Objective: Σ Δt·(w_imp·i − w_exp·e + w_deg·d) − w_term·s_end + w_peak·peak + strategy terms
(+ tiny tie-breaks on discharge and curtailment, see TIE_BREAK_DISCHARGE_EUR_PER_KWH).

No simultaneous charge and discharge, argued from the cost structure. Let η = η_c·η_d. If c_t, d_t > 0,
lowering c_t by δ and d_t by η·δ leaves every SoC unchanged and frees (1 − η)·δ kW at the grid point,
which lowers the import (saving w_imp·(1 − η)·δ) or raises curtailment (costing only its tie-break);
discharge cost falls by (w_deg + tie-break)·η·δ. So such a point is strictly worse whenever
    w_imp·(1 − η) + w_deg·η > 0,
in particular for every non-negative import price. Strategy terms keep this: they only add cost to
import or to the peak, or (load balancing) measure valley filling through c − d/η, which burning
leaves unchanged. It fails where the import price is so negative that burning energy through the
losses pays: w_imp < −w_deg·η/(1 − η) — with the default 2 ct/kWh degradation and 95 % each way,
below −18.5 ct/kWh. Those steps get a binary z: c ≤ P_c·z, d ≤ P_d·(1 − z), i.e. a MIP; and should a
solve still show both anywhere (solver ties), binaries for exactly those steps and a re-solve
(`optimize`). `bench/bench_lp.py` measures what the MIP costs.

Likewise import and export in the same step are a money pump only where export pays more than import
costs; those steps get a binary too. Elsewhere both at once cost at least as much as their net, so
extraction nets them.

One module on purpose, past the usual size: the column layout, the row blocks, the binaries and the
repair loop are one piece of reasoning (the argument above), and each relies on the others' details.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Iterable, Optional, Union
from zoneinfo import ZoneInfo

import highspy
import numpy as np

from .inputs import PlanInputs
from .plan import (Flows, Plan, PlanStatus, cost_no_battery_eur, plan_cost_eur, plan_steps)
from .strategies import Strategy, get_strategy
from .strategies.base import Weights

if TYPE_CHECKING:
    from highspy._core import _Highs

log = logging.getLogger(__name__)

INF = highspy.kHighsInf
SIMULTANEOUS_TOL_KW = 1e-6
TIE_BREAK_DISCHARGE_EUR_PER_KWH = 1e-5
TIE_BREAK_CURTAIL_EUR_PER_KWH = 0.25e-5
"""Tie-breaks, not money: among plans of equal cost prefer the one that cycles the battery less and
wastes less PV (with zero degradation cost a pointless cycle fed by curtailed PV would otherwise cost
nothing). Curtailment's is a quarter of discharge's so that burning energy to avoid curtailing never
pays either (it would need (1 − η_c·η_d)·w_u > η_c·η_d·w_d, impossible for η ≥ 0.5 each)."""
MAX_REPAIR_ROUNDS = 3
DEFAULT_TIME_LIMIT_S = 10.0

_HighsClass: type[_Highs]
try:  # the bare core class: no Python callbacks, and no banner printed on stdout at construction
    from highspy._core import _Highs as _CoreHighs
    _HighsClass = _CoreHighs
except ImportError:  # pragma: no cover - other highspy layouts
    _HighsClass = highspy.Highs


@lru_cache(maxsize=1)
def solver_version() -> str:
    return str(_HighsClass().version())


@dataclass(frozen=True)
class ColumnIndex:
    """Where each step quantity lives in the column vector (arrays of n column indices)."""

    n: int
    charge: np.ndarray
    discharge: np.ndarray
    soc: np.ndarray
    grid_import: np.ndarray
    grid_export: np.ndarray
    curtail: np.ndarray


def _vector(value: Union[float, np.ndarray], count: int) -> np.ndarray:
    """A float vector of `count` from a scalar or an array of that length (np.broadcast_to is slow)."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return np.full(count, float(arr))
    if arr.shape != (count,):
        raise ValueError(f"expected {count} values, got shape {arr.shape}")
    return arr


class ModelBuilder:
    """Collects columns and row blocks as numpy arrays; `finish` packs them into a row-wise matrix."""

    def __init__(self) -> None:
        self.num_col = 0
        self.num_row = 0
        self._cost: list[np.ndarray] = []
        self._lower: list[np.ndarray] = []
        self._upper: list[np.ndarray] = []
        self._integer: list[np.ndarray] = []
        self._r: list[np.ndarray] = []
        self._c: list[np.ndarray] = []
        self._v: list[np.ndarray] = []
        self._row_lower: list[np.ndarray] = []
        self._row_upper: list[np.ndarray] = []
        self._extra_cost: list[tuple[np.ndarray, np.ndarray]] = []

    def add_columns(self, count: int, cost: Union[float, np.ndarray], lower: Union[float, np.ndarray],
                    upper: Union[float, np.ndarray], integer: bool = False) -> np.ndarray:
        first = self.num_col
        self._cost.append(_vector(cost, count))
        self._lower.append(_vector(lower, count))
        self._upper.append(_vector(upper, count))
        self._integer.append(np.full(count, 1 if integer else 0, dtype=np.int32))
        self.num_col += count
        return np.arange(first, first + count)

    def add_cost(self, cols: np.ndarray, cost: Union[float, np.ndarray]) -> None:
        """Add to the objective coefficient of existing columns."""
        self._extra_cost.append((np.asarray(cols), _vector(cost, len(cols))))

    def add_rows(self, count: int, row: np.ndarray, col: np.ndarray, val: Union[float, np.ndarray],
                 lower: Union[float, np.ndarray], upper: Union[float, np.ndarray]) -> np.ndarray:
        """`count` rows; entries (row[k] local to this block, col[k], val[k])."""
        first = self.num_row
        row = np.asarray(row, dtype=np.int64)
        self._r.append(row + first)
        self._c.append(np.asarray(col, dtype=np.int64))
        self._v.append(_vector(val, len(row)))
        self._row_lower.append(_vector(lower, count))
        self._row_upper.append(_vector(upper, count))
        self.num_row += count
        return np.arange(first, first + count)

    def finish(self) -> "LpArrays":
        cost = np.concatenate(self._cost)
        for cols, extra in self._extra_cost:
            np.add.at(cost, cols, extra)
        r = np.concatenate(self._r)
        order = np.argsort(r, kind="stable")
        counts = np.bincount(r, minlength=self.num_row)
        a_start = np.zeros(self.num_row + 1, dtype=np.int32)
        np.cumsum(counts, out=a_start[1:])
        return LpArrays(
            col_cost=cost,
            col_lower=np.concatenate(self._lower),
            col_upper=np.concatenate(self._upper),
            integrality=np.concatenate(self._integer),
            row_lower=np.concatenate(self._row_lower),
            row_upper=np.concatenate(self._row_upper),
            a_start=a_start,
            a_index=np.concatenate(self._c)[order].astype(np.int32),
            a_value=np.concatenate(self._v)[order],
        )


@dataclass(frozen=True)
class LpArrays:
    """min cost·x  s.t.  row_lower ≤ A·x ≤ row_upper,  col_lower ≤ x ≤ col_upper; A row-wise (CSR)."""

    col_cost: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    integrality: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    a_start: np.ndarray
    a_index: np.ndarray
    a_value: np.ndarray

    @property
    def num_col(self) -> int:
        return len(self.col_cost)

    @property
    def num_row(self) -> int:
        return len(self.row_lower)

    @property
    def num_integer(self) -> int:
        return int(np.count_nonzero(self.integrality))

    def dense(self) -> np.ndarray:
        """The constraint matrix as a dense array (tests and small checks only)."""
        a = np.zeros((self.num_row, self.num_col))
        for row in range(self.num_row):
            lo, hi = self.a_start[row], self.a_start[row + 1]
            a[row, self.a_index[lo:hi]] += self.a_value[lo:hi]
        return a


@dataclass(frozen=True)
class LpModel:
    arrays: LpArrays
    cols: ColumnIndex
    strategy: str
    battery_binary_steps: tuple[int, ...]
    grid_binary_steps: tuple[int, ...]


@dataclass(frozen=True)
class SolveResult:
    status: PlanStatus
    model_status: str
    x: Optional[np.ndarray]
    objective: float
    highs_run_ms: float
    wall_ms: float


def soc_bounds_kwh(inputs: PlanInputs) -> tuple[np.ndarray, np.ndarray]:
    """SoC window per step end. Starting below min SoC, the floor rises at full charge power until it
    reaches min SoC (a deep-discharged battery is recovered first); starting above max SoC, the
    ceiling is the starting SoC (it may come down, never go higher). A terminal floor tightens the
    last step."""
    b = inputs.bess
    cap = b.capacity_kwh
    e0 = cap * inputs.soc0_pct / 100.0
    e_min, e_max = cap * b.min_soc_pct / 100.0, cap * b.max_soc_pct / 100.0
    n = inputs.n
    lower = np.full(n, e_min)
    if e0 < e_min:
        ramp = e0 + np.arange(1, n + 1) * b.max_charge_power_kw * b.charge_efficiency * inputs.dt_h
        lower = np.minimum(lower, ramp)
    upper = np.full(n, max(e_max, e0))
    if inputs.terminal_soc_min_pct is not None:
        lower[-1] = max(lower[-1], cap * inputs.terminal_soc_min_pct / 100.0)
    return lower, upper


def binary_steps_from_weights(weights: Weights, inputs: PlanInputs) -> tuple[list[int], list[int]]:
    """Steps where the LP's cost structure does not rule out simultaneous flows (see module doc):
    battery — burning energy through the losses is paid, w_imp·(1 − η) + w_d·η ≤ 0; grid — export
    pays more than import costs and both directions are open."""
    cap = inputs.export_limit_kw()
    eta = inputs.bess.charge_efficiency * inputs.bess.discharge_efficiency
    w_discharge = weights.discharge_per_kwh + TIE_BREAK_DISCHARGE_EUR_PER_KWH
    battery = np.flatnonzero(weights.import_per_kwh * (1.0 - eta) + w_discharge * eta <= 0)
    grid = np.flatnonzero((weights.export_per_kwh > weights.import_per_kwh) & (cap > 0))
    return [int(k) for k in battery], [int(k) for k in grid]


def build_model(inputs: PlanInputs, strategy: Strategy, battery_binary_steps: Iterable[int] = (),
                grid_binary_steps: Iterable[int] = (), weights: Optional[Weights] = None) -> LpModel:
    """The LP (a MIP if binary steps are given) for one horizon and strategy. Pure numpy."""
    n = inputs.n
    dt = inputs.dt_h
    b = inputs.bess
    w = weights if weights is not None else strategy.weights(inputs)
    load = np.asarray(inputs.load_kw)
    pv = np.asarray(inputs.pv_kw)
    export_cap = inputs.export_limit_kw()
    soc_lo, soc_hi = soc_bounds_kwh(inputs)
    e0 = b.capacity_kwh * inputs.soc0_pct / 100.0

    mb = ModelBuilder()
    c = mb.add_columns(n, 0.0, 0.0, b.max_charge_power_kw)
    d = mb.add_columns(n, dt * (w.discharge_per_kwh + TIE_BREAK_DISCHARGE_EUR_PER_KWH), 0.0, b.max_discharge_power_kw)
    terminal = np.zeros(n)
    terminal[-1] = -w.terminal_per_kwh
    s = mb.add_columns(n, terminal, soc_lo, soc_hi)
    i = mb.add_columns(n, dt * w.import_per_kwh, 0.0, inputs.max_import_kw)
    e = mb.add_columns(n, -dt * w.export_per_kwh, 0.0, export_cap)
    u = mb.add_columns(n, dt * TIE_BREAK_CURTAIL_EUR_PER_KWH, 0.0, pv)
    cols = ColumnIndex(n, c, d, s, i, e, u)

    steps = np.arange(n)
    # Balance at the grid point: i − e + d − c − u = load − pv.
    net = load - pv
    mb.add_rows(n, np.repeat(steps, 5), np.column_stack([i, e, d, c, u]).ravel(),
                np.tile([1.0, -1.0, 1.0, -1.0, -1.0], n), net, net)
    # SoC dynamics: s_t − s_{t−1} − η_c·Δt·c_t + Δt/η_d·d_t = 0 (E0 on the right for t = 0).
    rows = np.concatenate([steps, steps[1:], steps, steps])
    colz = np.concatenate([s, s[:-1], c, d])
    vals = np.concatenate([np.ones(n), -np.ones(n - 1), np.full(n, -b.charge_efficiency * dt),
                           np.full(n, dt / b.discharge_efficiency)])
    rhs = np.zeros(n)
    rhs[0] = e0
    mb.add_rows(n, rows, colz, vals, rhs, rhs)

    if w.peak_per_kw > 0:
        peak = mb.add_columns(1, w.peak_per_kw, inputs.peak_so_far_kw, INF)
        mb.add_rows(n, steps.repeat(2), np.column_stack([i, np.full(n, peak[0])]).ravel(),
                    np.tile([1.0, -1.0], n), -INF, 0.0)

    strategy.add_terms(mb, inputs, cols)

    battery_steps = sorted({int(k) for k in battery_binary_steps})
    grid_steps = sorted({int(k) for k in grid_binary_steps})
    if battery_steps:
        k = np.asarray(battery_steps)
        z = mb.add_columns(len(k), 0.0, 0.0, 1.0, integer=True)
        local = np.arange(len(k))
        # c ≤ Pc·z  and  d + Pd·z ≤ Pd
        mb.add_rows(len(k), local.repeat(2), np.column_stack([c[k], z]).ravel(),
                    np.tile([1.0, -b.max_charge_power_kw], len(k)), -INF, 0.0)
        mb.add_rows(len(k), local.repeat(2), np.column_stack([d[k], z]).ravel(),
                    np.tile([1.0, b.max_discharge_power_kw], len(k)), -INF, b.max_discharge_power_kw)
    if grid_steps:
        k = np.asarray(grid_steps)
        y = mb.add_columns(len(k), 0.0, 0.0, 1.0, integer=True)
        local = np.arange(len(k))
        mb.add_rows(len(k), local.repeat(2), np.column_stack([i[k], y]).ravel(),
                    np.tile([1.0, -inputs.max_import_kw], len(k)), -INF, 0.0)
        mb.add_rows(len(k), local.repeat(2), np.column_stack([e[k], y]).ravel(),
                    np.column_stack([np.ones(len(k)), export_cap[k]]).ravel(), -INF, export_cap[k])
    return LpModel(mb.finish(), cols, strategy.name, tuple(battery_steps), tuple(grid_steps))


def to_highs(arrays: LpArrays, time_limit_s: float = DEFAULT_TIME_LIMIT_S) -> _Highs:
    """A silent HiGHS instance holding the model, ready to `run()`."""
    h = _HighsClass()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(max(time_limit_s, 1e-3)))
    if not arrays.num_integer:
        # This LP is small and already tight; presolve costs more than it saves (bench: 96 steps
        # 1.7 → 1.0 ms, 672 steps 13 → 9.5 ms). The MIP keeps it: its probing helps branching.
        h.setOptionValue("presolve", "off")
    status = h.passModel(arrays.num_col, arrays.num_row, len(arrays.a_value), 2, 1, 0.0,
                         arrays.col_cost, arrays.col_lower, arrays.col_upper,
                         arrays.row_lower, arrays.row_upper,
                         arrays.a_start, arrays.a_index, arrays.a_value, arrays.integrality)
    if status == highspy.HighsStatus.kError:
        raise ValueError("HiGHS rejected the model (passModel returned an error)")
    return h


_STATUS: dict[highspy.HighsModelStatus, PlanStatus] = {
    highspy.HighsModelStatus.kOptimal: "optimal",
    highspy.HighsModelStatus.kInfeasible: "infeasible",
    highspy.HighsModelStatus.kUnboundedOrInfeasible: "infeasible",
    highspy.HighsModelStatus.kTimeLimit: "time_limit",
}


def solve_model(model: LpModel, time_limit_s: float = DEFAULT_TIME_LIMIT_S) -> SolveResult:
    """Solve with HiGHS within `time_limit_s`; the status says what came out, nothing is relaxed."""
    t0 = time.perf_counter()
    h = to_highs(model.arrays, time_limit_s)
    h.run()
    model_status = h.getModelStatus()
    status = _STATUS.get(model_status, "error")
    x = np.asarray(h.getSolution().col_value, dtype=float) if status == "optimal" else None
    objective = float(h.getInfo().objective_function_value) if status == "optimal" else float("nan")
    run_ms = 1000.0 * h.getRunTime()
    return SolveResult(status, h.modelStatusToString(model_status), x, objective, run_ms,
                       1000.0 * (time.perf_counter() - t0))


def extract_flows(model: LpModel, x: np.ndarray) -> Flows:
    """Flows from a solution vector; import and export in the same step are netted (it costs nothing
    where they can coexist, see module doc). Solver noise below 1e-9 kW is set to 0."""
    cols = model.cols

    def take(idx: np.ndarray) -> np.ndarray:
        v = x[idx].copy()
        v[np.abs(v) < 1e-9] = 0.0
        return v

    imp, exp_ = take(cols.grid_import), take(cols.grid_export)
    both = np.minimum(imp, exp_)
    return Flows(take(cols.charge), take(cols.discharge), x[cols.soc].copy(), imp - both, exp_ - both,
                 take(cols.curtail))


def _local(ts: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M")


def diagnose_infeasible(inputs: PlanInputs) -> str:
    """A message a user can act on for an infeasible horizon: the first limit that cannot hold."""
    b = inputs.bess
    dt = inputs.dt_h
    load = np.asarray(inputs.load_kw)
    pv = np.asarray(inputs.pv_kw)
    starts = inputs.step_starts_s()
    cap = b.capacity_kwh
    e0 = cap * inputs.soc0_pct / 100.0
    e_min, e_max = cap * b.min_soc_pct / 100.0, cap * b.max_soc_pct / 100.0
    if inputs.terminal_soc_min_pct is not None:
        target = cap * inputs.terminal_soc_min_pct / 100.0
        if target > max(e_max, e0) + 1e-9:
            return (f"terminal_soc_min_pct {inputs.terminal_soc_min_pct:g} % is above max_soc_pct "
                    f"{b.max_soc_pct:g} %: no plan can end there")
        reachable = e0 + inputs.n * dt * min(b.max_charge_power_kw,
                                              inputs.max_import_kw + float(np.max(pv))) * b.charge_efficiency
        if target > reachable + 1e-9:
            return (f"terminal_soc_min_pct {inputs.terminal_soc_min_pct:g} % cannot be reached: from "
                    f"{inputs.soc0_pct:g} % the battery can store at most {reachable - e0:.2f} kWh in "
                    f"{inputs.horizon_h:g} h, it would need {target - e0:.2f} kWh")
    if e0 < e_min:
        lo, _ = soc_bounds_kwh(inputs)
        recovering = np.flatnonzero(lo < e_min - 1e-9)  # steps charging at full power
        needed = load[recovering] - pv[recovering] + b.max_charge_power_kw
        short = np.flatnonzero(needed > inputs.max_import_kw + 1e-9)
        if len(short):
            k = int(recovering[short[0]])
            return (f"SoC {inputs.soc0_pct:g} % is below min_soc_pct {b.min_soc_pct:g} %: recovering it "
                    f"needs {b.max_charge_power_kw:g} kW of charging at {_local(starts[k], inputs.zone)}, but with "
                    f"load {load[k]:.2f} kW and PV {pv[k]:.2f} kW the grid import limit "
                    f"{inputs.max_import_kw:g} kW does not allow it")
    over = load - pv - b.max_discharge_power_kw - inputs.max_import_kw
    if np.any(over > 1e-9):
        k = int(np.argmax(over > 1e-9))
        when = _local(starts[k], inputs.zone)
        return (f"at {when} the load {load[k]:.2f} kW exceeds PV {pv[k]:.2f} kW + grid import "
                f"limit {inputs.max_import_kw:g} kW + battery discharge {b.max_discharge_power_kw:g} kW")
    return ("no schedule satisfies all limits together (grid import limit, SoC window, BMS power limits, "
            "terminal SoC); check the forecasts against the grid_connection and bess settings")


@dataclass
class _Timing:
    build_ms: float = 0.0  # model build and extraction: everything outside HiGHS
    solve_ms: float = 0.0  # HiGHS instance, model hand-over and run, wall clock
    highs_ms: float = 0.0  # HiGHS's own run time


class _SolveFailed(Exception):
    def __init__(self, status: PlanStatus, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _solve_without_simultaneous_flows(inputs: PlanInputs, strategy: Strategy, weights: Weights,
                                      time_limit_s: float, timing: _Timing) -> tuple[Flows, SolveResult, int]:
    """Solve; where a solution still charges and discharges in the same step, give exactly those steps
    binaries and solve again (after MAX_REPAIR_ROUNDS − 1 rounds: every step). Returns the flows, the
    last solver result and the number of binary steps."""
    battery_steps, grid_steps = binary_steps_from_weights(weights, inputs)
    battery_set = set(battery_steps)
    for round_no in range(MAX_REPAIR_ROUNDS + 1):
        t0 = time.perf_counter()
        model = build_model(inputs, strategy, battery_set, grid_steps, weights)
        timing.build_ms += 1000.0 * (time.perf_counter() - t0)
        remaining_s = time_limit_s - (timing.build_ms + timing.solve_ms) / 1000.0
        if remaining_s <= 0:
            raise _SolveFailed("time_limit", f"time limit {time_limit_s:g} s used up before the solve")
        result = solve_model(model, remaining_s)
        timing.solve_ms += result.wall_ms
        timing.highs_ms += result.highs_run_ms
        if result.status == "infeasible":
            raise _SolveFailed("infeasible", diagnose_infeasible(inputs))
        if result.status == "time_limit":
            raise _SolveFailed("time_limit", f"no optimal plan within the time limit of {time_limit_s:g} s "
                                             f"(HiGHS: {result.model_status})")
        if result.status != "optimal" or result.x is None:  # an optimal result always has x
            raise _SolveFailed("error", f"HiGHS: {result.model_status}")
        t0 = time.perf_counter()
        flows = extract_flows(model, result.x)
        both = np.flatnonzero((flows.charge_kw > SIMULTANEOUS_TOL_KW) & (flows.discharge_kw > SIMULTANEOUS_TOL_KW))
        timing.build_ms += 1000.0 * (time.perf_counter() - t0)
        if len(both) == 0:
            return flows, result, len(battery_set) + len(grid_steps)
        log.debug("%s: charge and discharge at once in %d steps, adding binaries", strategy.name, len(both))
        battery_set |= {int(k) for k in both}
        if round_no >= MAX_REPAIR_ROUNDS - 2:
            battery_set = set(range(inputs.n))
    raise _SolveFailed("error", "simultaneous charge and discharge persisted with binaries on every step")


def optimize(inputs: PlanInputs, strategy: Union[str, Strategy], *, reason: str = "",
             time_limit_s: float = DEFAULT_TIME_LIMIT_S, figures: Optional[dict] = None) -> Plan:
    """Plan one horizon with one strategy. Never raises: failures come back as a Plan with status
    "infeasible", "time_limit" or "error", a message and no steps (then use
    `fallback_self_consumption_plan`). Steps that need it are solved as a MIP (module doc)."""
    name = strategy if isinstance(strategy, str) else strategy.name
    figures = dict(figures or {})
    timing = _Timing()

    def failed(status: PlanStatus, message: str) -> Plan:
        log.warning("%s plan not solved: %s: %s", name, status, message)
        return Plan(status=status, strategy=name, reason=reason, start_ts=float(inputs.start_ts),
                    step_s=inputs.step_s, soc0_pct=float(inputs.soc0_pct), solver_version=solver_version(),
                    build_ms=timing.build_ms, solve_ms=timing.solve_ms, message=message, figures=figures)

    try:
        strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
        t0 = time.perf_counter()
        weights = strat.weights(inputs)
        soc_lo, soc_hi = soc_bounds_kwh(inputs)
        timing.build_ms += 1000.0 * (time.perf_counter() - t0)
        if np.any(soc_lo > soc_hi + 1e-9):
            return failed("infeasible", diagnose_infeasible(inputs))
        flows, result, binary_steps = _solve_without_simultaneous_flows(inputs, strat, weights, time_limit_s, timing)
        t0 = time.perf_counter()
        cost = plan_cost_eur(inputs, flows)
        base = cost_no_battery_eur(inputs)
        steps = plan_steps(inputs, flows)
        timing.build_ms += 1000.0 * (time.perf_counter() - t0)
    except _SolveFailed as err:
        return failed(err.status, err.message)
    except Exception as err:  # a planning run must never take the process down
        log.exception("%s plan failed", name)
        return failed("error", f"{type(err).__name__}: {err}")
    figures["highs_run_ms"] = timing.highs_ms
    figures["solver_objective"] = result.objective
    return Plan(status="optimal", strategy=name, reason=reason, start_ts=float(inputs.start_ts),
                step_s=inputs.step_s, soc0_pct=float(inputs.soc0_pct), solver_version=solver_version(),
                solve_ms=timing.solve_ms, build_ms=timing.build_ms, objective_eur=cost,
                cost_no_battery_eur=base, expected_profit_eur=base - cost, binary_steps=binary_steps,
                figures=figures, steps=steps)

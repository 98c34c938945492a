"""The result of a planning run, its money figures, and the safe plan used when a solve fails.

Signs as everywhere: battery power > 0 = discharging, grid power > 0 = import. Powers in W, SoC at the
end of each step. `objective_eur` is the plan's real net cost over the horizon (energy bought − energy
sold + degradation + demand charge − the value of the SoC gained), the same yardstick for every
strategy, so `expected_profit_eur` (cost with no battery − plan cost) compares across strategies even
though self-consumption, peak shaving and load balancing solve with internal weights.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import numpy as np

from ..battery_energy import battery_step
from .inputs import PlanInputs

log = logging.getLogger(__name__)

PlanStatus = Literal["optimal", "infeasible", "time_limit", "error"]
PLAN_STATUSES = ("optimal", "infeasible", "time_limit", "error")

FALLBACK_SOLVER = "greedy self-consumption"


@dataclass(frozen=True, slots=True)
class PlanStep:
    """One step of a plan; powers are averages over the step, SoC is at its end."""

    ts: float
    bess_power_w: float
    charge_w: float
    discharge_w: float
    grid_power_w: float
    pv_power_w: float
    pv_curtailed_w: float
    load_power_w: float
    soc_pct: float
    import_price_eur_per_kwh: float
    export_price_eur_per_kwh: float

    def to_json(self) -> dict[str, float]:
        return {
            "ts": self.ts,
            "bess_power_w": round(self.bess_power_w, 1),
            "charge_w": round(self.charge_w, 1),
            "discharge_w": round(self.discharge_w, 1),
            "grid_power_w": round(self.grid_power_w, 1),
            "pv_power_w": round(self.pv_power_w, 1),
            "pv_curtailed_w": round(self.pv_curtailed_w, 1),
            "load_power_w": round(self.load_power_w, 1),
            "soc_pct": round(self.soc_pct, 3),
            "import_price_eur_per_kwh": round(self.import_price_eur_per_kwh, 6),
            "export_price_eur_per_kwh": round(self.export_price_eur_per_kwh, 6),
        }


@dataclass(frozen=True)
class Plan:
    """A proposed schedule. Only `status == "optimal"` plans (or a fallback) carry steps.

    `fallback` is True for the greedy plan that replaces a failed solve; its `status` and `message`
    still say why the solve failed. `binary_steps` counts steps that needed a MIP binary (no
    simultaneous charge and discharge, no simultaneous import and export); 0 means a pure LP.
    `solve_ms` is HiGHS wall time (instance, model hand-over, run); `build_ms` everything around it
    (weights, model arrays, extraction, money, rows). `figures` holds the numbers behind the choice
    (auto mode) plus `highs_run_ms` (HiGHS's own run time) and `solver_objective`.
    """

    status: PlanStatus
    strategy: str
    reason: str
    start_ts: float
    step_s: int
    soc0_pct: float
    solver: str = "HiGHS"
    solver_version: str = ""
    solve_ms: float = 0.0
    build_ms: float = 0.0
    objective_eur: float = 0.0
    cost_no_battery_eur: float = 0.0
    expected_profit_eur: float = 0.0
    message: str = ""
    fallback: bool = False
    binary_steps: int = 0
    figures: dict[str, float] = field(default_factory=dict)
    steps: tuple[PlanStep, ...] = ()

    @property
    def ok(self) -> bool:
        """A plan the real-time layer may follow: solved to optimality, or the safe fallback."""
        return bool(self.steps) and (self.status == "optimal" or self.fallback)

    def step_at(self, ts: float) -> Optional[PlanStep]:
        """The step covering instant `ts`, or None outside the plan."""
        if not self.steps:
            return None
        k = int((ts - self.start_ts) // self.step_s)
        return self.steps[k] if 0 <= k < len(self.steps) else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for the API (`GET /api/plan`)."""
        return {
            "status": self.status,
            "strategy": self.strategy,
            "reason": self.reason,
            "start_ts": self.start_ts,
            "step_s": self.step_s,
            "soc0_pct": self.soc0_pct,
            "solver": self.solver,
            "solver_version": self.solver_version,
            "solve_ms": round(self.solve_ms, 3),
            "build_ms": round(self.build_ms, 3),
            "objective_eur": round(self.objective_eur, 4),
            "cost_no_battery_eur": round(self.cost_no_battery_eur, 4),
            "expected_profit_eur": round(self.expected_profit_eur, 4),
            "message": self.message,
            "fallback": self.fallback,
            "binary_steps": self.binary_steps,
            "figures": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.figures.items()},
            "steps": [s.to_json() for s in self.steps],
        }


@dataclass(frozen=True)
class Flows:
    """Per-step flows in kW (all ≥ 0) and the stored energy in kWh at each step's end."""

    charge_kw: np.ndarray
    discharge_kw: np.ndarray
    soc_kwh: np.ndarray
    import_kw: np.ndarray
    export_kw: np.ndarray
    curtail_kw: np.ndarray


def _demand_cost_eur(inputs: PlanInputs, import_kw: np.ndarray) -> float:
    if inputs.demand_charge_eur_per_kw <= 0 or len(import_kw) == 0:
        return 0.0
    return inputs.demand_charge_eur_per_kw * max(0.0, float(np.max(import_kw)) - inputs.peak_so_far_kw)


def plan_cost_eur(inputs: PlanInputs, flows: Flows) -> float:
    """Real net cost of a schedule: energy bought − sold + degradation + demand charge − SoC gain value."""
    dt = inputs.dt_h
    pi = np.asarray(inputs.import_price_eur_per_kwh)
    pe = np.asarray(inputs.export_price_eur_per_kwh)
    energy = dt * float(pi @ flows.import_kw - pe @ flows.export_kw)
    degradation = dt * inputs.bess.degradation_cost_eur_per_kwh * float(np.sum(flows.discharge_kw))
    e0 = inputs.bess.capacity_kwh * inputs.soc0_pct / 100.0
    soc_gain_kwh = float(flows.soc_kwh[-1]) - e0 if len(flows.soc_kwh) else 0.0
    return energy + degradation + _demand_cost_eur(inputs, flows.import_kw) \
        - inputs.terminal_value_eur_per_kwh() * soc_gain_kwh


def no_battery_flows(inputs: PlanInputs) -> Flows:
    """The site without a battery: the grid takes the net load; surplus PV is exported up to the export
    cap and curtailed beyond it, or wherever exporting would cost money."""
    net = np.asarray(inputs.load_kw) - np.asarray(inputs.pv_kw)
    surplus = np.maximum(-net, 0.0)
    cap = inputs.export_limit_kw()
    cap = np.where(np.asarray(inputs.export_price_eur_per_kwh) < 0, 0.0, cap)
    export = np.minimum(surplus, cap)
    zeros = np.zeros(inputs.n)
    e0 = inputs.bess.capacity_kwh * inputs.soc0_pct / 100.0
    return Flows(zeros, zeros, np.full(inputs.n, e0), np.maximum(net, 0.0), export, surplus - export)


def cost_no_battery_eur(inputs: PlanInputs) -> float:
    return plan_cost_eur(inputs, no_battery_flows(inputs))


def plan_steps(inputs: PlanInputs, flows: Flows) -> tuple[PlanStep, ...]:
    """Rows in W and % for the API, from flows in kW and kWh."""
    starts = inputs.step_starts_s()
    cap = inputs.bess.capacity_kwh
    pv = np.asarray(inputs.pv_kw)
    load = np.asarray(inputs.load_kw)
    pi = inputs.import_price_eur_per_kwh
    pe = inputs.export_price_eur_per_kwh
    c, d = flows.charge_kw, flows.discharge_kw
    grid = flows.import_kw - flows.export_kw
    return tuple(
        PlanStep(
            ts=float(starts[k]),
            bess_power_w=1000.0 * float(d[k] - c[k]),
            charge_w=1000.0 * float(c[k]),
            discharge_w=1000.0 * float(d[k]),
            grid_power_w=1000.0 * float(grid[k]),
            pv_power_w=1000.0 * float(pv[k] - flows.curtail_kw[k]),
            pv_curtailed_w=1000.0 * float(flows.curtail_kw[k]),
            load_power_w=1000.0 * float(load[k]),
            soc_pct=100.0 * float(flows.soc_kwh[k]) / cap,
            import_price_eur_per_kwh=pi[k],
            export_price_eur_per_kwh=pe[k],
        )
        for k in range(inputs.n)
    )


def greedy_self_consumption_flows(inputs: PlanInputs) -> Flows:
    """What a stock hybrid inverter does: PV surplus into the battery, the battery covers the deficit,
    the grid takes the rest. Never charges from the grid, never discharges into it, never breaks a
    SoC bound (below min SoC it only charges from PV). Cannot fail."""
    b = inputs.bess
    dt = inputs.dt_h
    e_min = b.capacity_kwh * b.min_soc_pct / 100.0
    e_max = b.capacity_kwh * b.max_soc_pct / 100.0
    energy = b.capacity_kwh * inputs.soc0_pct / 100.0
    cap = inputs.export_limit_kw()
    pe = np.asarray(inputs.export_price_eur_per_kwh)
    n = inputs.n
    c, d, s, imp, exp_, cur = (np.zeros(n) for _ in range(6))
    for k in range(n):
        net = inputs.load_kw[k] - inputs.pv_kw[k]
        ac_kw, energy = battery_step(energy, net, dt, min_energy=e_min, max_energy=e_max,
                                     max_charge=b.max_charge_power_kw, max_discharge=b.max_discharge_power_kw,
                                     charge_efficiency=b.charge_efficiency,
                                     discharge_efficiency=b.discharge_efficiency)
        if net < 0:
            c[k] = -ac_kw
            surplus = -net - c[k]
            exp_[k] = 0.0 if pe[k] < 0 else min(surplus, cap[k])
            cur[k] = surplus - exp_[k]
        else:
            d[k] = ac_kw
            imp[k] = net - d[k]
        s[k] = energy
    return Flows(c, d, s, imp, exp_, cur)


def fallback_self_consumption_plan(inputs: PlanInputs, failed: Optional[Plan] = None) -> Plan:
    """The safe plan when a solve fails: greedy self-consumption, marked `fallback`, keeping the
    failed run's status and message so the planner can notify and store why."""
    flows = greedy_self_consumption_flows(inputs)
    cost = plan_cost_eur(inputs, flows)
    base = cost_no_battery_eur(inputs)
    why = f"{failed.status}: {failed.message}" if failed is not None else "no optimized plan"
    return Plan(
        status=failed.status if failed is not None else "error",
        strategy="self_consumption",
        reason=f"fallback after a failed solve ({why})",
        start_ts=float(inputs.start_ts), step_s=inputs.step_s, soc0_pct=float(inputs.soc0_pct),
        solver=FALLBACK_SOLVER,
        solver_version="",
        solve_ms=failed.solve_ms if failed is not None else 0.0,
        build_ms=failed.build_ms if failed is not None else 0.0,
        objective_eur=cost, cost_no_battery_eur=base, expected_profit_eur=base - cost,
        message=failed.message if failed is not None else "",
        fallback=True,
        figures=dict(failed.figures) if failed is not None else {},
        steps=plan_steps(inputs, flows),
    )

"""The per-step realisation every controller shares: a plan step lived on the real load and PV through
the real-time layer, clamped to the battery's limits, the SoC window and what the grid may take."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np

from ..battery_energy import battery_step
from ..config.schema import BessConfig
from ..optimizer.plan import Flows
from ..optimizer.realtime import Intent, PlanStepLike, realtime_request
from ..state import Measurement, PlantState, PowerPoint
from .data import BacktestData
from .scenario import Site, site_export_cap_kw

SOC_TOL_KWH = 1e-9


class RealisedStep(PlanStepLike, Protocol):
    """A plan step as `realise_step` reads it: the real-time layer's fields and the planned curtailment."""

    @property
    def pv_curtailed_w(self) -> float: ...


def empty_flows(n: int) -> dict[str, np.ndarray]:
    return {k: np.zeros(n) for k in ("charge_kw", "discharge_kw", "soc_kwh", "import_kw", "export_kw", "curtail_kw")}


@dataclass(frozen=True, slots=True)
class Setpoint:
    """A plan step as the real-time layer reads it (see `ems.optimizer.realtime.PlanStepLike`)."""

    bess_power_w: float
    grid_power_w: float
    pv_curtailed_w: float


def follow_flows(data: BacktestData, site: Site, flows: Flows, first: int, count: int, energy_kwh: float,
                 export_price: np.ndarray, out: dict[str, np.ndarray]) -> float:
    """Live `count` steps from `first` on the real data following the battery power of `flows` (an
    arbitrage schedule), as the EMS lives its plans: the same physics for every controller, so a
    solver's tolerance never shows up as energy from nowhere. Returns the stored energy after."""
    dt_h = data.step_s / 3600.0
    cap = site_export_cap_kw(site)
    for j in range(count):
        k = first + j
        step = Setpoint(1000.0 * (flows.discharge_kw[j] - flows.charge_kw[j]),
                        1000.0 * (flows.import_kw[j] - flows.export_kw[j]), 1000.0 * flows.curtail_kw[j])
        c, d, energy_kwh, imp, exp_, cur = realise_step("arbitrage", step, None, data.start_ts + k * data.step_s,
                                                        float(data.load_kw[k]), float(data.pv_kw[k]), energy_kwh,
                                                        site.bess, dt_h, cap, float(export_price[k]))
        out["charge_kw"][k], out["discharge_kw"][k], out["soc_kwh"][k] = c, d, energy_kwh
        out["import_kw"][k], out["export_kw"][k], out["curtail_kw"][k] = imp, exp_, cur
    return energy_kwh


def realise_step(strategy: str, step: Optional[RealisedStep], peak_import_w: Optional[float], ts: float,
                 load_kw: float, pv_kw: float, energy_kwh: float, bess: BessConfig, dt_h: float,
                 export_cap_kw: float, export_price: float) -> tuple[float, float, float, float, float, float]:
    """One step as the plant lives it: the real-time layer's request for the plan step (on the real
    load and PV), clamped to the BMS limits and the SoC window; PV curtailed as planned, and beyond
    that only what cannot be exported (cap, negative price). Returns c, d, energy, import, export, curtail."""
    curtail = min(pv_kw, step.pv_curtailed_w / 1000.0) if step is not None else 0.0
    site_kw = load_kw - pv_kw + curtail
    state = PlantState(grid=PowerPoint(Measurement(1000.0 * site_kw, ts, "sim", math.inf)),
                       bess=PowerPoint(Measurement(0.0, ts, "sim", math.inf)))
    request_kw = realtime_request(state, ts, Intent(strategy, step, peak_import_w)).power_w / 1000.0
    cap = bess.capacity_kwh
    ac_kw, energy_kwh = battery_step(energy_kwh, request_kw, dt_h, min_energy=cap * bess.min_soc_pct / 100.0,
                                     max_energy=cap * bess.max_soc_pct / 100.0, max_charge=bess.max_charge_power_kw,
                                     max_discharge=bess.max_discharge_power_kw,
                                     charge_efficiency=bess.charge_efficiency,
                                     discharge_efficiency=bess.discharge_efficiency)
    c = -ac_kw if ac_kw < 0 else 0.0
    d = ac_kw if ac_kw > 0 else 0.0
    grid = site_kw + c - d
    imp, exp_ = max(grid, 0.0), max(-grid, 0.0)
    allowed = 0.0 if export_price < 0 else export_cap_kw
    if exp_ > allowed + 1e-12:
        extra = min(exp_ - allowed, pv_kw - curtail)
        curtail += extra
        exp_ -= extra
    return c, d, energy_kwh, imp, exp_, curtail

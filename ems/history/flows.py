"""Per-sample energy flows, cost and the no-battery counterfactual: the energy channels of a history row.

Signs as everywhere: battery power > 0 = discharging, grid power > 0 = import; PV and load ≥ 0. A row
holds powers measured at one instant and `dt_s`, the time it stands for (since the previous sample); its
energies are power × dt. Doing this per sample, before any averaging, is what makes the Sankey and the
money right: an average over a bucket would net an import against an export in the same quarter hour.

**Allocation rule** (where each watt went). Sources are PV (P), battery discharge (D) and grid import
(I); sinks are the load (L), battery charge (C) and grid export (E). They are matched in this order, each
taking what is left of its source and its sink:

1. PV → load, 2. PV → battery, 3. PV → grid,
4. battery → load, 5. battery → grid,
6. grid → load, 7. grid → battery.

PV serves the house first, then the battery, and only the rest is exported; the battery covers load
before the grid does. For a balanced sample (P + D + I = L + C + E) every source and sink is allocated
in full; measurement noise that leaves a few watts unmatched is dropped from the flows (the totals —
`pv_wh`, `load_wh`, `import_wh` … — keep the powers as measured). One missing power of the four is filled
from the balance (load = PV + battery + grid) for the flows, the totals and the money alike, so they
agree; with two missing, the flows are unknown and only the measured totals are kept.
Curtailed PV is what the safety loop told the PV inverter to shed (`pv_curtailed_w`).

**Money**: cost = import kWh × the import price in force − export kWh × the export price, both stored
with the sample (so a tariff change later does not rewrite the past). **Without the battery** (the
counterfactual): same load and PV, battery at 0, so grid power would have been grid + battery; export
above the feed-in limit in force would have been curtailed, earning nothing. A sample without prices
has no cost (`priced_s` counts the seconds that are priced).
"""
from __future__ import annotations

from typing import Any, Mapping

from .channels import ENERGY

WS_PER_KWH = 3.6e6


def _num(row: Mapping[str, Any], key: str) -> float | None:
    v = row.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def balanced_powers(row: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    """(pv, load, battery, grid) in W, one missing value filled from the balance; None if two are missing."""
    pv, load, bess, grid = (_num(row, k) for k in ("pv_power_w", "load_power_w", "bess_power_w", "grid_power_w"))
    missing = [v is None for v in (pv, load, bess, grid)].count(True)
    if missing > 1:
        return None
    if load is None:
        load = (pv or 0.0) + (bess or 0.0) + (grid or 0.0)
    elif pv is None:
        pv = load - (bess or 0.0) - (grid or 0.0)
    elif bess is None:
        bess = load - pv - (grid or 0.0)
    elif grid is None:
        grid = load - pv - bess
    assert pv is not None and load is not None and bess is not None and grid is not None
    return max(pv, 0.0), max(load, 0.0), bess, grid


def allocate_w(pv: float, load: float, bess: float, grid: float) -> dict[str, float]:
    """The seven flows in W (all ≥ 0) by the allocation rule of this module."""
    p, l_, d, c = pv, load, max(bess, 0.0), max(-bess, 0.0)
    i, e = max(grid, 0.0), max(-grid, 0.0)
    pv_load = min(p, l_)
    pv_batt = min(p - pv_load, c)
    pv_grid = min(p - pv_load - pv_batt, e)
    batt_load = min(d, l_ - pv_load)
    batt_grid = min(d - batt_load, e - pv_grid)
    grid_load = min(i, l_ - pv_load - batt_load)
    grid_batt = min(i - grid_load, c - pv_batt)
    flows = {"pv_to_load": pv_load, "pv_to_battery": pv_batt, "pv_to_grid": pv_grid, "battery_to_load": batt_load,
             "battery_to_grid": batt_grid, "grid_to_load": grid_load, "grid_to_battery": grid_batt}
    return {k: max(v, 0.0) for k, v in flows.items()}


def energy_channels(row: Mapping[str, Any]) -> dict[str, float | None]:
    """The ENERGY channels of one sample (see the module docstring for every rule)."""
    out: dict[str, float | None] = dict.fromkeys(ENERGY)
    dt = _num(row, "dt_s")
    if dt is None or dt <= 0:
        return out
    out["dt_s"] = dt
    to_wh = dt / 3600.0
    curtailed = _num(row, "pv_curtailed_w")
    if curtailed is not None:
        out["pv_curtailed_wh"] = max(curtailed, 0.0) * to_wh
    powers = balanced_powers(row)
    pv: float | None
    load: float | None
    bess: float | None
    grid: float | None
    if powers is not None:  # totals, flows and money from the same (balanced) powers: they always agree
        pv, load, bess, grid = powers
        for key, watts in allocate_w(*powers).items():
            out[f"{key}_wh"] = watts * to_wh
    else:
        pv, load, bess, grid = (_num(row, k) for k in ("pv_power_w", "load_power_w", "bess_power_w", "grid_power_w"))
    if pv is not None:
        out["pv_wh"] = max(pv, 0.0) * to_wh
    if load is not None:
        out["load_wh"] = max(load, 0.0) * to_wh
    if grid is not None:
        out["import_wh"], out["export_wh"] = max(grid, 0.0) * to_wh, max(-grid, 0.0) * to_wh
    if bess is not None:
        out["charge_wh"], out["discharge_wh"] = max(-bess, 0.0) * to_wh, max(bess, 0.0) * to_wh
    import_price, export_price = _num(row, "import_price_eur_per_kwh"), _num(row, "export_price_eur_per_kwh")
    if grid is not None and bess is not None and import_price is not None and export_price is not None:
        out["cost_eur"] = (max(grid, 0.0) * import_price - max(-grid, 0.0) * export_price) * dt / WS_PER_KWH
        out["cost_no_battery_eur"] = no_battery_cost_eur(grid, bess, import_price, export_price,
                                                         _num(row, "export_limit_w"), dt)
        out["priced_s"] = dt
    return out


def no_battery_cost_eur(grid_w: float, bess_w: float, import_price: float, export_price: float,
                        export_limit_w: float | None, dt_s: float) -> float:
    """What the sample would have cost with the battery at 0 (same load and PV)."""
    grid_nb = grid_w + bess_w
    export_nb = max(-grid_nb, 0.0)
    if export_limit_w is not None:
        export_nb = min(export_nb, max(export_limit_w, 0.0))
    return (max(grid_nb, 0.0) * import_price - export_nb * export_price) * dt_s / WS_PER_KWH

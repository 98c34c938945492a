"""The soak's money: what the site paid with its battery against what it would have paid without one.

Integrated from the plant's truth (the grid point as it was, and load − PV for the same site with no
battery), per quarter-hour, priced afterwards with the market the soak served (negative days included)
and the site's tariff from the config: import at the consumer price (market + surcharges + grid fee,
VAT), export earning the market price - as the EMS's own planner prices them. Independent of the EMS's
own history and analytics (the report shows those beside it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable
from zoneinfo import ZoneInfo

from ..config.schema import EmsConfig
from ..forecast.prices.feed import consumer_price_eur_per_kwh
from ..optimizer.inputs import grid_fee_with_vat
from .world import PlantTruth

QUARTER_S = 900
J_PER_KWH = 3.6e6
COLUMNS = ("import_kwh", "export_kwh", "import_without_battery_kwh", "export_without_battery_kwh",
           "discharged_kwh", "charged_kwh")


@dataclass
class Ledger:
    """kWh per quarter-hour (start ts → one value per `COLUMNS`)."""

    quarters: dict[int, list[float]] = field(default_factory=dict)
    until_ts: float | None = None  # the end of the soak's period: the EMS's stop after it is not priced
    _last: PlantTruth | None = None

    def observe(self, t: PlantTruth) -> None:
        """Integrate the interval since the previous observation at the powers seen then (up to
        `until_ts`: how long the clean stop at the end takes depends on the machine, the period not)."""
        last, self._last = self._last, t
        if last is None or t.ts <= last.ts:
            return
        end = t.ts if self.until_ts is None else min(t.ts, self.until_ts)
        if end <= last.ts:
            return
        dt = end - last.ts
        q = self.quarters.setdefault(int(last.ts // QUARTER_S) * QUARTER_S, [0.0] * len(COLUMNS))
        grid, base = last.grid_w * dt / J_PER_KWH, (last.load_w - last.pv_w) * dt / J_PER_KWH
        bess = last.bess_w * dt / J_PER_KWH
        q[0] += max(grid, 0.0)
        q[1] += max(-grid, 0.0)
        q[2] += max(base, 0.0)
        q[3] += max(-base, 0.0)
        q[4] += max(bess, 0.0)
        q[5] += max(-bess, 0.0)

    def to_json(self) -> dict[str, list[float]]:
        return {str(k): [round(x, 6) for x in v] for k, v in self.quarters.items()}

    @classmethod
    def merged(cls, parts: list[dict[str, list[float]]]) -> "Ledger":
        ledger = cls()
        for part in parts:
            for k, v in part.items():
                q = ledger.quarters.setdefault(int(k), [0.0] * len(COLUMNS))
                for i, x in enumerate(v):
                    q[i] += x
        return ledger

    def money(self, cfg: EmsConfig, market_eur_per_mwh: Callable[[float], float]) -> dict[str, Any]:
        """Cost with and without the battery over the quarters seen, and the saving."""
        f = cfg.forecast
        starts = sorted(self.quarters)
        fees: list[float] = [float(x) for x in grid_fee_with_vat(cfg, [float(s) for s in starts],
                                                                 ZoneInfo(cfg.site.timezone))] if starts else []
        with_eur = without_eur = 0.0
        totals = [0.0] * len(COLUMNS)
        for start, fee in zip(starts, fees):
            q = self.quarters[start]
            market = market_eur_per_mwh(float(start)) / 1000.0
            buy = consumer_price_eur_per_kwh(market, f.price_surcharge_pct, f.price_surcharge_eur_per_kwh,
                                             f.grid_fee_eur_per_kwh, f.vat_pct) + float(fee)
            with_eur += q[0] * buy - q[1] * market
            without_eur += q[2] * buy - q[3] * market
            for i, x in enumerate(q):
                totals[i] += x
        degradation_eur = totals[4] * cfg.bess.degradation_cost_eur_per_kwh
        out: dict[str, Any] = {"cost_with_battery_eur": round(with_eur, 2),
                               "cost_without_battery_eur": round(without_eur, 2),
                               "savings_eur": round(without_eur - with_eur, 2),
                               "savings_after_degradation_eur": round(without_eur - with_eur - degradation_eur, 2)}
        out.update({name: round(total, 2) for name, total in zip(COLUMNS, totals)})
        out["full_cycles"] = round(totals[4] / cfg.bess.capacity_kwh, 2)
        out["quarters"] = len(starts)
        return out

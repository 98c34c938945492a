"""Arbitrage: trade against the day-ahead prices — buy and store when cheap, use or sell when dear.

The shared model with the site's real money and nothing else: this is the plan that minimises the
real cost, including PV, grid fees and (where billed) the demand charge.

In real time the plan is followed where it trades with the grid, and the meter where it balances
the site. A plan step that imports or exports is a trade: its battery power is followed as planned,
and a load or PV different from the forecast moves the grid (at that step's price, which the plan
found worth trading at). A step whose planned grid power is zero is where the plan covers the site
from the battery or stores its PV surplus: the LP sits on the kink between import and export price
there, so a kWh stored is worth less than one imported and more than one exported. Holding the grid
at zero on such a step — the battery taking what the forecast missed, more load or less PV — is then
the cheaper way to live with the error than importing or exporting it (measured in the backtest:
bench/bench_backtest.py, `hold_grid`). With perfect forecasts both rules give the same power.
"""
from __future__ import annotations

from .base import Intent, Meter, PlanStepLike, Request, Strategy

BALANCED_STEP_W = 1.0
"""A planned grid power within this of 0 W is a balancing step (the LP's vertices are exact; 1 W covers
rounding on the way through a plan's JSON)."""


class Arbitrage(Strategy):
    name = "arbitrage"
    title = "Arbitrage"
    description = ("Charges when energy is cheap and discharges when it is dear, against day-ahead prices "
                   "including grid fees; also uses PV where that pays most.")

    def realtime(self, meter: Meter, step: PlanStepLike, intent: Intent) -> Request:
        site_w = meter.site_w
        if abs(float(step.grid_power_w)) <= BALANCED_STEP_W and site_w is not None:
            return Request(site_w - float(step.grid_power_w), "arbitrage: planned to balance the site, grid held at 0 W",
                           follows_meter=True)
        return Request(float(step.bess_power_w), "arbitrage: planned battery power")

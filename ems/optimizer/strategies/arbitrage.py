"""Arbitrage: trade against the day-ahead prices — buy and store when cheap, use or sell when dear.

The shared model with the site's real money and nothing else: this is the plan that minimises the
real cost, including PV, grid fees and (where billed) the demand charge. In real time the plan's
battery power is followed as it is: a trade against prices, not against the meter.
"""
from __future__ import annotations

from .base import Intent, Meter, PlanStepLike, Request, Strategy


class Arbitrage(Strategy):
    name = "arbitrage"
    title = "Arbitrage"
    description = ("Charges when energy is cheap and discharges when it is dear, against day-ahead prices "
                   "including grid fees; also uses PV where that pays most.")

    def realtime(self, meter: Meter, step: PlanStepLike, intent: Intent) -> Request:
        return Request(float(step.bess_power_w), "arbitrage: planned battery power")

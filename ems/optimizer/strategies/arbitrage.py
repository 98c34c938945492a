"""Arbitrage: trade against the day-ahead prices — buy and store when cheap, use or sell when dear.

The shared model with the site's real money and nothing else: this is the plan that minimises the
real cost, including PV, grid fees and (where billed) the demand charge.
"""
from __future__ import annotations

from .base import Strategy


class Arbitrage(Strategy):
    name = "arbitrage"
    title = "Arbitrage"
    description = ("Charges when energy is cheap and discharges when it is dear, against day-ahead prices "
                   "including grid fees; also uses PV where that pays most.")

"""The strategies, one module each on `base.Strategy`, and the registry: the one list of them.

A strategy's module holds everything about it: title and description (`describe()`, shown by
`GET /api/strategies` and the dashboard), its objective weights and LP terms, what it takes from a
plan for the real-time layer (`intent`) and its real-time rule (`realtime`). The config
(`strategy.current`), the API, the planner, the real-time layer and the dashboard all read this
registry, so adding a strategy is: a module here, its class in `REGISTERED`, and its test.
"""
from __future__ import annotations

from .arbitrage import Arbitrage
from .base import Intent, Meter, PlanStepLike, Request, Strategy, Weights
from .load_balancing import LoadBalancing
from .peak_shaving import PeakShaving
from .self_consumption import SelfConsumption

REGISTERED: tuple[type[Strategy], ...] = (Arbitrage, PeakShaving, SelfConsumption, LoadBalancing)
"""Every strategy, in the order the API and error messages list them."""

STRATEGIES: dict[str, Strategy] = {cls.name: cls() for cls in REGISTERED}
STRATEGY_NAMES = tuple(STRATEGIES)


def get_strategy(name: str) -> Strategy:
    """The strategy called `name`; ValueError naming the allowed ones otherwise."""
    try:
        return STRATEGIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown strategy {name!r} (allowed: {', '.join(STRATEGIES)})") from None


__all__ = ["REGISTERED", "STRATEGIES", "STRATEGY_NAMES", "Intent", "Meter", "PlanStepLike", "Request", "Strategy",
           "Weights", "get_strategy"]

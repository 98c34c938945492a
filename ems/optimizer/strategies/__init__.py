"""The four strategies, one module each on `base.Strategy`, and the registry the planner and API use."""
from __future__ import annotations

from .arbitrage import Arbitrage
from .base import Strategy, Weights
from .load_balancing import LoadBalancing
from .peak_shaving import PeakShaving
from .self_consumption import SelfConsumption

STRATEGIES: dict[str, Strategy] = {s.name: s for s in (Arbitrage(), PeakShaving(), SelfConsumption(), LoadBalancing())}
STRATEGY_NAMES = tuple(STRATEGIES)


def get_strategy(name: str) -> Strategy:
    """The strategy called `name`; ValueError naming the allowed ones otherwise."""
    try:
        return STRATEGIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown strategy {name!r} (allowed: {', '.join(STRATEGY_NAMES)})") from None


__all__ = ["STRATEGIES", "STRATEGY_NAMES", "Strategy", "Weights", "get_strategy"]

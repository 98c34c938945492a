"""Exponential backoff, the one formula behind every "wait longer after each failure".

Used for subsystem restarts (supervisor), device reconnects (poller), price and weather refreshes
(forecast service and price feed) and HTTP retries. The delay before retry `attempt` (0 = the first
retry) is `initial_s · factor^attempt`, capped at `max_s`; with `jitter` > 0 it is then scaled into
[1 − jitter, 1] by a random value in [0, 1), so clients that failed together do not retry in lockstep.
"""
from __future__ import annotations

import math
import random as _random
from typing import Callable


def backoff_delay(attempt: int, initial_s: float, max_s: float = math.inf, factor: float = 2.0,
                  jitter: float = 0.0, random_value: float = 1.0) -> float:
    """Delay before retry `attempt` (0 = first retry): `initial_s · factor^attempt` capped at `max_s`,
    then × (1 − jitter + jitter · random_value) with `random_value` clamped to [0, 1].

    Never overflows: an attempt far out simply gets `max_s`.
    """
    try:
        base = min(max_s, initial_s * factor ** attempt)
    except OverflowError:
        base = max_s
    if not jitter:
        return base
    return base * ((1.0 - jitter) + jitter * min(1.0, max(0.0, random_value)))


class Backoff:
    """A retry counter: `next_delay()` gives the delay for the next retry and counts it, `reset()`
    starts over (after a success). `random` is called once per delay when `jitter` > 0."""

    def __init__(self, initial_s: float, max_s: float = math.inf, factor: float = 2.0, jitter: float = 0.0,
                 random: Callable[[], float] = _random.random):
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self.random = random
        self.attempt = 0

    def next_delay(self) -> float:
        value = self.random() if self.jitter else 1.0
        delay = backoff_delay(self.attempt, self.initial_s, self.max_s, self.factor, self.jitter, value)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0

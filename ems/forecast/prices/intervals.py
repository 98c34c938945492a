"""What every price source returns: intervals as published, checked against the 15-minute grid."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal, Protocol

from ..series import DAY_S, QUARTER_HOUR_S

log = logging.getLogger(__name__)

Country = Literal["AT", "DE"]

SLOT_S = QUARTER_HOUR_S
"""The cache's grid: the market's finest time unit (15 min since 2025-10-01); an hourly price fills 4 slots."""
PRICE_LIMIT_EUR_PER_MWH = 10_000.0
"""Prices beyond ±this are rejected as garbage (EPEX harmonised limits are −500 … +4,000 €/MWh)."""


@dataclass(frozen=True)
class PriceInterval:
    """One published price: [start_ts, end_ts) in epoch seconds, net market price in €/MWh (may be negative)."""

    start_ts: int
    end_ts: int
    price_eur_per_mwh: float

    @property
    def step_s(self) -> int:
        return self.end_ts - self.start_ts


class PriceSource(Protocol):
    """Day-ahead prices for a window. `fetch` blocks (network or disk) and raises FetchError."""

    name: str
    is_network: bool

    def fetch(self, start_ts: float, end_ts: float) -> list[PriceInterval]:
        """Intervals overlapping [start_ts, end_ts), as published (empty if none yet)."""


def check_interval(source: str, start_s: float, end_s: float, price: float, problems: list[str],
                    where: str) -> PriceInterval | None:
    if not (math.isfinite(start_s) and math.isfinite(end_s) and math.isfinite(price)):
        problems.append(f"{where}: not a finite number")
        return None
    if end_s <= start_s:
        problems.append(f"{where}: end {end_s:.0f} is not after start {start_s:.0f}")
        return None
    if start_s % SLOT_S or end_s % SLOT_S:
        problems.append(f"{where}: [{start_s:.0f}, {end_s:.0f}) is not on the 15-minute grid")
        return None
    if end_s - start_s > DAY_S:
        problems.append(f"{where}: interval longer than a day")
        return None
    if abs(price) > PRICE_LIMIT_EUR_PER_MWH:
        problems.append(f"{where}: price {price} €/MWh is outside ±{PRICE_LIMIT_EUR_PER_MWH:g}")
        return None
    return PriceInterval(int(start_s), int(end_s), float(price))


def report_skipped(source: str, problems: list[str], kept: int) -> None:
    if problems:
        log.warning("%s: skipped %d bad entr%s (kept %d): %s", source, len(problems),
                    "y" if len(problems) == 1 else "ies", kept, "; ".join(problems[:5]))

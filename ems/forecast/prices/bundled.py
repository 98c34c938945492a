"""The offline fallback: the bundled 2023–2024 day-ahead prices, mapped onto any date."""
from __future__ import annotations

import math

from ..series import HOUR_S
from .intervals import Country, PriceInterval

BUNDLED_FILES: dict[str, str] = {"AT": "AT_dayahead_2023_2024.csv", "DE": "DE-LU_dayahead_2023_2024.csv"}


class BundledPriceSource:
    """The real AT or DE-LU hourly prices of 2023–2024 shipped in `ems/data/`, mapped onto any date by local
    calendar position (same month, day and hour; as the simulator maps its data). The offline fallback:
    a realistic price shape for the season, not the actual price of the day."""

    is_network = False

    def __init__(self, country: Country = "AT"):
        from ...data.profiles import ProfileSeries  # the calendar mapping of bundled data lives there
        self.name = "bundled"
        self.country = country
        self._profile = ProfileSeries(BUNDLED_FILES[country])

    def fetch(self, start_ts: float, end_ts: float) -> list[PriceInterval]:
        first = int(math.floor(start_ts / HOUR_S) * HOUR_S)
        return [PriceInterval(t, t + HOUR_S, self._profile.value_at(t)) for t in range(first, int(end_ts), HOUR_S)]

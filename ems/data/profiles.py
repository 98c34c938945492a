"""Bundled load and PV time series, looked up at any instant.

The data covers one or two calendar years (Europe/Vienna local time), but the plant may run in any
year. An instant is therefore mapped by its local wall-clock (month, day, time of day) onto the
same calendar position in one data year, so a household still cooks at noon on a June Sunday in 2026.
Lookups are a bisect plus a linear interpolation because the simulator calls them every second.
"""
from __future__ import annotations

import bisect
import calendar
import logging
from array import array
from datetime import datetime
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from . import read_series

log = logging.getLogger(__name__)

LOCAL_TZ = ZoneInfo("Europe/Vienna")
PREFERRED_YEAR = 2024

HOUSEHOLD_FILE = "household_H25_2024_4000kWh_15min.csv"
COMMERCIAL_FILE = "commercial_G25_2024_50000kWh_15min.csv"
PV_FILE = "pv_per_kwp_2023_2024_hourly.csv"

LOAD_FILES = {"household": HOUSEHOLD_FILE, "commercial": COMMERCIAL_FILE}
# Annual energy each bundled load file was scaled to (see ems/data/SOURCES.md).
LOAD_FILE_ANNUAL_KWH = {"household": 4000.0, "commercial": 50000.0}

LoadKind = Literal["household", "commercial"]


def _local_year_start_s(year: int) -> float:
    return datetime(year, 1, 1, tzinfo=LOCAL_TZ).timestamp()


@lru_cache(maxsize=None)
def _year_table(name: str, year: int) -> tuple[array[float], array[float]]:
    """One local calendar year of a file, padded with a wrap-around sample at each end.

    The padding makes the year cyclic, so 31 Dec 23:50 interpolates towards 1 Jan 00:00 instead of
    falling off the end of the data.
    """
    epoch_s, values = read_series(name)
    start_s, end_s = _local_year_start_s(year), _local_year_start_s(year + 1)
    lo = bisect.bisect_left(epoch_s, start_s)
    hi = bisect.bisect_left(epoch_s, end_s)
    if hi - lo < 2:
        raise ValueError(f"{name} has no usable data for {year}")
    year_len_s = end_s - start_s
    times = array("d", [epoch_s[hi - 1] - year_len_s])
    times.extend(epoch_s[lo:hi])
    times.append(epoch_s[lo] + year_len_s)
    vals = array("d", [values[hi - 1]])
    vals.extend(values[lo:hi])
    vals.append(values[lo])
    return times, vals


@lru_cache(maxsize=None)
def _choose_data_year(name: str) -> int:
    """PREFERRED_YEAR when the file has it, otherwise the year with the most samples (latest on a tie)."""
    epoch_s, _ = read_series(name)
    counts: dict[int, int] = {}
    for t in epoch_s:
        y = datetime.fromtimestamp(t, LOCAL_TZ).year
        counts[y] = counts.get(y, 0) + 1
    if counts.get(PREFERRED_YEAR, 0) >= 2:
        return PREFERRED_YEAR
    return max(counts, key=lambda y: (counts[y], y))


class ProfileSeries:
    """A bundled time series (kW) times `scale`, valid at any instant by calendar mapping."""

    def __init__(self, name: str, scale: float = 1.0):
        self.name = name
        self.scale = float(scale)
        self.data_year = _choose_data_year(name)
        self._times, self._values = _year_table(name, self.data_year)
        self._leap = calendar.isleap(self.data_year)

    def map_to_data_time(self, epoch_s: float) -> float:
        """The instant in the data year with the same local month, day and time of day.

        Feb 29 maps to Feb 28 when the data year is not a leap year; a non-leap query year simply
        never asks for the data's Feb 29. The DST fold is kept so the repeated autumn hour maps
        onto the repeated hour. A local time that does not exist in the data year (spring-forward
        hour on another date) resolves with the pre-transition offset, i.e. one hour later.
        """
        local = datetime.fromtimestamp(epoch_s, LOCAL_TZ)
        if local.year == self.data_year:
            return epoch_s
        day = local.day
        if local.month == 2 and day == 29 and not self._leap:
            day = 28
        return local.replace(year=self.data_year, day=day).timestamp()

    def value_at(self, epoch_s: float) -> float:
        """Linearly interpolated value (kW × scale) at any instant."""
        t = self.map_to_data_time(epoch_s)
        times = self._times
        i = bisect.bisect_right(times, t)
        if i <= 0:
            i = 1
        elif i >= len(times):
            i = len(times) - 1
        t0, t1 = times[i - 1], times[i]
        v0, v1 = self._values[i - 1], self._values[i]
        if t1 <= t0:
            return v1 * self.scale
        frac = min(1.0, max(0.0, (t - t0) / (t1 - t0)))
        return (v0 + (v1 - v0) * frac) * self.scale

    def __repr__(self) -> str:
        return f"ProfileSeries({self.name!r}, scale={self.scale!r}, data_year={self.data_year})"


def load_profile(kind: LoadKind, annual_kwh: float) -> ProfileSeries:
    """Standard load profile in kW, scaled from the file's annual energy to `annual_kwh`."""
    if kind not in LOAD_FILES:
        raise ValueError(f"unknown load profile {kind!r} (allowed: {', '.join(LOAD_FILES)})")
    return ProfileSeries(LOAD_FILES[kind], scale=annual_kwh / LOAD_FILE_ANNUAL_KWH[kind])


def pv_profile(peak_kwp: float) -> ProfileSeries:
    """PV generation in kW for a plant of `peak_kwp` (the file is kW per kWp)."""
    return ProfileSeries(PV_FILE, scale=peak_kwp)

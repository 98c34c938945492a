"""Reading the backtest's input series: prices, load and PV from CSV, on one common plan-step grid.

File format (as `ems/data/*.csv`): a header `timestamp,<quantity>_<unit>`, then one row per interval
start, ISO-8601 timestamps with their UTC offset (`2024-03-31T03:00:00+02:00`), hourly or
quarter-hourly. A value holds from its timestamp until the next one. Accepted columns:

    prices  price_eur_per_mwh | price_eur_per_kwh | price_ct_per_kwh    (day-ahead market price)
    load    load_kw | load_w
    PV      pv_kw | pv_w | pv_kw_per_kwp (needs the plant size, `pv_kwp`)

Timestamps are kept as epoch seconds, so a daylight-saving day simply has 23 or 25 hours and no
instant is ambiguous; a timestamp without an offset is refused (it would be ambiguous twice a year).
Anything wrong in a file raises `BacktestDataError` naming the file, the line and the column.
Pure numpy and stdlib: no pandas (see DOMAIN.md, "Memory of imports").
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Optional

import numpy as np

from ..data import SeriesFileError, read_series_file
from ..localtime import site_zone
from ..optimizer.inputs import resample_mean

log = logging.getLogger(__name__)

# column name → (quantity, factor to the internal unit: €/kWh for prices, kW for powers)
PRICE_COLUMNS = {"price_eur_per_mwh": 1e-3, "price_eur_per_kwh": 1.0, "price_ct_per_kwh": 1e-2}
LOAD_COLUMNS = {"load_kw": 1.0, "load_w": 1e-3}
PV_COLUMNS = {"pv_kw": 1.0, "pv_w": 1e-3, "pv_kw_per_kwp": 1.0}
PER_KWP_COLUMN = "pv_kw_per_kwp"

MIN_INTERVAL_S = 60
MAX_INTERVAL_S = 86_400
PRICE_ABS_LIMIT_EUR_PER_KWH = 100.0  # 100 000 €/MWh: far beyond any market cap, catches unit mix-ups
POWER_LIMIT_KW = 1e6
MARKET_RESOLUTIONS_S = (900, 3600)


class BacktestDataError(SeriesFileError):
    """A file the backtest cannot use: which file, which line (1 = header) and column, and what is wrong."""


@dataclass(frozen=True)
class RawSeries:
    """One file as read: interval starts (epoch s), values in the internal unit; `interval_s` is the
    file's typical spacing, `last_interval_s` the last row's, `max_interval_s` the longest."""

    path: str
    column: str
    ts: np.ndarray
    values: np.ndarray
    interval_s: int
    last_interval_s: int
    max_interval_s: int

    @property
    def start_ts(self) -> float:
        return float(self.ts[0])

    @property
    def end_ts(self) -> float:
        """End of the last interval."""
        return float(self.ts[-1]) + self.last_interval_s


@dataclass(frozen=True)
class BacktestData:
    """The three series on one grid of `n` steps of `step_s` from `start_ts` (epoch s).

    `market_price_eur_per_kwh` is the raw day-ahead price (no surcharges, no VAT): the tariff is
    applied by the replay. `sources` says which file and column each series came from.
    """

    start_ts: float
    step_s: int
    market_price_eur_per_kwh: np.ndarray
    load_kw: np.ndarray
    pv_kw: np.ndarray
    sources: dict[str, str]

    def __post_init__(self) -> None:
        n = len(self.load_kw)
        for name in ("market_price_eur_per_kwh", "pv_kw"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} steps, load_kw {n}")

    @property
    def n(self) -> int:
        return len(self.load_kw)

    @property
    def end_ts(self) -> float:
        return self.start_ts + self.n * self.step_s

    def step_starts_s(self) -> np.ndarray:
        return self.start_ts + self.step_s * np.arange(self.n, dtype=float)

    def slice(self, first: int, stop: int) -> "BacktestData":
        return BacktestData(self.start_ts + first * self.step_s, self.step_s,
                            self.market_price_eur_per_kwh[first:stop], self.load_kw[first:stop],
                            self.pv_kw[first:stop], dict(self.sources))


def _plausible_price(value: float, text: str, column: str) -> Optional[str]:
    return f"{text} is implausible for {column} (check the unit)" if abs(value) > PRICE_ABS_LIMIT_EUR_PER_KWH else None


def _plausible_power(value: float, text: str, column: str) -> Optional[str]:
    return None if 0.0 <= value <= POWER_LIMIT_KW else f"{text} must be a non-negative power"


def read_series_csv(path: str | Path, allowed: dict[str, float], role: str) -> RawSeries:
    """One `timestamp,<column>` file; `allowed` maps accepted column names to their unit factor."""
    try:
        series = read_series_file(path, allowed, role, _plausible_price if role == "prices" else _plausible_power)
    except SeriesFileError as err:
        raise BacktestDataError(err.file, err.message, err.line, err.column) from None
    file, column, ts = series.path, series.column, series.ts
    if len(ts) < 2:
        raise BacktestDataError(file, f"has {len(ts)} data rows, need at least 2 to know the interval", series.n_rows)
    arr_ts = np.asarray(ts)
    gaps = np.diff(arr_ts)
    interval = float(np.median(gaps))
    if not (MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S) or not interval.is_integer():
        raise BacktestDataError(file, f"the typical spacing of {interval:g} s is not a whole number of minutes "
                                      "between 1 min and 1 day", 3, "timestamp")
    # Rows are one interval apart; a price file may switch between the market's 60- and 15-min
    # resolutions (SDAC moved to 15 min on 2025-10-01). Any other spacing is a gap: say where.
    allowed_s = np.array(sorted({interval, *(MARKET_RESOLUTIONS_S if role == "prices" else ())}))
    ok = np.any(np.abs(gaps[:, None] - allowed_s[None, :]) < 1e-6, axis=1)
    bad = np.flatnonzero(~ok)
    if len(bad):
        k = int(bad[0])
        line = series.lines[k + 1]
        raise BacktestDataError(file, f"{gaps[k] / 60:g} min after the previous row, but the file's interval is "
                                      f"{interval / 60:g} min (a gap or a missing row before this line)",
                                line, "timestamp")
    return RawSeries(file, column, arr_ts, np.asarray(series.values), int(interval), int(gaps[-1]),
                     int(gaps.max()))


def local_midnight_ts(day: date) -> float:
    """Epoch seconds of 00:00 Europe/Vienna on `day`."""
    return datetime.combine(day, time(0), site_zone()).timestamp()


def align(prices: RawSeries, load: RawSeries, pv: RawSeries, step_s: int, *, pv_kwp: Optional[float] = None,
          from_day: Optional[date] = None, to_day: Optional[date] = None) -> BacktestData:
    """The three series resampled (time-weighted mean) onto the plan steps of their common time range.

    The range starts at the first step boundary all three cover (and at local midnight of `from_day`
    if later) and ends where the first series ends (or at the end of `to_day`, inclusive). A range
    with no full step in it is an error naming the files' ranges.
    """
    if step_s <= 0 or 3600 % step_s and step_s % 3600:
        raise BacktestDataError("step", f"step of {step_s} s must divide an hour or be whole hours")
    if pv.column == PER_KWP_COLUMN:
        if pv_kwp is None:
            raise BacktestDataError(pv.path, "is per kWp: give the plant size (--pv-kwp)", 1, pv.column)
        if not (math.isfinite(pv_kwp) and 0 <= pv_kwp <= POWER_LIMIT_KW):
            raise BacktestDataError(pv.path, f"plant size {pv_kwp!r} kWp must be a non-negative number", 1, pv.column)
        pv_scale = float(pv_kwp)
    else:
        if pv_kwp is not None:
            raise BacktestDataError(pv.path, f"is already in kW ({pv.column}): --pv-kwp applies only to "
                                             f"{PER_KWP_COLUMN} files", 1, pv.column)
        pv_scale = 1.0
    start = max(s.start_ts for s in (prices, load, pv))
    end = min(s.end_ts for s in (prices, load, pv))
    if from_day is not None:
        start = max(start, local_midnight_ts(from_day))
    if to_day is not None:
        end = min(end, local_midnight_ts(to_day + timedelta(days=1)))
    start = math.ceil(start / step_s) * step_s
    n = int((end - start) // step_s)
    if n <= 0:
        spans = "; ".join(f"{s.path}: {_fmt(s.start_ts)} to {_fmt(s.end_ts)}" for s in (prices, load, pv))
        raise BacktestDataError(prices.path, f"the series have no common time range of at least one "
                                             f"{step_s // 60}-min step (with --from/--to): {spans}")
    out = {}
    for key, series in (("market_price_eur_per_kwh", prices), ("load_kw", load), ("pv_kw", pv)):
        out[key] = resample_mean(series.ts, series.values, start, step_s, n,
                                 interval_s=series.max_interval_s)
        missing = np.flatnonzero(~np.isfinite(out[key]))
        if len(missing):  # cannot happen for gap-free files inside the common range; guard anyway
            raise BacktestDataError(series.path, f"no value for the step at {_fmt(start + step_s * missing[0])}")
    log.info("backtest data: %d steps of %d min from %s to %s", n, step_s // 60, _fmt(start), _fmt(start + n * step_s))
    return BacktestData(float(start), int(step_s), out["market_price_eur_per_kwh"], out["load_kw"],
                        out["pv_kw"] * pv_scale,
                        {"prices": f"{prices.path} ({prices.column})", "load": f"{load.path} ({load.column})",
                         "pv": f"{pv.path} ({pv.column}" + (f" × {pv_kwp:g} kWp)" if pv_scale != 1.0 or
                                                           pv.column == PER_KWP_COLUMN else ")")})


def load_backtest_data(prices_path: str | Path, load_path: str | Path, pv_path: str | Path, *, step_s: int = 900,
                       pv_kwp: Optional[float] = None, from_day: Optional[date] = None,
                       to_day: Optional[date] = None) -> BacktestData:
    """Read, check and align the three files (see the module doc for the format)."""
    prices = read_series_csv(prices_path, PRICE_COLUMNS, "prices")
    load = read_series_csv(load_path, LOAD_COLUMNS, "load")
    pv = read_series_csv(pv_path, PV_COLUMNS, "PV")
    return align(prices, load, pv, step_s, pv_kwp=pv_kwp, from_day=from_day, to_day=to_day)


def _fmt(ts: float) -> str:
    return datetime.fromtimestamp(ts, site_zone()).strftime("%Y-%m-%d %H:%M %Z")

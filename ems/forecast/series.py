"""A small typed time series for forecasts and market data, and the calendar maths around it.

Time is epoch seconds (UTC) everywhere, so a daylight-saving day simply has 92 or 100 quarter-hours
and no instant is ambiguous. Local time is used only where human routine matters (time of day,
weekday): `wall_clock_s` turns an instant into "local seconds" (epoch + UTC offset), which is what a
seasonal model should count its days in. Values are per-interval averages: `values[i]` holds for
[start_ts + i·step_s, start_ts + (i+1)·step_s). A missing value is NaN (JSON null).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence
from zoneinfo import ZoneInfo

MARKET_TZ = ZoneInfo("Europe/Vienna")
"""Local time of the AT and DE-LU markets (CET/CEST): day-ahead days and publication times are local."""

QUARTER_HOUR_S = 900
HOUR_S = 3600
DAY_S = 86400

NAN = float("nan")


def is_missing(value: float) -> bool:
    return value != value  # NaN is the only float not equal to itself


@dataclass(frozen=True)
class Series:
    """Equally spaced interval values with where they came from and how sure they are.

    `source` names the data origin (`awattar_at`, `history`, `openweathermap`, `bundled` …), `model`
    the method (`market`, `daytype_median_8`, `seasonal_persistence` …). `is_forecast[i]`
    is False where the value is known (a published market price) and True where a model made it.
    `quantiles` maps names like `p10`/`p90` to value tuples of the same length, where a model gives them.
    """

    start_ts: float
    step_s: int
    values: tuple[float, ...]
    unit: str
    source: str
    model: str
    is_forecast: tuple[bool, ...] = ()
    quantiles: dict[str, tuple[float, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.step_s <= 0 or int(self.step_s) != self.step_s:
            raise ValueError(f"step_s must be a positive whole number of seconds (got {self.step_s!r})")
        object.__setattr__(self, "step_s", int(self.step_s))
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))
        n = len(self.values)
        flags = tuple(bool(f) for f in self.is_forecast) if self.is_forecast else (True,) * n
        if len(flags) != n:
            raise ValueError(f"is_forecast has {len(flags)} entries for {n} values")
        object.__setattr__(self, "is_forecast", flags)
        quantiles = {}
        for name, qv in self.quantiles.items():
            if len(qv) != n:
                raise ValueError(f"quantile {name} has {len(qv)} entries for {n} values")
            quantiles[name] = tuple(float(v) for v in qv)
        object.__setattr__(self, "quantiles", quantiles)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def end_ts(self) -> float:
        return self.start_ts + len(self.values) * self.step_s

    def timestamps(self) -> list[float]:
        return [self.start_ts + i * self.step_s for i in range(len(self.values))]

    def index_of(self, ts: float) -> int | None:
        """Index of the interval holding `ts`, or None outside the series."""
        if ts < self.start_ts or ts >= self.end_ts:
            return None
        return int((ts - self.start_ts) // self.step_s)

    def value_at(self, ts: float) -> float:
        i = self.index_of(ts)
        return NAN if i is None else self.values[i]

    @property
    def known_until_ts(self) -> float:
        """End of the leading run of known (not forecast) values; `start_ts` when none is known."""
        n = 0
        for flag in self.is_forecast:
            if flag:
                break
            n += 1
        return self.start_ts + n * self.step_s

    def replace(self, **changes: Any) -> "Series":
        data: dict[str, Any] = {"start_ts": self.start_ts, "step_s": self.step_s, "values": self.values, "unit": self.unit,
                "source": self.source, "model": self.model, "is_forecast": self.is_forecast,
                "quantiles": self.quantiles}
        data.update(changes)
        return Series(**data)

    def map_values(self, fn: Any, unit: str | None = None) -> "Series":
        """Apply `fn` to the values and every quantile (e.g. a price formula); NaN stays NaN."""
        def apply(vs: Sequence[float]) -> tuple[float, ...]:
            return tuple(NAN if is_missing(v) else fn(v) for v in vs)
        return self.replace(values=apply(self.values), unit=unit or self.unit,
                            quantiles={k: apply(v) for k, v in self.quantiles.items()})

    def slice(self, start_ts: float, end_ts: float) -> "Series":
        """The whole intervals that lie in [start_ts, end_ts) (clipped to the series)."""
        first = max(0, math.ceil((start_ts - self.start_ts) / self.step_s))
        last = min(len(self.values), math.floor((end_ts - self.start_ts) / self.step_s))
        last = max(first, last)
        return self.replace(start_ts=self.start_ts + first * self.step_s, values=self.values[first:last],
                            is_forecast=self.is_forecast[first:last],
                            quantiles={k: v[first:last] for k, v in self.quantiles.items()})

    def resample(self, step_s: int) -> "Series":
        """Change the step: finer by repeating each value, coarser by averaging (an hourly price is the
        mean of its four quarters). One step must divide the other; a coarse interval is a forecast if
        any part of it is, and is missing if any part of it is missing."""
        step_s = int(step_s)
        if step_s == self.step_s:
            return self
        if step_s < self.step_s:
            if self.step_s % step_s:
                raise ValueError(f"cannot resample step {self.step_s} s to {step_s} s (not a divisor)")
            k = self.step_s // step_s
            rep = lambda vs: tuple(v for v in vs for _ in range(k))
            return self.replace(step_s=step_s, values=rep(self.values), is_forecast=rep(self.is_forecast),
                                quantiles={n: rep(v) for n, v in self.quantiles.items()})
        if step_s % self.step_s:
            raise ValueError(f"cannot resample step {self.step_s} s to {step_s} s (not a multiple)")
        k = step_s // self.step_s
        # Align the coarse grid to multiples of step_s (UTC); partial intervals at the edges are dropped.
        offset = int(((-(self.start_ts % step_s)) % step_s) // self.step_s)
        n = (len(self.values) - offset) // k
        if n <= 0:
            return self.replace(step_s=step_s, values=(), is_forecast=(), quantiles={q: () for q in self.quantiles})

        def mean(vs: Sequence[float]) -> tuple[float, ...]:
            out = []
            for i in range(n):
                chunk = vs[offset + i * k: offset + (i + 1) * k]
                out.append(NAN if any(is_missing(v) for v in chunk) else sum(chunk) / k)
            return tuple(out)

        flags = tuple(any(self.is_forecast[offset + i * k: offset + (i + 1) * k]) for i in range(n))
        return self.replace(start_ts=self.start_ts + offset * self.step_s, step_s=step_s, values=mean(self.values),
                            is_forecast=flags, quantiles={q: mean(v) for q, v in self.quantiles.items()})

    def to_json(self, decimals: int = 5) -> dict[str, Any]:
        """Plain JSON for `/api/forecast`: NaN becomes null, flags and quantiles stay aligned with values."""
        def clean(vs: Iterable[float]) -> list[float | None]:
            return [None if is_missing(v) else round(v, decimals) for v in vs]
        return {
            "start_ts": self.start_ts, "step_s": self.step_s, "end_ts": self.end_ts, "unit": self.unit,
            "source": self.source, "model": self.model, "known_until_ts": self.known_until_ts,
            "values": clean(self.values), "is_forecast": list(self.is_forecast),
            "quantiles": {k: clean(v) for k, v in self.quantiles.items()},
        }


def floor_to(ts: float, step_s: int) -> float:
    return math.floor(ts / step_s) * step_s


def utc_offset_s(ts: float, tz: ZoneInfo = MARKET_TZ) -> int:
    offset = datetime.fromtimestamp(ts, tz).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def wall_clock_s(ts: float, tz: ZoneInfo = MARKET_TZ) -> float:
    """Local "wall-clock" seconds: epoch + UTC offset. Equal wall-clock times of day are equal modulo a day,
    whatever the season: the count a daily or weekly seasonal model should use."""
    return ts + utc_offset_s(ts, tz)


def local_midnight_ts(ts: float, tz: ZoneInfo = MARKET_TZ, days: int = 0) -> float:
    """Epoch seconds of local 00:00 of the day holding `ts`, shifted by `days` calendar days."""
    local = datetime.fromtimestamp(ts, tz)
    day = (local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None) + timedelta(days=days))
    return day.replace(tzinfo=tz).timestamp()


def local_time_ts(ts: float, hhmm: str, tz: ZoneInfo = MARKET_TZ) -> float:
    """Epoch seconds of local clock time `hhmm` (\"13:00\") on the local day holding `ts`."""
    hours, minutes = (int(p) for p in hhmm.split(":"))
    local = datetime.fromtimestamp(ts, tz).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    return (local + timedelta(hours=hours, minutes=minutes)).replace(tzinfo=tz).timestamp()


def to_wall_clock_grid(start_ts: float, step_s: int, values: Sequence[float],
                       tz: ZoneInfo = MARKET_TZ) -> tuple[float, list[float]]:
    """Re-index equally spaced UTC intervals onto an equally spaced local wall-clock grid.

    The autumn's repeated hour is averaged into one, the spring's skipped hour becomes NaN (a gap a
    model fills), so every local day has exactly DAY_S / step_s slots. Returns (wall start, values).
    """
    if not values:
        return wall_clock_s(start_ts, tz), []
    walls = [wall_clock_s(start_ts + i * step_s, tz) for i in range(len(values))]
    w0 = floor_to(walls[0], step_s)
    # max, not the last: a series ending inside the repeated autumn hour has gone back on the wall clock.
    n = int((floor_to(max(walls), step_s) - w0) // step_s) + 1
    sums = [0.0] * n
    counts = [0] * n
    for wall, v in zip(walls, values):
        if is_missing(v):
            continue
        j = int((floor_to(wall, step_s) - w0) // step_s)
        sums[j] += v
        counts[j] += 1
    return w0, [s / c if c else NAN for s, c in zip(sums, counts)]


def from_wall_clock_grid(wall_start: float, step_s: int, wall_values: Sequence[float], start_ts: float,
                         n: int, tz: ZoneInfo = MARKET_TZ) -> list[float]:
    """The inverse of `to_wall_clock_grid` for `n` UTC intervals from `start_ts`: each takes the value of
    its local wall-clock slot (the repeated autumn hour reads the same slot twice); NaN outside."""
    out = []
    for i in range(n):
        j = int((floor_to(wall_clock_s(start_ts + i * step_s, tz), step_s) - wall_start) // step_s)
        out.append(wall_values[j] if 0 <= j < len(wall_values) else NAN)
    return out


def fill_gaps(values: Sequence[float], period: int) -> list[float]:
    """Fill NaN from the same slot one period earlier (or later), else by linear interpolation, else
    with the mean: a seasonal model needs a gap-free series, and a day-old value is the best guess."""
    out = list(values)
    n = len(out)
    for i in range(n):
        if is_missing(out[i]) and i - period >= 0 and not is_missing(out[i - period]):
            out[i] = out[i - period]
    for i in range(n - 1, -1, -1):
        if is_missing(out[i]) and i + period < n and not is_missing(out[i + period]):
            out[i] = out[i + period]
    known = [i for i, v in enumerate(out) if not is_missing(v)]
    if not known:
        return [0.0] * n
    mean = sum(out[i] for i in known) / len(known)
    for i in range(n):
        if not is_missing(out[i]):
            continue
        left = next((k for k in range(i - 1, -1, -1) if not is_missing(out[k])), None)
        right = next((k for k in range(i + 1, n) if not is_missing(out[k])), None)
        if left is not None and right is not None:
            out[i] = out[left] + (out[right] - out[left]) * (i - left) / (right - left)
        elif left is not None:
            out[i] = out[left]
        elif right is not None:
            out[i] = out[right]
        else:
            out[i] = mean
    return out


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated empirical quantile of already sorted values (q in [0, 1])."""
    if not sorted_values:
        return NAN
    pos = q * (len(sorted_values) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def regular_from_rows(rows: Iterable[dict[str, Any]], key: str, start_ts: float, end_ts: float, step_s: int,
                      scale: float = 1.0) -> list[float]:
    """Equally spaced values in [start_ts, end_ts) from history rows ({"ts": …, key: …}); NaN where none.

    Rows falling in the same interval are averaged; values are multiplied by `scale` (e.g. W → kW).
    """
    n = max(0, int((end_ts - start_ts) // step_s))
    sums = [0.0] * n
    counts = [0] * n
    for row in rows:
        ts, v = row.get("ts"), row.get(key)
        if ts is None or v is None or not isinstance(v, (int, float)) or is_missing(float(v)):
            continue
        i = int((float(ts) - start_ts) // step_s)
        if 0 <= i < n:
            sums[i] += float(v) * scale
            counts[i] += 1
    return [s / c if c else NAN for s, c in zip(sums, counts)]

"""What one planning run optimises over: typed, validated, per-step inputs.

Everything the LP needs is here and nothing else: prices (already including surcharges and grid fees),
load and PV forecasts, limits, the battery and grid connection as configured, and the starting SoC.
Inputs are checked on construction so the model never sees a NaN, a negative load or a short list;
a bad value raises `PlanInputError` naming the field.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from ..config.schema import BessConfig, EmsConfig, GridConnectionConfig
from ..localtime import site_zone
from . import tariffs

MAX_STEPS = 31 * 96
"""A month of quarter-hours: the most one solve is allowed to plan (memory and solve-time bound)."""

PER_STEP_FIELDS = ("import_price_eur_per_kwh", "export_price_eur_per_kwh", "load_kw", "pv_kw")

PerStep = Union[Sequence[float], npt.NDArray[np.float64]]
"""Per-step values as a caller hands them over: a list, a tuple or a numpy array (PlanInputs keeps a tuple)."""


class PlanInputError(ValueError):
    """An input the optimizer must not run on; `field` names it."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        self.message = message
        super().__init__(f"{field_name}: {message}")


def _number(name: str, value: object, lo: float, hi: float) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PlanInputError(name, f"must be a number (got {value!r})") from None
    if not (math.isfinite(v) and lo <= v <= hi):
        raise PlanInputError(name, f"must be {lo:g}..{hi:g} (got {value!r})")
    return v


def _as_tuple(name: str, values: PerStep, n: int) -> tuple[float, ...]:
    try:
        arr = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError) as err:
        raise PlanInputError(name, f"must be a list of numbers ({err})") from None
    if len(arr) != n:
        raise PlanInputError(name, f"has {len(arr)} values, expected one per step ({n})")
    bad = np.flatnonzero(~np.isfinite(arr))
    if len(bad):
        raise PlanInputError(name, f"value at step {int(bad[0])} is not a finite number")
    return tuple(float(v) for v in arr)


@dataclass(frozen=True)
class PlanInputs:
    """One planning horizon of `n` steps of `step_s` seconds starting at `start_ts` (epoch s).

    Signs: all per-step values are non-negative magnitudes (load drawn, PV produced, prices in €/kWh
    which may be negative). `import_price_eur_per_kwh` is what one kWh from the grid costs in total
    (energy + surcharge + grid fee); `export_price_eur_per_kwh` what one kWh fed in earns.
    `feedin_limit_kw` caps export per step on top of the grid connection's own export limit.
    `terminal_soc_value_eur_per_kwh`: what a kWh left stored at the end is worth (None = auto,
    see `terminal_value_eur_per_kwh`). `terminal_soc_min_pct`: a hard floor for the end SoC.
    `demand_charge_eur_per_kw`: real price of the billing period's peak import above `peak_so_far_kw`.
    `zone`: the site's time zone (`site.timezone`), in which tariff windows and messages are local time.
    """

    start_ts: float
    step_s: int
    import_price_eur_per_kwh: PerStep
    export_price_eur_per_kwh: PerStep
    load_kw: PerStep
    pv_kw: PerStep
    soc0_pct: float
    bess: BessConfig = field(default_factory=BessConfig)
    grid: GridConnectionConfig = field(default_factory=GridConnectionConfig)
    feedin_limit_kw: Optional[PerStep] = None
    terminal_soc_value_eur_per_kwh: Optional[float] = None
    terminal_soc_min_pct: Optional[float] = None
    demand_charge_eur_per_kw: float = 0.0
    peak_so_far_kw: float = 0.0
    no_export_at_negative_prices: bool = False
    zone: ZoneInfo = field(default_factory=site_zone)

    def __post_init__(self) -> None:
        step = self.step_s
        if isinstance(step, bool) or not isinstance(step, (int, float, np.number)) or not float(step).is_integer():
            raise PlanInputError("step_s", f"must be a whole number of seconds (got {step!r})")
        object.__setattr__(self, "step_s", int(_number("step_s", step, 60, 86_400)))
        object.__setattr__(self, "start_ts", _number("start_ts", self.start_ts, 0.0, 1e11))
        try:
            n = len(self.load_kw)
        except TypeError:
            raise PlanInputError("load_kw", "must be a list of numbers") from None
        if not 1 <= n <= MAX_STEPS:
            raise PlanInputError("load_kw", f"must have 1..{MAX_STEPS} steps (got {n})")
        for name in PER_STEP_FIELDS:
            object.__setattr__(self, name, _as_tuple(name, getattr(self, name), n))
        for name in ("load_kw", "pv_kw"):
            if min(getattr(self, name)) < 0:
                raise PlanInputError(name, "must not be negative (magnitudes in kW)")
        if self.feedin_limit_kw is not None:
            limits = _as_tuple("feedin_limit_kw", self.feedin_limit_kw, n)
            if min(limits) < 0:
                raise PlanInputError("feedin_limit_kw", "must not be negative")
            object.__setattr__(self, "feedin_limit_kw", limits)
        _number("soc0_pct", self.soc0_pct, 0.0, 100.0)
        if self.terminal_soc_min_pct is not None:
            _number("terminal_soc_min_pct", self.terminal_soc_min_pct, 0.0, 100.0)
        if self.terminal_soc_value_eur_per_kwh is not None:
            _number("terminal_soc_value_eur_per_kwh", self.terminal_soc_value_eur_per_kwh, -10.0, 10.0)
        _number("demand_charge_eur_per_kw", self.demand_charge_eur_per_kw, 0.0, 10_000.0)
        _number("peak_so_far_kw", self.peak_so_far_kw, 0.0, 1e6)
        for name, msg in self.bess.check():
            raise PlanInputError(f"bess.{name}", str(msg))
        if not isinstance(self.zone, ZoneInfo):
            raise PlanInputError("zone", f"must be a ZoneInfo (got {self.zone!r})")

    @property
    def n(self) -> int:
        return len(self.load_kw)

    @property
    def dt_h(self) -> float:
        return self.step_s / 3600.0

    @property
    def horizon_h(self) -> float:
        return self.n * self.dt_h

    @property
    def max_import_kw(self) -> float:
        return float(self.grid.max_power_kw)

    @property
    def max_export_kw(self) -> float:
        limit = self.grid.max_feedin_kw
        return float(self.grid.max_power_kw if limit is None else limit)

    def export_limit_kw(self) -> np.ndarray:
        """Per-step export cap: the grid connection, the feed-in limitation and, if asked, 0 kW at
        negative export prices (Solarspitzengesetz: no payment, so no feed-in)."""
        cap = np.full(self.n, self.max_export_kw)
        if self.feedin_limit_kw is not None:
            cap = np.minimum(cap, np.asarray(self.feedin_limit_kw))
        if self.no_export_at_negative_prices:
            cap[np.asarray(self.export_price_eur_per_kwh) < 0] = 0.0
        return cap

    def step_starts_s(self) -> np.ndarray:
        return tariffs.step_starts_s(self.start_ts, self.step_s, self.n)

    def terminal_value_eur_per_kwh(self) -> float:
        """The given value, or: a stored kWh later replaces η_d kWh of import at the horizon's median
        price, less the degradation of discharging it. Never negative."""
        if self.terminal_soc_value_eur_per_kwh is not None:
            return float(self.terminal_soc_value_eur_per_kwh)
        eta_d = self.bess.discharge_efficiency
        median_price = float(statistics.median(self.import_price_eur_per_kwh))
        return max(0.0, eta_d * (median_price - self.bess.degradation_cost_eur_per_kwh))


def resample_mean(series_start_ts: npt.ArrayLike, values: npt.ArrayLike, start_ts: float,
                  step_s: float, n: int, interval_s: Optional[float] = None) -> np.ndarray:
    """Time-weighted mean of a piecewise-constant series over each of `n` plan steps.

    Each sample holds from its start until the next sample, at most `interval_s` (default: the
    median spacing) — so hourly prices become four equal quarter-hour prices, and quarter-hour prices
    average into an hourly step. A plan step not fully covered by samples is NaN (a gap or the end of
    the published prices): use `leading_finite_steps` to cut the horizon there.
    """
    t = np.asarray(series_start_ts, dtype=float).reshape(-1)
    v = np.asarray(values, dtype=float).reshape(-1)
    if len(t) != len(v):
        raise PlanInputError("values", f"has {len(v)} values for {len(t)} timestamps")
    out = np.full(int(n), np.nan)
    if len(t) == 0 or n <= 0:
        return out
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    if len(t) > 1 and np.any(np.diff(t) <= 0):
        raise PlanInputError("series_start_ts", "timestamps must be distinct")
    if interval_s is None:
        interval_s = float(np.median(np.diff(t))) if len(t) > 1 else float(step_s)
    ends = np.minimum(np.append(t[1:], np.inf), t + interval_s)
    finite = np.isfinite(v)
    lengths = np.where(finite, ends - t, 0.0)
    cover = np.concatenate(([0.0], np.cumsum(lengths)))
    integral = np.concatenate(([0.0], np.cumsum(np.where(finite, v, 0.0) * lengths)))
    # Breakpoints: each sample's start and end; F is linear inside a sample and flat in gaps.
    xp = np.empty(2 * len(t))
    xp[0::2], xp[1::2] = t, ends
    cover_p = np.empty(2 * len(t))
    cover_p[0::2], cover_p[1::2] = cover[:-1], cover[1:]
    integral_p = np.empty(2 * len(t))
    integral_p[0::2], integral_p[1::2] = integral[:-1], integral[1:]
    a = float(start_ts) + float(step_s) * np.arange(int(n))
    b = a + float(step_s)
    covered = np.interp(b, xp, cover_p) - np.interp(a, xp, cover_p)
    total = np.interp(b, xp, integral_p) - np.interp(a, xp, integral_p)
    full = covered >= float(step_s) * (1 - 1e-9)
    out[full] = total[full] / covered[full]
    return out


def leading_finite_steps(values: Sequence[float]) -> int:
    """How many steps from the start have a value: the horizon a series can support."""
    arr = np.asarray(values, dtype=float).reshape(-1)
    bad = np.flatnonzero(~np.isfinite(arr))
    return int(bad[0]) if len(bad) else len(arr)


def plan_inputs_from_config(cfg: EmsConfig, *, start_ts: float, step_s: int,
                            consumer_price_eur_per_kwh: Sequence[float],
                            market_price_eur_per_kwh: Sequence[float], load_kw: Sequence[float],
                            pv_kw: Sequence[float], soc0_pct: float,
                            export_price_eur_per_kwh: Optional[Sequence[float]] = None,
                            terminal_soc_value_eur_per_kwh: Optional[float] = None,
                            terminal_soc_min_pct: Optional[float] = None,
                            peak_so_far_kw: float = 0.0,
                            no_export_at_negative_prices: bool = False) -> PlanInputs:
    """PlanInputs for a site as configured.

    `consumer_price_eur_per_kwh` is what the price forecast calls the consumer price (market price
    with supplier surcharges, flat grid fee and VAT); the time-variable grid fee of `grid_tariffs`
    (windows in the site's local time, `site.timezone`) is added on top, with VAT. Export earns the
    market price unless `export_price_eur_per_kwh` says otherwise. Feed-in limit and demand charge
    come from the config.
    """
    zone = site_zone(cfg.site.timezone)
    n = len(load_kw)
    starts = tariffs.step_starts_s(start_ts, step_s, n)
    consumer = np.asarray(consumer_price_eur_per_kwh, dtype=float)
    if consumer.shape != (n,):
        raise PlanInputError("consumer_price_eur_per_kwh", f"has {consumer.size} values, expected {n}")
    fee = grid_fee_with_vat(cfg, starts, zone)
    export_price = market_price_eur_per_kwh if export_price_eur_per_kwh is None else export_price_eur_per_kwh
    feedin = tariffs.feedin_limit_kw(cfg.feedin_limitation, cfg.forecast.pv_peak_kwp, starts, pv_kw, zone=zone)
    return PlanInputs(
        start_ts=start_ts, step_s=step_s,
        import_price_eur_per_kwh=consumer + fee, export_price_eur_per_kwh=export_price,
        load_kw=load_kw, pv_kw=pv_kw, soc0_pct=soc0_pct,
        bess=cfg.bess, grid=cfg.grid_connection, feedin_limit_kw=feedin,
        terminal_soc_value_eur_per_kwh=terminal_soc_value_eur_per_kwh,
        terminal_soc_min_pct=terminal_soc_min_pct,
        demand_charge_eur_per_kw=tariffs.demand_charge_eur_per_kw(cfg.grid_tariffs),
        peak_so_far_kw=peak_so_far_kw,
        no_export_at_negative_prices=no_export_at_negative_prices,
        zone=zone,
    )


def grid_fee_with_vat(cfg: EmsConfig, starts: tariffs.Instants, zone: Any) -> np.ndarray:
    """The time-variable grid fee of `grid_tariffs` per instant, with VAT: added to the consumer price."""
    return tariffs.grid_fee_eur_per_kwh(cfg.grid_tariffs, starts, zone=zone) * (1.0 + cfg.forecast.vat_pct / 100.0)


def prices_in_force(cfg: EmsConfig, consumer: Any, market: Any, ts: float) -> tuple[float | None, float | None]:
    """(import, export) €/kWh at instant `ts`, as the planner prices a step starting then.

    `consumer` and `market` are the forecast's price Series (or None). Import is the consumer price
    plus the grid fee with VAT; export earns the market price. None where the series has no value.
    """
    def at(series: Any) -> float | None:
        k = None if series is None else series.index_of(ts)
        value = None if k is None else float(series.values[k])
        return value if value is not None and value == value else None

    consumer_price, market_price = at(consumer), at(market)
    if consumer_price is not None:
        consumer_price += float(grid_fee_with_vat(cfg, [ts], site_zone(cfg.site.timezone))[0])
    return consumer_price, market_price

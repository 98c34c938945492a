"""What a backtest replays: the site (battery, grid connection, tariff), how the EMS plans (`RecedingHorizon`),
the forecaster hook, and the prices and plan inputs they give on the data. Shared by every controller."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Optional, Protocol

import numpy as np

from ..config.schema import BessConfig, GridConnectionConfig
from ..config.validate import constrained, field_problems
from ..optimizer import PlanInputs
from ..optimizer.strategies import STRATEGY_NAMES
from .data import BacktestData

Progress = Callable[[str, float], None]
"""progress(controller name, fraction done 0..1): lets a CLI show where a long replay is."""


# -- the site and its tariff --------------------------------------------------------------------

@dataclass(frozen=True)
class Tariff:
    """What a kWh costs to import and earns to export, from the market price (€/kWh)."""

    surcharge_eur_per_kwh: float = constrained(0.015, min=-1, max=10)
    surcharge_pct: float = constrained(0.0, min=0, max=100)
    grid_fee_eur_per_kwh: float = constrained(0.0, min=0, max=10)
    vat_pct: float = constrained(20.0, min=0, max=100)
    feed_in_tariff_eur_per_kwh: Optional[float] = constrained(None, min=-10, max=10)
    """Fixed feed-in price; None: export earns the market price (spot feed-in contract)."""

    def check(self) -> list[tuple[str, str]]:
        """[(field, problem)]: the fields against their types and constraints (`ems.config.validate`)."""
        return field_problems(self)

    def import_price_eur_per_kwh(self, market_eur_per_kwh: np.ndarray) -> np.ndarray:
        m = np.asarray(market_eur_per_kwh, dtype=float)
        net = m + np.abs(m) * self.surcharge_pct / 100.0 + self.surcharge_eur_per_kwh + self.grid_fee_eur_per_kwh
        return net * (1.0 + self.vat_pct / 100.0)

    def export_price_eur_per_kwh(self, market_eur_per_kwh: np.ndarray) -> np.ndarray:
        m = np.asarray(market_eur_per_kwh, dtype=float)
        return m.copy() if self.feed_in_tariff_eur_per_kwh is None else np.full(len(m), self.feed_in_tariff_eur_per_kwh)


@dataclass(frozen=True)
class Site:
    """The battery, grid connection and tariff being backtested.

    `soc0_pct`: SoC at the start (None: the battery's min SoC, i.e. empty). Energy left at the end
    is credited at `final_energy_value_eur_per_kwh` against the energy at the start.
    """

    bess: BessConfig = field(default_factory=lambda: BessConfig(capacity_kwh=10.0, max_charge_power_kw=5.0,
                                                                max_discharge_power_kw=5.0))
    grid: GridConnectionConfig = field(default_factory=GridConnectionConfig)
    tariff: Tariff = field(default_factory=Tariff)
    soc0_pct: Optional[float] = constrained(None, min=0, max=100)
    final_energy_value_eur_per_kwh: float = 0.0

    def check(self) -> list[tuple[str, str]]:
        """[(key path, problem)]: every field, and the battery, grid and tariff with their own rules."""
        return field_problems(self)

    @property
    def start_soc_pct(self) -> float:
        return float(self.bess.min_soc_pct if self.soc0_pct is None else self.soc0_pct)

    @property
    def start_energy_kwh(self) -> float:
        return self.bess.capacity_kwh * self.start_soc_pct / 100.0


# -- how the EMS plans ----------------------------------------------------------------------------

@dataclass(frozen=True)
class RecedingHorizon:
    """The EMS's planning cadence, as the runtime would run it.

    `horizon="known_prices"`: day-ahead prices for tomorrow are known from `publication_hhmm` (local)
    on; each plan reaches to the end of the known prices (35 h at 13:00, 11 h at 13:00 − 2 h …).
    A plan is made when new prices arrive, every `replan_every_h` hours in between (None: only on
    new prices), when a plan runs out, and (with forecasts) when the SoC strays from the plan by
    more than `soc_deviation_pct`. `horizon="calendar_day"`: a plan at each local midnight for that
    day only — the naive reference. `max_horizon_h` caps the horizon. `strategy`: a strategy name or
    "auto" (`ems.optimizer.choose_strategy` per run). `terminal_value_eur_per_kwh`: what the plan
    values a kWh left stored at the horizon's end (None: the optimizer's default, see
    `PlanInputs.terminal_value_eur_per_kwh`).
    """

    strategy: str = constrained("arbitrage", choices=("auto", *STRATEGY_NAMES))
    horizon: Literal["known_prices", "calendar_day"] = "known_prices"
    publication_hhmm: str = constrained("13:00", pattern=r"([01]?\d|2[0-3]):[0-5]\d", doc="HH:MM, 00:00..23:59")
    replan_every_h: Optional[float] = constrained(4.0, min=0, exclusive_min=True, max=24 * 31)
    max_horizon_h: Optional[float] = constrained(None, min=0, exclusive_min=True, max=24 * 31)
    terminal_value_eur_per_kwh: Optional[float] = None
    soc_deviation_pct: float = 5.0
    time_limit_s: float = 10.0

    def check(self) -> list[tuple[str, str]]:
        """[(field, problem)]: the fields against their types and constraints (`ems.config.validate`)."""
        return field_problems(self)


# -- the forecaster hook --------------------------------------------------------------------------

@dataclass(frozen=True)
class Forecast:
    """What a forecaster expects for the `n` steps of one planning horizon (kW, €/kWh market price)."""

    load_kw: np.ndarray
    pv_kw: np.ndarray
    market_price_eur_per_kwh: np.ndarray


class Forecaster(Protocol):
    """Supplies the forecasts the EMS plans on in a backtest (`forecasters.OwnForecaster`: the runtime's
    `ems.forecast` code; `forecasters.NaiveForecaster`: seasonal naive).

    Called at every planning run. `history` holds the data *before* `issue_ts` only (so a forecaster
    cannot peek); `known_market_price_eur_per_kwh` are the day-ahead prices published for the
    horizon (real values — they are known at planning time; a price forecaster may return them
    unchanged). The replay plans on the returned values and lives with the real ones: the battery
    follows the plan through the real-time layer, the grid takes the difference.
    """

    def forecast(self, history: BacktestData, issue_ts: float, start_ts: float, step_s: int, n: int,
                 known_market_price_eur_per_kwh: np.ndarray) -> Forecast: ...


# -- the site on the data -------------------------------------------------------------------------

def site_prices(data: BacktestData, site: Site) -> tuple[np.ndarray, np.ndarray]:
    """Per step what a kWh costs to import and earns to export at this site."""
    market = data.market_price_eur_per_kwh
    return site.tariff.import_price_eur_per_kwh(market), site.tariff.export_price_eur_per_kwh(market)


def chunk_inputs(data: BacktestData, site: Site, first: int, stop: int, soc0_pct: float,
                 import_price: np.ndarray, export_price: np.ndarray) -> PlanInputs:
    """PlanInputs for steps `first`..`stop` (exclusive) of the real data."""
    return PlanInputs(start_ts=data.start_ts + first * data.step_s, step_s=data.step_s,
                      import_price_eur_per_kwh=import_price[first:stop],
                      export_price_eur_per_kwh=export_price[first:stop],
                      load_kw=data.load_kw[first:stop], pv_kw=data.pv_kw[first:stop],
                      soc0_pct=min(100.0, max(0.0, soc0_pct)), bess=site.bess, grid=site.grid,
                      terminal_soc_value_eur_per_kwh=site.final_energy_value_eur_per_kwh)


def site_export_cap_kw(site: Site) -> float:
    """What the grid connection lets the site export (kW)."""
    return float(site.grid.max_power_kw if site.grid.max_feedin_kw is None else site.grid.max_feedin_kw)

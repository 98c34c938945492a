"""Grid fees and feed-in limits per plan step, from the `grid_tariffs` and `feedin_limitation` config.

Pure: step start times (epoch seconds) are passed in; every time rule is read in the site's local time
(the `zone` argument: `site.timezone`, see `ems.localtime`; the default zone, Europe/Vienna, where none is
given), because DSOs publish windows as wall-clock times ("17:00–19:00 in winter") and a window must
stay at 17:00 across a DST change. A step belongs to the window that contains its start.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Optional, Sequence, Union
from zoneinfo import ZoneInfo

import numpy as np

from ..config.schema import FeedinLimitationConfig, FeedinRule, GridTariffsConfig, HighLoadWindow
from ..localtime import in_daily_window, site_zone

log = logging.getLogger(__name__)

Instants = Union[Sequence[float], np.ndarray]
"""Step start times, epoch s (`step_starts_s` gives an array)."""


# Network levels whose power price is billed on the highest quarter-hour of the month (E-Control
# SNE-VO). On NE7 (households) the power price is a flat charge the battery cannot lower.
PEAK_BILLED_LEVELS = frozenset({"NE3", "NE4", "NE5", "NE6"})


def step_starts_s(start_ts: float, step_s: float, n: int) -> np.ndarray:
    """Start instants (epoch s) of `n` plan steps."""
    return float(start_ts) + float(step_s) * np.arange(int(n), dtype=float)


def _local_month_and_minute(starts_s: Instants, zone: Optional[ZoneInfo]) -> tuple[np.ndarray, np.ndarray]:
    zone = zone or site_zone()
    months = np.empty(len(starts_s), dtype=np.int64)
    minutes = np.empty(len(starts_s), dtype=np.int64)
    for k, ts in enumerate(starts_s):
        local = datetime.fromtimestamp(float(ts), zone)
        months[k] = local.month
        minutes[k] = local.hour * 60 + local.minute
    return months, minutes


def _window_applies(window: HighLoadWindow, month: int, minute: int) -> bool:
    if window.months and month not in window.months:
        return False
    return in_daily_window(minute, window.start, window.end)


def grid_fee_eur_per_kwh(cfg: GridTariffsConfig, starts_s: Instants, *,
                         zone: Optional[ZoneInfo] = None) -> np.ndarray:
    """Grid energy fee per step: base tariff × the multiplier of the high-load window in force (in `zone`).

    Disabled tariffs cost 0 (the energy price then carries everything the user configured). Where
    windows overlap, the highest multiplier applies: a DSO that lists two windows bills the dearer.
    """
    n = len(starts_s)
    if not cfg.enabled:
        return np.zeros(n)
    fee = np.full(n, float(cfg.base_tariff_eur_per_kwh))
    if not cfg.high_load_windows:
        return fee
    months, minutes = _local_month_and_minute(starts_s, zone)
    for k in range(n):
        multipliers = [w.multiplier for w in cfg.high_load_windows
                       if _window_applies(w, int(months[k]), int(minutes[k]))]
        if multipliers:
            fee[k] *= max(multipliers)
    return fee


def demand_charge_eur_per_kw(cfg: GridTariffsConfig) -> float:
    """Price of one kW of the month's highest import, where the network level bills it (NE3–NE6)."""
    if not cfg.enabled or cfg.network_level not in PEAK_BILLED_LEVELS:
        return 0.0
    return float(cfg.power_price_eur_per_kw_month)


def _rule_pct(rules: Sequence[FeedinRule], minute: int, default_pct: float) -> float:
    """The most restrictive rule in force at this minute; `default_pct` where no rule covers it."""
    matching = [r.limit_pct for r in rules if in_daily_window(minute, r.start, r.end)]
    return min(matching) if matching else default_pct


def feedin_reference_kw(pv_peak_kwp: float, pv_forecast_kw: Optional[Sequence[float]] = None) -> float:
    """What 100 % feed-in means: the installed PV peak; if unknown, the forecast's peak; else 0 kW.

    0 kW (no feed-in allowed) is the safe reading when nothing says how large the plant is.
    """
    if pv_peak_kwp > 0:
        return float(pv_peak_kwp)
    if pv_forecast_kw is not None and len(pv_forecast_kw):
        peak = float(np.max(np.asarray(pv_forecast_kw, dtype=float)))
        if peak > 0:
            log.info("feed-in limit relative to the PV forecast peak %.2f kW (pv_peak_kwp is not set)", peak)
            return peak
    log.warning("feed-in limitation is on but neither pv_peak_kwp nor a PV forecast is known: no feed-in")
    return 0.0


def feedin_limit_kw(cfg: FeedinLimitationConfig, pv_peak_kwp: float, starts_s: Instants,
                    pv_forecast_kw: Optional[Sequence[float]] = None, *,
                    zone: Optional[ZoneInfo] = None) -> Optional[np.ndarray]:
    """Maximum export per step in kW, or None when feed-in limitation is off.

    `fixed`: fixed_limit_pct of the PV peak at all times. `dynamic`: the time rules (local time in `zone`);
    outside every rule fixed_limit_pct applies, so a gap in the rules never means "unlimited".
    """
    if not cfg.enabled or cfg.mode == "off":
        return None
    reference_kw = feedin_reference_kw(pv_peak_kwp, pv_forecast_kw)
    n = len(starts_s)
    if cfg.mode == "fixed" or not cfg.dynamic_rules:
        return np.full(n, reference_kw * cfg.fixed_limit_pct / 100.0)
    _, minutes = _local_month_and_minute(starts_s, zone)
    pct = np.array([_rule_pct(cfg.dynamic_rules, int(m), cfg.fixed_limit_pct) for m in minutes])
    return reference_kw * pct / 100.0

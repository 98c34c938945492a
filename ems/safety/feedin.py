"""Feed-in limitation: how much the site may export at the grid point right now.

Pure: the local minute of the day is passed in (the caller converts with the site's time zone, see
`ems.localtime`, whose HH:MM helpers these are, because DSOs publish windows as wall-clock times).
Modes: `off` (or `enabled: false`) → no limitation; `fixed` → `fixed_limit_pct` at all times;
`dynamic` → the time rules. Where rules overlap the most restrictive one applies, and outside every
rule `fixed_limit_pct` applies: a gap in the rules never means
"unlimited" (the optimizer's `feedin_limit_kw` reads the rules the same way, so plan and clamp agree).
A percentage refers to the PV peak power with `pv_integration_enabled`, otherwise to the grid
connection's feed-in rating.
"""
from __future__ import annotations

import math
from datetime import time
from typing import Sequence

from ..config.schema import FeedinLimitationConfig, FeedinRule
from ..localtime import MINUTES_PER_DAY, in_daily_window, to_minutes_of_day


def _pct(value: float) -> float:
    """A percentage clamped to 0-100; a non-finite one (never from validated config) reads as 0 %."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0.0
    return min(100.0, max(0.0, float(value)))


def _rule_applies(rule: FeedinRule, minute: float) -> bool:
    """A rule whose times cannot be read is taken as always in force: the restrictive reading."""
    try:
        return in_daily_window(minute, rule.start, rule.end)
    except ValueError:
        return True


def _dynamic_pct(rules: Sequence[FeedinRule], minute: float, default_pct: float) -> float:
    if not math.isfinite(minute):
        # Time unknown: the most restrictive percentage any rule could impose.
        return min([_pct(r.limit_pct) for r in rules] + [default_pct])
    minute %= MINUTES_PER_DAY
    matching = [_pct(r.limit_pct) for r in rules if _rule_applies(r, minute)]
    return min(matching) if matching else default_pct


def feedin_limit_pct(cfg: FeedinLimitationConfig, minutes_of_day: float | time) -> float | None:
    """The feed-in limit in % in force at this local minute of the day, or None when there is none."""
    if not cfg.enabled or cfg.mode == "off":
        return None
    fixed_pct = _pct(cfg.fixed_limit_pct)
    if cfg.mode == "fixed":
        return fixed_pct
    return _dynamic_pct(tuple(cfg.dynamic_rules), to_minutes_of_day(minutes_of_day), fixed_pct)


def export_limit_w(cfg: FeedinLimitationConfig, minutes_of_day: float | time, pv_peak_kw: float,
                   grid_feedin_rating_kw: float) -> float | None:
    """The export limit at the grid point in W from feed-in limitation, or None when there is none.

    An unknown (non-finite or negative) reference power reads as 0 kW, i.e. no export allowed.
    """
    pct = feedin_limit_pct(cfg, minutes_of_day)
    if pct is None:
        return None
    reference_kw = pv_peak_kw if cfg.pv_integration_enabled else grid_feedin_rating_kw
    if isinstance(reference_kw, bool) or not isinstance(reference_kw, (int, float)) or not math.isfinite(reference_kw):
        reference_kw = 0.0
    return max(0.0, float(reference_kw)) * 1000.0 * pct / 100.0

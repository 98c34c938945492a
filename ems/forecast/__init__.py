"""Forecasts and market data: day-ahead prices, load and PV, all with offline fallbacks.

The long-running process imports only the light parts (stdlib); model fits that need statsmodels or
pvlib run in `ems.forecast.worker`'s child process. `ForecastService` is the runtime's entry point.
"""
from __future__ import annotations

from .series import Series

__all__ = ["Series"]

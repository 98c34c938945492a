"""The backtest: replay a real year of prices, load and PV with different battery controllers.

`ems backtest` (see `cli.py`) reads the CSVs (`data.py`), replays no battery, a stock inverter's
greedy self-consumption, the EMS planning as the runtime does, and the perfect-foresight optimum
(`replay.py`), and reports per month and in total on stdout and as a self-contained HTML page
(`report.py`). Installers use it to size a battery; the bench uses it to measure the planner.
Offline and numpy + highspy only; it never runs inside the appliance's process.

The names below are imported on first use, so that registering the CLI command (`ems.backtest.cli`)
does not load numpy and HiGHS into every `ems` invocation.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "BacktestData": "data", "BacktestDataError": "data", "load_backtest_data": "data",
    "CONTROLLER_TITLES": "replay", "BacktestResult": "replay", "ControllerRun": "replay", "Forecast": "replay",
    "Forecaster": "replay", "PeriodFigures": "replay", "RecedingHorizon": "replay", "Site": "replay",
    "Tariff": "replay", "run_backtest": "replay", "run_greedy": "replay", "run_no_battery": "replay",
    "run_perfect_foresight": "replay", "run_receding_horizon": "replay",
    "ForecastSite": "forecasters", "NaiveForecaster": "forecasters", "OwnForecaster": "forecasters",
    "format_table": "report", "render_html": "report", "write_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

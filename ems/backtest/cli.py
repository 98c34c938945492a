"""`ems backtest`: replay a year of real prices, load and PV with and without the EMS, and report.

With no arguments it runs the bundled Austrian data: 2024 day-ahead prices, a 4,000 kWh household
(BDEW H25), 8 kWp of PV, a 10 kWh / 5 kW battery, and the EMS planning on perfect, its own and seasonal-naive
forecasts (`--forecasts`). `add_parser` registers the command on the `ems`
CLI; `main` runs it on its own (`python -m ems.backtest.cli --help`).
Exit codes: 0 done, 2 bad input (a file, line and column, or the option, is named on stderr).
Options that set a field of the battery, grid, tariff or planning policy are checked against that
field's constraints (`ems.config.validate`, the same rules `check()` applies): one rule, one place.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import Any, Callable, Optional, TextIO

from ..resources import data_file

# numpy, highspy and the optimizer are imported by `cmd_backtest` only: registering the command
# must not slow down `ems run`, `ems --version` or `ems check-config` on a gateway.

log = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2
DEFAULT_PRICES = "AT_dayahead_2023_2024.csv"
DEFAULT_LOAD = "household_H25_2024_4000kWh_15min.csv"
DEFAULT_PV = "pv_per_kwp_2023_2024_hourly.csv"
DEFAULT_PV_KWP = 8.0


_CLASSES = {"bess": ("ems.config.schema", "BessConfig"), "grid": ("ems.config.schema", "GridConnectionConfig"),
            "tariff": ("ems.backtest.replay", "Tariff"), "site": ("ems.backtest.replay", "Site"),
            "policy": ("ems.backtest.replay", "RecedingHorizon")}
_OPTION_OF: dict[str, str] = {}
"""Key path of a problem `Site.check()` or `RecedingHorizon.check()` reports -> the option that sets it."""


def _problem_key(where: str) -> str:
    owner, name = where.split(".")
    return name if owner in ("site", "policy") else where


def _checked(where: str, parse: Callable[[str], Any] = float,
             convert: Optional[Callable[[Any], Any]] = None) -> Callable[[str], Any]:
    """argparse type of an option setting field `where` (`bess.capacity_kwh`, `policy.strategy`): the
    value (after `convert`) is checked against that field's constraints. The dataclass is imported when
    an option is parsed, not when the command is registered."""
    owner, name = where.split(".")

    def check(text: str) -> Any:
        from ..config.validate import field_problem

        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if convert is not None:
            value = convert(value)
        module, cls = _CLASSES[owner]
        problem = field_problem(getattr(importlib.import_module(module), cls), name, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value
    return check


def _field_option(group: Any, option: str, where: str, *, also: tuple[str, ...] = (),
                  parse: Callable[[str], Any] = float, convert: Optional[Callable[[Any], Any]] = None,
                  **kwargs: Any) -> None:
    """An option setting field `where` (and the fields `also`), checked by `_checked`."""
    for w in (where, *also):
        _OPTION_OF[_problem_key(w)] = option
    group.add_argument(option, type=_checked(where, parse, convert), **kwargs)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date (YYYY-MM-DD)") from None


def _fraction_or_pct(value: float) -> float:
    """0.95 or 95 (%) → 0.95."""
    return value / 100.0 if value > 1.0 else value


FORECAST_CHOICES = ("perfect", "own", "naive")
FORECAST_RUNS = {"perfect": "ems", "own": "ems_forecast", "naive": "ems_naive"}


def _forecasts(text: str) -> tuple[str, ...]:
    """'own', 'own,naive' or 'all' → the forecast kinds, in report order."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if parts == ["all"]:
        return FORECAST_CHOICES
    bad = [p for p in parts if p not in FORECAST_CHOICES]
    if bad or not parts:
        raise argparse.ArgumentTypeError(f"'{text}' is not allowed (allowed: {', '.join(FORECAST_CHOICES)}, "
                                         "comma-separated, or all)")
    return tuple(k for k in FORECAST_CHOICES if k in parts)


def add_arguments(p: argparse.ArgumentParser) -> None:
    data = p.add_argument_group("data (CSV: header 'timestamp,<quantity>_<unit>', ISO-8601 times with UTC offset)")
    data.add_argument("--prices", help=f"day-ahead prices: price_eur_per_mwh | price_eur_per_kwh (default: bundled "
                                       f"{DEFAULT_PRICES})")
    data.add_argument("--load", help=f"site load: load_kw | load_w (default: bundled {DEFAULT_LOAD})")
    data.add_argument("--pv", help=f"PV: pv_kw | pv_w | pv_kw_per_kwp with --pv-kwp (default: bundled {DEFAULT_PV} "
                                   f"× {DEFAULT_PV_KWP:g} kWp)")
    data.add_argument("--pv-kwp", type=float, help="PV plant size for a pv_kw_per_kwp file")
    data.add_argument("--from", dest="from_day", type=_day, help="first day (local date, YYYY-MM-DD)")
    data.add_argument("--to", dest="to_day", type=_day, help="last day, included (local date, YYYY-MM-DD)")
    data.add_argument("--step-min", type=int, choices=(15, 60), default=15, help="plan step in minutes (default 15)")
    bat = p.add_argument_group("battery")
    _field_option(bat, "--capacity-kwh", "bess.capacity_kwh", default=10.0, help="default 10")
    _field_option(bat, "--power-kw", "bess.max_charge_power_kw", also=("bess.max_discharge_power_kw",), default=5.0,
                  help="charge and discharge power limit (default 5)")
    _field_option(bat, "--efficiency", "bess.charge_efficiency", also=("bess.discharge_efficiency",),
                  convert=_fraction_or_pct, default=0.95,
                  help="one-way efficiency, applied on charge and on discharge: 0.5..1 or 50..100 (%%) "
                       "(default 0.95 = 90.25 %% round trip)")
    _field_option(bat, "--min-soc", "bess.min_soc_pct", default=10.0, help="%% (default 10)")
    _field_option(bat, "--max-soc", "bess.max_soc_pct", default=95.0, help="%% (default 95)")
    _field_option(bat, "--soc0", "site.soc0_pct", help="SoC at the start in %% (default: --min-soc)")
    _field_option(bat, "--degradation-eur-per-kwh", "bess.degradation_cost_eur_per_kwh", default=0.02,
                  help="battery wear per kWh discharged (default 0.02)")
    site = p.add_argument_group("tariff and grid")
    _field_option(site, "--surcharge-eur-per-kwh", "tariff.surcharge_eur_per_kwh", default=0.015,
                  help="supplier surcharge on the market price (default 0.015)")
    _field_option(site, "--surcharge-pct", "tariff.surcharge_pct", default=0.0,
                  help="supplier margin in %% of |market price| (default 0)")
    _field_option(site, "--grid-fee-eur-per-kwh", "tariff.grid_fee_eur_per_kwh", default=0.0,
                  help="grid energy fee per kWh imported (default 0; Austrian households pay about 0.11)")
    _field_option(site, "--vat-pct", "tariff.vat_pct", default=20.0, help="VAT on the import price (default 20)")
    _field_option(site, "--feed-in-eur-per-kwh", "tariff.feed_in_tariff_eur_per_kwh",
                  help="fixed feed-in tariff (default: export earns the market price)")
    _field_option(site, "--grid-limit-kw", "grid.max_power_kw", default=30.0,
                  help="grid connection import limit (default 30)")
    _field_option(site, "--feedin-limit-kw", "grid.max_feedin_kw", help="export limit (default: the grid limit)")
    ems = p.add_argument_group("EMS")
    _field_option(ems, "--strategy", "policy.strategy", parse=str, default="arbitrage",
                  help="auto | arbitrage | peak_shaving | self_consumption | load_balancing: the strategy of "
                       "every plan (default arbitrage, the cost-minimising one; auto = as the runtime's auto "
                       "mode chooses per plan)")
    _field_option(ems, "--replan-every-h", "policy.replan_every_h", convert=lambda h: h or None, default=4.0,
                  help="intraday replans between price publications, in hours (0 = only on new prices; default 4)")
    _field_option(ems, "--publication-time", "policy.publication_hhmm", parse=str, default="13:00",
                  help="local time next-day prices appear (default 13:00)")
    ems.add_argument("--forecasts", type=_forecasts, default=FORECAST_CHOICES, metavar="perfect,own,naive",
                     help="what the EMS plans on, one row each (default: all three): perfect = the real load and PV; "
                          "own = the runtime's own forecasters, fitted at every plan on the data before it only "
                          "(a new site: standard profile and climatology first); naive = load as the same time last "
                          "week, PV as yesterday")
    ems.add_argument("--load-profile", choices=("household", "commercial"), default="household",
                     help="standard profile the own load forecast starts from (forecast.load_profile; default household)")
    ems.add_argument("--annual-load-kwh", type=float, default=4000.0,
                     help="annual energy that profile is scaled to (forecast.annual_load_kwh; default 4000)")
    ems.add_argument("--latitude", type=float, default=51.0, help="PV site for the own PV forecast (default 51.0: the "
                                                                  "bundled German PV shape)")
    ems.add_argument("--longitude", type=float, default=10.4, help="default 10.4")
    ems.add_argument("--pv-tilt", type=float, default=30.0, help="default 30°")
    ems.add_argument("--pv-azimuth", type=float, default=180.0, help="default 180° (south)")
    ems.add_argument("--day-at-a-time", action="store_true",
                     help="also run a planner that plans each calendar day on its own (the naive reference)")
    ems.add_argument("--no-optimum", action="store_true", help="skip the perfect-foresight optimum")
    ems.add_argument("--exact-optimum", action="store_true",
                     help="solve the optimum as one LP over the whole period (exact, but a 15-min year needs "
                          "~230–570 MB: not on a gateway running the EMS; default: week windows with 3 days "
                          "lookahead, within cents)")
    out = p.add_argument_group("output")
    out.add_argument("--out", help="directory for report.html (created if needed)")
    out.add_argument("--week", type=_day, help="first day of the sample week in the report (default: the week the "
                                               "EMS saved most)")


def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register `backtest` on the `ems` command's subparsers."""
    p = subparsers.add_parser("backtest", help="replay a year of prices, load and PV: savings with and without the EMS",
                              description=__doc__.split("\n")[0])
    add_arguments(p)
    p.set_defaults(func=cmd_backtest)
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ems backtest", description=__doc__.split("\n")[0])
    add_arguments(p)
    return p


def _progress_printer(stream: TextIO) -> Callable[[str, float], None]:
    """Percentages on one line on a terminal; one line per finished controller elsewhere (logs)."""
    tty = hasattr(stream, "isatty") and stream.isatty()
    last: dict[str, int] = {}

    def show(name: str, fraction: float) -> None:
        tenth = int(fraction * 10)
        if last.get(name) == tenth:
            return
        last[name] = tenth
        if tty:
            print(f"\r  {name}: {100 * fraction:3.0f} %", end="\n" if fraction >= 1.0 else "", file=stream, flush=True)
        elif fraction >= 1.0:
            print(f"  {name}: done", file=stream, flush=True)
    return show


def cmd_backtest(args: argparse.Namespace) -> int:
    """Run the backtest the arguments describe; print the table; write the report if --out is given."""
    from ..config.schema import BessConfig, GridConnectionConfig
    from ..optimizer.inputs import PlanInputError
    from .data import BacktestDataError, load_backtest_data, local_midnight_ts
    from .forecasters import ForecastSite, NaiveForecaster, OwnForecaster
    from .replay import RecedingHorizon, Site, Tariff, run_backtest
    from .report import format_table, write_report

    err = sys.stderr
    prices = args.prices or str(data_file(DEFAULT_PRICES))
    load = args.load or str(data_file(DEFAULT_LOAD))
    pv = args.pv or str(data_file(DEFAULT_PV))
    pv_kwp = args.pv_kwp if args.pv_kwp is not None or args.pv else DEFAULT_PV_KWP
    if args.from_day and args.to_day and args.to_day < args.from_day:
        print(f"error: --to {args.to_day} is before --from {args.from_day}", file=err)
        return EXIT_BAD_INPUT
    bess = BessConfig(capacity_kwh=args.capacity_kwh, max_charge_power_kw=args.power_kw,
                      max_discharge_power_kw=args.power_kw, charge_efficiency=args.efficiency,
                      discharge_efficiency=args.efficiency, min_soc_pct=args.min_soc, max_soc_pct=args.max_soc,
                      degradation_cost_eur_per_kwh=args.degradation_eur_per_kwh)
    site = Site(bess=bess, grid=GridConnectionConfig(max_power_kw=args.grid_limit_kw, max_feedin_kw=args.feedin_limit_kw),
                tariff=Tariff(surcharge_eur_per_kwh=args.surcharge_eur_per_kwh, surcharge_pct=args.surcharge_pct,
                              grid_fee_eur_per_kwh=args.grid_fee_eur_per_kwh, vat_pct=args.vat_pct,
                              feed_in_tariff_eur_per_kwh=args.feed_in_eur_per_kwh),
                soc0_pct=args.soc0)
    policy = RecedingHorizon(strategy=args.strategy, publication_hhmm=args.publication_time,
                             replan_every_h=args.replan_every_h or None)
    problems = site.check() + policy.check()
    if problems:
        for key, message in problems:
            option = _OPTION_OF.get(key)
            print(f"error: {option} ({key}): {message}" if option else f"error: {key}: {message}", file=err)
        return EXIT_BAD_INPUT
    t0 = time.perf_counter()
    try:
        data = load_backtest_data(prices, load, pv, step_s=60 * args.step_min, pv_kwp=pv_kwp,
                                  from_day=args.from_day, to_day=args.to_day)
    except BacktestDataError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_BAD_INPUT
    print(f"read {data.n} steps in {time.perf_counter() - t0:.1f} s; replaying …", file=err, flush=True)
    extra = {"day_at_a_time": RecedingHorizon(strategy=args.strategy, horizon="calendar_day", replan_every_h=None)} \
        if args.day_at_a_time else None
    kwp = pv_kwp if pv_kwp is not None else round(float(max(data.pv_kw, default=0.0)) / 0.8, 1)
    fsite = ForecastSite(load_profile=args.load_profile, annual_load_kwh=args.annual_load_kwh,
                         latitude_deg=args.latitude, longitude_deg=args.longitude, tilt_deg=args.pv_tilt,
                         azimuth_deg=args.pv_azimuth, pv_kwp=kwp)
    with ExitStack() as stack:
        forecasters: dict[str, Any] = {}
        own: Optional[OwnForecaster] = None
        if "own" in args.forecasts:
            own = stack.enter_context(OwnForecaster(fsite))
            forecasters["ems_forecast"] = own
        if "naive" in args.forecasts:
            forecasters["ems_naive"] = NaiveForecaster(fsite)
        try:
            result = run_backtest(data, site, policy, optimum=not args.no_optimum, exact_optimum=args.exact_optimum,
                                  extra_policies=extra, progress=_progress_printer(err),
                                  perfect="perfect" in args.forecasts, forecasters=forecasters)
        except PlanInputError as exc:
            print(f"error: {exc}", file=err)
            return EXIT_BAD_INPUT
        if own is not None:
            print(f"own forecasts: {own.fits} fits in the child process, {own.fit_s:.0f} s fitting, child peak "
                  f"{own.peak_rss_mb or 0:.0f} MB", file=err)
    print(format_table(result))
    if args.out:
        week_step: Optional[int] = None
        if args.week:
            week_step = int((local_midnight_ts(args.week) - data.start_ts) // data.step_s)
            if not 0 <= week_step < data.n:
                print(f"warning: --week {args.week} is outside the data; showing the EMS's best week", file=err)
                week_step = None
        try:
            path = write_report(result, args.out, week_step)
        except OSError as exc:
            print(f"error: cannot write the report into {args.out}: {exc}", file=err)
            return EXIT_BAD_INPUT
        print(f"\nreport: {Path(path).resolve()}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return cmd_backtest(args)


if __name__ == "__main__":
    sys.exit(main())

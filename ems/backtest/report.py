"""The backtest's results for people: a plain-text table for the terminal and a self-contained HTML page.

The HTML (`report.html`) carries its figures as inline SVG drawn here — monthly savings per
controller, a sample week of power, SoC and price, the SoC histogram — with its CSS inline: no
script, no external file, so it opens from a USB stick on a customer's laptop and prints cleanly.
Pure string building from a `BacktestResult`; `write_report` is the only function that touches disk.
"""
from __future__ import annotations

import html
import logging
import math
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..atomic import write_atomic
from ..localtime import site_zone
from .data import local_midnight_ts
from .replay import CONTROLLER_TITLES, BacktestResult

log = logging.getLogger(__name__)

COLORS = {
    "no_battery": "#8a8f98", "greedy": "#e08a1e", "ems": "#2563eb", "ems_forecast": "#0d9488", "ems_naive": "#be185d",
    "day_at_a_time": "#9333ea", "optimum": "#16a34a",
    "load": "#dc2626", "pv": "#eab308", "grid": "#475569", "battery": "#2563eb", "price": "#7c3aed",
}
SHORT_TITLES = {"no_battery": "No battery", "greedy": "Stock inverter", "ems": "EMS (perfect)",
                "ems_forecast": "EMS (own fc.)", "ems_naive": "EMS (naive fc.)",
                "day_at_a_time": "Day at a time", "optimum": "Optimum"}
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _local_day(ts: float) -> date:
    return datetime.fromtimestamp(ts, site_zone()).date()


def _period_text(result: BacktestResult) -> str:
    data = result.data
    first, last = _local_day(data.start_ts), _local_day(data.end_ts - 1)
    days = (last - first).days + 1
    return f"{first.isoformat()} to {last.isoformat()} ({days} days, {data.step_s // 60}-min steps)"


def _setup_lines(result: BacktestResult) -> list[str]:
    site, b, t = result.site, result.site.bess, result.site.tariff
    p = result.policy
    surcharge = (f"{100 * t.surcharge_eur_per_kwh:g} ct"
                 + (f" + {t.surcharge_pct:g} % of |market|" if t.surcharge_pct else ""))
    export = ("market price" if t.feed_in_tariff_eur_per_kwh is None
              else f"{100 * t.feed_in_tariff_eur_per_kwh:g} ct/kWh fixed")
    feedin = "" if site.grid.max_feedin_kw is None else f", feed-in ≤ {site.grid.max_feedin_kw:g} kW"
    cadence = "only when prices are published" if p.replan_every_h is None else f"every {p.replan_every_h:g} h"
    horizon = ("to the end of the known prices (next-day prices from " + p.publication_hhmm + ")"
               if p.horizon == "known_prices" else "one calendar day at a time")
    return [
        f"Battery: {b.capacity_kwh:g} kWh, {b.max_charge_power_kw:g} kW charge / {b.max_discharge_power_kw:g} kW "
        f"discharge, {100 * b.charge_efficiency:g} % / {100 * b.discharge_efficiency:g} % one way "
        f"({100 * b.charge_efficiency * b.discharge_efficiency:.1f} % round trip), SoC {b.min_soc_pct:g}–"
        f"{b.max_soc_pct:g} %, wear {100 * b.degradation_cost_eur_per_kwh:g} ct per kWh discharged, "
        f"starts at {site.start_soc_pct:g} %",
        f"Tariff: import = (market + {surcharge} + {100 * t.grid_fee_eur_per_kwh:g} ct grid fee) × "
        f"{1 + t.vat_pct / 100:g} (VAT); export earns the {export}; grid ≤ {site.grid.max_power_kw:g} kW{feedin}",
        f"EMS: strategy {p.strategy}, plans reach {horizon}, replans {cadence}",
        "Data: " + "; ".join(f"{k} {v}" for k, v in result.data.sources.items()),
    ]


def _fmt_pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.1f}"


# -- the terminal table ---------------------------------------------------------------------------

def format_table(result: BacktestResult) -> str:
    """Totals per controller, then savings per month: what `ems backtest` prints."""
    lines = [f"Backtest {_period_text(result)}"] + [f"  {line}" for line in _setup_lines(result)] + [""]
    names = list(result.runs)
    width = max(len(CONTROLLER_TITLES.get(n, n)) for n in names) + 2
    head = (f"{'':<{width}}{'cost €':>10}{'savings €':>11}{'% of opt.':>10}{'cycles':>8}"
            f"{'self-cons. %':>13}{'import kWh':>12}{'export kWh':>12}")
    lines += [head, "-" * len(head)]
    for name in names:
        f = result.total(name)
        lines.append(f"{CONTROLLER_TITLES.get(name, name):<{width}}{f.cost_eur:>10.2f}{f.savings_eur:>11.2f}"
                     f"{_fmt_pct(f.pct_of_optimum):>10}{f.cycles:>8.1f}{f.self_consumption_pct:>13.1f}"
                     f"{f.import_kwh:>12.0f}{f.export_kwh:>12.0f}")
    savers = [n for n in names if n != "no_battery"]
    ems_runs = result.ems_runs
    lead = result.headline
    lines += ["", "Savings per month (€, against no battery)" + ("; % of the optimum per EMS run" if "optimum" in names
                                                                    else "")]
    pct_heads = [f"% {SHORT_TITLES.get(n, n).removeprefix('EMS ')}" for n in ems_runs] if "optimum" in names else []
    head = f"{'month':<9}{'no-battery cost €':>18}" + "".join(f"{SHORT_TITLES.get(n, n):>17}" for n in savers) + \
        "".join(f"{h:>14}" for h in pct_heads) + f"{'cycles':>8}"
    lines += [head, "-" * len(head)]
    for i, label in enumerate(result.labels + ("total",)):
        row = f"{label:<9}{result.figures['no_battery'][i].cost_eur:>18.2f}" + \
            "".join(f"{result.figures[n][i].savings_eur:>17.2f}" for n in savers)
        if pct_heads:
            row += "".join(f"{_fmt_pct(result.figures[n][i].pct_of_optimum):>14}" for n in ems_runs)
        row += f"{result.figures[lead][i].cycles:>8.1f}"
        lines.append(row)
    lines += _forecast_lines(result)
    notes = [f"{CONTROLLER_TITLES.get(n, n)}: {r.note}" for n, r in result.runs.items() if r.note]
    if "optimum" not in names:
        notes.append("Perfect-foresight optimum: not available (not requested or not solved in time)")
    lines += [""] + notes + [f"Runtime {result.runtime_s:.1f} s"]
    return "\n".join(lines)


def _kw(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.3f}"


def _forecast_lines(result: BacktestResult) -> list[str]:
    """Forecast error per month of each run that planned on forecasts: what the savings gap comes from."""
    lines: list[str] = []
    for n, rows in result.forecasts.items():
        lines += ["", f"Forecast error per month, {CONTROLLER_TITLES.get(n, n)} (kW over every plan's horizon; "
                      "bias = forecast − actual)"]
        head = f"{'month':<9}{'load MAE':>10}{'load bias':>11}{'PV MAE':>10}{'PV bias':>10}" + \
            (f"{'% of opt.':>11}" if "optimum" in result.runs else "")
        lines += [head, "-" * len(head)]
        for i, label in enumerate(result.labels + ("total",)):
            f = rows[i]
            row = f"{label:<9}{_kw(f.load_mae_kw):>10}{_kw(f.load_bias_kw):>11}{_kw(f.pv_mae_kw):>10}" \
                  f"{_kw(f.pv_bias_kw):>10}"
            if "optimum" in result.runs:
                row += f"{_fmt_pct(result.figures[n][i].pct_of_optimum):>11}"
            lines.append(row)
        errors = result.runs[n].forecast_errors
        if errors is not None and errors.models:
            used = ", ".join(f"{k} {v}" for k, v in sorted(errors.models.items(), key=lambda kv: -kv[1]))
            lines.append(f"plans per forecast model: {used}")
    return lines


# -- SVG helpers ----------------------------------------------------------------------------------

def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5 or 5 × 10^k apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    value = first
    while value < hi + step * 0.999:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _tick_text(value: float) -> str:
    return f"{value:g}" if abs(value) >= 0.01 or value == 0 else f"{value:.3f}"


class _Frame:
    """A plot area inside an SVG: maps data to pixels, draws axes and grid lines."""

    def __init__(self, x0: float, y0: float, w: float, h: float, xlim: tuple[float, float], ylim: tuple[float, float]):
        self.x0, self.y0, self.w, self.h = x0, y0, w, h
        self.xlim, self.ylim = xlim, ylim

    def x(self, value: float) -> float:
        lo, hi = self.xlim
        return self.x0 + (value - lo) / (hi - lo) * self.w if hi > lo else self.x0

    def y(self, value: float) -> float:
        lo, hi = self.ylim
        return self.y0 + self.h - (value - lo) / (hi - lo) * self.h if hi > lo else self.y0 + self.h

    def y_axis(self, ticks: Sequence[float], label: str) -> list[str]:
        out = []
        for t in ticks:
            yy = self.y(t)
            out.append(f'<line x1="{self.x0:.1f}" y1="{yy:.1f}" x2="{self.x0 + self.w:.1f}" y2="{yy:.1f}" '
                       f'class="{"zero" if t == 0 else "grid"}"/>')
            out.append(f'<text x="{self.x0 - 6:.1f}" y="{yy + 4:.1f}" class="tick" text-anchor="end">{_tick_text(t)}</text>')
        cy = self.y0 + self.h / 2
        out.append(f'<text x="{self.x0 - 44:.1f}" y="{cy:.1f}" class="axis" text-anchor="middle" '
                   f'transform="rotate(-90 {self.x0 - 44:.1f} {cy:.1f})">{_esc(label)}</text>')
        return out


def _legend(items: Sequence[tuple[str, str]], x: float, y: float) -> list[str]:
    out = []
    for title, color in items:
        out.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="12" height="12" rx="2" fill="{color}"/>')
        out.append(f'<text x="{x + 17:.1f}" y="{y + 1:.1f}" class="legend">{_esc(title)}</text>')
        x += 17 + 7.2 * len(title) + 18
    return out


def _svg(width: int, height: int, title: str, body: list[str], fig_id: str) -> str:
    return (f'<svg id="{fig_id}" class="figure" viewBox="0 0 {width} {height}" role="img" '
            f'xmlns="http://www.w3.org/2000/svg" aria-labelledby="{fig_id}-title">'
            f'<title id="{fig_id}-title">{_esc(title)}</title>' + "".join(body) + "</svg>")


# -- the three figures ----------------------------------------------------------------------------

def monthly_savings_svg(result: BacktestResult) -> str:
    """Grouped bars: savings against no battery per month, one bar per controller."""
    names = [n for n in result.runs if n != "no_battery"]
    labels = result.labels
    values = np.array([[result.figures[n][i].savings_eur for n in names] for i in range(len(labels))])
    width, height = 900, 340
    ticks = nice_ticks(min(0.0, float(values.min(initial=0.0))), max(1e-9, float(values.max(initial=0.0))))
    frame = _Frame(70, 40, width - 90, height - 100, (0, len(labels)), (ticks[0], ticks[-1]))
    body = frame.y_axis(ticks, "savings €")
    group_w = frame.w / max(1, len(labels))
    bar_w = group_w * 0.8 / max(1, len(names))
    for i, label in enumerate(labels):
        gx = frame.x0 + i * group_w + group_w * 0.1
        for j, name in enumerate(names):
            v = float(values[i, j])
            top, bottom = frame.y(max(v, 0.0)), frame.y(min(v, 0.0))
            body.append(f'<rect x="{gx + j * bar_w:.1f}" y="{top:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                        f'height="{max(bottom - top, 0.5):.1f}" fill="{COLORS.get(name, "#64748b")}">'
                        f'<title>{_esc(label)} · {_esc(CONTROLLER_TITLES.get(name, name))}: {v:.2f} €</title></rect>')
        month = label[5:] if len(labels) <= 14 else label[2:]
        body.append(f'<text x="{gx + group_w * 0.4:.1f}" y="{frame.y0 + frame.h + 18:.1f}" class="tick" '
                    f'text-anchor="middle">{_esc(_month_name(label) if len(labels) <= 14 else month)}</text>')
    body += _legend([(SHORT_TITLES.get(n, n), COLORS.get(n, "#64748b")) for n in names], frame.x0, height - 22)
    return _svg(width, height, "Savings per month against no battery, per controller", body, "fig-monthly-savings")


def _month_name(label: str) -> str:
    year, month = label.split("-")
    return datetime(int(year), int(month), 1).strftime("%b")


def best_week_start(result: BacktestResult, name: str = "ems") -> int:
    """First step of the local-midnight-aligned week in which `name` saved most against no battery."""
    data = result.data
    pi = result.site.tariff.import_price_eur_per_kwh(data.market_price_eur_per_kwh)
    pe = result.site.tariff.export_price_eur_per_kwh(data.market_price_eur_per_kwh)
    dt = data.step_s / 3600.0

    def step_cost(run_name: str) -> np.ndarray:
        f = result.runs[run_name].flows
        return dt * (pi * f.import_kw - pe * f.export_kw + result.site.bess.degradation_cost_eur_per_kwh * f.discharge_kw)

    saving = step_cost("no_battery") - step_cost(name if name in result.runs else "greedy")
    week = int(round(7 * 86400 / data.step_s))
    if data.n <= week:
        return 0
    best, best_value = 0, -math.inf
    day = _local_day(data.start_ts)
    while True:
        first = int(math.ceil((local_midnight_ts(day) - data.start_ts) / data.step_s))
        if first + week > data.n:
            break
        if first >= 0:
            value = float(np.sum(saving[first:first + week]))
            if value > best_value:
                best, best_value = first, value
        day += timedelta(days=1)
    return best


def sample_week_svg(result: BacktestResult, first: int, name: str = "ems") -> str:
    """Three panels over seven days: power (load, PV, grid, battery), SoC (EMS and stock inverter), price."""
    data = result.data
    week = min(data.n - first, int(round(7 * 86400 / data.step_s)))
    sl = slice(first, first + week)
    run = result.runs.get(name) or result.runs["greedy"]
    f = run.flows
    t_h = np.arange(week + 1) * data.step_s / 3600.0
    width, panel_h, gap = 900, 170, 44
    height = 3 * panel_h + 2 * gap + 90
    body: list[str] = []
    xlim = (0.0, float(t_h[-1]))

    def steps_path(frame: _Frame, values: np.ndarray) -> str:
        pts = []
        for k, v in enumerate(values):
            yy = frame.y(float(v))
            pts.append(f"{frame.x(float(t_h[k])):.1f},{yy:.1f} {frame.x(float(t_h[k + 1])):.1f},{yy:.1f}")
        return " ".join(pts)

    # power panel
    battery_kw = f.discharge_kw[sl] - f.charge_kw[sl]
    grid_kw = f.import_kw[sl] - f.export_kw[sl]
    series = [("Load", data.load_kw[sl], COLORS["load"]), ("PV", data.pv_kw[sl] - f.curtail_kw[sl], COLORS["pv"]),
              ("Grid (+ import)", grid_kw, COLORS["grid"]), ("Battery (+ discharge)", battery_kw, COLORS["battery"])]
    lo = min(float(np.min(s[1])) for s in series)
    hi = max(float(np.max(s[1])) for s in series)
    ticks = nice_ticks(min(lo, 0.0), max(hi, 0.1), 4)
    frame = _Frame(70, 30, width - 90, panel_h, xlim, (ticks[0], ticks[-1]))
    body += frame.y_axis(ticks, "kW")
    for title, values, color in series:
        body.append(f'<polyline points="{steps_path(frame, values)}" fill="none" stroke="{color}" stroke-width="1.4">'
                    f'<title>{_esc(title)}</title></polyline>')
    body += _legend([(s[0], s[2]) for s in series], frame.x0, 18)
    frames = [frame]
    # SoC panel
    frame = _Frame(70, 30 + panel_h + gap, width - 90, panel_h, xlim, (0.0, 100.0))
    body += frame.y_axis([0, 25, 50, 75, 100], "SoC %")
    soc_series = [(SHORT_TITLES.get(run.name, run.name), run), ("Stock inverter", result.runs["greedy"])]
    for title, r in soc_series[: 1 if run.name == "greedy" else 2]:
        pct = 100.0 * r.flows.soc_kwh[sl] / result.site.bess.capacity_kwh
        body.append(f'<polyline points="{steps_path(frame, pct)}" fill="none" stroke="{COLORS.get(r.name)}" '
                    f'stroke-width="1.6"><title>{_esc(title)} SoC</title></polyline>')
    body += _legend([(t, COLORS.get(r.name, "#64748b")) for t, r in soc_series[: 1 if run.name == "greedy" else 2]],
                    frame.x0, frame.y0 - 12)
    frames.append(frame)
    # price panel
    import_ct = 100.0 * result.site.tariff.import_price_eur_per_kwh(data.market_price_eur_per_kwh[sl])
    market_ct = 100.0 * data.market_price_eur_per_kwh[sl]
    ticks = nice_ticks(min(float(np.min(market_ct)), 0.0), float(np.max(import_ct)), 4)
    frame = _Frame(70, 30 + 2 * (panel_h + gap), width - 90, panel_h, xlim, (ticks[0], ticks[-1]))
    body += frame.y_axis(ticks, "ct/kWh")
    for title, values, color in (("Import price", import_ct, COLORS["price"]), ("Market price", market_ct, COLORS["grid"])):
        body.append(f'<polyline points="{steps_path(frame, values)}" fill="none" stroke="{color}" stroke-width="1.4">'
                    f'<title>{_esc(title)}</title></polyline>')
    body += _legend([("Import price", COLORS["price"]), ("Market price", COLORS["grid"])], frame.x0, frame.y0 - 12)
    frames.append(frame)
    # day separators and labels
    start_ts = data.start_ts + first * data.step_s
    day = _local_day(start_ts)
    while True:
        h = (local_midnight_ts(day) - start_ts) / 3600.0
        if h > xlim[1] + 1e-9:
            break
        if h >= -1e-9:
            for fr in frames:
                xx = fr.x(h)
                body.append(f'<line x1="{xx:.1f}" y1="{fr.y0:.1f}" x2="{xx:.1f}" y2="{fr.y0 + fr.h:.1f}" class="day"/>')
            if h + 12 <= xlim[1]:
                body.append(f'<text x="{frames[-1].x(h + 12):.1f}" y="{frames[-1].y0 + frames[-1].h + 18:.1f}" '
                            f'class="tick" text-anchor="middle">{day.strftime("%a %d %b")}</text>')
        day += timedelta(days=1)
    title = f"A sample week from {_local_day(start_ts).isoformat()}: power, SoC and price ({run.title})"
    return _svg(width, height, title, body, "fig-sample-week")


def soc_histogram_svg(result: BacktestResult, bins: int = 10) -> str:
    """Share of the time spent in each SoC band, per battery controller."""
    names = [n for n in result.runs if n != "no_battery"]
    cap = result.site.bess.capacity_kwh
    edges = np.linspace(0.0, 100.0, bins + 1)
    shares = {}
    for n in names:
        pct = np.clip(100.0 * result.runs[n].flows.soc_kwh / cap, 0.0, 100.0)
        counts, _ = np.histogram(pct, bins=edges)
        shares[n] = 100.0 * counts / max(1, len(pct))
    width, height = 900, 320
    top = max((float(v.max()) for v in shares.values()), default=1.0)
    ticks = nice_ticks(0.0, max(top, 1.0), 4)
    frame = _Frame(70, 30, width - 90, height - 90, (0, bins), (0.0, ticks[-1]))
    body = frame.y_axis(ticks, "% of the time")
    group_w = frame.w / bins
    bar_w = group_w * 0.8 / max(1, len(names))
    for b in range(bins):
        gx = frame.x0 + b * group_w + group_w * 0.1
        for j, n in enumerate(names):
            v = float(shares[n][b])
            yy = frame.y(v)
            body.append(f'<rect x="{gx + j * bar_w:.1f}" y="{yy:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                        f'height="{max(frame.y0 + frame.h - yy, 0.0):.1f}" fill="{COLORS.get(n, "#64748b")}">'
                        f'<title>SoC {edges[b]:g}–{edges[b + 1]:g} % · {_esc(CONTROLLER_TITLES.get(n, n))}: '
                        f'{v:.1f} % of the time</title></rect>')
        body.append(f'<text x="{gx + group_w * 0.4:.1f}" y="{frame.y0 + frame.h + 18:.1f}" class="tick" '
                    f'text-anchor="middle">{edges[b]:g}–{edges[b + 1]:g}</text>')
    body.append(f'<text x="{frame.x0 + frame.w / 2:.1f}" y="{frame.y0 + frame.h + 36:.1f}" class="axis" '
                f'text-anchor="middle">SoC %</text>')
    body += _legend([(SHORT_TITLES.get(n, n), COLORS.get(n, "#64748b")) for n in names], frame.x0, height - 10)
    return _svg(width, height, "Time spent at each state of charge", body, "fig-soc-histogram")


# -- the page -------------------------------------------------------------------------------------

CSS = f"""
body {{ font-family: {FONT}; color: #1f2937; background: #f8fafc; margin: 0; }}
main {{ max-width: 980px; margin: 0 auto; padding: 24px 20px 48px; }}
h1 {{ font-size: 1.6rem; margin: 0 0 4px; }} h2 {{ font-size: 1.15rem; margin: 32px 0 8px; }}
.sub {{ color: #64748b; margin: 0 0 16px; }}
.cards {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; margin: 16px 0; }}
.card {{ background: #fff; border: 1px solid #e2e8f0; border-radius: 10px; padding: 12px 14px; }}
.card .v {{ font-size: 1.5rem; font-weight: 650; }} .card .k {{ color: #64748b; font-size: .85rem; }}
table {{ border-collapse: collapse; width: 100%; background: #fff; font-size: .85rem; }}
th, td {{ padding: 6px 7px; border-bottom: 1px solid #e2e8f0; text-align: right; white-space: nowrap; }}
th {{ white-space: normal; vertical-align: bottom; }}
th:first-child, td:first-child {{ text-align: left; }} th {{ background: #f1f5f9; font-weight: 600; }}
tr.total td {{ font-weight: 650; border-top: 2px solid #cbd5e1; }}
.swatch {{ display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }}
.figure {{ width: 100%; height: auto; background: #fff; border: 1px solid #e2e8f0; border-radius: 10px; }}
.figure text {{ font-family: {FONT}; }} .tick {{ font-size: 11px; fill: #475569; }}
.axis {{ font-size: 12px; fill: #334155; }} .legend {{ font-size: 12px; fill: #334155; }}
.grid {{ stroke: #e2e8f0; stroke-width: 1; }} .zero {{ stroke: #94a3b8; stroke-width: 1; }}
.day {{ stroke: #cbd5e1; stroke-dasharray: 3 3; }}
ul.notes {{ color: #475569; font-size: .9rem; }} .scroll {{ overflow-x: auto; }}
@media print {{ body {{ background: #fff; }} .card, .figure {{ break-inside: avoid; }} }}
"""


def which_of(name: str) -> str:
    return {"ems": "perfect forecasts", "ems_forecast": "own forecasts", "ems_naive": "naive forecasts"}.get(name, name)


def _euros(value: float) -> str:
    return f"{value:,.0f} €" if abs(value) >= 100 else f"{value:,.2f} €"


def _card(value: str, key: str) -> str:
    return f'<div class="card"><div class="v">{_esc(value)}</div><div class="k">{_esc(key)}</div></div>'


def _totals_table(result: BacktestResult) -> str:
    rows = []
    for name in result.runs:
        f = result.total(name)
        rows.append(f'<tr><td><span class="swatch" style="background:{COLORS.get(name, "#64748b")}"></span>'
                    f'{_esc(CONTROLLER_TITLES.get(name, name))}</td><td>{f.cost_eur:.2f}</td><td>{f.savings_eur:.2f}</td>'
                    f'<td>{_fmt_pct(f.pct_of_optimum)}</td><td>{f.cycles:.1f}</td><td>{f.self_consumption_pct:.1f}</td>'
                    f'<td>{f.import_kwh:,.0f}</td><td>{f.export_kwh:,.0f}</td></tr>')
    return ('<div class="scroll"><table><thead><tr><th>Controller</th><th>Cost €</th><th>Savings €</th>'
            '<th>% of optimum</th><th>Full cycles</th><th>Self-consumption %</th><th>Import kWh</th>'
            '<th>Export kWh</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table></div>")


def _monthly_table(result: BacktestResult) -> str:
    savers = [n for n in result.runs if n != "no_battery"]
    ems_runs = result.ems_runs if "optimum" in result.runs else []
    lead = result.headline
    head = "<th>Month</th><th>No-battery cost €</th>" + "".join(
        f"<th>{_esc(SHORT_TITLES.get(n, n))} savings €</th>" for n in savers)
    head += "".join(f"<th>{_esc(SHORT_TITLES.get(n, n))} % of optimum</th>" for n in ems_runs)
    head += f"<th>{_esc(SHORT_TITLES.get(lead, lead))} cycles</th>"
    rows = []
    for i, label in enumerate(result.labels + ("total",)):
        cls = ' class="total"' if label == "total" else ""
        cells = f"<td>{_esc(label)}</td><td>{result.figures['no_battery'][i].cost_eur:.2f}</td>" + "".join(
            f"<td>{result.figures[n][i].savings_eur:.2f}</td>" for n in savers)
        cells += "".join(f"<td>{_fmt_pct(result.figures[n][i].pct_of_optimum)}</td>" for n in ems_runs)
        cells += f"<td>{result.figures[lead][i].cycles:.1f}</td>"
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>' + "".join(rows) + "</tbody></table></div>"


def _forecast_table(result: BacktestResult) -> str:
    """Load and PV forecast error per month of every run that planned on forecasts."""
    names = list(result.forecasts)
    head = "<th>Month</th>" + "".join(f"<th>{_esc(SHORT_TITLES.get(n, n))} {q}</th>" for n in names
                                      for q in ("load MAE kW", "load bias kW", "PV MAE kW", "PV bias kW"))
    rows = []
    for i, label in enumerate(result.labels + ("total",)):
        cls = ' class="total"' if label == "total" else ""
        cells = f"<td>{_esc(label)}</td>"
        for n in names:
            f = result.forecasts[n][i]
            cells += "".join(f"<td>{_kw(v)}</td>" for v in (f.load_mae_kw, f.load_bias_kw, f.pv_mae_kw, f.pv_bias_kw))
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>' + "".join(rows) + "</tbody></table></div>"


def render_html(result: BacktestResult, week_start_step: Optional[int] = None) -> str:
    """The whole report as one HTML document (inline CSS and SVG, no script)."""
    lead = result.headline
    ems = result.total(lead)
    greedy = result.total("greedy")
    days = max(1e-9, result.data.n * result.data.step_s / 86400.0)
    which = which_of(lead)
    cards = [_card(_euros(ems.savings_eur), f"EMS savings, {which} ({days:.0f} days)")]
    if ems.pct_of_optimum is not None:
        cards.append(_card(f"{ems.pct_of_optimum:.1f} %", "of the perfect-foresight optimum"))
    for other in result.ems_runs[1:]:
        pct = result.total(other).pct_of_optimum
        if pct is not None:
            cards.append(_card(f"{pct:.1f} %", f"with {which_of(other)}"))
    cards.append(_card(_euros(greedy.savings_eur), "stock inverter savings"))
    if abs(greedy.savings_eur) > 1e-6:
        cards.append(_card(f"× {ems.savings_eur / greedy.savings_eur:.2f}", "EMS savings vs stock inverter"))
    if days >= 300:
        cards.append(_card(f"{ems.cycles * 365.0 / days:.0f}", "EMS full cycles per year"))
    else:
        cards.append(_card(f"{ems.cycles:.1f}", f"EMS full cycles ({days:.0f} days)"))
    cards.append(_card(f"{ems.self_consumption_pct:.0f} %", "PV self-consumption with the EMS"))
    first = best_week_start(result, lead) if week_start_step is None else \
        max(0, min(week_start_step, result.data.n - 1))
    notes = [f"{_esc(CONTROLLER_TITLES.get(n, n))}: {_esc(r.note)}" for n, r in result.runs.items() if r.note]
    if "optimum" not in result.runs:
        notes.append("Perfect-foresight optimum: not available (not requested or not solved in time).")
    if "ems_forecast" not in result.runs:
        notes.append("EMS with its own forecasts: not part of this run (ems backtest --forecasts own).")
    if result.forecasts:
        notes.append("Own forecasts start from nothing, as at a newly installed site: the standard load profile and "
                     "PV climatology first, then models chosen by their error on the history accumulated so far "
                     "(only data before each planning run). Naive: load as the same time last week, PV as yesterday.")
    notes += [
        "Savings are against the same site without a battery. Cost = energy bought − energy sold + battery wear "
        "(degradation per kWh discharged) − the value of energy left in the battery at the end.",
        "PV that could only be exported at a negative price is curtailed by every controller, with or without "
        "a battery, so the savings measure the battery and its control alone.",
        "The EMS with perfect forecasts sees the real load and PV when it plans: an upper bound of what "
        "forecasts allow. Prices are known only as far as they are published.",
        "Per month the EMS can reach more than 100 % of the optimum: the optimum minimises the cost of the "
        "whole period and may give up a little in one month for more in the next.",
        f"Computed in {result.runtime_s:.1f} s.",
    ]
    setup = "".join(f"<li>{_esc(line)}</li>" for line in _setup_lines(result))
    forecast_section = ("<h2>Forecast error per month</h2><p class=\"sub\">Mean absolute error and bias (forecast − "
                        "actual) of the load and PV forecasts the plans were made on, over every plan's horizon. "
                        "Savings grow as the site's history grows.</p>" + _forecast_table(result)) \
        if result.forecasts else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Battery backtest {_esc(_period_text(result))}</title><style>{CSS}</style></head>
<body><main>
<h1>Battery backtest</h1>
<p class="sub">{_esc(_period_text(result))}</p>
<div class="cards">{''.join(cards)}</div>
<ul class="notes">{setup}</ul>
<h2>Totals</h2>
{_totals_table(result)}
<h2>Savings per month</h2>
{monthly_savings_svg(result)}
<h2>A sample week</h2>
<p class="sub">The week in which the EMS saved most. Power as averages per step; the battery is positive when it
discharges, the grid when the site imports.</p>
{sample_week_svg(result, first, lead)}
<h2>State of charge</h2>
<p class="sub">How much of the time the battery spends at each state of charge: a battery that sits full or
empty most of the time is larger than this site needs.</p>
{soc_histogram_svg(result)}
<h2>Per month</h2>
{_monthly_table(result)}
{forecast_section}
<h2>Notes</h2>
<ul class="notes">{''.join(f'<li>{n}</li>' for n in notes)}</ul>
</main></body></html>
"""


def write_report(result: BacktestResult, out_dir: str | Path, week_start_step: Optional[int] = None) -> Path:
    """Write `report.html` into `out_dir` (created if needed), atomically; returns its path."""
    path = Path(out_dir) / "report.html"
    write_atomic(path, render_html(result, week_start_step).encode("utf-8"))
    path.chmod(0o644)  # a report to hand on, not a secret (the atomic write creates it 0600)
    log.info("backtest report written to %s", path)
    return path

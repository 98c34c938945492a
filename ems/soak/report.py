"""The soak's report: one JSON line for machines and a self-contained HTML page for people.

The summary (`summarize`) merges the segments: violations by check, reaction times p50/p99/max per fault
kind (and per device for device faults) beside what is allowed, faults injected, history rows lost
across kills, the money (with the battery against without one), the findings that are no violation,
and how fast it ran. The HTML page adds the fault log and, for every violation and the slowest
reactions of each kind, the plant's timeline around the event (inline SVG: no scripts, no network).
"""
from __future__ import annotations

import html
import json
import math
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from .faults import KINDS
from .timeline import DSO_TRIP_CODE

DEVICE_KINDS = ("device_silent", "device_exception", "device_garbage", "reconnect_storm")


def percentile(data: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile (p in 0..1) of `data`; None when empty."""
    values = sorted(data)
    if not values:
        return None
    rank = max(1, math.ceil(p * len(values)))
    return values[min(len(values), rank) - 1]


def _kind_key(reaction: dict[str, Any], faults: dict[int, dict[str, Any]]) -> str:
    fault = faults.get(reaction["fault"], {})
    device = (fault.get("params") or {}).get("device")
    return f"{reaction['kind']}[{device}]" if reaction["kind"] in DEVICE_KINDS and device else reaction["kind"]


def summarize(segments: list[dict[str, Any]], *, days: float, seed: int, wall_s: float, workers: int,
              timing: dict[str, Any] | None = None) -> dict[str, Any]:
    """The soak's figures from its segments (plain data, the JSON line)."""
    faults = {f["id"]: f for seg in segments for f in seg["faults"]}
    violations = [v for seg in segments for v in seg["violations"]]
    reactions = [r for seg in segments for r in seg["reactions"]]
    by_kind: dict[str, list[float]] = defaultdict(list)
    allowed: dict[str, float] = {}
    already: Counter[str] = Counter()
    never: Counter[str] = Counter()
    for r in reactions:
        key = _kind_key(r, faults)
        allowed[key] = max(allowed.get(key, 0.0), r["allowed_s"])
        if r["reaction_s"] is None:
            never[key] += 1
        elif r["already"]:
            already[key] += 1
        else:
            by_kind[key].append(r["reaction_s"])
    reaction_s = {}
    for key in sorted(set(allowed)):
        data = by_kind.get(key, [])
        reaction_s[key] = {"n": len(data), "already_compliant": already[key], "never_reached": never[key],
                           "p50": _r(percentile(data, 0.5)), "p99": _r(percentile(data, 0.99)),
                           "max": _r(max(data) if data else None), "allowed_s": round(allowed[key], 3)}
    kills = [k for seg in segments for k in seg["kills"]]
    money_keys = [k for k, v in segments[0]["money"].items() if isinstance(v, (int, float))] if segments else []
    money = {k: round(sum(seg["money"][k] for seg in segments), 2) for k in money_keys}
    if "full_cycles" in money and segments:
        money["full_cycles"] = round(sum(seg["money"]["full_cycles"] for seg in segments), 2)
    findings: dict[str, float] = defaultdict(float)
    for seg in segments:
        for k, v in seg["findings"].items():
            findings[k] = max(findings[k], v) if k.endswith("_peak_w") else findings[k] + v
    excursions = {c: {"count": sum(seg["excursions"][c]["count"] for seg in segments),
                      "max_s": max(seg["excursions"][c]["max_s"] for seg in segments)}
                  for c in (segments[0]["excursions"] if segments else {})}
    plant_days = sum(seg["days"] for seg in segments)
    return {
        "name": "soak", "days": days, "seed": seed, "workers": workers, "segments": len(segments),
        "transport": segments[0]["transport"] if segments else None,
        "wall_s": round(wall_s, 1), "plant_days_per_wall_minute": round(plant_days / (wall_s / 60.0), 3) if wall_s else None,
        "cpu_s": round(sum(seg.get("cpu_s", 0.0) for seg in segments), 1),
        "violations": len(violations), "violations_by_check": dict(Counter(v["check"] for v in violations)),
        "faults_injected": len(faults), "faults_by_kind": dict(Counter(f["kind"] for f in faults.values())),
        "reaction_s": reaction_s,
        "ems_kills": len(kills), "history_rows_lost": sum(k.get("rows_lost") or 0 for k in kills),
        "history_rows_unwritten_at_kill_max": max((k["unwritten_rows"] for k in kills), default=0),
        "money": money, "findings": {k: round(v, 3) for k, v in findings.items()}, "excursions": excursions,
        "allowed_s": segments[0]["allowed_s"] if segments else {}, "timing": timing or {},
        "optimization_runs_by_status": _summed(seg["ems"].get("optimization_runs_by_status", {}) for seg in segments),
        "optimization_runs_by_strategy": _summed(seg["ems"].get("optimization_runs_by_strategy", {})
                                                 for seg in segments),
        "observations": sum(seg["observations"] for seg in segments),
        "plant_steps": sum(seg["plant_steps"] for seg in segments),
    }


def _summed(parts: Any) -> dict[str, int]:
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return dict(total)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def write_outputs(out: Path, summary: dict[str, Any], segments: list[dict[str, Any]]) -> None:
    """`report.json` (the summary), `violations.json`, `faults.jsonl` (the fault log) and `report.html`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    (out / "violations.json").write_text(json.dumps([v for s in segments for v in s["violations"]], indent=1),
                                         encoding="utf-8")
    with (out / "faults.jsonl").open("w", encoding="utf-8") as fh:
        for seg in segments:
            for entry in seg["fault_log"]:
                fh.write(json.dumps({"segment": seg["segment"], **entry}) + "\n")
    (out / "report.html").write_text(render_html(summary, segments), encoding="utf-8")


# -- HTML ---------------------------------------------------------------------------------------

def _ts(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _svg(capture: dict[str, list[float]], marks: list[tuple[float, str]], width: int = 860, height: int = 220) -> str:
    """PCS power, grid power and the limits in force over the capture, as one inline SVG chart."""
    ts = capture.get("ts") or []
    if len(ts) < 2:
        return "<p>(no samples)</p>"
    t0, t1 = ts[0], ts[-1]
    series = {"PCS output (W, > 0 discharging)": ("#1f77b4", capture["pcs_w"]),
              "grid (W, > 0 import)": ("#d62728", capture["grid_w"]),
              "BMS discharge limit": ("#2ca02c", capture["bms_discharge_limit_w"]),
              "BMS charge limit (negated)": ("#98df8a", [-v for v in capture["bms_charge_limit_w"]])}
    lo = min(min(v) for _, v in series.values())
    hi = max(max(v) for _, v in series.values())
    lo, hi = min(lo, -100.0), max(hi, 100.0)
    pad = 40

    def x(t: float) -> float:
        return pad + (t - t0) / max(t1 - t0, 1e-9) * (width - 2 * pad)

    def y(v: float) -> float:
        return height - pad / 2 - (v - lo) / (hi - lo) * (height - pad)

    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff" stroke="#ccc"/>',
             f'<line x1="{pad}" x2="{width - pad}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#999" stroke-dasharray="3,3"/>']
    # DSO state as a band: trip red, limit orange.
    dso = capture.get("dso_limit_pct") or []
    for i in range(len(ts) - 1):
        if dso[i] == DSO_TRIP_CODE or dso[i] < 100:
            colour = "#fdd" if dso[i] == DSO_TRIP_CODE else "#fed8a8"
            parts.append(f'<rect x="{x(ts[i]):.1f}" y="0" width="{max(0.5, x(ts[i + 1]) - x(ts[i])):.1f}" '
                         f'height="{height}" fill="{colour}" opacity="0.6"/>')
    for t, label in marks:
        if t0 <= t <= t1:
            parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="0" y2="{height}" stroke="#000"/>'
                         f'<text x="{x(t) + 3:.1f}" y="12" font-size="11">{html.escape(label)}</text>')
    for name, (colour, values) in series.items():
        points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(ts, values))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.4" points="{points}">'
                     f'<title>{html.escape(name)}</title></polyline>')
    parts.append(f'<text x="{pad}" y="{height - 4}" font-size="11">{html.escape(_ts(t0))}  →  '
                 f'{t1 - t0:.0f} s  (y: {lo:.0f} … {hi:.0f} W)</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(summary: dict[str, Any], segments: list[dict[str, Any]]) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(k)}</td><td>{v['n']}</td><td>{v['already_compliant']}</td><td>{v['never_reached']}</td>"
        f"<td>{_fmt(v['p50'])}</td><td>{_fmt(v['p99'])}</td><td>{_fmt(v['max'])}</td><td>{v['allowed_s']:.3f}</td>"
        f"<td>{'ok' if v['max'] is None or v['max'] <= v['allowed_s'] else 'SLOW'}</td></tr>"
        for k, v in summary["reaction_s"].items())
    violations = [v for s in segments for v in s["violations"]]
    vrows = "".join(f"<tr><td>{e(v['check'])}</td><td>{e(_ts(v['since_ts']))}</td><td>{v['duration_s']:.3f}</td>"
                    f"<td>{v['allowed_s']:.3f}</td><td>{v['magnitude']:.1f}</td><td>{e(', '.join(v['faults']))}</td>"
                    f"<td>{e(v['detail'])}</td></tr>" for v in violations[:500]) or \
        '<tr><td colspan="7">none</td></tr>'
    charts = []
    for seg in segments:
        faults = {f["id"]: f for f in seg["faults"]}
        for key, capture in sorted(seg["timelines"].items(), key=lambda kv: (not kv[0].startswith("violation"), kv[0])):
            kind, _, ident = key.partition(":")
            if kind == "fault":
                f = faults.get(int(ident))
                if f is None:
                    continue
                start = seg["start_ts"] + f["start_s"]
                reaction = next((r for r in seg["reactions"] if r["fault"] == f["id"]), None)
                title = (f"Fault #{f['id']} {f['kind']} {f['params']} at {_ts(start)}, {f['duration_s']:.0f} s; "
                         f"reaction {_fmt(reaction['reaction_s']) if reaction else 'n/a'} s "
                         f"(allowed {reaction['allowed_s']:.3f} s)" if reaction else
                         f"Fault #{f['id']} {f['kind']} {f['params']} at {_ts(start)}, {f['duration_s']:.0f} s")
                marks = [(start, "fault starts"), (start + f["duration_s"], "fault ends")]
                if reaction and reaction["reaction_s"] is not None:
                    marks.append((start + reaction["reaction_s"], "compliant"))
            else:
                v = violations[int(ident) - 1] if int(ident) - 1 < len(violations) else None
                title = f"Violation {ident}: {v['check']} - {v['detail']}" if v else f"Violation {ident}"
                marks = [(v["since_ts"], "limit broken"), (v["ts"], "allowed time over")] if v else []
            charts.append(f"<h3>{e(title)}</h3>{_svg(capture, marks)}")
    log_rows = "".join(
        f"<tr><td>{seg['segment']}</td><td>{e(_ts(x['ts']))}</td><td>{x['id']}</td><td>{e(x['kind'])}</td>"
        f"<td>{e(x['event'])}</td><td>{e(str(x['what']))}</td></tr>"
        for seg in segments for x in seg["fault_log"][:4000])
    kinds = "".join(f"<li><b>{e(k.name)}</b> ({k.rate_per_day:g}/day, {k.min_s:g}-{k.max_s:g} s): {e(k.what)}</li>"
                    for k in KINDS.values())
    m, s = summary["money"], summary
    verdict = "PASS: no violation" if s["violations"] == 0 else f"FAIL: {s['violations']} violation(s)"
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Phoenyra EMS grid-safety soak</title>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:1100px}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}h1{{font-size:1.4em}}
.v{{font-size:1.2em;font-weight:bold}}</style>
</head><body><h1>Grid-safety soak: {s['days']:g} plant days, seed {s['seed']}</h1>
<p class="v">{e(verdict)}</p>
<p>{s['faults_injected']} faults injected; {s['ems_kills']} EMS kills, {s['history_rows_lost']} history rows lost.
Ran in {s['wall_s']:.0f} s wall ({s['plant_days_per_wall_minute']} plant days per wall minute, {s['workers']} worker(s),
{s['segments']} segment(s), transport {e(str(s['transport']))}). The oracle reads only the plant's own truth; allowed
times come from the config (see <code>ems/soak/oracle.py</code>).</p>
<h2>Money over the period</h2><p>With the battery {m.get('cost_with_battery_eur')} €,
without {m.get('cost_without_battery_eur')} €: saved {m.get('savings_eur')} €
({m.get('savings_after_degradation_eur')} € after degradation), {m.get('full_cycles')} full cycles.</p>
<h2>Reaction times (s of plant time)</h2><table><tr><th>fault</th><th>n</th><th>already compliant</th><th>never</th>
<th>p50</th><th>p99</th><th>max</th><th>allowed</th><th></th></tr>{rows}</table>
<h2>Violations</h2><table><tr><th>check</th><th>since</th><th>lasted s</th><th>allowed s</th><th>worst excess</th>
<th>faults in force</th><th>detail</th></tr>{vrows}</table>
<h2>Findings (no violation)</h2><pre>{e(json.dumps(s['findings'], indent=1))}</pre>
<h2>Timelines around the worst events</h2><p>Blue: PCS output; red: grid; greens: the BMS's own limits; shaded:
DSO limit (orange) or trip (red).</p>{''.join(charts) or '<p>none</p>'}
<h2>Fault kinds</h2><ul>{kinds}</ul>
<h2>Fault log</h2><table><tr><th>seg</th><th>time</th><th>#</th><th>kind</th><th>event</th><th>what</th></tr>
{log_rows}</table>
<h2>Summary JSON</h2><pre>{e(json.dumps(s, indent=1))}</pre></body></html>
"""


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"

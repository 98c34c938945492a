"""`ems soak`: a simulated stretch of faults through the real runtime, judged by the oracle.

    ems soak [--days 30] [--seed 1] [--out DIR] [--workers N] [--rates kind=n,...] [--each-kind]
             [--transport loopback|tcp] [--start ISO] [--timing key=value,...]

Prints one JSON line (the summary: violations by check, reaction times per fault kind, faults injected,
history rows lost across kills, money with and without the battery, wall time) and, with --out, writes
report.json, report.html (timelines around the worst events), violations.json and faults.jsonl there.
Exit code 0 without violations, 1 with any, 2 for arguments that cannot be used.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from .faults import parse_rates
from .timing import DEFAULT_START, TRANSPORTS, SoakTiming

log = logging.getLogger(__name__)

EXIT_VIOLATIONS = 1
EXIT_USAGE = 2


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `soak` on the `ems` command's subparsers."""
    p = subparsers.add_parser("soak", help="simulated days of faults through the real runtime, judged by an oracle",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=float, default=30.0, help="plant days to simulate (default 30)")
    p.add_argument("--seed", type=int, default=1, help="fault schedule and plant noise seed (default 1)")
    p.add_argument("--out", help="write report.json, report.html, violations.json and faults.jsonl here")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="split the days into this many consecutive segments run side by side, each an appliance "
                        "from its first start (default: 2, or 1 on a single core; 1 = one continuous run)")
    p.add_argument("--rates", default="", help="fault rates per plant day, e.g. dso_trip=4,meter_spike=0")
    p.add_argument("--each-kind", action="store_true", help="at least one fault of every kind (and device)")
    p.add_argument("--transport", choices=TRANSPORTS, default="loopback",
                   help="loopback: in-process Modbus wire (fast); tcp: pymodbus over 127.0.0.1 (slow, real frames)")
    p.add_argument("--start", default=DEFAULT_START, help=f"plant start, ISO with offset (default {DEFAULT_START})")
    p.add_argument("--timing", default="", help="soak timing overrides, e.g. dso_poll_s=0.5,safety_period_s=1 "
                                                f"(keys: {', '.join(f.name for f in dataclasses.fields(SoakTiming))})")
    p.add_argument("--pcs-comm-loss-timeout-s", type=float, default=10.0,
                   help="the simulated PCS's own comm-loss fallback (default 10 s)")
    p.set_defaults(func=cmd_soak)
    return p


def _timing(text: str) -> SoakTiming:
    names = {f.name for f in dataclasses.fields(SoakTiming)}
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in names:
            raise ValueError(f"{part!r}: expected key=seconds (keys: {', '.join(sorted(names))})")
        values[key] = float(value)
        if values[key] <= 0:
            raise ValueError(f"{part!r}: must be > 0")
    return SoakTiming(**values)


def cmd_soak(args: argparse.Namespace) -> int:
    from .report import summarize, write_outputs  # the runtime and the simulator: only when soaking
    from .runner import SoakOptions, run_soak

    try:
        options = SoakOptions(days=args.days, seed=args.seed, start=args.start, rates=parse_rates(args.rates),
                              each_kind=args.each_kind, transport=args.transport, timing=_timing(args.timing),
                              pcs_comm_loss_timeout_s=args.pcs_comm_loss_timeout_s,
                              data_dir=Path(args.out) / "data" if args.out else None)
        if not 0 < args.days <= 366 or args.workers < 1:
            raise ValueError("--days must be in (0, 366] and --workers >= 1")
    except ValueError as exc:
        print(f"ems soak: {exc}", file=sys.stderr)
        return EXIT_USAGE
    started = time.perf_counter()
    segments = run_soak(options, workers=args.workers, log_level=logging.getLevelName(logging.getLogger().level))
    summary = summarize(segments, days=args.days, seed=args.seed, wall_s=time.perf_counter() - started,
                        workers=args.workers, timing=dataclasses.asdict(options.timing))
    if args.out:
        write_outputs(Path(args.out), summary, segments)
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    return EXIT_VIOLATIONS if summary["violations"] else 0

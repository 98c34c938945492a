"""Runs a soak: the production runtime against the soak's world, in virtual time, through a fault schedule.

One soak = one `SoakWorld` (plant, devices, price market) and a sequence of EMS *incarnations*: the real
`ems.runtime.Runtime` (device pollers, bus, safety loop and its PCS writes, planner, forecasts, history;
no web server), with the simulator switched off in its config - to the EMS the plant is hardware on
Modbus. Everything runs on one virtual-time loop (`loop.SoakTimeLoop`): whenever every task waits, plant
time jumps to the next timer, so a month passes in minutes; short blocking work (LP solves, SQLite
batches) still takes its real time, forecast fits in their child process run beside plant time.

A kill (`ems_kill`) is what SIGKILL does to the process, done in-process: the EMS's Modbus links are cut
first (the kernel closes a killed process's sockets, so nothing it would still send reaches a device:
its safety loop's last-gasp 0 W write fails, as it would), the history rows it had not yet written are
dropped (they were only in its memory), then its tasks are cancelled and its files closed without the
clean-stop path. After the downtime a new Runtime starts on the same data dir and config file; the rows
lost are counted against what the restarted EMS finds in its database. `tests/test_soak.py` also does
it with a real `ems run` process and a real SIGKILL.

Deterministic for a seed: the schedule, the plant (its load noise is seeded) and the order of events on
the virtual loop are; what can vary run to run is only the real duration of blocking work, during which
plant time passes at the real rate (a few ms of plant time).
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import yaml

from ..clock import VirtualClock
from ..config import ConfigStore, parse_yaml_config
from ..config.schema import EmsConfig, ModbusDeviceConfig
from ..runtime import Listen, Runtime
from .faults import DAY_S, KINDS, Fault, schedule
from .fitter import SharedFitter
from .ledger import Ledger
from .loop import SoakClock, run_soak_loop
from .oracle import Oracle, OracleSettings, Reaction
from .timeline import RING_S, Timeline
from .timing import DEFAULT_START, SoakTiming
from .world import PlantTruth, SoakWorld

log = logging.getLogger(__name__)

GRID_FEE_EUR_PER_KWH = 0.1095
"""The soak site's grid energy fee (the schema's NE7 default), before VAT."""


@dataclass
class SoakOptions:
    days: float = 30.0
    seed: int = 1
    start: str = DEFAULT_START
    rates: Mapping[str, float] = field(default_factory=dict)
    each_kind: bool = False
    transport: str = "loopback"
    timing: SoakTiming = field(default_factory=SoakTiming)
    pcs_comm_loss_timeout_s: float = 10.0
    latency_s: float = 0.0
    grid_max_power_kw: float = 7.0
    feedin_limit_pct: float = 70.0
    data_dir: Path | None = None
    # Test hook: wraps each incarnation's safety sink (e.g. one that ignores DSO trips, to prove the
    # oracle catches a broken rule). Receives the runtime, returns nothing.
    tamper: Callable[[Runtime], None] | None = None


def free_tcp_ports(n: int) -> list[int]:
    """`n` distinct free ports on 127.0.0.1 (bound and released; good enough for one process)."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def soak_config(options: SoakOptions, ports: list[int], price_url: str) -> dict[str, Any]:
    """The soak site's `ems.yaml` (plain data): the demo household with a 7 kW grid connection and a 70 %
    feed-in limit, so that the grid limits actually bind, prices from the local market server, the
    grid fee of network level 7 on imports."""
    t = options.timing
    devices = [("bms", "bms", "hithium_ess_5016", t.bms_poll_s), ("pcs", "pcs", "wstech_pcs", t.pcs_poll_s),
               ("meter", "meter", "eastron_sdm630", t.meter_poll_s), ("dso", "dso", "generic_dso_box", t.dso_poll_s)]
    return {
        "site": {"timezone": "Europe/Vienna"},
        "bess": {"capacity_kwh": 10.0, "max_charge_power_kw": 5.0, "max_discharge_power_kw": 5.0,
                 "min_soc_pct": 10.0, "max_soc_pct": 95.0},
        "strategy": {"mode": "auto", "replan_interval_min": 15},
        "forecast": {"price_source": "awattar_at", "awattar_base_url": price_url, "http_timeout_s": 2.0,
                     "pv_peak_kwp": 8.0, "refit_interval_h": t.refit_interval_h, "fit_timeout_s": 60.0},
        "power_control": {"enabled": True, "auto_write": True, "safety_period_s": t.safety_period_s,
                          "stale_timeout_s": 10.0, "setpoint_resend_s": 5.0},
        "feedin_limitation": {"enabled": True, "mode": "fixed", "fixed_limit_pct": options.feedin_limit_pct,
                              "pv_integration_enabled": True},
        "grid_connection": {"max_power_kw": options.grid_max_power_kw, "monitoring_enabled": True},
        # A household pays the grid fee on every kWh imported, whatever the market price (AT network
        # level 7): without it a negative-price hour would pay the site 14 ct for each kWh it imports.
        "grid_tariffs": {"enabled": True, "network_level": "NE7", "base_tariff_eur_per_kwh": GRID_FEE_EUR_PER_KWH},
        "history": {"sample_interval_s": t.history_sample_s, "flush_interval_s": t.history_flush_s},
        "simulator": {"enabled": False, "step_s": t.plant_step_s, "start": options.start, "pv_peak_kwp": 8.0,
                      "initial_soc_pct": 50.0, "seed": options.seed, "load_profile": "household"},
        "modbus": [{"name": name, "role": role, "profile": profile, "host": "127.0.0.1", "port": port,
                    "unit_id": 1, "poll_interval_s": poll, "timeout_s": t.device_timeout_s}
                   for (name, role, profile, poll), port in zip(devices, ports)],
    }


class SoakRuntime(Runtime):
    """The production Runtime, with its Modbus links opened through `client_factory` (the loopback) and
    its forecast fits run by `fit` (the soak's shared, warmed-up fit child: `fitter.SharedFitter`).

    Only `_build_pollers` is extended, to hand each poller the factory, and the forecast service is
    handed the fit runner after construction: the two hooks the runtime lacks (`client_factory` and
    `fit_worker` arguments on Runtime would replace both).
    """

    def __init__(self, *args: Any, client_factory: Callable[[ModbusDeviceConfig], Any] | None = None,
                 fit: Callable[[dict[str, Any]], dict[str, Any]] | None = None, **kwargs: Any):
        self._soak_client_factory = client_factory
        super().__init__(*args, **kwargs)
        if fit is not None:
            self.forecast._worker = lambda request, _timeout_s: fit(request)  # the hook the docstring names

    def _build_pollers(self, cfg: Any) -> None:
        super()._build_pollers(cfg)
        if self._soak_client_factory is not None:
            for poller in self.pollers.values():
                poller._client_factory = self._soak_client_factory  # the hook the class docstring names


@dataclass
class Incarnation:
    """One EMS process of the soak: when it ran and how it ended."""

    started_ts: float
    runtime: Runtime
    ended_ts: float | None = None
    killed: bool = False


@dataclass(frozen=True)
class Segment:
    """A consecutive part of the soak run by one appliance from its first start (a worker's share)."""

    index: int
    offset_s: float
    days: float


def plan_segments(days: float, workers: int) -> list[Segment]:
    """Whole days split as evenly as possible over `workers` (one segment for a short soak)."""
    whole = int(days)
    n = max(1, min(workers, whole)) if whole >= 2 else 1
    if n == 1:
        return [Segment(0, 0.0, days)]
    sizes: list[float] = [float(whole // n + (1 if i < whole % n else 0)) for i in range(n)]
    sizes[-1] += days - whole
    out, offset = [], 0.0
    for i, size in enumerate(sizes):
        out.append(Segment(i, offset * DAY_S, size))
        offset += size
    return out


def faults_of(faults: list[Fault], segment: Segment, settle_s: float = 120.0) -> list[Fault]:
    """The faults starting in `segment`, in its own time (from its start), cut to end inside it."""
    end_s = segment.days * DAY_S
    out = []
    for f in faults:
        start = f.start_s - segment.offset_s
        if not 0.0 <= start < end_s:
            continue
        limit = end_s - (0.0 if f.background else settle_s)
        duration = min(f.duration_s, limit - start)
        if duration > 0:
            out.append(Fault(f.id, f.kind, start, duration, f.params))
    return out


def explicit_schedule(faults: list[Fault], days: float) -> list[Fault]:
    """A written-out schedule, checked as `faults.schedule` guarantees its own: known kinds, inside the
    soak, foreground faults not overlapping (each one's reaction is judged alone). Sorted by start."""
    end_s = days * DAY_S
    out = sorted(faults, key=lambda f: (f.start_s, f.id))
    if len({f.id for f in out}) != len(out):
        raise ValueError("fault ids must be unique")
    busy_until = 0.0
    for f in out:
        if f.kind not in KINDS:
            raise ValueError(f"fault #{f.id}: unknown kind {f.kind!r} (allowed: {', '.join(KINDS)})")
        if f.start_s < 0 or f.duration_s <= 0 or f.end_s > end_s:
            raise ValueError(f"fault {f.label}: must start at >= 0 s and end by the soak's end ({end_s:g} s)")
        if not f.background:
            if f.start_s < busy_until:
                raise ValueError(f"fault {f.label} overlaps the foreground fault before it")
            busy_until = f.end_s
    return out


class Soak:
    """One segment of a soak on a fresh VirtualTimeLoop: `run()` returns its result as plain data."""

    def __init__(self, options: SoakOptions, segment: Segment | None = None, faults: list[Fault] | None = None):
        self.options = options
        self.segment = segment or Segment(0, 0.0, options.days)
        self.faults: list[Fault] = faults if faults is not None else \
            schedule(options.days, options.seed, options.rates, each_kind=options.each_kind)
        self.fault_log: list[dict[str, Any]] = []
        self.kills: list[dict[str, Any]] = []
        self.incarnations: list[Incarnation] = []
        self.current: Runtime | None = None
        self.ems: dict[str, Any] = {}
        self.timeline = Timeline()
        self.oracle: Oracle | None = None
        self.ledger = Ledger()
        self.fitter: SharedFitter | None = None

    def run(self) -> dict[str, Any]:
        with ExitStack() as stack:
            stack.enter_context(_quiet_ems_logs())
            if self.options.data_dir is None:
                data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ems-soak-")))
            else:
                data_dir = self.options.data_dir / f"segment-{self.segment.index}"
                data_dir.mkdir(parents=True, exist_ok=True)
            started, cpu = time.perf_counter(), time.process_time()
            result: dict[str, Any] = run_soak_loop(self._main(data_dir))
            result["wall_s"] = round(time.perf_counter() - started, 3)
            result["cpu_s"] = round(time.process_time() - cpu, 3)
            return result

    # -- the run -------------------------------------------------------------------------------
    async def _main(self, data_dir: Path) -> dict[str, Any]:
        o = self.options
        start_ts = datetime.fromisoformat(o.start).timestamp() + self.segment.offset_s
        clock = SoakClock(start_ts)
        ports = free_tcp_ports(4) if o.transport == "tcp" else [15021, 15022, 15023, 15024]
        # The world needs the config (plant size, devices); the price server's port is known once it listens.
        plain = soak_config(o, ports, "http://127.0.0.1:1/v1/marketdata")
        plain["simulator"]["start"] = datetime.fromtimestamp(start_ts, timezone.utc).isoformat()
        cfg = parse_yaml_config(yaml.safe_dump(plain))
        world = SoakWorld(cfg, clock, transport=o.transport, pcs_comm_loss_timeout_s=o.pcs_comm_loss_timeout_s,
                          latency_s=o.latency_s, safety_alarm_severity=cfg.power_control.safety_alarm_severity)
        await world.start()
        plain["forecast"]["awattar_base_url"] = world.prices.base_url
        path = data_dir / "ems.yaml"
        path.write_text(yaml.safe_dump(plain, sort_keys=False), encoding="utf-8")
        cfg = parse_yaml_config(path.read_text(encoding="utf-8"))
        world.mark_negative_days(self.faults, start_ts)

        oracle = self.oracle = Oracle(OracleSettings.from_config(cfg, world.profiles, o.pcs_comm_loss_timeout_s),
                                      start_ts)
        timeline, ledger = self.timeline, self.ledger
        oracle.on_violation = lambda v: timeline.capture(f"violation:{len(oracle.violations)}", RING_S, v.ts + 60.0)

        def observe(truth: PlantTruth) -> None:
            timeline.observe(truth)
            oracle.observe(truth)
            ledger.observe(truth)

        world.observer = observe
        self.fitter = SharedFitter()
        self.fitter.warm_up(cfg.forecast, start_ts)  # blocks the loop: before plant time starts
        plant_task = asyncio.create_task(world.run_plant(), name="soak_plant")
        end_ts = start_ts + self.segment.days * DAY_S
        ledger.until_ts = end_ts
        try:
            await self._boot(path, data_dir, clock, world, oracle)
            events = sorted([(f.start_s, 1, "start", f) for f in self.faults] +
                            [(f.end_s, 0, "end", f) for f in self.faults], key=lambda e: (e[0], e[1], e[3].id))
            for at_s, _order, what, fault in events:
                await clock.sleep(max(0.0, start_ts + at_s - clock.now()))
                if what == "start":
                    await self._start_fault(fault, path, data_dir, clock, world, oracle)
                else:
                    await self._end_fault(fault, path, data_dir, clock, world, oracle)
            await clock.sleep(max(0.0, end_ts - clock.now()))
            await self._collect_ems_figures(clock)
        finally:
            if self.current is not None:
                rt, self.current = self.current, None
                world.bus = None
                await rt.stop()
                oracle.ems_down(clock.now(), killed=False)
            plant_task.cancel()
            await asyncio.gather(plant_task, return_exceptions=True)
            await world.stop()
            self.fitter.close()
        oracle.finish(clock.now())
        return self._result(cfg, world, start_ts, clock.now())

    def _result(self, cfg: EmsConfig, world: SoakWorld, start_ts: float, end_ts: float) -> dict[str, Any]:
        oracle = self.oracle
        assert oracle is not None, "set in _main"
        worst = worst_events(oracle.reactions, len(oracle.violations))
        self.timeline.keep(worst)
        return {
            "segment": self.segment.index, "start_ts": start_ts, "end_ts": end_ts, "days": self.segment.days,
            "faults": [f.to_json() for f in self.faults], "fault_log": self.fault_log,
            "violations": [v.to_json() for v in oracle.violations],
            "reactions": [r.to_json() for r in oracle.reactions],
            "findings": oracle.findings.to_json(),
            "excursions": {c: {"count": len(d), "max_s": round(max(d), 3) if d else 0.0}
                           for c, d in oracle.excursions.items()},
            "allowed_s": oracle.s.allowed_s(), "observations": oracle.observations, "plant_steps": world.steps,
            "kills": self.kills, "incarnations": len(self.incarnations),
            "money": self.ledger.money(cfg, world.market.market_eur_per_mwh),
            "ems": self.ems, "transport": self.options.transport, "fits": self._fit_figures(),
            "price_requests": world.prices.requests, "loopback_connects": world.network.connects if world.network else None,
            "timelines": {k: c.to_json() for k, c in self.timeline.captures.items()},
        }

    def _fit_figures(self) -> dict[str, Any]:
        f = self.fitter
        if f is None:
            return {}
        return {"warmup_s": f.warmup_s, "count": f.fits, "fit_s": round(f.fit_s, 3)}

    async def _start_fault(self, fault: Fault, path: Path, data_dir: Path, clock: VirtualClock, world: SoakWorld,
                           oracle: Oracle) -> None:
        now = clock.now()
        if not fault.background:
            self.timeline.capture(f"fault:{fault.id}", RING_S, now + min(fault.duration_s, 3600.0) + 60.0)
        oracle.fault_started(fault, now)
        if fault.kind == "ems_kill":
            what = await self._kill(clock, world, oracle)
        elif fault.kind in ("config_bess", "config_feedin"):
            what = self._change_config(fault, path, oracle, clock, start=True)
        else:
            what = await world.inject(fault)
        self.fault_log.append({"id": fault.id, "kind": fault.kind, "event": "start", "ts": round(now, 3),
                               "what": what, "params": dict(fault.params)})

    async def _end_fault(self, fault: Fault, path: Path, data_dir: Path, clock: VirtualClock, world: SoakWorld,
                         oracle: Oracle) -> None:
        now = clock.now()
        if fault.kind == "ems_kill":
            what = await self._boot(path, data_dir, clock, world, oracle)
        elif fault.kind in ("config_bess", "config_feedin"):
            what = self._change_config(fault, path, oracle, clock, start=False)
        else:
            what = await world.recover(fault)
        oracle.fault_ended(fault, clock.now())
        self.fault_log.append({"id": fault.id, "kind": fault.kind, "event": "end", "ts": round(now, 3), "what": what})

    # -- EMS incarnations ----------------------------------------------------------------------
    async def _boot(self, path: Path, data_dir: Path, clock: VirtualClock, world: SoakWorld, oracle: Oracle) -> str:
        factory = world.network.client_factory() if world.network is not None else None
        rt = SoakRuntime(ConfigStore.open(path), data_dir, Listen("127.0.0.1", 0), clock=clock,
                         client_factory=factory, fit=self.fitter.fit if self.fitter is not None else None)
        if self.options.tamper is not None:
            self.options.tamper(rt)
        if self.kills and self.kills[-1].get("rows_lost") is None:
            self._count_rows_lost(rt, self.kills[-1])
        await rt.start()
        self.current = rt
        world.bus = rt.bus
        self.incarnations.append(Incarnation(clock.now(), rt))
        oracle.ems_up(clock.now())
        return f"EMS started (incarnation {len(self.incarnations)})"

    async def _kill(self, clock: VirtualClock, world: SoakWorld, oracle: Oracle) -> str:
        rt, self.current = self.current, None
        if rt is None:
            return "EMS already down"
        world.bus = None
        now = clock.now()
        recorder = rt.recorder
        unwritten = [float(row["ts"]) for row in recorder.pending]
        in_flight = getattr(recorder, "_in_flight", None)
        if in_flight is not None:  # a batch in the writer thread: SIGKILL stops the thread mid-transaction
            unwritten = [float(row["ts"]) for row in in_flight[0]] + unwritten
        recorder.pending.clear()  # it only lived in the killed process's memory
        for poller in rt.pollers.values():  # the kernel closes a killed process's sockets
            client = poller.client
            if client is not None:
                client.close()
        rt.stopping.set()
        tasks = [i.task for i in rt.supervisor.tasks.values() if i.task is not None and not i.task.done()]
        for task in tasks:  # the safety loop's last-gasp 0 W write fails: its link is already gone
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        rt.history.close()
        rt.security.close()
        self.incarnations[-1].ended_ts, self.incarnations[-1].killed = now, True
        oracle.ems_down(now, killed=True)
        self.kills.append({"ts": round(now, 3), "unwritten_rows": len(unwritten), "unwritten_ts": unwritten,
                           "rows_lost": None})
        return f"EMS killed (SIGKILL): {len(unwritten)} history rows not yet written"

    @staticmethod
    def _count_rows_lost(rt: Runtime, kill: dict[str, Any]) -> None:
        """What the restarted EMS finds of the rows the killed one had sampled but not written."""
        wanted = kill.pop("unwritten_ts")
        if not wanted:
            kill["rows_lost"] = 0
            return
        found = {round(float(r["ts"]), 3) for r in rt.history.telemetry_since(min(wanted) - 1e-3, 100_000)}
        kill["rows_lost"] = sum(1 for ts in wanted if round(ts, 3) not in found)

    def _change_config(self, fault: Fault, path: Path, oracle: Oracle, clock: VirtualClock, start: bool) -> str:
        """A user changing settings mid-run (through the running EMS's store, as the web UI does; while
        the EMS is down, in its file, as an installer would)."""
        store = self.current.config if self.current is not None else ConfigStore.open(path)
        section = "bess" if fault.kind == "config_bess" else "feedin_limitation"
        data = store.section_secret_plain(section)
        if start:
            oracle.remember_config(section, data)
            if section == "bess":
                data = {**data, "max_charge_power_kw": fault.params["max_charge_power_kw"],
                        "max_discharge_power_kw": fault.params["max_discharge_power_kw"]}
            else:
                data = {**data, "enabled": True, "mode": "fixed", "fixed_limit_pct": fault.params["fixed_limit_pct"]}
        else:
            data = oracle.recall_config(section, data)
        new_cfg: EmsConfig = store.update_section(section, data)
        oracle.config_changed(new_cfg, clock.now())
        return f"config {section} {'changed' if start else 'restored'}"

    async def _collect_ems_figures(self, clock: VirtualClock) -> None:
        """The EMS's own view at the end (its analytics over the period, its devices), for the report."""
        rt = self.current
        if rt is None:
            return
        loop = asyncio.get_running_loop()
        days = max(1, int(round(self.segment.days)))
        try:
            summary = await loop.run_in_executor(None, rt.analytics.summary, days)
        except Exception as exc:  # the report says so rather than failing the soak
            log.warning("the EMS's analytics summary failed: %s", exc)
            summary = {"error": str(exc)}
        try:  # every incarnation's runs: the history outlives the process
            runs = await loop.run_in_executor(None, rt.history.optimization_runs, self.incarnations[0].started_ts,
                                              1_000_000)
        except Exception as exc:
            log.warning("the EMS's optimization runs cannot be read: %s", exc)
            runs = []
        by_status: dict[str, int] = {}
        by_strategy: dict[str, int] = {}
        for run in runs:
            by_status[str(run["status"])] = by_status.get(str(run["status"]), 0) + 1
            by_strategy[str(run["strategy"])] = by_strategy.get(str(run["strategy"]), 0) + 1
        self.ems = {"analytics_summary": summary, "planner_runs_last_incarnation": rt.planner.runs,
                    "optimization_runs_by_status": by_status, "optimization_runs_by_strategy": by_strategy,
                    "safety_cycles_last_incarnation": rt.safety.cycles,
                    "safety_write_failures_last_incarnation": rt.safety.write_failures,
                    "tasks": rt.supervisor.status(),
                    "devices": {name: {k: p.status()[k] for k in ("cycles", "failed_cycles", "connects")}
                                for name, p in rt.pollers.items()},
                    "history_rows_written_last_incarnation": rt.recorder.rows_written}


QUIETED = {"ems.notifications": logging.CRITICAL, "ems.safety.loop": logging.CRITICAL,
           "ems.devices": logging.ERROR, "ems.forecast": logging.ERROR, "ems.sim": logging.WARNING}
"""What the EMS logs about the faults the soak injects on purpose (thousands of lines a month): the
oracle judges the outcome instead. With the root logger at DEBUG nothing is quieted."""


@contextlib.contextmanager
def _quiet_ems_logs() -> Iterator[None]:
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        yield
        return
    saved = {name: logging.getLogger(name).level for name in QUIETED}
    for name, level in QUIETED.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def worst_events(reactions: list[Reaction], violations: int, per_kind: int = 2) -> set[str]:
    """Timeline keys worth showing: every violation, and per fault kind the slowest reactions
    (relative to what is allowed)."""
    keys = {f"violation:{i + 1}" for i in range(min(violations, 30))}
    by_kind: dict[str, list[Reaction]] = {}
    for r in reactions:
        by_kind.setdefault(r.kind, []).append(r)
    for items in by_kind.values():
        items.sort(key=lambda r: -1.0 if r.reaction_s is None else -(r.reaction_s / max(r.allowed_s, 1e-9)))
        keys.update(f"fault:{r.fault_id}" for r in items[:per_kind])
    return keys


def run_segment(options: SoakOptions, segment: Segment, faults: list[Fault]) -> dict[str, Any]:
    """One segment in this process."""
    return Soak(options, segment, faults).run()


def options_to_json(options: SoakOptions) -> dict[str, Any]:
    if options.tamper is not None:
        raise ValueError("a tampered soak runs in one process (workers=1)")
    plain = {f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.name != "tamper"}
    plain["timing"] = dataclasses.asdict(options.timing)
    plain["rates"] = dict(options.rates)
    plain["data_dir"] = None if options.data_dir is None else str(options.data_dir)
    return plain


def options_from_json(plain: dict[str, Any]) -> SoakOptions:
    plain = dict(plain)
    plain["timing"] = SoakTiming(**plain["timing"])
    plain["data_dir"] = None if plain["data_dir"] is None else Path(plain["data_dir"])
    return SoakOptions(**plain)


def run_soak(options: SoakOptions, workers: int = 1, log_level: str = "WARNING",
             faults: list[Fault] | None = None) -> list[dict[str, Any]]:
    """The whole soak: its schedule, split into `workers` consecutive segments run side by side (each an
    appliance from its first start, in its own process), or one continuous run with workers=1.
    `faults` replaces the seeded schedule with one written out (a test that needs a given fault at a
    given time must not depend on what a seed draws; `explicit_schedule` checks it). Returns the
    segment results."""
    if faults is None:
        faults = schedule(options.days, options.seed, options.rates, each_kind=options.each_kind)
    else:
        faults = explicit_schedule(faults, options.days)
    segments = plan_segments(options.days, workers)
    if len(segments) == 1:
        return [run_segment(options, segments[0], faults_of(faults, segments[0]))]
    requests = [json.dumps({"options": options_to_json(options), "segment": dataclasses.asdict(seg),
                            "faults": [f.to_json() for f in faults_of(faults, seg)]}) for seg in segments]
    procs = [subprocess.Popen([sys.executable, "-m", "ems.soak.worker", "--log-level", log_level],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in segments]
    for proc, request in zip(procs, requests):
        assert proc.stdin is not None
        proc.stdin.write(request)
        proc.stdin.close()
    results = []
    for seg, proc in zip(segments, procs):
        assert proc.stdout is not None
        out = proc.stdout.read()
        code = proc.wait()
        lines = out.strip().splitlines()
        if code != 0 or not lines:
            raise RuntimeError(f"soak segment {seg.index} failed (exit {code}); its log is above")
        results.append(json.loads(lines[-1]))
    return results


def worker_main(argv: list[str] | None = None) -> int:
    """`python -m ems.soak.worker`: one segment, the request (JSON) on stdin, the result as the last line."""
    import argparse
    parser = argparse.ArgumentParser(prog="ems.soak.worker")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    request = json.loads(sys.stdin.read())
    segment = Segment(**request["segment"])
    faults = [Fault(f["id"], f["kind"], f["start_s"], f["duration_s"], f["params"]) for f in request["faults"]]
    result = run_segment(options_from_json(request["options"]), segment, faults)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0

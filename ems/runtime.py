"""Assembles the appliance from its configuration and runs it until SIGTERM/SIGINT.

Start-up order: config → clock → bus → history → plant (simulator) → device pollers → safety loop →
forecasts, planner, recorder → web server → READY=1. Shutdown: live-event streams end, the safety loop
stops first and leaves the plant at 0 W while the device links are still up, then every other task
(the recorder flushes), the web server stops, the history closes.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .api.app import create_app
from .api.server import WebServer
from .bus import TelemetryBus
from .clock import ScaledClock
from .config import SECTIONS, ConfigStore
from .dispatch import realtime_request
from .forecast.service import ForecastService
from .optimizer.planner import Planner
from .history import HistoryRecorder, HistoryStore
from .notifications import Notifications
from .devices.poller import DevicePoller
from .devices.profile import Profile, load_library
from .sim.modbus_devices import serve_plant, simulated_devices
from .sim.plant_link import PlantLink
from .devices.sink import ModbusSetpointSink, PcsSink
from .errors import ApiError, ConfigError, ConfigProblem
from .resources import profiles_dir
from .safety.loop import SafetyLoop
from .safety.rules import PowerControlDecision
from .safety.watchdog import HardwareWatchdog
from .systemd_notify import ServiceNotifier
from .sim.plant import PlantSimulator, resolve_start_epoch_s
from .sim.runner import SimulatedPlant
from .state import Measurement, plant_state_to_json
from .supervisor import Supervisor
from .users.auth import Security

log = logging.getLogger(__name__)


def load_profiles(cfg: Any) -> dict[str, Profile]:
    """The profile library, checked against the configured devices: an unknown or broken profile of a
    configured device is a config error naming the device's key."""
    profiles, broken = load_library(profiles_dir())
    for key, error in broken.items():
        log.error("device profile %s is broken: %s", key, error)
    problems = []
    for i, device in enumerate(cfg.modbus):
        if device.profile in broken:
            problems.append(ConfigProblem(f"modbus[{i}].profile", f"profile {device.profile!r} is broken: "
                                                                  f"{broken[device.profile]}"))
        elif device.profile in profiles and device.role == "pcs" and (
                profiles[device.profile].controls is None or
                (profiles[device.profile].controls.active_power_set_w is None and
                 profiles[device.profile].controls.grid_power_set_w is None)):
            problems.append(ConfigProblem(f"modbus[{i}].profile", f"profile {device.profile!r} has no power setpoint "
                                                                  "control: it cannot be the PCS"))
        elif device.profile not in profiles:
            problems.append(ConfigProblem(f"modbus[{i}].profile", f"{device.profile!r} is not a known profile "
                                                                  f"(allowed: {', '.join(sorted(profiles))})"))
    roles = [d.role for d in cfg.modbus if d.enabled]
    for role in ("pcs", "dso", "bms", "meter"):
        if roles.count(role) > 1:
            problems.append(ConfigProblem("modbus", f"{roles.count(role)} enabled devices with role {role} "
                                                    "(allowed: one per role)"))
    if problems:
        raise ConfigError(problems)
    return profiles

SHUTDOWN_BUDGET_S = 3.0


class NoSetpointSink:
    """Used while no PCS is configured: the safety loop's decisions are recorded, nothing is written."""

    last_w: float | None = None

    async def apply(self, decision: PowerControlDecision) -> None:
        self.last_w = decision.setpoint_w

    async def safe_state(self) -> None:
        self.last_w = 0.0


@dataclass(frozen=True)
class Listen:
    host: str
    port: int


class Runtime:
    def __init__(self, config: ConfigStore, data_dir: Path, listen: Listen):
        self.config = config
        self.data_dir = data_dir
        self.listen = listen
        cfg = config.config
        self.started_mono = time.monotonic()
        self.clock = ScaledClock(resolve_start_epoch_s(cfg.simulator, time.time()), cfg.simulator.speed) if cfg.simulator.enabled \
            else ScaledClock()
        self.stopping = threading.Event()
        self.notifications = Notifications(self.clock.now)
        self.supervisor = Supervisor(self.notifications)
        self.bus = TelemetryBus()
        self.service = ServiceNotifier()
        self.history = HistoryStore(data_dir / "history.db")
        # Real time, not plant time: a simulator running 60x must not expire logins 60x faster.
        self.security = Security.open(data_dir)
        serve_modbus = cfg.simulator.enabled and cfg.simulator.serve_modbus
        # The plant: simulated and read directly, or simulated behind real Modbus servers, or real hardware.
        self.plant = SimulatedPlant(cfg.bess, cfg.simulator, self.clock, self.bus) \
            if cfg.simulator.enabled and not serve_modbus else None
        self.plant_link = PlantLink(PlantSimulator(cfg.bess, cfg.simulator, self.clock.now())) if serve_modbus else None
        self.hardware_watchdog = HardwareWatchdog(cfg.power_control.hardware_watchdog_path) \
            if cfg.power_control.hardware_watchdog_path else None
        self.safety = SafetyLoop(self.bus, self.clock, config, self._request_w, NoSetpointSink(),
                                 self.notifications, self._pet_watchdogs, offline_devices=self._offline_devices)
        self.pollers: dict[str, DevicePoller] = {}
        self.sim_servers: dict[str, Any] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._modbus_change_lock = asyncio.Lock()
        self._build_pollers(cfg)
        config.validators.append(load_profiles)
        config.subscribe("modbus", lambda _cfg: asyncio.ensure_future(self._apply_modbus_change()))
        self.forecast = ForecastService(config, self.history, self.clock, data_dir)
        self.planner = Planner(config, self.clock, self.bus, self.forecast, self.history, self.notifications)
        self.recorder = HistoryRecorder(self.history, self.bus, self.clock, config, self._setpoint_w)
        self.web: WebServer | None = None
        self.bound: tuple[str, int] | None = None

    def _build_pollers(self, cfg: Any) -> None:
        """One poller per enabled device; the PCS's poller becomes the safety loop's sink."""
        self.profiles = load_profiles(cfg)
        self.pollers = {d.name: DevicePoller(d, self.profiles[d.profile], self.bus, self.clock,
                                             on_change=self.safety.wake if d.role == "dso" else None)
                        for d in cfg.modbus if d.enabled}
        pcs = next((p for p in self.pollers.values() if p.config.role == "pcs"), None)
        if pcs is not None:
            bms = [p for p in self.pollers.values() if p.config.role == "bms"]
            self.safety.sink = PcsSink(ModbusSetpointSink(pcs, self.bus.snapshot, self.clock.now, bms))
        else:
            self.safety.sink = self.plant or NoSetpointSink()

    async def _apply_modbus_change(self) -> None:
        """New device list: the old PCS to 0 W, stop the old pollers (and simulated devices), start the new."""
        async with self._modbus_change_lock:
            try:
                await asyncio.wait_for(self.safety.sink.safe_state(), 2.0)
            except Exception as exc:
                log.warning("old PCS not set to 0 W before the device change: %s", exc)
            names = [f"modbus_{n}" for n in self.pollers] + (["modbus_simulator"] if self.plant_link else [])
            for name in names:
                await self.supervisor.remove(name)
            self._build_pollers(self.config.config)
            self._add_device_tasks()
            self.supervisor.start()
            self.safety.wake()

    def _add_device_tasks(self) -> None:
        if self.plant_link is not None:
            self.supervisor.add("modbus_simulator", self._serve_simulated_devices)
        for name, poller in self.pollers.items():
            self.supervisor.add(f"modbus_{name}", poller.run)

    async def _serve_simulated_devices(self) -> None:
        """The demo's Modbus devices: the simulated plant behind real servers on their configured addresses."""
        assert self.plant_link is not None
        cfg = self.config.config
        async with serve_plant(self.plant_link, simulated_devices(cfg.modbus, self.profiles), self.clock) as servers:
            self.sim_servers = servers
            try:
                await self.plant_link.run(self.clock, cfg.simulator.step_s, on_step=self._publish_unmetered)
            finally:
                self.sim_servers = {}

    @property
    def simulated_plant(self) -> PlantSimulator | None:
        if self.plant is not None:
            return self.plant.simulator
        return self.plant_link.plant if self.plant_link is not None else None

    def refresh_simulation(self) -> None:
        """Step the simulated plant to now, so a scripted event shows on its devices at once (on the loop)."""
        if self.plant_link is not None:
            self.plant_link.step(self.clock.now())
        elif self.plant is not None:
            self.plant.step()

    def call_on_loop(self, fn: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        """Run `fn` on the event loop from a web thread and return its result (a coroutine is awaited)."""
        if self.loop is None:
            raise ApiError(503, "the EMS is still starting", "runtime")

        async def call() -> Any:
            result = fn()
            return await result if asyncio.iscoroutine(result) else result

        try:
            future = asyncio.run_coroutine_threadsafe(call(), self.loop)
        except RuntimeError:
            raise ApiError(503, "the EMS is stopping", "runtime") from None
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ApiError(504, f"no answer within {timeout_s:g} s", "runtime") from None

    def _offline_devices(self) -> tuple[str, ...]:
        return tuple(name for name, poller in self.pollers.items() if not poller.online)

    def _publish_unmetered(self, sample: Any) -> None:
        """PV and load behind the grid meter: no simulated device measures them, so the plant model does."""
        max_age_s = 3.0 * self.config.config.simulator.step_s * self.clock.speed
        self.bus.publish({"pv.power_w": Measurement(sample.pv_power_w, sample.ts, "sim", max_age_s),
                          "load.power_w": Measurement(sample.load_power_w, sample.ts, "sim", max_age_s)})

    def _pet_watchdogs(self) -> None:
        self.service.watchdog()
        if self.hardware_watchdog is not None:
            self.hardware_watchdog.pet()

    def _request_w(self, state: Any, now: float) -> float:
        return realtime_request(state, now, self.planner.intent()).power_w

    def _setpoint_w(self) -> float | None:
        d = self.safety.last_decision
        return None if d is None else d.setpoint_w

    def state_json(self) -> dict[str, Any]:
        """Everything `/api/state` and the live events show; safe to call from any thread."""
        now = self.clock.now()
        cfg = self.config.config
        return {
            "ts": round(now, 3),
            "plant": plant_state_to_json(self.bus.snapshot(), now),
            "power_control": {"enabled": cfg.power_control.enabled, **self.safety.to_json()},
            "grid_connection": self._grid_json(),
            "devices": {name: poller.status() for name, poller in self.pollers.items()},
            "strategy": self._strategy_json(),
            "expected_profit_24h_eur": self._expected_profit_eur(),
            "runtime": {
                "version": __version__,
                "uptime_s": round(time.monotonic() - self.started_mono, 1),
                "simulator": cfg.simulator.enabled,
                "speed": self.clock.speed,
                "loop_lag_ms": self.supervisor.lag.stats(),
                "tasks": self.supervisor.status(),
                "history_rows_written": self.recorder.rows_written,
            },
        }

    def _grid_json(self) -> dict[str, Any]:
        cfg = self.config.config.grid_connection
        grid_w = self.bus.snapshot().value("grid.power_w", self.clock.now())
        utilisation = None if grid_w is None else round(abs(grid_w) / (cfg.max_power_kw * 10.0), 1)
        return {"max_power_kw": cfg.max_power_kw, "utilisation_pct": utilisation,
                "monitoring_enabled": cfg.monitoring_enabled}

    def _strategy_json(self) -> dict[str, Any]:
        cfg = self.config.config
        plan = self.planner.plan
        if plan is None:
            return {"mode": cfg.strategy.mode, "active": "self_consumption",
                    "reason": self.planner.last_error or "no plan yet: covering the net load from the battery"}
        return {"mode": cfg.strategy.mode, "active": plan.strategy, "reason": plan.reason,
                "status": plan.status, "fallback": plan.fallback,
                "planned_at": self.planner.record.planned_at if self.planner.record else None}

    def _expected_profit_eur(self) -> float | None:
        plan = self.planner.plan
        if plan is None or plan.expected_profit_eur is None:
            return None
        return round(plan.expected_profit_eur, 2)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.config.set_dispatch(loop.call_soon_threadsafe)
        # Subsystems read the live config every cycle; subscribing here makes each change visible to users.
        for section in SECTIONS:
            self.config.subscribe(section, lambda cfg, section=section: self.notifications.add(
                "info", "config", f"settings '{section}' changed and applied"))

        if self.hardware_watchdog is not None:
            self.hardware_watchdog.open()
        self.loop = loop
        if self.plant is not None:
            self.supervisor.add("plant_simulator", self.plant.run)
        self._add_device_tasks()
        self.supervisor.add("safety", self.safety.run)
        self.supervisor.add("history", self.recorder.run)
        self.supervisor.add("forecast", self.forecast.run)
        self.supervisor.add("planner", self.planner.run)
        self.supervisor.start()

        self.web = WebServer(create_app(self), self.listen.host, self.listen.port, self.config.config.web.threads)
        try:
            self.bound = self.web.start()
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", self.listen.host, self.listen.port, exc)
            await self._shutdown()
            return 1
        self.service.ready(f"serving on http://{self.bound[0]}:{self.bound[1]}")
        self.notifications.add("info", "supervisor", f"Phoenyra EMS {__version__} started")
        status_task = asyncio.create_task(self._status_lines(stop))
        await stop.wait()
        status_task.cancel()
        log.info("stop requested")
        await self._shutdown()
        return 0

    async def _status_lines(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(30)
            d = self.safety.last_decision
            lag = self.supervisor.lag.stats()
            self.service.status(f"safety {d.mode if d else 'starting'}, setpoint "
                                f"{d.setpoint_w if d else 0:.0f} W, loop lag p99 {lag['p99']} ms")

    async def _shutdown(self) -> None:
        self.service.stopping()
        self.stopping.set()
        # The safety loop first, alone: its last 0 W must go out while the device links are still up.
        await self.supervisor.remove("safety", timeout_s=SHUTDOWN_BUDGET_S)
        await self.supervisor.stop(timeout_s=SHUTDOWN_BUDGET_S)
        if self.hardware_watchdog is not None:
            self.hardware_watchdog.close()
        if self.web is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.web.stop)
        self.history.close()
        self.security.close()
        log.info("stopped cleanly")

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
from typing import TYPE_CHECKING, Any, Callable, Hashable

from . import __version__, i18n
from .api.app import create_app
from .api.facade import EmsFacade, PlanView, RuntimeSnapshot, SimulatorControl
from .api.server import WebServer
from .bus import TelemetryBus
from .clock import Clock, ScaledClock
from .config import SECTIONS, ConfigStore
from .config.schema import EmsConfig, ModbusDeviceConfig
from .devices import diagnostics
from .devices.poller import DevicePoller
from .devices.overrides import OverrideError, with_overrides
from .devices.profile import Profile, load_library
from .devices.sink import ModbusSetpointSink, PcsSink
from .optimizer.realtime import damped, realtime_request
from .errors import ApiError, ConfigError, ConfigProblem
from .forecast.service import ForecastService
from .history import HistoryRecorder, HistoryStore
from .atomic import remove_stale_temp_files
from .audit import AUDIT_FILE, Actor, AuditLog
from .history.analytics import Analytics
from .manual import ManualRequest
from .mqtt.ports import SnapshotUplink
from .mqtt.service import MqttService
from .notifications import Notifications
from .optimizer.inputs import prices_in_force
from .optimizer.planner import Planner
from .resources import profiles_dir
from .safety.loop import SafetyLoop
from .safety.rules import PowerControlDecision
from .safety.watchdog import HardwareWatchdog
from .state import PlantState
from .supervisor import Supervisor
from .systemd_notify import ServiceNotifier
from .users.auth import Security

if TYPE_CHECKING:
    from .sim.harness import Simulation

log = logging.getLogger(__name__)


def load_profiles(cfg: EmsConfig) -> dict[str, Profile]:
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
        elif device.profile in profiles and device.role == "pcs" and not _can_set_power(profiles[device.profile]):
            problems.append(ConfigProblem(f"modbus[{i}].profile", f"profile {device.profile!r} has no power setpoint "
                                                                  "control: it cannot be the PCS"))
        elif device.profile not in profiles:
            problems.append(ConfigProblem(f"modbus[{i}].profile", f"{device.profile!r} is not a known profile "
                                                                  f"(allowed: {', '.join(sorted(profiles))})"))
        else:
            try:
                with_overrides(profiles[device.profile], device.register_overrides)
            except OverrideError as exc:
                problems.append(ConfigProblem(f"modbus[{i}].register_overrides.{exc.key}", exc.message))
    roles = [d.role for d in cfg.modbus if d.enabled]
    for role in ("pcs", "dso", "bms", "meter"):
        if roles.count(role) > 1:
            problems.append(ConfigProblem("modbus", f"{roles.count(role)} enabled devices with role {role} "
                                                    "(allowed: one per role)"))
    if problems:
        raise ConfigError(problems)
    return profiles

SHUTDOWN_BUDGET_S = 3.0


def _can_set_power(profile: Profile) -> bool:
    controls = profile.controls
    return controls is not None and (controls.active_power_set_w is not None or controls.grid_power_set_w is not None)


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


def make_clock(cfg: EmsConfig) -> Clock:
    """Production time: the wall clock, or for the simulator plant time from its start at its speed."""
    if not cfg.simulator.enabled:
        return ScaledClock()
    from .sim.plant import resolve_start_epoch_s
    return ScaledClock(resolve_start_epoch_s(cfg.simulator, time.time()), cfg.simulator.speed)


MQTT_ACTOR = Actor("mqtt", role="operator", via="mqtt")
MQTT_NOTIFICATION_READER = 0  # the cloud's place in the acknowledgements (user ids start at 1)


class MqttCommands:
    """`ems.mqtt.ports.CommandPort` on the runtime: each command is the twin of its HTTP route - a strategy change
    through the config store as an operator makes it, in the audit log as "mqtt"; a setpoint as the bounded-time
    manual request the safety loop clamps. Called from an executor thread."""

    def __init__(self, runtime: "Runtime"):
        self.rt = runtime

    def _strategy(self, changes: dict[str, Any]) -> dict[str, Any]:
        rt = self.rt

        def record(change: Any) -> None:
            rt.audit.record(MQTT_ACTOR, "config", "strategy", [(c.path, c.old, c.new) for c in change.changes])

        rt.config.apply_change("strategy", {**rt.config.section_plain("strategy"), **changes},
                               may_change_admin_only=False, role=MQTT_ACTOR.role, record=record)
        section: dict[str, Any] = rt.config.section_plain("strategy")
        return section

    def set_strategy(self, name: str) -> dict[str, Any]:
        return self._strategy({"mode": "manual", "current": name})

    def set_auto(self) -> dict[str, Any]:
        return self._strategy({"mode": "auto"})

    def request_setpoint(self, power_w: float, duration_s: float) -> dict[str, Any]:
        return self.rt.request_setpoint(power_w, duration_s, "mqtt")

    def acknowledge(self, notification_id: int) -> dict[str, Any]:
        self.rt.notifications.acknowledge(MQTT_NOTIFICATION_READER, notification_id)
        return {"acknowledged_up_to": self.rt.notifications.acknowledged(MQTT_NOTIFICATION_READER)}


class Runtime:
    """The assembled appliance. `clock` may be injected (a VirtualClock in tests runs it in virtual time)."""

    def __init__(self, config: ConfigStore, data_dir: Path, listen: Listen, clock: Clock | None = None):
        self.config = config
        self.data_dir = data_dir
        self.listen = listen
        cfg = config.config
        self.clock = clock or make_clock(cfg)
        self.started_mono = self.clock.monotonic()
        self.stopping = threading.Event()
        self.notifications = Notifications(self.clock.now)
        self.supervisor = Supervisor(self.notifications, measure_lag=getattr(self.clock, "real_time", True))
        self.bus = TelemetryBus()
        self.service = ServiceNotifier()
        self.history = HistoryStore(data_dir / "history.db", cfg.history,
                                    report=lambda level, message: self.notifications.add(
                                        level, "history", i18n.mark("a problem with the stored history"), message))
        config.subscribe("history", self._apply_history_config)
        self.analytics = Analytics(self.history, lambda: self.config.config, self.clock.now)
        # Real time, not plant time: a simulator running 60x must not expire logins 60x faster.
        self.security = Security.open(data_dir)
        self.audit = AuditLog(data_dir / AUDIT_FILE)  # who changed which setting, append-only
        remove_stale_temp_files(data_dir / "forecast")  # left by a kill during an atomic write
        self.simulation = self._make_simulation(cfg) if cfg.simulator.enabled else None
        self.hardware_watchdog = HardwareWatchdog(cfg.power_control.hardware_watchdog_path) \
            if cfg.power_control.hardware_watchdog_path else None
        self.manual = ManualRequest()
        self.safety = SafetyLoop(self.bus, self.clock, config, self._request_w, NoSetpointSink(),
                                 self.notifications, self._pet_watchdogs, offline_devices=self._offline_devices)
        self.pollers: dict[str, DevicePoller] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._modbus_change_lock = asyncio.Lock()
        self._build_pollers(cfg)
        config.add_validator(load_profiles, sections=("modbus",))  # parsing 35 profiles costs 0.5 s of CPU
        config.subscribe("modbus", lambda _cfg: asyncio.ensure_future(self._apply_modbus_change()))
        self.forecast = ForecastService(config, self.history, self.clock, data_dir)
        self.planner = Planner(config, self.clock, self.bus, self.forecast, self.history, self.notifications)
        self.recorder = HistoryRecorder(self.history, self.bus, self.clock, config, self._history_context)
        self.mqtt = MqttService(config, self.bus, self.clock, data_dir, self.notifications,
                                SnapshotUplink(self.snapshot, self.plan_view, self.notifications), MqttCommands(self))
        self.web: WebServer | None = None
        self.bound: tuple[str, int] | None = None

    def _make_simulation(self, cfg: EmsConfig) -> "Simulation":
        """The simulator package is loaded only when the simulator is on: real hardware never imports it."""
        from .sim.harness import Simulation
        return Simulation(cfg, self.clock, self.bus, lambda: self.config.config, lambda: self.profiles)

    def _build_pollers(self, cfg: Any) -> None:
        """One poller per enabled device; the PCS's poller becomes the safety loop's sink."""
        self.profiles = load_profiles(cfg)
        self.pollers = {d.name: DevicePoller(d, with_overrides(self.profiles[d.profile], d.register_overrides),
                                             self.bus, self.clock,
                                             on_change=self.safety.wake if d.role == "dso" else None,
                                             notify=self.notifications.add)
                        for d in cfg.modbus if d.enabled}
        pcs = next((p for p in self.pollers.values() if p.config.role == "pcs"), None)
        if pcs is not None:
            bms = [p for p in self.pollers.values() if p.config.role == "bms"]
            self.safety.sink = PcsSink(ModbusSetpointSink(pcs, self.bus.snapshot, self.clock.now, bms))
        else:
            sim_sink = self.simulation.sink if self.simulation is not None else None
            self.safety.sink = sim_sink or NoSetpointSink()

    async def _apply_modbus_change(self) -> None:
        """New device list: the old PCS to 0 W, stop the old pollers (and simulated devices), start the new."""
        async with self._modbus_change_lock:
            await self.safety.retire_sink("device list changed")
            names = [f"modbus_{n}" for n in self.pollers] + \
                ([self.simulation.task_name()] if self.simulation and self.simulation.serve_modbus else [])
            for name in names:
                await self.supervisor.remove(name)
            self._build_pollers(self.config.config)
            self._add_device_tasks()
            self.supervisor.start()
            self.safety.wake()

    def _add_device_tasks(self) -> None:
        if self.simulation is not None and self.simulation.serve_modbus:
            self.supervisor.add(self.simulation.task_name(), self.simulation.task())
        for name, poller in self.pollers.items():
            self.supervisor.add(f"modbus_{name}", poller.run)

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

    def _pet_watchdogs(self) -> None:
        self.service.watchdog()
        if self.hardware_watchdog is not None:
            self.hardware_watchdog.pet()

    def _request_w(self, state: PlantState, now: float) -> float:
        manual = self.manual.active(now)  # a bounded-time manual request replaces the plan's, never the limits
        if manual is not None:
            return manual.power_w
        last = self.safety.last_decision
        return damped(realtime_request(state, now, self.planner.intent()), last.setpoint_w if last else None)

    def request_setpoint(self, power_w: Any, duration_s: Any, source: str) -> dict[str, Any]:
        """A manual battery request for a bounded time (thread-safe); the safety loop still clamps it."""
        bess = self.config.config.bess
        setpoint = self.manual.set(power_w, duration_s, self.clock.now(), source,
                                   1000.0 * max(bess.max_charge_power_kw, bess.max_discharge_power_kw))
        self.notifications.add("info", "control", i18n.mark(
            "the battery follows a manual request of {kw} kW for {min} min (the safety limits still apply)"),
            f"manual request {setpoint.power_w:.0f} W from {source} for {float(duration_s):.0f} s",
            kw=round(setpoint.power_w / 1000.0, 2), min=round(float(duration_s) / 60.0, 1))
        return setpoint.to_json()

    def _history_context(self, now: float) -> dict[str, Any]:
        """What a history row holds besides the measurements: the safety loop's decision and the prices."""
        d = self.safety.last_decision
        forecast = self.forecast.snapshot()
        import_price, export_price = prices_in_force(self.config.config, forecast.consumer_price, forecast.price, now)
        return {"setpoint_w": None if d is None else d.setpoint_w,
                "pv_curtailed_w": None if d is None else d.pv_curtailment_w,
                "export_limit_w": None if d is None else d.export_limit_w,
                "import_price_eur_per_kwh": import_price, "export_price_eur_per_kwh": export_price}

    def _apply_history_config(self, cfg: EmsConfig) -> None:
        self.history.config = cfg.history  # read by the writer thread at its next batch or prune

    # -- the web boundary ----------------------------------------------------------------------------
    def facade(self) -> EmsFacade:
        """What the web app may use of this runtime (see `ems.api.facade`)."""
        sim = self.simulation
        return EmsFacade(
            security=self.security, config=self.config, notifications=self.notifications, history=self.history,
            analytics=self.analytics,
            now=self.clock.now, snapshot=self.snapshot, plan=self.plan_view, forecast_json=self.forecast.to_json,
            profiles=lambda: self.profiles, test_modbus=self._test_modbus,
            simulator=SimulatorControl(sim.device_names, self._post_sim_event) if sim is not None else None,
            stopping=self.stopping, audit=self.audit, override_key=self._override_key)

    def _override_key(self) -> Hashable:
        """The power-control state, DSO limit and reason codes in force (`EmsFacade.override_key`); the limit to
        a tenth of a percent, so a DSO box's analog signal that wavers does not push an event every cycle."""
        d = self.safety.last_decision
        return None if d is None else (d.state, round(d.limit_pct, 1), d.codes)

    def plan_view(self) -> PlanView:
        record = self.planner.record
        return PlanView(record.plan if record else None, record.planned_at if record else None,
                        self.planner.runs, self.planner.last_error)

    def snapshot(self) -> RuntimeSnapshot:
        """One consistent reading for `/api/state` and the live events; safe to call from any thread."""
        return RuntimeSnapshot(
            now=self.clock.now(), plant=self.bus.snapshot(), config=self.config.config,
            power_control=self.safety.to_json(),
            devices={name: poller.status() for name, poller in self.pollers.items()},
            plan=self.plan_view(), version=__version__, uptime_s=self.clock.monotonic() - self.started_mono,
            speed=self.clock.speed, loop_lag_ms=self.supervisor.lag.stats(), tasks=self.supervisor.status(),
            history_rows_written=self.recorder.rows_written, history=self.recorder.store_status,
            latest_notification_id=self.notifications.latest_id(),
            mqtt=self.mqtt.status())

    def _test_modbus(self, device: ModbusDeviceConfig) -> dict[str, Any]:
        running = self.pollers.get(device.name)
        # A serial line must not be opened twice: the test reuses a running poller's link to the same device.
        client = running.client if running is not None and running.config == device else None
        profile = with_overrides(self.profiles[device.profile], device.register_overrides)
        result: dict[str, Any] = self.call_on_loop(
            lambda: diagnostics.test_connection(device, profile, client=client), timeout_s=60)
        return result

    def _post_sim_event(self, body: Any) -> str:
        assert self.simulation is not None
        simulation = self.simulation
        event = simulation.parse_event(body)
        what: str = self.call_on_loop(lambda: simulation.apply_event(event))
        self.notifications.add("info", "simulator", i18n.mark("the simulator applied a test event"), what)
        self.safety.wake()
        return what

    async def start(self) -> None:
        """Start every subsystem but the web server (on the running loop); `stop()` undoes it.

        `run()` adds the web server and the signals; a test or soak harness calls `start()`/`stop()`
        itself, e.g. on a VirtualTimeLoop with a VirtualClock to run hours of plant time in seconds.
        """
        loop = asyncio.get_running_loop()
        self.config.set_dispatch(loop.call_soon_threadsafe)
        # Subsystems read the live config every cycle; subscribing here makes each change visible to users.
        for section in SECTIONS:
            self.config.subscribe(section, self._announce_change(section))

        if self.hardware_watchdog is not None:
            self.hardware_watchdog.open()
        self.loop = loop
        if self.simulation is not None and not self.simulation.serve_modbus:
            self.supervisor.add(self.simulation.task_name(), self.simulation.task())
        self._add_device_tasks()
        self.supervisor.add("safety", self.safety.run)
        self.supervisor.add("history", self.recorder.run)
        self.supervisor.add("forecast", self.forecast.run)
        self.supervisor.add("planner", self.planner.run)
        self.supervisor.add("mqtt", self.mqtt.run)  # idles, importing nothing, while mqtt.enabled is off
        self.supervisor.start()

    def _announce_change(self, section: str) -> Callable[[EmsConfig], None]:
        def announce(_cfg: EmsConfig) -> None:
            self.notifications.add("info", "config", i18n.mark("settings '{section}' changed and applied"),
                                   section=section)
        return announce

    async def stop(self) -> None:
        await self._shutdown()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()

        self.web = WebServer(create_app(self.facade()), self.listen.host, self.listen.port, self.config.config.web.threads)
        try:
            self.bound = self.web.start()
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", self.listen.host, self.listen.port, exc)
            await self._shutdown()
            return 1
        self.service.ready(f"serving on http://{self.bound[0]}:{self.bound[1]}")
        self.notifications.add("info", "supervisor", i18n.mark("Phoenyra EMS {version} started"),
                               version=__version__)
        status_task = asyncio.create_task(self._status_lines(stop))
        await stop.wait()
        status_task.cancel()
        log.info("stop requested")
        await self._shutdown()
        return 0

    async def _status_lines(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.clock.sleep(30)
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

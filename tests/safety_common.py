"""What the safety tests share: the plant points by short name, fresh default readings, and a rig that
runs the real SafetyLoop on a manual clock against a recording PCS and a settable dispatcher."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ems.bus import TelemetryBus
from ems.clock import LoopTimers
from ems.config import ConfigStore, EmsConfig
from ems.config.validate import parse_config
from ems.notifications import Notifications
from ems.safety.loop import SafetyLoop
from ems.state import Measurement, PlantState

NOW = 1_750_000_000.0
MAX_AGE_S = 10.0

POINTS = {
    "soc": "battery.soc_pct",
    "bms_charge": "battery.max_charge_power_w",
    "bms_discharge": "battery.max_discharge_power_w",
    "grid": "grid.power_w",
    "bess": "bess.power_w",
    "dso": "dso.mode",
    "dso_limit": "dso.limit_pct",
    # optional: only published when a row names them
    "voltage": "battery.voltage_v",
    "temperature": "battery.temperature_c",
    "insulation": "battery.insulation_resistance_kohm",
    "alarms": "battery.alarms",
    "charge_current": "battery.max_charge_current_a",
    "discharge_current": "battery.max_discharge_current_a",
}
DEFAULTS = {"soc": 50.0, "bms_charge": 10_000.0, "bms_discharge": 10_000.0, "grid": 0.0, "bess": 0.0,
            "dso": "normal", "dso_limit": 100.0}


class ManualClock(LoopTimers):
    """Plant time and monotonic time that only move when the test says so."""

    speed = 1.0

    def __init__(self) -> None:
        self.t = NOW
        self.mono = 1000.0

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.mono += seconds


class RecordingSink:
    """The PCS: records every setpoint written; can be made unreachable."""

    def __init__(self) -> None:
        self.writes: list[float] = []
        self.fail = False

    async def write_setpoint(self, power_w: float) -> None:
        if self.fail:
            raise ConnectionError("PCS not answering")
        self.writes.append(power_w)

    async def apply(self, decision: Any) -> None:
        await self.write_setpoint(0.0 if decision.remote_shutdown_requested else decision.setpoint_w)

    async def safe_state(self) -> None:
        await self.write_setpoint(0.0)


class Dispatcher:
    """A dispatcher whose request (or failure) the test sets."""

    def __init__(self, request_w: float = 0.0) -> None:
        self.request_w = request_w
        self.error: Exception | None = None

    def __call__(self, state: PlantState, now: float) -> float:
        if self.error is not None:
            raise self.error
        return self.request_w


class Rig:
    """A SafetyLoop on a ManualClock with fresh readings published; `cycles(n)` runs n cycles."""

    def __init__(self, tmp_path: Path, request_w: float, **sections: Any) -> None:
        data = {"bess": {"max_charge_power_kw": 10, "max_discharge_power_kw": 10},
                "grid_connection": {"max_power_kw": 30},
                "power_control": {"safety_period_s": 0.05, "setpoint_resend_s": 5.0, "auto_write": True}}
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        self.config = ConfigStore(tmp_path / "ems.yaml", parse_config(EmsConfig, data))
        self.clock = ManualClock()
        self.bus = TelemetryBus()
        self.sink = RecordingSink()
        self.dispatcher = Dispatcher(request_w)
        self.notifications = Notifications(self.clock.now)
        self.pets = 0
        self.loop = SafetyLoop(self.bus, self.clock, self.config, self.dispatcher, self.sink,
                               self.notifications, self.pet)
        self.publish()

    def pet(self) -> None:
        self.pets += 1

    def publish(self, **overrides: Any) -> None:
        values = {**DEFAULTS, "bms_discharge": 8000.0, **overrides}
        self.bus.publish({POINTS[k]: Measurement(v, self.clock.now(), "sim", MAX_AGE_S) for k, v in values.items()})

    def cycles(self, n: int = 1) -> list[Any]:
        async def run() -> list[Any]:
            return [await self.loop.cycle() for _ in range(n)]
        return asyncio.run(run())

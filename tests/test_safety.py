"""Safety: which setpoint reaches the plant (the rules, cycle by cycle) and how the loop writes it."""
from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ems.bus import TelemetryBus
from ems.config import ConfigStore, EmsConfig
from ems.config.schema import BessConfig, GridConnectionConfig, PowerControlConfig
from ems.config.validate import parse_config
from ems.notifications import Notifications
from ems.safety.loop import SafetyLoop
from ems.safety.rules import decide
from ems.state import Measurement, PlantState

NOW = 1_750_000_000.0
MAX_AGE_S = 10.0
MISSING = "<missing>"
STALE = "<stale>"

POINTS = {
    "soc": "battery.soc_pct",
    "bms_charge": "battery.max_charge_power_w",
    "bms_discharge": "battery.max_discharge_power_w",
    "grid": "grid.power_w",
    "bess": "bess.power_w",
    "dso": "dso.mode",
    "dso_limit": "dso.limit_pct",
}
DEFAULTS = {"soc": 50.0, "bms_charge": 10_000.0, "bms_discharge": 10_000.0, "grid": 0.0, "bess": 0.0,
            "dso": "normal", "dso_limit": 100.0}


def plant(now: float = NOW, **overrides: Any) -> PlantState:
    """A plant state with every point fresh (defaults above); MISSING leaves a point out, STALE makes it old."""
    updates = {}
    for key, path in POINTS.items():
        value = overrides.get(key, DEFAULTS[key])
        if value == MISSING:
            continue
        if value == STALE:
            updates[path] = Measurement(DEFAULTS[key], now - 6 * MAX_AGE_S, "modbus", MAX_AGE_S)
        else:
            updates[path] = Measurement(value, now - 1.0, "modbus", MAX_AGE_S)
    return PlantState().with_updates(updates)


# 10 kW inverter both ways, SoC window 10-95 %, 20 kW import and 15 kW export at the grid connection.
BESS = BessConfig(capacity_kwh=20.0, max_charge_power_kw=10.0, max_discharge_power_kw=10.0,
                  min_soc_pct=10.0, max_soc_pct=95.0)
GRID = GridConnectionConfig(max_power_kw=20.0, max_feedin_kw=15.0)
PC_ON = PowerControlConfig(enabled=True, min_grid_charge_kw_under_dso_limit=4.2)
PC_OFF = PowerControlConfig(enabled=False)


def case(request_w: float, state: dict[str, Any], expected_w: float, mode: str, reason: str | None,
         id: str, pc: PowerControlConfig = PC_ON, bess: BessConfig = BESS) -> Any:
    return pytest.param(request_w, state, pc, bess, expected_w, mode, reason, id=id)


# 6 kW charging, 8 kW discharging: the DSO percentage applies to the larger rating.
SMALL_BESS = BessConfig(capacity_kwh=20.0, max_charge_power_kw=6.0, max_discharge_power_kw=8.0,
                        min_soc_pct=10.0, max_soc_pct=95.0)


CYCLES = [
    case(3000, {}, 3000, "normal", None, id="all fresh, request within limits: unchanged"),
    case(-3000, {}, -3000, "normal", None, id="all fresh, charging within limits: unchanged"),
    # 1. unknown inputs
    case(3000, {"soc": STALE}, 0, "safety", "no fresh value: battery.soc_pct", id="stale SoC -> 0 W"),
    case(-3000, {"soc": MISSING}, 0, "safety", "no fresh value: battery.soc_pct", id="missing SoC -> 0 W"),
    case(-3000, {"bms_charge": STALE}, 0, "safety", "battery.max_charge_power_w", id="stale BMS charge limit -> 0 W"),
    case(3000, {"bms_discharge": MISSING}, 0, "safety", "battery.max_discharge_power_w",
         id="missing BMS discharge limit -> 0 W"),
    case(3000, {"grid": MISSING}, 0, "safety", "no fresh value: grid.power_w", id="missing grid meter -> 0 W"),
    case(3000, {"bess": STALE}, 0, "safety", "no fresh value: bess.power_w", id="stale battery power -> 0 W"),
    case(3000, {"dso": MISSING}, 0, "safety", "no fresh value: dso.mode",
         id="missing DSO state, power control on -> 0 W"),
    case(-3000, {"dso": STALE}, 0, "safety", "no fresh value: dso.mode", id="stale DSO state -> 0 W"),
    case(3000, {"dso": MISSING}, 3000, "normal", None, pc=PC_OFF,
         id="missing DSO state, power control off -> not needed"),
    # 2. DSO trip
    case(3000, {"dso": "trip"}, 0, "shutdown", "DSO trip", id="DSO trip while discharging -> 0 W shutdown"),
    case(-8000, {"dso": "trip"}, 0, "shutdown", "DSO trip", id="DSO trip while charging -> 0 W shutdown"),
    case(3000, {"dso": "trip"}, 3000, "normal", None, pc=PC_OFF, id="power control off ignores the DSO box"),
    # 3. DSO limit (rated 10 kW; §14a keeps 4.2 kW of charging)
    case(8000, {"dso": "limit", "dso_limit": 30}, 3000, "safety", "DSO limit 30 %",
         id="DSO limit 30 % -> discharge at most 30 % of rated"),
    case(-8000, {"dso": "limit", "dso_limit": 30}, -4200, "safety", "DSO limit 30 %",
         id="DSO limit 30 % -> charging keeps the 4.2 kW floor"),
    case(-9500, {"dso": "limit", "dso_limit": 80}, -8000, "safety", "DSO limit 80 %",
         id="DSO limit 80 % -> charging at most 80 % of rated"),
    case(-8000, {"dso": "limit", "dso_limit": 30, "bms_charge": 2000}, -2000, "safety", "DSO limit 30 %",
         id="DSO charging floor never exceeds the BMS limit"),
    case(5000, {"dso": "limit", "dso_limit": 0}, 0, "safety", "DSO limit 0 %", id="DSO limit 0 % -> no discharge"),
    case(7000, {"dso": "limit", "dso_limit": 50}, 4000, "safety", "DSO limit 50 %", bess=SMALL_BESS,
         id="DSO limit 50 % of an 8 kW inverter -> 4 kW discharge"),
    case(-6000, {"dso": "limit", "dso_limit": 70}, -5600, "safety", "DSO limit 70 %", bess=SMALL_BESS,
         id="DSO limit 70 % of an 8 kW inverter -> 5.6 kW charging"),
    case(5000, {"dso": "limit", "dso_limit": MISSING}, 0, "safety", "DSO limit 0 %",
         id="DSO limit with unknown percentage -> treated as 0 %"),
    # 4. BMS limits and inverter ratings
    case(8000, {"bms_discharge": 2500}, 2500, "normal", "clamped to battery limits",
         id="BMS max discharge below the request -> clamped"),
    case(-8000, {"bms_charge": 1500}, -1500, "normal", "clamped to battery limits",
         id="BMS max charge below the request -> clamped"),
    case(50_000, {"bms_discharge": 60_000}, 10_000, "normal", "clamped to battery limits",
         id="inverter rating below the request -> clamped"),
    case(-50_000, {"bms_charge": 60_000}, -10_000, "normal", "clamped to battery limits",
         id="inverter charge rating below the request -> clamped"),
    # 5. SoC window
    case(5000, {"soc": 10.0}, 0, "normal", "clamped to battery limits", id="SoC at min -> no discharge"),
    case(5000, {"soc": 4.0}, 0, "normal", "clamped to battery limits", id="SoC below min -> no discharge"),
    case(-5000, {"soc": 10.0}, -5000, "normal", None, id="SoC at min -> charging allowed"),
    case(-5000, {"soc": 95.0}, 0, "normal", "clamped to battery limits", id="SoC at max -> no charge"),
    case(5000, {"soc": 95.0}, 5000, "normal", None, id="SoC at max -> discharging allowed"),
    # 6. grid connection (site = grid + battery; new grid = site - setpoint)
    case(-8000, {"grid": 15_000}, -5000, "safety", "grid connection limit",
         id="import limit -> charging reduced"),
    case(-3000, {"grid": 18_000, "bess": 4000}, 2000, "safety", "grid connection limit",
         id="import limit counts the battery's present output"),
    case(8000, {"grid": -10_000}, 5000, "safety", "grid connection limit", id="export limit -> discharging reduced"),
    case(0, {"grid": -20_000}, -5000, "safety", "grid connection limit",
         id="export overload -> battery absorbs the excess"),
    case(0, {"grid": 35_000}, 10_000, "safety", "grid connection limit",
         id="import overload -> battery discharges up to its limit"),
    case(0, {"grid": 35_000, "soc": 10.0}, 0, "safety", "grid connection limit",
         id="import overload at min SoC -> stays at 0 W"),
    case(0, {"grid": -40_000, "soc": 95.0}, 0, "safety", "grid connection limit",
         id="export overload at max SoC -> stays at 0 W"),
]


@pytest.mark.parametrize("request_w, state, pc, bess, expected_w, mode, reason", CYCLES)
def test_safety_rules_cycle_table(request_w, state, pc, bess, expected_w, mode, reason):
    d = decide(plant(**state), request_w, NOW, bess, pc, GRID)
    assert d.setpoint_w == pytest.approx(expected_w, abs=1e-6)
    assert d.mode == mode
    assert d.requested_w == request_w
    if reason is None:
        assert d.reasons == ()
    else:
        assert any(reason in r for r in d.reasons), d.reasons


def test_export_limit_defaults_to_the_import_limit_when_not_set():
    state = plant(grid=-15_000)  # 15 kW already flowing out
    without_feedin = decide(state, 8000, NOW, BESS, PC_ON, GridConnectionConfig(max_power_kw=20.0))
    tight_feedin = decide(state, 8000, NOW, BESS, PC_ON, GridConnectionConfig(max_power_kw=20.0, max_feedin_kw=15.0))
    assert without_feedin.setpoint_w == 5000  # 20 kW export allowed
    assert tight_feedin.setpoint_w == 0


def test_dso_limit_in_force_is_reported():
    assert decide(plant(dso="limit", dso_limit=60), 0, NOW, BESS, PC_ON, GRID).limit_pct == 60
    assert decide(plant(), 0, NOW, BESS, PC_ON, GRID).limit_pct == 100
    assert decide(plant(soc=MISSING), 0, NOW, BESS, PC_ON, GRID).limit_pct == 0


@pytest.mark.parametrize("request_w, state", [
    pytest.param(math.nan, {}, id="NaN request from the dispatcher"),
    pytest.param(50_000, {"bms_discharge": math.nan, "grid": -60_000}, id="NaN BMS discharge limit"),
    pytest.param(5000, {"soc": math.nan}, id="NaN SoC"),
    pytest.param(8000, {"dso": "limit", "dso_limit": math.nan}, id="NaN DSO limit"),
])
def test_a_nan_reading_or_request_never_reaches_the_inverter(request_w, state):
    grid = GridConnectionConfig(max_power_kw=100.0)
    d = decide(plant(**state), request_w, NOW, BESS, PC_ON, grid)
    assert d.setpoint_w == 0.0


# -- properties -----------------------------------------------------------------------------------

def finite(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)


@st.composite
def configs(draw: Any) -> tuple[BessConfig, PowerControlConfig, GridConnectionConfig]:
    min_soc = draw(finite(0, 60))
    bess = BessConfig(capacity_kwh=20.0, max_charge_power_kw=draw(finite(0.5, 50)),
                      max_discharge_power_kw=draw(finite(0.5, 50)), min_soc_pct=min_soc,
                      max_soc_pct=draw(finite(min_soc + 1, 100)))
    pc = PowerControlConfig(enabled=draw(st.booleans()), min_grid_charge_kw_under_dso_limit=draw(finite(0, 11)))
    grid = GridConnectionConfig(max_power_kw=draw(finite(1, 100)), max_feedin_kw=draw(st.none() | finite(0, 100)))
    return bess, pc, grid


readings = st.fixed_dictionaries({
    "soc": finite(0, 100), "bms_charge": finite(0, 60_000), "bms_discharge": finite(0, 60_000),
    "grid": finite(-150_000, 150_000), "bess": finite(-60_000, 60_000),
    "dso": st.sampled_from(["normal", "limit", "trip"]), "dso_limit": finite(0, 100),
})
requests = finite(-200_000, 200_000)
EPS = 1e-6


def grid_overload_w(site_w: float, setpoint_w: float, grid: GridConnectionConfig) -> float:
    """How far the grid exchange after `setpoint_w` lies outside the connection limits (0 = inside)."""
    exchange = site_w - setpoint_w
    export_kw = grid.max_feedin_kw if grid.max_feedin_kw is not None else grid.max_power_kw
    return max(0.0, exchange - grid.max_power_kw * 1000, -exchange - export_kw * 1000)


@settings(max_examples=400, deadline=None, database=None)
@given(cfg=configs(), values=readings, request_w=requests)
def test_setpoint_never_exceeds_bms_limits_ratings_soc_window_or_dso_limit(cfg, values, request_w):
    bess, pc, grid = cfg
    d = decide(plant(**values), request_w, NOW, bess, pc, grid)
    sp = d.setpoint_w
    assert math.isfinite(sp)
    assert sp <= min(values["bms_discharge"], bess.max_discharge_power_kw * 1000) + EPS
    assert sp >= -min(values["bms_charge"], bess.max_charge_power_kw * 1000) - EPS
    if values["soc"] <= bess.min_soc_pct:
        assert sp <= 0
    if values["soc"] >= bess.max_soc_pct:
        assert sp >= 0
    if pc.enabled and values["dso"] == "trip":
        assert sp == 0.0
    if pc.enabled and values["dso"] == "limit":
        rated_w = max(bess.max_charge_power_kw, bess.max_discharge_power_kw) * 1000
        share_w = rated_w * values["dso_limit"] / 100
        assert sp <= share_w + EPS
        assert sp >= -max(share_w, pc.min_grid_charge_kw_under_dso_limit * 1000) - EPS
    # The battery never makes a grid-connection overload worse than standing still would.
    site_w = values["grid"] + values["bess"]
    assert grid_overload_w(site_w, sp, grid) <= grid_overload_w(site_w, 0.0, grid) + EPS


@settings(max_examples=200, deadline=None, database=None)
@given(cfg=configs(), values=readings, request_w=requests)
def test_dso_trip_always_yields_exactly_0_w_and_shutdown(cfg, values, request_w):
    bess, pc, grid = cfg
    pc = PowerControlConfig(enabled=True, min_grid_charge_kw_under_dso_limit=pc.min_grid_charge_kw_under_dso_limit)
    d = decide(plant(**{**values, "dso": "trip"}), request_w, NOW, bess, pc, grid)
    assert d.setpoint_w == 0.0
    assert d.mode == "shutdown"
    assert d.reasons == ("DSO trip",)


NEEDED = ["soc", "bms_charge", "bms_discharge", "grid", "bess"]


@settings(max_examples=300, deadline=None, database=None)
@given(cfg=configs(), values=readings, request_w=requests,
       lost=st.dictionaries(st.sampled_from(NEEDED + ["dso"]), st.sampled_from([MISSING, STALE]), min_size=1))
def test_any_missing_or_stale_required_point_yields_0_w(cfg, values, request_w, lost):
    bess, pc, grid = cfg
    d = decide(plant(**{**values, **lost}), request_w, NOW, bess, pc, grid)
    named = {key for key in lost if any(POINTS[key] in r for r in d.reasons)}
    if set(lost) == {"dso"} and not pc.enabled:
        assert named == set()  # the DSO state is only needed with power control on
        return
    assert d.setpoint_w == 0.0
    assert d.mode == "safety"
    assert named == ({k for k in lost if k != "dso"} | ({"dso"} & set(lost) if pc.enabled else set()))


# -- the safety loop ------------------------------------------------------------------------------

class ManualClock:
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
    def __init__(self, tmp_path: Path, request_w: float, **sections: Any) -> None:
        data = {"bess": {"max_charge_power_kw": 10, "max_discharge_power_kw": 10},
                "grid_connection": {"max_power_kw": 30},
                "power_control": {"safety_period_s": 0.05, "setpoint_resend_s": 5.0}}
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


async def until(predicate: Callable[[], Any], timeout_s: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s")
        await asyncio.sleep(0.005)


def test_safety_loop_writes_the_clamped_setpoint(tmp_path: Path):
    rig = Rig(tmp_path, request_w=50_000)  # BMS allows 8 kW discharge
    [decision] = rig.cycles()
    assert rig.sink.writes == [8000.0]
    assert decision.setpoint_w == 8000.0 and decision.requested_w == 50_000
    assert rig.loop.to_json()["setpoint_w"] == 8000.0
    assert rig.pets == 1


def test_unchanged_setpoint_is_resent_after_setpoint_resend_s(tmp_path: Path):
    rig = Rig(tmp_path, request_w=3000)
    rig.cycles()
    assert rig.sink.writes == [3000.0]
    rig.clock.advance(2.0)
    rig.cycles(3)
    assert rig.sink.writes == [3000.0]  # unchanged and resend not due: nothing written
    rig.clock.advance(3.0)  # 5 s since the last write: the inverter's comm watchdog must be fed
    rig.cycles()
    assert rig.sink.writes == [3000.0, 3000.0]
    rig.dispatcher.request_w = 2000
    rig.cycles()
    assert rig.sink.writes == [3000.0, 3000.0, 2000.0]  # a change goes out at once
    assert rig.pets == 6  # every healthy cycle, written or not


def test_failing_dispatcher_writes_0_w_and_does_not_pet_the_watchdog(tmp_path: Path):
    rig = Rig(tmp_path, request_w=3000)
    rig.cycles()
    rig.dispatcher.error = ZeroDivisionError("forecast empty")
    [result] = rig.cycles()
    assert result is None
    assert rig.sink.writes == [3000.0, 0.0]
    assert rig.pets == 1
    assert rig.loop.to_json() == {"mode": "safety", "requested_w": 0.0, "setpoint_w": 0.0,
                                  "reasons": ["internal error"], "limit_pct": 0.0}
    rig.dispatcher.error = None
    rig.cycles()
    assert rig.sink.writes == [3000.0, 0.0, 3000.0] and rig.pets == 2


def test_unreachable_inverter_does_not_pet_the_watchdog(tmp_path: Path):
    rig = Rig(tmp_path, request_w=3000)
    rig.sink.fail = True
    assert rig.cycles(3) == [None, None, None]
    assert rig.pets == 0
    rig.sink.fail = False
    rig.cycles()
    assert rig.sink.writes == [3000.0] and rig.pets == 1


def test_stale_telemetry_takes_the_plant_to_0_w_and_tells_the_user(tmp_path: Path):
    rig = Rig(tmp_path, request_w=3000)
    rig.cycles()
    rig.clock.advance(MAX_AGE_S + 1)  # no new readings
    [decision] = rig.cycles()
    assert rig.sink.writes == [3000.0, 0.0]
    assert decision.mode == "safety"
    safety_notes = [n for n in rig.notifications.recent(10) if n.category == "safety"]
    assert [n.level for n in safety_notes] == ["warning", "info"]  # newest first
    assert "no fresh value: battery.soc_pct" in safety_notes[0].message
    rig.publish()
    rig.cycles()
    assert rig.sink.writes == [3000.0, 0.0, 3000.0]


def test_lowered_inverter_rating_applies_from_the_next_cycle(tmp_path: Path):
    rig = Rig(tmp_path, request_w=7000)
    rig.cycles()
    rig.config.update_section("bess", {"max_charge_power_kw": 10, "max_discharge_power_kw": 4})
    rig.cycles()
    assert rig.sink.writes == [7000.0, 4000.0]


def test_running_loop_pets_the_watchdog_and_leaves_0_w_when_cancelled(tmp_path: Path):
    rig = Rig(tmp_path, request_w=-6000)

    async def main() -> tuple[int, list[float]]:
        task = asyncio.create_task(rig.loop.run())
        await until(lambda: rig.pets >= 5, what="five healthy cycles")
        writes_while_running = list(rig.sink.writes)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return rig.pets, writes_while_running

    pets, writes_while_running = asyncio.run(main())
    assert writes_while_running == [-6000.0]  # written once, unchanged since
    assert rig.sink.writes == [-6000.0, 0.0]  # shutdown leaves the plant at 0 W
    assert rig.pets == pets


def test_running_loop_survives_a_failing_dispatcher(tmp_path: Path):
    rig = Rig(tmp_path, request_w=2000)

    async def main() -> None:
        task = asyncio.create_task(rig.loop.run())
        await until(lambda: rig.sink.writes == [2000.0], what="first write")
        rig.dispatcher.error = RuntimeError("optimizer bug")
        await until(lambda: rig.sink.writes[-1] == 0.0, what="safe setpoint")
        pets_while_failing = rig.pets
        await asyncio.sleep(0.2)  # several failing periods
        assert rig.pets == pets_while_failing
        rig.dispatcher.error = None
        await until(lambda: rig.sink.writes[-1] == 2000.0 and rig.pets > pets_while_failing, what="recovery")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert rig.sink.writes[-1] == 0.0
    assert rig.loop.last_decision is not None and rig.loop.last_decision.setpoint_w == 2000.0


def test_cancelling_during_a_slow_write_still_ends_at_0_w(tmp_path: Path):
    rig = Rig(tmp_path, request_w=5000)

    class SlowSink(RecordingSink):
        def __init__(self) -> None:
            super().__init__()
            self.in_write = False

        async def write_setpoint(self, power_w: float) -> None:
            self.in_write = True
            await asyncio.sleep(0.1)  # Modbus round trip
            self.in_write = False
            await super().write_setpoint(power_w)

    sink = SlowSink()
    rig.loop.sink = sink

    async def main() -> None:
        task = asyncio.create_task(rig.loop.run())
        await until(lambda: sink.in_write, what="write in progress")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert sink.writes == [0.0]  # the interrupted 5 kW write never landed; 0 W did

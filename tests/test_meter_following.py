"""A request worked out from the meter is approached by a loop gain below 1 (ems/optimizer/realtime.py,
`damped`), so readings of the grid and the battery taken on either side of a write cannot make the battery
swing between full charge and full discharge (what `ems soak` found with the request taken whole)."""
from __future__ import annotations

import pytest

from ems.optimizer.realtime import Intent, Request, damped, realtime_request
from ems.state import Measurement, PlantState

SITE_W = -1100.0  # PV surplus: the grid is held at 0 W by charging 1.1 kW
RATED_W = 5000.0


def grid_after_each_cycle(late: str, gain_on: bool, cycles: int = 30) -> list[float]:
    """A self-consumption loop on a plant whose battery follows each write before the next cycle. `late`
    names the reading that still shows the battery power of one write earlier: "battery" (read just before
    the last write, the meter just after it: the soak's case), "meter", or "none"."""
    commands = [0.0, 0.0]  # the last two setpoints written
    grids = []
    for k in range(cycles):
        now = 100.0 + 5.0 * k
        grid_w = SITE_W - (commands[-2] if late == "meter" else commands[-1])
        bess_w = commands[-2] if late == "battery" else commands[-1]
        state = PlantState().with_updates({"grid.power_w": Measurement(grid_w, now, "meter", 30.0),
                                           "bess.power_w": Measurement(bess_w, now, "bms", 30.0)})
        request = realtime_request(state, now, Intent("self_consumption", None))
        power_w = damped(request, commands[-1]) if gain_on else request.power_w
        commands = [commands[-1], max(-RATED_W, min(RATED_W, power_w))]  # the safety loop's clamp
        grids.append(SITE_W - commands[-1])
    return grids


def test_taken_whole_a_late_battery_reading_swings_the_battery_at_full_power():
    """The mechanism: the error grows by the golden ratio each cycle with its sign flipping."""
    grids = grid_after_each_cycle("battery", gain_on=False)
    assert max(abs(g) for g in grids[-6:]) > 4000.0
    assert all(a * b < 0 for a, b in zip(grids[-6:], grids[-5:])), "the sign flips every cycle"


@pytest.mark.parametrize("late", ["none", "battery", "meter"])
def test_approached_by_the_gain_the_grid_settles_at_zero_whichever_reading_is_late(late: str):
    grids = grid_after_each_cycle(late, gain_on=True)
    assert max(abs(g) for g in grids[-10:]) < 5.0
    assert max(abs(g) for g in grids) <= abs(SITE_W) + 1.0, "never worse than not using the battery"


def test_only_requests_worked_out_from_the_meter_are_approached():
    planned = Request(3000.0, "arbitrage: planned battery power")
    assert damped(planned, 0.0) == 3000.0, "a planned power is taken whole: there is no loop to keep stable"
    metered = Request(-1000.0, "self-consumption", follows_meter=True)
    assert damped(metered, 0.0) == -500.0
    assert damped(metered, None) == -1000.0, "no setpoint yet: nothing to approach from"

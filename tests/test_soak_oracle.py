"""The soak's oracle on hand-made plant truth: what counts as obeyed, late or broken, per check.

Pure and fast: no runtime, no devices. Each test feeds the oracle a short story of what the plant did
(PCS output, grid, BMS limits, DSO box) and reads its verdict, as a grid operator would judge a trace.
"""
from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from ems.config import parse_yaml_config
from ems.config.schema import FeedinRule
from ems.devices.profile import load_library
from ems.resources import profiles_dir
from ems.soak.faults import DEVICES, KINDS, Fault, schedule
from ems.soak.oracle import Oracle, OracleSettings, export_limit_w
from ems.soak.runner import SoakOptions, faults_of, plan_segments, soak_config
from ems.soak.world import PlantTruth

T0 = 1_712_000_000.0
PROFILES, _ = load_library(profiles_dir())
CFG = parse_yaml_config(yaml.safe_dump(soak_config(SoakOptions(), [1, 2, 3, 4], "http://127.0.0.1:1/x")))
SETTINGS = OracleSettings.from_config(CFG, PROFILES, pcs_comm_loss_timeout_s=10.0)


def truth(t: float, **kw) -> PlantTruth:
    base = dict(ts=T0 + t, pcs_w=0.0, bess_w=0.0, pcs_enabled=True, pcs_fallback=False, pcs_cap_w=5000.0,
                pcs_contact_ts=T0 + t, pcs_setpoint_w=kw.get("pcs_w", 0.0), load_w=500.0, pv_w=0.0, grid_w=500.0,
                soc_pct=50.0,
                bms_charge_limit_w=5000.0, bms_discharge_limit_w=5000.0, bms_stop=False, dso_mode="normal",
                dso_limit_pct=100.0)
    base.update(kw)
    if "grid_w" not in kw:
        base["grid_w"] = base["load_w"] - base["pv_w"] - base["pcs_w"]
    return PlantTruth(**base)


def oracle() -> Oracle:
    o = Oracle(SETTINGS, T0)
    o.ems_up(T0)
    return o


def story(o: Oracle, *steps: PlantTruth) -> Oracle:
    for step in steps:
        o.observe(step)
    o.finish(steps[-1].ts)
    return o


def checks(o: Oracle) -> list[str]:
    return [v.check for v in o.violations]


def test_allowed_times_come_from_the_config():
    s = SETTINGS
    assert s.t_dso_s == pytest.approx(1.0 + 0.1)  # one DSO poll + 100 ms
    assert s.t_bms_s == pytest.approx(5.0 + 5.0 + 0.1)  # BMS poll + safety period + 100 ms
    assert s.t_loss_s["meter"] == pytest.approx(5.0 + 1.0 + 5.0 + 0.1)  # poll + timeout + period + 100 ms
    assert s.t_fallback_s == pytest.approx(10.0 + 5.0 + 0.1)  # the PCS's own timeout + a plant step
    assert s.bms_tol_w == pytest.approx(51.0)  # the Hithium limit register counts in 100 W
    assert s.soc_tol_pct == pytest.approx(0.51)  # ... and SoC in whole %


def test_a_trip_obeyed_within_one_poll_is_no_violation_and_its_reaction_is_measured():
    o = oracle()
    trip = Fault(1, "dso_trip", 0.0, 600.0)
    o.fault_started(trip, T0 + 10.0)
    story(o, truth(10.0, pcs_w=3000.0, dso_mode="trip", dso_limit_pct=0.0),
          truth(10.6, pcs_w=0.0, pcs_enabled=False, dso_mode="trip", dso_limit_pct=0.0),
          truth(20.0, pcs_w=0.0, pcs_enabled=False, dso_mode="trip", dso_limit_pct=0.0))
    assert checks(o) == []
    (reaction,) = o.reactions
    assert reaction.kind == "dso_trip" and reaction.reaction_s == pytest.approx(0.6)


@pytest.mark.parametrize("late_s, enabled", [(1.3, False), (0.5, True)])
def test_a_trip_obeyed_late_or_with_the_pcs_still_enabled_is_a_violation(late_s, enabled):
    o = story(oracle(), truth(10.0, pcs_w=3000.0, dso_mode="trip", dso_limit_pct=0.0),
              truth(10.0 + late_s, pcs_w=0.0, pcs_enabled=enabled, dso_mode="trip", dso_limit_pct=0.0),
              truth(12.0, pcs_w=0.0, pcs_enabled=enabled, dso_mode="trip", dso_limit_pct=0.0))
    assert checks(o) == ["dso_trip"]


def test_a_dso_limit_caps_discharge_but_leaves_the_14a_minimum_for_charging():
    limit = dict(dso_mode="limit", dso_limit_pct=30.0)  # 30 % of 5 kW = 1.5 kW
    o = story(oracle(), truth(0.0, pcs_w=-4000.0, **limit), truth(5.0, pcs_w=-4100.0, **limit))
    assert checks(o) == []  # charging 4.1 kW <= the §14a minimum of 4.2 kW
    o = story(oracle(), truth(0.0, pcs_w=2500.0, **limit), truth(0.5, pcs_w=2500.0, **limit),
              truth(2.0, pcs_w=1500.0, **limit))
    assert checks(o) == ["dso_limit"]  # 2.5 kW discharge still at 2 s > one poll + 100 ms


def test_charging_the_pcs_cap_blocks_under_a_dso_order_is_a_finding():
    # DSO 0 %: the EMS may charge up to the §14a 4.2 kW, asks the PCS for 3 kW, but wrote the order's 0 % as
    # the PCS's own limit: the PCS delivers nothing.
    blocked = dict(dso_mode="limit", dso_limit_pct=0.0, pcs_setpoint_w=-3000.0, pcs_cap_w=0.0, pcs_w=0.0)
    o = story(oracle(), truth(0.0, **blocked), truth(60.0, **blocked))
    assert checks(o) == []
    assert o.findings.charge_blocked_under_dso_limit_s == pytest.approx(60.0)
    assert o.findings.charge_blocked_under_dso_limit_kwh == pytest.approx(3.0 * 60 / 3600)


def test_grid_import_may_exceed_the_connection_limit_only_for_the_reaction_time():
    over = dict(load_w=8000.0, pcs_w=0.0)  # 8 kW import, 7 kW connection, the battery could discharge
    o = story(oracle(), truth(0.0, **over), truth(5.0, **over), truth(14.0, load_w=8000.0, pcs_w=2000.0))
    assert checks(o) == []  # 14 s < meter poll 5 + PCS poll 5 + period 5 + 0.1
    o = story(oracle(), truth(0.0, **over), truth(10.0, **over), truth(16.0, load_w=8000.0, pcs_w=2000.0))
    assert checks(o) == ["grid_import"]
    # Within the grid meter's 1 % nobody can tell: 7.05 kW against 7 kW is no excursion.
    o = story(oracle(), truth(0.0, load_w=7050.0), truth(60.0, load_w=7050.0))
    assert checks(o) == []


def test_import_the_battery_cannot_help_with_is_not_the_ems_fault():
    empty = dict(load_w=8000.0, pcs_w=0.0, soc_pct=10.0)  # at min SoC: no discharge allowed
    o = story(oracle(), truth(0.0, **empty), truth(60.0, **empty))
    assert checks(o) == []


def test_export_beyond_what_the_battery_can_absorb_is_a_finding_not_a_violation():
    # 70 % of 8 kWp = 5.6 kW may be exported; 7 kW PV, full battery: only PV curtailment would help.
    full = dict(pv_w=7500.0, load_w=500.0, soc_pct=95.0)
    o = story(oracle(), truth(0.0, **full), truth(30.0, **full), truth(60.0, **full))
    assert checks(o) == []
    assert o.findings.export_beyond_battery_s == pytest.approx(60.0)
    assert o.findings.export_beyond_battery_peak_w == pytest.approx(7000.0 - 5600.0 * 1.01)
    # With room in the battery it is the EMS's job to charge.
    room = dict(pv_w=7500.0, load_w=500.0, soc_pct=60.0)
    o = story(oracle(), truth(0.0, **room), truth(30.0, **room))
    assert checks(o) == ["grid_export"]


def test_the_bms_limits_and_the_soc_window_hold_after_the_bms_poll_and_one_period():
    o = story(oracle(), truth(0.0, pcs_w=3000.0, bms_discharge_limit_w=1000.0),
              truth(8.0, pcs_w=1000.0, bms_discharge_limit_w=1000.0))
    assert checks(o) == []
    o = story(oracle(), truth(0.0, pcs_w=3000.0, bms_discharge_limit_w=1000.0),
              truth(12.0, pcs_w=3000.0, bms_discharge_limit_w=1000.0))
    assert checks(o) == ["bms_limits"]
    o = story(oracle(), truth(0.0, pcs_w=500.0, soc_pct=9.3), truth(12.0, pcs_w=500.0, soc_pct=9.2))
    assert checks(o) == ["soc_window"]
    o = story(oracle(), truth(0.0, pcs_w=500.0, soc_pct=9.6), truth(12.0, pcs_w=500.0, soc_pct=9.6))
    assert checks(o) == []  # within half the BMS's 1 % SoC resolution


def test_a_lost_input_must_bring_the_plant_to_0_w_and_a_lost_pcs_its_own_fallback():
    o = oracle()
    silent_meter = Fault(1, "device_silent", 0.0, 120.0, {"device": "meter"})
    o.fault_started(silent_meter, T0)
    story(o, truth(0.0, pcs_w=2000.0), truth(11.0, pcs_w=2000.0), truth(12.0, pcs_w=0.0))
    assert checks(o) == ["input_loss"]  # still 2 kW after poll 5 + timeout 1 + period 5 + 0.1 s
    o = oracle()
    silent_pcs = Fault(2, "device_silent", 0.0, 120.0, {"device": "pcs"})
    o.fault_started(silent_pcs, T0)
    story(o, truth(0.0, pcs_w=2000.0), truth(10.0, pcs_w=2000.0), truth(12.0, pcs_w=0.0, pcs_fallback=True))
    assert checks(o) == []
    assert [(r.check, r.reaction_s) for r in o.reactions] == [("pcs_fallback", pytest.approx(12.0))]


def test_a_killed_ems_leaves_the_pcs_to_its_fallback_and_grid_checks_wait_for_it():
    o = oracle()
    o.fault_started(Fault(1, "ems_kill", 0.0, 60.0), T0)
    o.ems_down(T0, killed=True)
    # The dead EMS's last setpoint (3 kW) outlives a BMS limit drop until the PCS's own fallback: longer
    # than the EMS would be allowed (10.1 s), within the fallback's bound (15.1 s).
    held = dict(pcs_w=3000.0, bms_discharge_limit_w=1000.0)
    story(o, truth(0.0, **held), truth(8.0, **held), truth(14.0, pcs_w=0.0, pcs_fallback=True,
                                                           bms_discharge_limit_w=1000.0))
    assert checks(o) == []


def test_a_fallback_while_the_ems_is_up_and_in_control_is_a_heartbeat_lapse():
    o = oracle()
    steps = [truth(float(t)) for t in range(0, 100, 5)] + [truth(100.0, pcs_fallback=True, pcs_contact_ts=T0 + 80)]
    story(o, *steps)
    assert checks(o) == ["pcs_heartbeat_lapse"]


def test_a_config_change_lowers_the_ratings_from_its_instant_plus_one_period():
    o = oracle()
    o.observe(truth(0.0, pcs_w=4000.0))
    lowered = replace(CFG, bess=replace(CFG.bess, max_discharge_power_kw=2.0))
    o.config_changed(lowered, T0 + 1.0)
    story(o, truth(4.0, pcs_w=2000.0), truth(10.0, pcs_w=2000.0))
    assert checks(o) == []
    o = oracle()
    o.observe(truth(0.0, pcs_w=4000.0))
    o.config_changed(lowered, T0 + 1.0)
    story(o, truth(7.0, pcs_w=4000.0), truth(10.0, pcs_w=2000.0))
    assert checks(o) == ["ratings"]


def test_the_oracles_feed_in_reading_is_its_own():
    feedin = replace(CFG.feedin_limitation, mode="dynamic",
                     dynamic_rules=[FeedinRule(start="10:00", end="14:00", limit_pct=50.0)])
    assert export_limit_w(feedin, 12 * 60, 8.0, 7000.0) == pytest.approx(4000.0)
    assert export_limit_w(feedin, 9 * 60, 8.0, 7000.0) == pytest.approx(5600.0)  # the fixed 70 % outside
    assert export_limit_w(replace(feedin, enabled=False), 12 * 60, 8.0, 7000.0) == pytest.approx(7000.0)


def test_the_schedule_is_deterministic_and_foreground_faults_never_overlap():
    a, b = schedule(30, 1), schedule(30, 1)
    assert a == b and a != schedule(30, 2)
    foreground = [f for f in a if not f.background]
    assert all(x.end_s <= y.start_s for x, y in zip(foreground, foreground[1:]))
    assert all(f.end_s <= 30 * 86400 for f in a)
    assert len(a) > 500  # a month of trouble


def test_every_kind_and_every_device_occurs_in_a_short_each_kind_schedule():
    faults = schedule(1, 1, each_kind=True)
    kinds = {f.kind for f in faults}
    assert kinds == set(KINDS)
    for kind in ("device_silent", "device_exception", "device_garbage", "reconnect_storm"):
        assert {f.params["device"] for f in faults if f.kind == kind} == set(DEVICES)
    assert not [f for f in schedule(1, 1, {"dso_trip": 0.0}, each_kind=True) if f.kind == "dso_trip"]


def test_a_month_splits_into_consecutive_segments_that_keep_every_fault():
    faults = schedule(30, 1)
    segments = plan_segments(30, 2)
    assert [(s.offset_s, s.days) for s in segments] == [(0.0, 15.0), (15 * 86400.0, 15.0)]
    kept = [f for s in segments for f in faults_of(faults, s)]
    assert len(kept) >= len(faults) - 2  # only a fault running over a segment's end can be cut away
    assert all(0 <= f.start_s < 15 * 86400 for s in segments for f in faults_of(faults, s))


def test_a_frozen_meter_is_a_lost_input_told_by_the_stale_timeout_and_its_export_a_finding():
    """A meter that answers with hung readings: the EMS can only tell once the stale timeout has passed since
    its grid power last moved, so 0 W is due after P(meter) + T + S + 100 ms; until then and after it, export
    the battery could not take at 0 W is no violation of the export check - the input is gone."""
    assert SETTINGS.t_frozen_s == pytest.approx(5.0 + 10.0 + 5.0 + 0.1)
    sunny = dict(pv_w=7500.0, load_w=500.0, soc_pct=60.0)  # 7 kW export, 5.6 kW allowed, room in the battery
    stale = Fault(1, "meter_stale", 0.0, 120.0, {})
    o = oracle()
    o.fault_started(stale, T0)
    story(o, truth(0.0, pcs_w=-1000.0, **sunny), truth(19.0, pcs_w=-1000.0, **sunny), truth(20.0, pcs_w=0.0, **sunny),
          truth(60.0, pcs_w=0.0, **sunny))
    assert checks(o) == []
    assert [(r.kind, r.check, r.reaction_s) for r in o.reactions] == [("meter_stale", "input_loss",
                                                                        pytest.approx(20.0))]
    assert o.findings.export_beyond_battery_s > 0  # only PV curtailment could have helped meanwhile
    o = oracle()
    o.fault_started(stale, T0)
    story(o, truth(0.0, pcs_w=-1000.0, **sunny), truth(25.0, pcs_w=-1000.0, **sunny))
    assert checks(o) == ["input_loss"]  # still charging on a reading that is no measurement

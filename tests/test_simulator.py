"""Plant simulator behaviour an operator or the EMS would notice."""
from __future__ import annotations

import math
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ems.config.schema import BessConfig, DsoScriptStep, SimulatorConfig
from ems.data.profiles import load_profile, pv_profile
from ems.sim.battery import BatteryModel
from ems.sim.plant import PlantSimulator
from ems.data.profiles import HOUSEHOLD_FILE, ProfileSeries

VIENNA = ZoneInfo("Europe/Vienna")


def local_epoch(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, fold: int = 0) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=VIENNA, fold=fold).timestamp()


def battery(**kw) -> BatteryModel:
    args = dict(nominal_capacity_kwh=10.0, rated_charge_power_w=5000.0, rated_discharge_power_w=5000.0,
                charge_efficiency=0.95, discharge_efficiency=0.93)
    args.update(kw)
    return BatteryModel(**args)


setpoints = st.lists(st.floats(min_value=-60_000, max_value=60_000, allow_nan=False), min_size=1, max_size=60)


@settings(max_examples=40, deadline=None, database=None)
@given(setpoints=setpoints, dt_s=st.sampled_from([0.5, 1.0, 7.0, 60.0, 900.0]),
       soc=st.floats(min_value=0, max_value=100), day=st.integers(min_value=0, max_value=364))
def test_grid_closes_the_energy_balance_every_step(setpoints, dt_s, soc, day):
    start = local_epoch(2026, 1, 1) + day * 86400 + 36000
    plant = PlantSimulator(BessConfig(capacity_kwh=20, max_charge_power_kw=10, max_discharge_power_kw=10),
                           SimulatorConfig(initial_soc_pct=soc), start)
    s = plant.sample()
    assert s.grid_power_w == s.load_power_w - s.pv_power_w - s.bess_power_w
    now = start
    for sp in setpoints:
        before = plant.sample()
        now += dt_s
        s = plant.step(now, dt_s, sp)
        assert s.ts == now
        assert s.grid_power_w == s.load_power_w - s.pv_power_w - s.bess_power_w
        # The battery never delivers more than asked, nor more than the BMS allowed.
        assert abs(s.bess_power_w) <= abs(sp)
        assert s.bess_power_w * sp >= 0
        assert -before.max_charge_power_w - 1e-9 <= s.bess_power_w <= before.max_discharge_power_w + 1e-9
        assert 0.0 <= s.soc_pct <= 100.0
        assert s.load_power_w >= 0 and s.pv_power_w >= 0


@settings(max_examples=60, deadline=None, database=None)
@given(requests=st.lists(st.tuples(st.floats(min_value=-20_000, max_value=20_000, allow_nan=False),
                                   st.sampled_from([1.0, 30.0, 600.0, 3600.0])), min_size=1, max_size=80),
       soc=st.floats(min_value=0, max_value=100), soh=st.floats(min_value=50, max_value=100))
def test_battery_energy_is_conserved(requests, soc, soh):
    b = battery(soc_pct=soc, soh_pct=soh)
    stored0 = b.stored_energy_kwh
    for p, dt in requests:
        b.step(p, dt)
    delta = b.stored_energy_kwh - stored0
    expected = b.energy_charged_kwh * b.charge_efficiency - b.energy_discharged_kwh / b.discharge_efficiency
    scale = max(1.0, b.energy_charged_kwh + b.energy_discharged_kwh)
    assert abs(delta - expected) <= 1e-9 * scale
    assert abs(b.losses_kwh - (b.energy_charged_kwh - b.energy_discharged_kwh - delta)) <= 1e-9 * scale
    assert b.losses_kwh >= 0


@settings(max_examples=60, deadline=None, database=None)
@given(requests=st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                                   st.sampled_from([1e12, -1e12, 0.0])), min_size=1, max_size=50),
       dt_s=st.sampled_from([0.05, 1.0, 3600.0, 86400.0]), soc=st.floats(min_value=0, max_value=100))
def test_soc_stays_within_0_and_100_whatever_is_requested(requests, dt_s, soc):
    b = battery(soc_pct=soc, rated_charge_power_w=1e9, rated_discharge_power_w=1e9)
    for p in requests:
        b.step(p, dt_s)
        assert 0.0 <= b.soc_pct <= 100.0
        assert 0.0 <= b.stored_energy_kwh <= b.capacity_kwh * (1 + 1e-12)


def test_full_battery_accepts_almost_no_charge_and_empty_one_gives_almost_nothing():
    # Household-sized 10 kWh / 5 kW pack: the BMS taper leaves at most 10 % of the request at 99 % / 1 %.
    full = battery(soc_pct=99.0)
    got = full.step(-5000.0, 1.0)
    assert -500.0 - 1e-9 <= got <= 0.0
    empty = battery(soc_pct=1.0)
    got = empty.step(5000.0, 1.0)
    assert 0.0 <= got <= 500.0 + 1e-9
    # ... while mid-range the full request goes through.
    assert battery(soc_pct=50.0).step(-5000.0, 1.0) == -5000.0
    assert battery(soc_pct=50.0).step(5000.0, 1.0) == 5000.0


def test_charging_near_full_for_hours_never_overshoots_and_ends_at_100():
    b = battery(soc_pct=99.0)
    for _ in range(4 * 3600):
        b.step(-5000.0, 1.0)
    assert 99.9 < b.soc_pct <= 100.0


def test_hot_battery_is_derated():
    cool = PlantSimulator(BessConfig(), SimulatorConfig(ambient_temperature_c=25.0), local_epoch(2026, 7, 1, 14))
    hot = PlantSimulator(BessConfig(), SimulatorConfig(ambient_temperature_c=50.0), local_epoch(2026, 7, 1, 14))
    assert cool.sample().max_discharge_power_w == 30_000.0
    assert hot.sample().max_charge_power_w < 0.6 * 30_000.0
    assert hot.sample().max_discharge_power_w < 0.6 * 30_000.0
    assert hot.sample().alarm_bits != 0 and any("temperature" in a for a in hot.sample().alarms)
    s = hot.step(hot.start_epoch_s + 1, 1.0, 30_000.0)
    assert s.bess_power_w < 0.6 * 30_000.0
    assert s.status_text == "discharging"


def test_battery_heats_under_load_and_cools_back_to_ambient():
    b = battery(nominal_capacity_kwh=10.0, rated_discharge_power_w=10_000.0, soc_pct=100.0)
    for _ in range(60):
        b.step(10_000.0, 60.0)  # one hour at 1C
    warm = b.temperature_c
    assert warm > 25.5
    for _ in range(6):
        b.step(0.0, 3600.0)
    assert b.temperature_c < 25.1 and b.status_text == "standby"


def test_dso_script_switches_at_scripted_times_and_override_wins():
    script = (DsoScriptStep(at_s=600, mode="limit", limit_pct=60.0), DsoScriptStep(at_s=1200, mode="trip"))
    start = local_epoch(2026, 5, 4, 9)
    plant = PlantSimulator(BessConfig(), SimulatorConfig(dso_script=script), start)
    seen = {}
    for t in range(0, 1800, 30):
        s = plant.step(start + t, 30.0 if t else 0.0, 0.0)
        seen[t] = (s.dso_mode, s.dso_limit_pct)
    assert seen[0] == ("normal", 100.0) and seen[570] == ("normal", 100.0)
    assert seen[600] == ("limit", 60.0) and seen[1170] == ("limit", 60.0)
    assert seen[1200] == ("trip", 0.0) and seen[1770] == ("trip", 0.0)
    plant.dso.set_state("limit", 30.0)
    assert plant.step(start + 1800, 30.0, 0.0).dso_mode == "limit"
    assert plant.step(start + 1830, 30.0, 0.0).dso_limit_pct == 30.0
    plant.dso.set_state("normal", 100.0)
    assert plant.step(start + 1860, 30.0, 0.0).dso_mode == "normal"
    plant.dso.clear_override()
    assert plant.step(start + 1890, 30.0, 0.0).dso_mode == "trip"
    with pytest.raises(ValueError):
        plant.dso.set_state("open", 50.0)


def test_pv_is_zero_at_midnight_and_positive_at_noon_in_june():
    start = local_epoch(2026, 6, 15, 0)
    plant = PlantSimulator(BessConfig(), SimulatorConfig(pv_peak_kwp=8.0), start)
    assert plant.sample().pv_power_w == 0.0
    noon = local_epoch(2026, 6, 15, 12)
    s = plant.step(noon, noon - start, 0.0)
    assert s.pv_power_w > 1000.0
    assert s.pv_power_w < 8000.0
    no_pv = PlantSimulator(BessConfig(), SimulatorConfig(pv_peak_kwp=0.0), noon)
    assert no_pv.sample().pv_power_w == 0.0


@pytest.mark.parametrize("annual_kwh", [4000.0, 6500.0])
def test_household_day_integrates_to_its_share_of_the_annual_energy(annual_kwh):
    start = local_epoch(2026, 4, 15)
    plant = PlantSimulator(BessConfig(), SimulatorConfig(annual_load_kwh=annual_kwh, pv_peak_kwp=0.0), start)
    energy_kwh = 0.0
    for i in range(1, 1441):
        s = plant.step(start + 60 * i, 60.0, 0.0)
        energy_kwh += s.load_power_w * 60 / 3.6e6
    # H25 days range from ~0.87 to ~1.23 of the annual mean day.
    assert energy_kwh == pytest.approx(annual_kwh / 366, rel=0.25)


def test_load_noise_makes_consecutive_seconds_differ_but_stays_small():
    start = local_epoch(2026, 3, 3, 3)  # night: base load lowest
    plant = PlantSimulator(BessConfig(), SimulatorConfig(), start)
    profile = load_profile("household", 4000.0)
    loads, noise = [], []
    for i in range(1, 121):
        s = plant.step(start + i, 1.0, 0.0)
        loads.append(s.load_power_w)
        noise.append(s.load_power_w - profile.value_at(start + i) * 1000.0)
        assert s.load_power_w >= 0
        assert abs(noise[-1]) <= 400.0  # "a few hundred W at most"
    # The deviation from the smooth profile itself changes every second, not just the interpolation.
    assert all(abs(a - b) > 1e-6 for a, b in zip(noise, noise[1:]))
    # Same seed, same plant time -> same load (reproducible demos); another seed differs.
    again = PlantSimulator(BessConfig(), SimulatorConfig(), start)
    assert again.step(start + 1, 1.0, 0.0).load_power_w == loads[0]
    other = PlantSimulator(BessConfig(), SimulatorConfig(seed=7), start)
    assert other.step(start + 1, 1.0, 0.0).load_power_w != loads[0]


@pytest.mark.parametrize("when", [(6, 15, 12, 7, 30), (1, 10, 0, 15, 0), (12, 31, 23, 50, 0), (3, 1, 5, 0, 0)])
def test_profile_in_2026_repeats_2024_at_the_same_local_time(when):
    mo, d, h, mi, s = when
    for series in (load_profile("household", 4000.0), load_profile("commercial", 50000.0), pv_profile(8.0)):
        assert series.value_at(local_epoch(2026, mo, d, h, mi, s)) == series.value_at(local_epoch(2024, mo, d, h, mi, s))


def test_profile_hits_data_samples_and_interpolates_between_them():
    series = ProfileSeries(HOUSEHOLD_FILE)
    # File rows: 00:15 -> 0.349753 kW, 00:30 -> 0.336422 kW (2024-01-01, +01:00).
    assert series.value_at(local_epoch(2026, 1, 1, 0, 15)) == pytest.approx(0.349753)
    assert series.value_at(local_epoch(2026, 1, 1, 0, 22, 30)) == pytest.approx((0.349753 + 0.336422) / 2)
    assert load_profile("household", 8000.0).value_at(local_epoch(2026, 1, 1, 0, 15)) == pytest.approx(0.699506)
    # Across the autumn DST change the repeated hour maps onto the repeated hour, values stay sane.
    first = series.value_at(local_epoch(2026, 10, 25, 2, 30, fold=0))
    second = series.value_at(local_epoch(2026, 10, 25, 2, 30, fold=1))
    assert first == pytest.approx(second) and 0 < first < 1
    # A leap day in a future leap year uses the data's leap day.
    assert series.value_at(local_epoch(2028, 2, 29, 12)) == series.value_at(local_epoch(2024, 2, 29, 12))


def test_simulator_does_not_pull_in_numpy_or_pandas():
    code = "import sys, ems.sim; print('numpy' in sys.modules or 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_first_sample_exists_before_any_step_and_values_are_finite():
    plant = PlantSimulator(BessConfig(), SimulatorConfig(initial_soc_pct=42.0, soh_pct=90.0), local_epoch(2026, 2, 1))
    s = plant.sample()
    assert s.soc_pct == 42.0 and s.soh_pct == 90.0 and s.bess_power_w == 0.0
    assert s.status_text == "standby" and s.alarms == ()
    assert s.insulation_resistance_kohm > 1000
    assert all(math.isfinite(v) for v in (s.voltage_v, s.current_a, s.temperature_c, s.grid_power_w))
    s2 = plant.step(plant.start_epoch_s + 1, 1.0, -10_000.0)
    assert s2.current_a > 0 and s2.voltage_v > s.voltage_v  # charging: BMS current positive, voltage up
    assert plant.sample() is s2

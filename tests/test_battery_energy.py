"""The shared battery energy step: limits, efficiencies, the SoC window and its bounds under rounding."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ems.battery_energy import battery_step

PACK = dict(min_energy=1.0, max_energy=9.0, max_charge=5.0, max_discharge=4.0, charge_efficiency=0.95,
            discharge_efficiency=0.9)


def test_within_limits_the_request_is_delivered_and_the_efficiencies_apply() -> None:
    ac, e = battery_step(5.0, 2.0, 0.5, **PACK)
    assert ac == 2.0
    assert e == pytest.approx(5.0 - 2.0 * 0.5 / 0.9)
    ac, e = battery_step(5.0, -3.0, 0.5, **PACK)
    assert ac == -3.0
    assert e == pytest.approx(5.0 + 3.0 * 0.5 * 0.95)


def test_power_limits_cut_the_request() -> None:
    assert battery_step(5.0, 10.0, 0.25, **PACK)[0] == 4.0
    assert battery_step(5.0, -10.0, 0.25, **PACK)[0] == -5.0


def test_the_soc_window_cuts_the_request_and_the_energy_lands_on_the_bound() -> None:
    ac, e = battery_step(1.5, 4.0, 1.0, **PACK)  # 0.5 kWh above the minimum
    assert ac == pytest.approx(0.5 * 0.9)
    assert e == 1.0
    ac, e = battery_step(8.5, -5.0, 1.0, **PACK)  # 0.5 kWh below the maximum
    assert ac == pytest.approx(-0.5 / 0.95)
    assert e == 9.0


def test_a_battery_outside_the_window_is_not_pulled_back_into_it() -> None:
    assert battery_step(0.5, 2.0, 1.0, **PACK) == (0.0, 0.5)  # below the minimum: no discharge
    ac, e = battery_step(0.5, -2.0, 1.0, **PACK)  # ... but it may charge
    assert ac == -2.0 and e == pytest.approx(0.5 + 2.0 * 0.95)
    assert battery_step(9.5, -2.0, 1.0, **PACK) == (0.0, 9.5)  # above the maximum: no charge
    ac, e = battery_step(9.5, 2.0, 1.0, **PACK)
    assert ac == 2.0 and e == pytest.approx(9.5 - 2.0 / 0.9)


def test_no_request_or_no_time_changes_nothing() -> None:
    assert battery_step(5.0, 0.0, 1.0, **PACK) == (0.0, 5.0)
    assert battery_step(5.0, 3.0, 0.0, **PACK) == (0.0, 5.0)
    assert battery_step(5.0, -3.0, -1.0, **PACK) == (0.0, 5.0)


def test_units_only_need_to_be_consistent() -> None:
    """kWh, kW, h and J, W, s give the same step."""
    ac_kw, e_kwh = battery_step(5.0, 2.0, 0.5, **PACK)
    ac_w, e_j = battery_step(5.0 * 3.6e6, 2000.0, 1800.0, min_energy=3.6e6, max_energy=9 * 3.6e6, max_charge=5000.0,
                             max_discharge=4000.0, charge_efficiency=0.95, discharge_efficiency=0.9)
    assert ac_w == pytest.approx(1000.0 * ac_kw)
    assert e_j == pytest.approx(3.6e6 * e_kwh)


@settings(max_examples=300, deadline=None, database=None)
@given(energy=st.floats(min_value=0, max_value=12), request=st.floats(min_value=-50, max_value=50),
       dt=st.sampled_from([1 / 60, 1 / 12, 0.25, 1.0, 7 / 3]),
       eta_c=st.floats(min_value=0.5, max_value=1.0), eta_d=st.floats(min_value=0.5, max_value=1.0))
def test_never_more_than_asked_never_across_a_bound_and_energy_is_accounted(energy: float, request: float, dt: float,
                                                                             eta_c: float, eta_d: float) -> None:
    pack = dict(PACK, charge_efficiency=eta_c, discharge_efficiency=eta_d)
    ac, e = battery_step(energy, request, dt, **pack)
    assert abs(ac) <= abs(request) and ac * request >= 0
    assert -pack["max_charge"] <= ac <= pack["max_discharge"]
    assert min(energy, pack["min_energy"]) <= e <= max(energy, pack["max_energy"])
    expected = energy - ac * dt / eta_d if ac > 0 else energy - ac * dt * eta_c
    assert e == pytest.approx(expected, abs=1e-9)

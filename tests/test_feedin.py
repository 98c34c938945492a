"""Feed-in limitation: which export limit is in force at a local time of day, for each mode and rule set."""
from __future__ import annotations

import math
from datetime import datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ems.config.schema import FeedinLimitationConfig, FeedinRule
from ems.config.validate import parse_config
from ems.localtime import hhmm_to_minutes, in_daily_window, to_minutes_of_day
from ems.safety.feedin import export_limit_w, feedin_limit_pct


def hm(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def dynamic(*rules: tuple[str, str, float], fixed_pct: float = 70.0, pv: bool = True) -> FeedinLimitationConfig:
    return FeedinLimitationConfig(enabled=True, mode="dynamic", fixed_limit_pct=fixed_pct, pv_integration_enabled=pv,
                                  dynamic_rules=tuple(FeedinRule(s, e, p) for s, e, p in rules))


FIXED_60 = FeedinLimitationConfig(enabled=True, mode="fixed", fixed_limit_pct=60.0)
NOON_ZERO = dynamic(("10:00", "16:00", 0.0))
NIGHT_WRAP = dynamic(("22:00", "06:00", 30.0), fixed_pct=100.0)
TO_MIDNIGHT = dynamic(("18:00", "24:00", 40.0), fixed_pct=100.0)
WHOLE_DAY = dynamic(("00:00", "24:00", 55.0), fixed_pct=100.0)
OVERLAP = dynamic(("08:00", "18:00", 60.0), ("11:00", "14:00", 20.0), fixed_pct=100.0)
OVERLAP_REVERSED = dynamic(("11:00", "14:00", 20.0), ("08:00", "18:00", 60.0), fixed_pct=100.0)
EMPTY_WINDOW = dynamic(("09:00", "09:00", 0.0), fixed_pct=80.0)


def row(cfg: FeedinLimitationConfig, at: str, expected: float | None, id: str) -> Any:
    return pytest.param(cfg, hm(at), expected, id=id)


RULES_TABLE = [
    row(FeedinLimitationConfig(), "12:00", None, "defaults: disabled -> no limitation"),
    row(FeedinLimitationConfig(enabled=True, mode="off"), "12:00", None, "enabled but mode off -> no limitation"),
    row(FeedinLimitationConfig(enabled=False, mode="fixed", fixed_limit_pct=60), "12:00", None,
        "mode fixed but disabled -> no limitation"),
    row(FIXED_60, "03:00", 60.0, "fixed 60 % at night"),
    row(FIXED_60, "12:00", 60.0, "fixed 60 % at noon"),
    row(NOON_ZERO, "09:59", 70.0, "dynamic: one minute before the window -> fixed % applies"),
    row(NOON_ZERO, "10:00", 0.0, "dynamic: window start is inside"),
    row(NOON_ZERO, "15:59", 0.0, "dynamic: last minute of the window"),
    row(NOON_ZERO, "16:00", 70.0, "dynamic: window end is outside"),
    row(NIGHT_WRAP, "23:30", 30.0, "wrap past midnight: late evening inside"),
    row(NIGHT_WRAP, "00:00", 30.0, "wrap past midnight: midnight inside"),
    row(NIGHT_WRAP, "05:59", 30.0, "wrap past midnight: early morning inside"),
    row(NIGHT_WRAP, "06:00", 100.0, "wrap past midnight: end is outside"),
    row(NIGHT_WRAP, "21:59", 100.0, "wrap past midnight: before the start is outside"),
    row(TO_MIDNIGHT, "23:59", 40.0, "24:00 end: the last minute of the day is inside"),
    row(TO_MIDNIGHT, "00:00", 100.0, "24:00 end: the next midnight is outside"),
    row(TO_MIDNIGHT, "17:59", 100.0, "24:00 end: before the start is outside"),
    row(WHOLE_DAY, "00:00", 55.0, "00:00-24:00 covers midnight"),
    row(WHOLE_DAY, "23:59", 55.0, "00:00-24:00 covers the last minute"),
    row(OVERLAP, "12:00", 20.0, "overlapping rules -> the most restrictive"),
    row(OVERLAP_REVERSED, "12:00", 20.0, "overlapping rules in the other order -> the same"),
    row(OVERLAP, "09:00", 60.0, "only the wider rule applies"),
    row(OVERLAP, "19:00", 100.0, "no rule -> fixed %"),
    row(EMPTY_WINDOW, "09:00", 80.0, "start == end is an empty window"),
    row(dynamic(fixed_pct=45.0), "12:00", 45.0, "dynamic with no rules -> fixed %"),
]


@pytest.mark.parametrize("cfg, minute, expected", RULES_TABLE)
def test_feedin_limit_pct_by_time_of_day(cfg, minute, expected):
    assert feedin_limit_pct(cfg, minute) == expected


@pytest.mark.parametrize("cfg, pv_peak_kw, rating_kw, expected_w", [
    pytest.param(FIXED_60, 10.0, 15.0, 15_000 * 0.6, id="without PV integration: % of the grid feed-in rating"),
    pytest.param(FeedinLimitationConfig(enabled=True, mode="fixed", fixed_limit_pct=60.0, pv_integration_enabled=True),
                 10.0, 15.0, 6000.0, id="with PV integration: % of the PV peak"),
    pytest.param(FeedinLimitationConfig(enabled=True, mode="fixed", fixed_limit_pct=60.0, pv_integration_enabled=True),
                 0.0, 15.0, 0.0, id="PV integration with unknown PV peak -> no export"),
    pytest.param(FeedinLimitationConfig(enabled=True, mode="fixed", fixed_limit_pct=60.0, pv_integration_enabled=True),
                 math.nan, 15.0, 0.0, id="PV integration with a NaN PV peak -> no export"),
    pytest.param(FeedinLimitationConfig(enabled=True, mode="fixed", fixed_limit_pct=60.0, pv_integration_enabled=True),
                 -5.0, 15.0, 0.0, id="PV integration with a negative PV peak -> no export"),
    pytest.param(FeedinLimitationConfig(), 10.0, 15.0, None, id="no limitation -> None"),
])
def test_export_limit_w_refers_to_pv_peak_or_grid_rating(cfg, pv_peak_kw, rating_kw, expected_w):
    assert export_limit_w(cfg, hm("12:00"), pv_peak_kw, rating_kw) == expected_w


def test_dynamic_rules_with_pv_integration_give_watts_of_pv_peak():
    cfg = dynamic(("11:00", "15:00", 30.0), fixed_pct=70.0, pv=True)
    assert export_limit_w(cfg, hm("12:00"), 8.0, 30.0) == pytest.approx(2400.0)
    assert export_limit_w(cfg, hm("18:00"), 8.0, 30.0) == pytest.approx(5600.0)


def test_local_time_can_be_a_time_of_day():
    assert feedin_limit_pct(NOON_ZERO, time(10, 0)) == 0.0
    assert feedin_limit_pct(NOON_ZERO, time(9, 59, 59)) == 70.0
    assert feedin_limit_pct(TO_MIDNIGHT, time(23, 59, 59, 999_999)) == 40.0
    assert to_minutes_of_day(time(1, 30, 30)) == pytest.approx(90.5)


@pytest.mark.parametrize("when", [math.nan, math.inf, None, "12:00"], ids=repr)
def test_unknown_time_of_day_applies_the_most_restrictive_percentage(when):
    cfg = dynamic(("10:00", "16:00", 25.0), ("18:00", "20:00", 50.0), fixed_pct=70.0)
    assert feedin_limit_pct(cfg, when) == 25.0


def test_minutes_outside_one_day_wrap_around():
    assert feedin_limit_pct(NIGHT_WRAP, hm("23:00") + 1440) == 30.0
    assert feedin_limit_pct(NOON_ZERO, hm("12:00") - 1440) == 0.0


def test_a_rule_with_unreadable_times_is_taken_as_always_in_force():
    # Validated config never holds this; a rule built in code with a typo must not lift the limit.
    cfg = dynamic(("25:00", "06:00", 10.0), fixed_pct=70.0)
    assert feedin_limit_pct(cfg, hm("12:00")) == 10.0


def test_rules_from_yaml_config_are_read_the_same_way():
    cfg = parse_config(FeedinLimitationConfig, {"enabled": True, "mode": "dynamic", "fixed_limit_pct": 70,
                                                "dynamic_rules": [{"start": "22:00", "end": "06:00", "limit_pct": 30}]})
    assert feedin_limit_pct(cfg, hm("02:00")) == 30.0
    assert feedin_limit_pct(cfg, hm("12:00")) == 70.0


@pytest.mark.parametrize("text, minutes", [("00:00", 0), ("06:05", 365), ("23:59", 1439), ("24:00", 1440)])
def test_hhmm_to_minutes(text, minutes):
    assert hhmm_to_minutes(text) == minutes


@pytest.mark.parametrize("text", ["24:01", "12:60", "noon", "1200", "12:5"])
def test_hhmm_to_minutes_rejects_bad_times_naming_them(text):
    with pytest.raises(ValueError, match=repr(text).replace("(", r"\(")):
        hhmm_to_minutes(text)


# -- properties -----------------------------------------------------------------------------------

hhmm = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59)) | st.just("24:00")
rules = st.builds(FeedinRule, hhmm, hhmm, st.floats(0, 100))
minutes = st.integers(0, 1439)


@settings(max_examples=300, deadline=None, database=None)
@given(existing=st.lists(rules, max_size=4), added=rules, fixed=st.floats(0, 100), minute=minutes)
def test_an_added_rule_only_acts_inside_its_window_and_caps_the_limit_there(existing, added, fixed, minute):
    before = FeedinLimitationConfig(enabled=True, mode="dynamic", fixed_limit_pct=fixed, dynamic_rules=tuple(existing))
    after = FeedinLimitationConfig(enabled=True, mode="dynamic", fixed_limit_pct=fixed,
                                   dynamic_rules=(*existing, added))
    if in_daily_window(minute, added.start, added.end):
        assert feedin_limit_pct(after, minute) <= added.limit_pct
    else:
        assert feedin_limit_pct(after, minute) == feedin_limit_pct(before, minute)


@settings(max_examples=300, deadline=None, database=None)
@given(start=st.integers(1, 1439), end=st.integers(0, 1438), pct=st.floats(0, 99), minute=minutes)
def test_a_window_wrapping_midnight_equals_its_two_halves(start, end, pct, minute):
    if end >= start:
        end, start = start - 1, end + 1  # make it wrap
    fmt = lambda m: f"{m // 60:02d}:{m % 60:02d}"
    wrapped = dynamic((fmt(start), fmt(end), pct), fixed_pct=100.0)
    halves = dynamic((fmt(start), "24:00", pct), ("00:00", fmt(end), pct), fixed_pct=100.0)
    assert feedin_limit_pct(wrapped, minute) == feedin_limit_pct(halves, minute)
    assert (feedin_limit_pct(wrapped, minute) == pct) == (minute >= start or minute < end)  # fixed is 100 %


@settings(max_examples=200, deadline=None, database=None)
@given(rule_list=st.lists(rules, max_size=5), fixed=st.floats(0, 100), minute=minutes)
def test_dynamic_mode_is_never_unlimited(rule_list, fixed, minute):
    cfg = FeedinLimitationConfig(enabled=True, mode="dynamic", fixed_limit_pct=fixed, dynamic_rules=tuple(rule_list))
    pct = feedin_limit_pct(cfg, minute)
    assert pct is not None
    assert pct in {fixed, *(r.limit_pct for r in rule_list)}


def test_the_optimizer_plans_with_the_same_feed_in_limits_as_the_safety_loop():
    """Plan and clamp must agree, or the plan assumes exports the safety loop then cuts."""
    np = pytest.importorskip("numpy")
    from zoneinfo import ZoneInfo

    from ems.optimizer.tariffs import feedin_limit_kw
    vienna = ZoneInfo("Europe/Vienna")
    cfg = dynamic(("22:00", "06:00", 30.0), ("10:00", "16:00", 60.0), ("12:00", "13:00", 0.0), fixed_pct=70.0)
    day = datetime(2025, 6, 1, tzinfo=vienna)
    starts = [day + timedelta(minutes=15 * k) for k in range(96)]
    planned_kw = feedin_limit_kw(cfg, 8.0, [s.timestamp() for s in starts])
    clamped_kw = [export_limit_w(cfg, s.hour * 60 + s.minute, 8.0, 30.0) / 1000.0 for s in starts]
    assert np.allclose(planned_kw, clamped_kw)

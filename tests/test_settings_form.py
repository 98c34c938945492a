"""The settings form is the schema described: every key a section has is on the page or left off on purpose,
and what the page is told about a key (kind, bounds, choices, marks) is what the validator enforces."""
from __future__ import annotations

import pytest

from ems.api.settings_form import NOT_ON_THE_PAGE, SECTIONS, settings_form, unit_of
from ems.config.describe import describe_section
from ems.config.schema import BessConfig, FeedinLimitationConfig
from ems.config.validate import field_problem


@pytest.mark.parametrize("section", list(SECTIONS))
def test_every_key_of_a_shown_section_is_labelled_or_left_off_on_purpose(section):
    keys = {f["key"] for f in describe_section(section)}
    labelled = {key for key in SECTIONS[section][2] if "." not in key}
    assert keys - labelled == NOT_ON_THE_PAGE.get(section, set())
    assert labelled <= keys, "a label for a key the schema no longer has"


def test_the_description_carries_the_validators_bounds_and_marks():
    bess = {f["key"]: f for f in describe_section("bess")}
    soc = bess["min_soc_pct"]
    assert (soc["kind"], soc["min"], soc["max"]) == ("number", 0, 100)
    assert field_problem(BessConfig, "min_soc_pct", soc["max"] + 1) is not None
    assert field_problem(BessConfig, "min_soc_pct", soc["max"]) is None
    assert bess["capacity_kwh"]["exclusive_min"] is True

    feedin = {f["key"]: f for f in describe_section("feedin_limitation")}
    assert feedin["mode"]["kind"] == "choice" and feedin["mode"]["choices"] == ["off", "fixed", "dynamic"]
    assert field_problem(FeedinLimitationConfig, "mode", "sometimes") is not None
    rules = feedin["dynamic_rules"]
    assert rules["kind"] == "table" and rules["admin_only"] is True and rules["max_items"] == 48
    assert [f["key"] for f in rules["item_fields"]] == ["start", "end", "limit_pct"]

    forecast = {f["key"]: f for f in describe_section("forecast")}
    assert forecast["entsoe_token"]["secret"] is True and forecast["entsoe_token"]["nullable"] is True
    months = {f["key"]: f for f in describe_section("grid_tariffs")}["high_load_windows"]["item_fields"][3]
    assert (months["kind"], months["item_kind"]) == ("list", "integer")


def test_the_form_is_translated_and_names_units_and_strategies():
    strategies = [("arbitrage", "Arbitrage"), ("peak_shaving", "Peak shaving")]
    german = {s["name"]: s for s in settings_form("de", strategies)}
    bess = {f["key"]: f for f in german["bess"]["fields"]}
    assert german["bess"]["title"] == "Batterie"
    assert bess["max_charge_power_kw"]["label"] == "Maximale Ladeleistung" and bess["max_charge_power_kw"]["unit"] == "kW"
    assert "doc" not in bess["max_charge_power_kw"], "the developers' English doc stays out of the page"
    current = {f["key"]: f for f in german["strategy"]["fields"]}["current"]
    assert current["choices"] == ["arbitrage", "peak_shaving"]
    assert current["choice_labels"]["peak_shaving"] == "Lastspitzenkappung"
    assert [unit_of(k) for k in ("vat_pct", "power_price_eur_per_kw_month", "stale_timeout_s", "latitude_deg")] == \
        ["%", "€/kW/mo", "s", "°"]

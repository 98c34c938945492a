"""A site's register overrides: merged into the device's profile and checked as a profile file is, refused
with the key they name when they do not fit, and used by the poller and the connection test alike."""
from __future__ import annotations

import pytest

from ems.config.schema import EmsConfig, ModbusDeviceConfig
from ems.config.validate import parse_config
from ems.devices.overrides import OverrideError, with_overrides
from ems.devices.profile import load_library
from ems.errors import ConfigError
from ems.resources import profiles_dir
from ems.runtime import load_profiles

PROFILES, _BROKEN = load_library(profiles_dir())


def device(**overrides: dict) -> ModbusDeviceConfig:
    return parse_config(ModbusDeviceConfig, {"name": "bms", "role": "bms", "profile": "hithium_ess_5016",
                                             "host": "127.0.0.1", "register_overrides": overrides}, "device")


def test_an_override_changes_only_the_keys_it_sets_and_the_profile_stays_as_shipped():
    profile = PROFILES["hithium_ess_5016"]
    merged = with_overrides(profile, device(soc_pct={"scale": 0.5, "address": 900}).register_overrides)
    soc, shipped = merged.registers["soc_pct"], profile.registers["soc_pct"]
    assert (soc.scale, soc.address) == (0.5, 900)
    assert (soc.type, soc.function, soc.point, soc.unit) == (shipped.type, shipped.function, shipped.point, shipped.unit)
    assert shipped.scale == 1.0 and shipped.address == 4, "the library's profile is not changed"
    assert with_overrides(profile, {}) is profile


def test_a_type_override_rederives_the_register_width():
    widened = device(soc_pct={"type": "uint32", "address": 900})  # moved where two words are free
    merged = with_overrides(PROFILES["hithium_ess_5016"], widened.register_overrides)
    assert merged.registers["soc_pct"].count == 2


@pytest.mark.parametrize("override, key, says", [
    ({"nope": {"scale": 2.0}}, "nope", "not a register of profile"),
    ({"soc_pct": {"type": "float99"}}, "soc_pct", "is not allowed"),
    ({"soc_pct": {"address": 40}}, "soc_pct", "overlaps"),  # onto another register: the profile check's words
])
def test_an_override_that_does_not_fit_is_refused_naming_it(override, key, says):
    with pytest.raises(OverrideError) as refused:
        with_overrides(PROFILES["hithium_ess_5016"], device(**override).register_overrides)
    assert refused.value.key == key and says in refused.value.message


def test_the_config_names_the_device_and_register_of_a_bad_override():
    cfg = parse_config(EmsConfig, {"modbus": [{"name": "bms", "role": "bms", "profile": "hithium_ess_5016",
                                               "host": "127.0.0.1", "register_overrides": {"nope": {"scale": 2}}}]})
    with pytest.raises(ConfigError) as refused:
        load_profiles(cfg)
    assert [p.path for p in refused.value.problems] == ["modbus[0].register_overrides.nope"]


def test_an_override_key_that_is_not_a_register_name_is_a_config_error():
    with pytest.raises(ConfigError) as refused:
        device(**{"Bad Name": {"scale": 2.0}})
    assert "register_overrides" in str(refused.value)

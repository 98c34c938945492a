"""SunSpec: discovery walks the model chain over any read function; model points become decodable registers."""
from __future__ import annotations

from pathlib import Path

import pytest

from ems.devices import decode_values, load_profile, split_block
from ems.devices.sunspec import (SUNS_MARKER, ModelLocation, SunSpecError, available_models, build_image, discover,
                                 discovered_profile, load_model, model_alarms, model_length, model_registers)

PROFILES = Path(__file__).resolve().parent.parent / "profiles"
MODELS_DIR = PROFILES / "sunspec"


def reader(image: dict[int, int], log: list | None = None):
    """A device over an in-memory image: a read touching an undefined address gets an exception (None)."""
    def read(address: int, count: int):
        if log is not None:
            log.append((address, count))
        if any(a not in image for a in range(address, address + count)):
            return None
        return [image[a] for a in range(address, address + count)]
    return read


def model(model_id: int) -> dict:
    return load_model(model_id, MODELS_DIR)


def storage_image(base: int = 40000) -> dict[int, int]:
    return build_image([
        (model(1), {"Mn": "Phoenyra", "Md": "SimInverter", "SN": "SN-0001"}),
        (model(103), {"W": 12340, "W_SF": 1, "Hz": 50.01, "Hz_SF": -2, "St": 4}),
        (model(124), {"WChaMax": 5000, "WChaMax_SF": 0}),
        (model(802), {"SoC": 55.5, "SoC_SF": -1, "SoH": 97, "SoH_SF": 0, "V": 51.2, "V_SF": -1}),
    ], base=base)


def test_discovery_finds_common_inverter_storage_and_battery_models_at_their_addresses():
    found = discover(reader(storage_image()))
    # 'SunS' at 40000-40001; each model: 2 header registers + its length (1: 66, 103: 50, 124: 24, 802: 62).
    assert found == [ModelLocation(1, 40002, 66), ModelLocation(103, 40070, 50), ModelLocation(124, 40122, 24),
                     ModelLocation(802, 40148, 62)]


@pytest.mark.parametrize("base", [0, 50000])
def test_discovery_tries_each_base_address(base):
    log: list = []
    found = discover(reader(storage_image(base), log))
    assert found[0] == ModelLocation(1, base + 2, 66)
    probed = [a for a, c in log if c == 2 and a in (0, 40000, 50000)]
    assert probed == [0, 40000, 50000][:[0, 40000, 50000].index(base) + 1]


def test_discovery_skips_a_base_that_exists_but_is_not_sunspec():
    image = storage_image(40000) | {0: 0x1234, 1: 0x5678}
    assert discover(reader(image))[0].address == 40002


def test_no_sunspec_map_is_a_clear_error():
    with pytest.raises(SunSpecError, match="no SunSpec map"):
        discover(reader({0: 1, 1: 2}))


def test_a_chain_without_end_marker_ends_where_the_next_header_does_not_exist():
    image = storage_image()
    end = max(image) - 1
    del image[end], image[end + 1]
    assert [m.model_id for m in discover(reader(image))] == [1, 103, 124, 802]


def test_a_runaway_chain_is_an_error():
    image = {0: SUNS_MARKER[0], 1: SUNS_MARKER[1]}
    for a in range(2, 65536, 2):  # zero-length models forever
        image[a], image[a + 1] = 64001, 0
    with pytest.raises(SunSpecError, match="more than 10 models"):
        discover(reader(image), bases=(0,), max_models=10)


def test_model_layout_matches_the_standard_addresses():
    regs = model_registers(model(103), 40070)
    assert (regs["m103_W"].address, regs["m103_W_SF"].address) == (40084, 40085)
    assert regs["m103_W"].scale_register == "m103_W_SF"
    assert regs["m103_WH"].type == "uint32" and regs["m103_WH"].na_values == (0,)  # acc32: 0 = not implemented
    assert regs["m103_Evt1"].category == "alarm" and regs["m103_St"].category == "status"
    assert regs["m103_St"].values[4] == "MPPT"


def test_a_scaled_point_decodes_from_captured_words():
    regs = model_registers(model(103), 40070)
    words = {"m103_W": [770], "m103_W_SF": [0xFFFF], "m103_Hz": [5001], "m103_Hz_SF": [0xFFFE],
             "m103_TmpCab": [0x8000], "m103_Tmp_SF": [0]}
    values = decode_values(regs, words)
    assert values["m103_W"] == pytest.approx(77.0)
    assert values["m103_Hz"] == pytest.approx(50.01)
    assert values["m103_TmpCab"] is None  # int16 0x8000 = not implemented
    assert decode_values(regs, {"m103_W": [770], "m103_W_SF": [0x8000]})["m103_W"] is None


def test_writable_points_use_function_16_and_points_map_to_the_plant_state():
    regs = model_registers(model(802), 40148, 62, points={"SoC": "battery.soc_pct"})
    assert regs["m802_SoC"].point == "battery.soc_pct"
    assert (regs["m802_CtrlHb"].access, regs["m802_CtrlHb"].write_function, regs["m802_CtrlHb"].category) == \
        ("rw", 16, "heartbeat")
    assert regs["m802_AlmRst"].writable and not regs["m802_SoC"].writable


def test_groups_are_prefixed_and_find_scale_factors_in_the_parent_group():
    regs = model_registers(model(704), 0)
    assert regs["m704_PFWInj_PF"].scale_register == "m704_PF_SF"
    assert regs["m704_WSet"].type == "int32" and regs["m704_WSet"].scale_register == "m704_WSet_SF"


@pytest.mark.parametrize("model_id", available_models(MODELS_DIR))
def test_every_shipped_model_lays_out_without_overlaps_and_with_its_stated_length(model_id):
    m = model(model_id)
    stated = next((p.get("value") for p in m["group"]["points"] if p["name"] == "L"), None)
    if stated is not None:
        assert model_length(m) == stated
    regs = sorted(model_registers(m, 1000).values(), key=lambda r: r.address)
    assert all(a.end <= b.address for a, b in zip(regs, regs[1:]))
    assert regs[-1].end <= 1000 + 2 + model_length(m)


def test_a_repeating_group_is_sized_from_the_discovered_length():
    mppt_like = {"id": 64900, "group": {"name": "m", "type": "group", "points": [
        {"name": "ID", "type": "uint16", "size": 1}, {"name": "L", "type": "uint16", "size": 1},
        {"name": "DCA_SF", "type": "sunssf", "size": 1}, {"name": "N", "type": "count", "size": 1}],
        "groups": [{"name": "module", "type": "group", "count": "N", "points": [
            {"name": "DCA", "type": "uint16", "size": 1, "sf": "DCA_SF"},
            {"name": "IDStr", "type": "string", "size": 4}]}]}}
    regs = model_registers(mppt_like, 100, length=2 + 3 * 5)
    assert [n for n in regs if n.endswith("_DCA")] == [f"m64900_module_{i}_DCA" for i in (1, 2, 3)]
    third = regs["m64900_module_3_DCA"]
    assert (third.address, third.scale_register) == (100 + 4 + 2 * 5, "m64900_DCA_SF")
    with pytest.raises(SunSpecError, match="repeat count"):
        model_registers(mppt_like, 100)
    with pytest.raises(SunSpecError, match="does not fit"):
        model_registers(mppt_like, 100, length=2 + 7)


def test_shorter_device_models_drop_the_points_past_their_length():
    regs = model_registers(model(1), 40002, length=65)  # many devices implement model 1 without its Pad
    assert "m1_DA" in regs
    assert "m1_DA" not in model_registers(model(1), 40002, length=64)


def test_battery_events_become_alarms():
    m = model(802)
    alarms = model_alarms(m, model_registers(m, 0))
    over_temp = next(a for a in alarms if a.name == "m802_Evt1_OVER_TEMP_ALARM")
    assert (over_temp.register, over_temp.bit, over_temp.severity) == ("m802_Evt1", 1, "warning")


def test_sunspec_profile_reads_and_decodes_a_discovered_device_end_to_end():
    marker = load_profile(PROFILES / "sunspec.yaml")
    image = storage_image()
    read = reader(image)
    profile = discovered_profile(marker, discover(read), load=model)
    assert profile.point_registers()["battery.soc_pct"][0].name == "m802_SoC"
    plan = profile.read_plan()
    assert plan and all(b.count <= 125 for b in plan)
    words = {}
    for block in plan:
        words |= split_block(block, read(block.address, block.count))
    values = decode_values(profile.registers, words)
    assert values["m1_Mn"] == "Phoenyra" and values["m1_SN"] == "SN-0001"
    assert values["m103_W"] == 12340 and values["m103_Hz"] == pytest.approx(50.01)
    assert values["m124_WChaMax"] == 5000
    assert values["m802_SoC"] == pytest.approx(55.5) and values["m802_SoH"] == 97
    assert values["m802_A"] is None  # not set in the image: "not implemented"


def test_a_second_instance_of_a_model_gets_its_own_prefix():
    marker = load_profile(PROFILES / "sunspec.yaml")
    locations = [ModelLocation(802, 40002, 62), ModelLocation(802, 40066, 62), ModelLocation(64001, 40130, 10)]
    profile = discovered_profile(marker, locations, load=model)
    assert profile.registers["m802_2_SoC"].address == 40066 + 2 + 9
    assert profile.registers["m802_SoC"].point == "battery.soc_pct" and profile.registers["m802_2_SoC"].point is None
    assert not any(n.startswith("m64001") for n in profile.registers)  # unknown model: skipped


def test_every_model_the_sunspec_profile_knows_has_a_shipped_definition():
    marker = load_profile(PROFILES / "sunspec.yaml")
    assert set(marker.sunspec.models) <= set(available_models(MODELS_DIR))
    assert (MODELS_DIR / "LICENSE").read_text(encoding="utf-8").lstrip().startswith("Apache License")

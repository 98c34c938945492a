"""The register codec: captured words decode to known values, every layout round-trips, reads coalesce."""
from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ems.devices.codec import (CodecError, active_alarms, decode, decode_values, encode, from_point, plan_reads,
                               split_block, sunspec_na, to_point, words_per_type)
from ems.devices.profile import AlarmDef, RegisterDef

ORDERS = [("big", "big"), ("big", "little"), ("little", "big"), ("little", "little")]
INT_RANGES = {"int16": (-2**15, 2**15 - 1), "uint16": (0, 2**16 - 1), "int32": (-2**31, 2**31 - 1),
              "uint32": (0, 2**32 - 1), "int64": (-2**63, 2**63 - 1), "uint64": (0, 2**64 - 1)}


def reg(type_: str = "uint16", function: int = 4, address: int = 0, count: int | None = None, **kw) -> RegisterDef:
    return RegisterDef(name=kw.pop("name", "r"), address=address, function=function, type=type_,
                       count=words_per_type(type_, count, function), **kw)


# --- captured words ------------------------------------------------------------------------------------

def test_float32_big_endian_words_decode_to_the_value():
    assert decode(reg("float32"), [0x4148, 0x0000]) == 12.5


def test_float32_with_swapped_words_decodes_the_same_value():
    assert decode(reg("float32", word_order="little"), [0x0000, 0x4148]) == 12.5


def test_float64_words_decode():
    assert decode(reg("float64"), [0x4029, 0, 0, 0]) == 12.5


def test_int32_low_word_first_as_sungrow_sends_battery_power():
    r = reg("int32", word_order="little")
    assert decode(r, [0x05DC, 0x0000]) == 1500
    assert decode(r, [0xFA24, 0xFFFF]) == -1500
    assert decode(reg("int32"), [0xFFFF, 0xFA24]) == -1500


def test_byte_swapped_word_decodes():
    assert decode(reg("uint16", byte_order="little"), [0x3412]) == 0x1234


def test_hithium_current_offset_and_scale():
    current = reg("uint16", scale=0.1, offset=-3200)
    assert decode(current, [32000]) == pytest.approx(0.0)
    assert decode(current, [32500]) == pytest.approx(50.0)
    assert decode(current, [31000]) == pytest.approx(-100.0)


def test_integral_scale_and_offset_keep_integers_exact():
    temperature = reg("uint16", offset=-40)
    assert decode(temperature, [65]) == 25 and isinstance(decode(temperature, [65]), int)
    counter = reg("uint64")
    assert decode(counter, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]) == 2**64 - 1


def test_string_strips_nul_and_spaces():
    assert decode(reg("string", count=4), [0x5344, 0x4D36, 0x3330, 0x0000]) == "SDM630"
    assert decode(reg("string", count=3), [0x2041, 0x4243, 0x2020]) == "ABC"


def test_bool_and_bitfield_from_registers_and_bits():
    assert decode(reg("bool"), [0]) is False
    assert decode(reg("bool"), [7]) is True
    assert decode(reg("bitfield", count=2), [0x0001, 0x8000]) == 0x00018000
    discrete = reg("bitfield", function=2, count=10)
    assert decode(discrete, [0, 0, 1, 0, 0, 0, 0, 0, 0, 1]) == (1 << 2) | (1 << 9)
    assert decode(reg("bool", function=1), [1]) is True


@pytest.mark.parametrize("type_,words", [
    ("int16", [0x8000]), ("uint16", [0xFFFF]), ("int32", [0x8000, 0x0000]), ("uint32", [0xFFFF, 0xFFFF]),
    ("int64", [0x8000, 0, 0, 0]), ("uint64", [0xFFFF] * 4),
])
def test_sunspec_not_implemented_sentinels_decode_to_none(type_, words):
    assert decode(reg(type_, na_values=sunspec_na(type_)), words) is None


def test_sentinels_are_opt_in_per_register():
    assert decode(reg("int16"), [0x8000]) == -32768
    assert decode(reg("uint16"), [0xFFFF]) == 65535


@pytest.mark.parametrize("words", [[0x7FC0, 0x0000], [0x7F80, 0x0000], [0xFF80, 0x0000]])
def test_nan_and_infinite_floats_decode_to_none(words):
    assert decode(reg("float32"), words) is None


def test_a_scaled_float_that_overflows_is_none_not_infinite():
    assert decode(reg("float64", scale=100), [0x7FEF, 0xFFFF, 0xFFFF, 0xFFFF]) is None


def test_vendor_na_pattern_applies_before_the_word_order():
    meter = reg("int32", word_order="little", na_values=(0x7FFFFFFF,))
    assert decode(meter, [0xFFFF, 0x7FFF]) is None
    assert decode(meter, [0x7FFF, 0xFFFF]) == -32769


def test_wrong_word_count_or_values_are_codec_errors():
    with pytest.raises(CodecError, match="expected 2 words, got 1"):
        decode(reg("float32", name="power_w"), [0x4148])
    with pytest.raises(CodecError, match="16-bit word"):
        decode(reg("uint16"), [70000])
    with pytest.raises(CodecError, match="not a bit"):
        decode(reg("bool", function=2), [2])


# --- encode: inverse, rounding, range --------------------------------------------------------------------

def test_encode_inverts_scale_and_offset_with_rounding():
    current = reg("uint16", scale=0.1, offset=-3200)
    assert encode(current, 12.34) == [32123]
    assert encode(current, 0.0) == [32000]
    assert encode(reg("int16", scale=0.5), 0.25) == [1]       # tie away from zero
    assert encode(reg("int16", scale=0.5), -0.25) == [0xFFFF]  # -1
    year = reg("uint16", offset=2000, function=3, access="rw", min=2000, max=2100)
    assert encode(year, 2026) == [26]


@pytest.mark.parametrize("type_,value,match", [
    ("int16", 40000, "out of range for int16"),
    ("uint16", -1, "out of range for uint16"),
    ("uint32", 2**32, "out of range for uint32"),
    ("float32", 1e39, "out of range for float32"),
    ("float32", float("nan"), "not a finite number"),
    ("int32", "12", "not a number"),
])
def test_encode_out_of_range_is_a_clear_error(type_, value, match):
    with pytest.raises(CodecError, match=match) as err:
        encode(reg(type_, name="setpoint_w"), value)
    assert isinstance(err.value, ValueError) and err.value.register == "setpoint_w"


def test_encode_respects_min_max_in_engineering_units():
    limit = reg("uint16", function=3, access="rw", scale=0.1, min=0, max=100, unit="%", name="limit_pct")
    assert encode(limit, 55.5) == [555]
    with pytest.raises(CodecError, match="above the maximum 100 %"):
        encode(limit, 100.1)
    with pytest.raises(CodecError, match="below the minimum 0"):
        encode(limit, -1)


def test_encode_scaled_value_past_the_raw_range_fails():
    with pytest.raises(CodecError, match="raw value 65536"):
        encode(reg("uint16", scale=0.1), 6553.6)


def test_encode_refuses_the_not_available_pattern():
    with pytest.raises(CodecError, match="not available"):
        encode(reg("int16", na_values=sunspec_na("int16")), -32768)


def test_encode_strings_and_bits():
    assert encode(reg("string", count=4), "SDM630") == [0x5344, 0x4D36, 0x3330, 0x0000]
    with pytest.raises(CodecError, match="longer than 4 characters"):
        encode(reg("string", count=2), "ABCDE")
    with pytest.raises(CodecError, match="not ASCII"):
        encode(reg("string", count=2), "kΩ")
    assert encode(reg("bool", function=1), True) == [1]
    assert encode(reg("bitfield", function=1, count=4), 0b1010) == [0, 1, 0, 1]
    with pytest.raises(CodecError):
        encode(reg("bool", function=3), 2)


# --- property: every type x word order x byte order round-trips --------------------------------------------

def value_strategy(type_: str, count: int, function: int):
    if type_ in INT_RANGES:
        return st.integers(*INT_RANGES[type_])
    if type_ == "float32":
        return st.floats(width=32, allow_nan=False, allow_infinity=False)
    if type_ == "float64":
        return st.floats(allow_nan=False, allow_infinity=False)
    if type_ == "string":
        return st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=2 * count)
    if type_ == "bool":
        return st.booleans()
    bits = count if function in (1, 2) else 16 * count
    return st.integers(0, 2**bits - 1)


LAYOUTS = [(t, c, f) for t, c, f in [
    ("int16", None, 3), ("uint16", None, 4), ("int32", None, 3), ("uint32", None, 4), ("int64", None, 3),
    ("uint64", None, 4), ("float32", None, 3), ("float64", None, 4), ("string", 5, 3), ("bool", None, 3),
    ("bitfield", 1, 4), ("bitfield", 3, 3),
]]


@pytest.mark.parametrize("word_order,byte_order", ORDERS)
@pytest.mark.parametrize("type_,count,function", LAYOUTS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_type_and_order_round_trips(type_, count, function, word_order, byte_order, data):
    r = reg(type_, function=function, count=count, word_order=word_order, byte_order=byte_order)
    value = data.draw(value_strategy(type_, r.count, function))
    words = encode(r, value)
    assert len(words) == r.count and all(0 <= w <= 0xFFFF for w in words)
    decoded = decode(r, words)
    assert decoded == value
    if type_ in ("float32", "float64"):
        assert math.copysign(1, decoded) == math.copysign(1, value)


@pytest.mark.parametrize("type_,count,function", [(t, c, f) for t, c, f in LAYOUTS if t not in ("string", "bool")]
                         + [("bool", None, 2), ("bitfield", 12, 1)])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_captured_words_survive_decode_then_encode(type_, count, function, data):
    r = reg(type_, function=function, count=count, word_order=data.draw(st.sampled_from(["big", "little"])),
            byte_order=data.draw(st.sampled_from(["big", "little"])))
    top = 1 if function in (1, 2) else 0xFFFF
    words = data.draw(st.lists(st.integers(0, top), min_size=r.count, max_size=r.count))
    value = decode(r, words)
    if value is None:  # NaN/inf floats have no value to write back
        return
    assert encode(r, value) == words


@settings(max_examples=200, deadline=None)
@given(type_=st.sampled_from(["int16", "uint16", "int32", "uint32"]),
       scale=st.sampled_from([0.1, 0.01, 0.001, 10, 100, 0.5]),
       offset=st.sampled_from([0, -40, -3200, 2000, 0.5]), data=st.data())
def test_scaled_values_round_trip_through_raw(type_, scale, offset, data):
    r = reg(type_, scale=scale, offset=offset)
    raw_words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=r.count, max_size=r.count))
    value = decode(r, raw_words)
    assert encode(r, value) == raw_words


# --- helpers ---------------------------------------------------------------------------------------------

def test_scale_register_applies_ten_to_the_sf():
    regs = {"W": reg("int16", name="W", address=10, scale_register="W_SF"),
            "W_SF": reg("int16", name="W_SF", address=11, na_values=sunspec_na("int16"))}
    assert decode_values(regs, {"W": [770], "W_SF": [0xFFFF]}) == {"W": pytest.approx(77.0), "W_SF": -1}
    assert decode_values(regs, {"W": [770], "W_SF": [2]})["W"] == 77000
    assert decode_values(regs, {"W": [770], "W_SF": [0x8000]})["W"] is None
    assert decode_values(regs, {"W": [770]})["W"] is None  # scale factor not read: unknown
    assert encode(regs["W"], 77.0, sf=-1) == [770]
    with pytest.raises(CodecError, match="needs the scale factor"):
        encode(regs["W"], 77.0)


def test_point_sign_converts_between_conventions():
    victron_battery = reg("int16", point="bess.power_w", sign=-1)
    assert to_point(victron_battery, 1200) == -1200  # Victron: charging 1.2 kW -> ours: -1200 W
    assert from_point(victron_battery, 500) == -500
    assert to_point(victron_battery, None) is None


def test_active_alarms_reads_bits_and_bools():
    alarms = [AlarmDef("di", 53, "charge_prohibited", "critical", "charging prohibited"),
              AlarmDef("di", 56, "bms_fault", "shutdown", "fault"),
              AlarmDef("comm", 0, "comm_lost", "critical", "comm lost"),
              AlarmDef("unread", 0, "x", "info", "x")]
    values = {"di": 1 << 53, "comm": True}
    assert [a.name for a in active_alarms(alarms, values)] == ["charge_prohibited", "comm_lost"]


# --- coalescing planner ----------------------------------------------------------------------------------

def test_adjacent_registers_share_one_request_and_gaps_split():
    regs = [reg("uint16", address=2, name="a"), reg("uint32", address=3, name="b"), reg("uint16", address=5, name="c"),
            reg("uint16", address=10, name="d")]
    blocks = plan_reads(regs)
    assert [(b.address, b.count) for b in blocks] == [(2, 4), (10, 1)]
    assert [(b.address, b.count) for b in plan_reads(regs, max_gap=4)] == [(2, 9)]


def test_requests_never_exceed_125_registers():
    regs = [reg("uint16", address=i, name=f"r{i}") for i in range(300)]
    blocks = plan_reads(regs)
    assert [b.count for b in blocks] == [125, 125, 50]


def test_functions_are_never_mixed_and_bits_allow_2000():
    regs = [reg("uint16", function=3, address=0, name="h"), reg("uint16", function=4, address=1, name="i"),
            reg("bitfield", function=2, address=0, count=1500, name="d1"),
            reg("bitfield", function=2, address=1500, count=1000, name="d2"),
            reg("uint16", function=3, address=1, name="w", access="w")]
    blocks = plan_reads(regs)
    assert [(b.function, b.address, b.count) for b in blocks] == [(2, 0, 1500), (2, 1500, 1000), (3, 0, 1), (4, 1, 1)]


def optimal_request_count(regs: list[RegisterDef], limit: int, gap: int) -> int:
    """Independent check: dynamic programming over the registers in address order."""
    regs = sorted(regs, key=lambda r: r.address)
    best = [0] + [10**9] * len(regs)
    for i in range(1, len(regs) + 1):
        for j in range(i, 0, -1):
            block = regs[j - 1:i]
            if any(b.address - a.end > gap for a, b in zip(block, block[1:])):
                break
            if block[-1].end - block[0].address > limit:
                break
            best[i] = min(best[i], best[j - 1] + 1)
    return best[-1]


@settings(max_examples=150, deadline=None)
@given(spans=st.lists(st.tuples(st.integers(0, 6), st.sampled_from([1, 2, 4])), min_size=1, max_size=40),
       limit=st.sampled_from([4, 8, 20, 125]), gap=st.sampled_from([0, 1, 3]))
def test_planner_uses_the_fewest_requests_within_the_limit(spans, limit, gap):
    regs, address = [], 0
    for i, (skip, size) in enumerate(spans):
        address += skip
        regs.append(reg({1: "uint16", 2: "uint32", 4: "uint64"}[size], address=address, name=f"r{i}"))
        address += size
    blocks = plan_reads(regs, max_count=limit, max_gap=gap)
    covered = [r.name for b in blocks for r in b.registers]
    assert sorted(covered) == sorted(r.name for r in regs)
    for b in blocks:
        assert b.count <= limit
        assert b.address == b.registers[0].address and b.end == max(r.end for r in b.registers)
    assert len(blocks) == optimal_request_count(regs, limit, gap)


def test_split_block_hands_each_register_its_words():
    regs = [reg("uint16", address=2, name="a"), reg("uint32", address=3, name="b")]
    (block,) = plan_reads(regs)
    assert split_block(block, [1, 2, 3]) == {"a": [1], "b": [2, 3]}
    with pytest.raises(CodecError, match="expected 3 words"):
        split_block(block, [1, 2])
    (bits,) = plan_reads([reg("bool", function=2, address=0, name="k1"), reg("bool", function=2, address=1, name="k2")])
    assert split_block(bits, [True, False, False, False, False, False, False, False]) == {"k1": [1], "k2": [0]}


def test_float_words_helper_matches_struct():
    value = 230.17
    words = encode(reg("float32"), value)
    assert struct.unpack(">f", bytes([words[0] >> 8, words[0] & 0xFF, words[1] >> 8, words[1] & 0xFF]))[0] \
        == pytest.approx(value, rel=1e-6)


# --- the specialised decoder agrees with the general one ---------------------------------------------

def _library_registers() -> list[RegisterDef]:
    from ems.devices.profile import load_library
    from ems.resources import profiles_dir
    profiles, _broken = load_library(profiles_dir())
    return [r for p in profiles.values() for r in p.registers.values()]


LIBRARY_REGISTERS = _library_registers()
SYNTHETIC_REGISTERS = [reg(t, word_order=w, byte_order=b, scale=s, offset=o, na_values=na)
                       for t in (*INT_RANGES, "float32", "float64") for w, b in ORDERS
                       for s, o in ((1.0, 0.0), (0.1, 0.0), (10.0, -5.0), (0.5, 0.25), (-1.0, 0.0))
                       for na in ((), (0xFFFF,))]


def _same(a, b) -> bool:
    return type(a) is type(b) and (a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))) and \
        (not isinstance(a, float) or math.copysign(1.0, a) == math.copysign(1.0, b))


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.sampled_from(LIBRARY_REGISTERS + SYNTHETIC_REGISTERS), st.data())
def test_the_fast_decoder_gives_what_the_general_path_gives(register, data):
    """`decode` takes a path specialised per register for numbers (the poller's hot loop): for every
    register of every shipped profile and every layout, any words - fitting or not - give the same value
    or the same CodecError as the general path."""
    from ems.devices.codec import _decode_general
    n = register.count
    top = 1 if register.function in (1, 2) else 0xFFFF
    word = st.one_of(st.integers(0, top), st.sampled_from([0, top, 0x8000, 0x7FC0, 0x7F80, 0xFF80]))
    words = data.draw(st.one_of(st.lists(word, min_size=n, max_size=n),
                                st.lists(st.one_of(word, st.integers(-3, 0x1FFFF), st.floats(0, 10)),
                                         min_size=max(0, n - 1), max_size=n + 1)))
    try:
        expected = _decode_general(register, words)
    except CodecError as exc:
        with pytest.raises(CodecError) as got:
            decode(register, words)
        assert str(got.value) == str(exc)
        return
    assert _same(decode(register, words), expected), (register, words)


def test_a_register_reused_by_address_is_decoded_by_its_own_definition():
    """The specialised decoders are kept per register object: a new definition (a profile reloaded with
    another scale) never gets the decoder of one that lived at the same address before."""
    first = reg("int16", scale=0.1)
    assert decode(first, [10]) == 1.0
    for _ in range(3):
        other = reg("int16", scale=10.0)
        assert decode(other, [10]) == 100

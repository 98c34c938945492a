"""One validation mechanism: ems.yaml, device profiles and backtest inputs report problems the same way."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import ClassVar, Literal, Mapping, Optional, Union

import pytest

from ems.backtest import RecedingHorizon, Site, Tariff
from ems.backtest.cli import add_arguments
from ems.config import parse_yaml_config
from ems.config.schema import BessConfig
from ems.config.validate import INVALID, Reader, constrained, field_problem, parse_config
from ems.devices import parse_profile
from ems.errors import ConfigError, ProfileError

META = {"vendor": "a", "model": "b", "kind": "meter", "source": "c", "verified": False}


def config_problems(text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        parse_yaml_config(text)
    return {p.path: p.message for p in err.value.problems}


def profile_problems(doc: dict, key: str = "acme") -> dict[str, str]:
    with pytest.raises(ProfileError) as err:
        parse_profile(doc, key, file="acme.yaml")
    assert all(p.file == "acme.yaml" for p in err.value.problems)
    return {p.path: p.message for p in err.value.problems}


def test_a_profile_with_two_bad_fields_and_an_unknown_key_reports_all_three_like_a_config_error():
    doc = {"meta": META, "connection": {"port": 70000, "parity": "X", "unit": 1},
           "registers": {"x": {"address": 1, "function": 3, "type": "uint16"}}}
    problems = profile_problems(doc)
    assert problems == {
        "connection.port": "70000 is out of range (allowed: 1..65535)",
        "connection.parity": "'X' is not allowed (allowed: N, E, O)",
        "connection.unit": "unknown key, did you mean 'unit_id'? (allowed: port, unit_id, poll_interval_s, "
                           "timeout_s, baudrate, parity, stopbits, max_read_registers, max_read_bits, "
                           "max_gap_registers)",
    }
    config = config_problems("web: {port: 70000, hots: x}\nmodbus: [{name: m, role: meter, profile: p, host: h, "
                             "parity: X}]")
    assert config["web.port"] == problems["connection.port"]
    assert config["modbus[0].parity"] == problems["connection.parity"]
    assert config["web.hots"].startswith("unknown key, did you mean 'host'? (allowed: host, port")


def test_profile_and_config_problems_print_as_key_path_colon_message():
    with pytest.raises(ProfileError) as err:
        parse_profile({"meta": META, "registers": {"x": {"address": -1, "function": 3, "type": "uint16"}}}, "k",
                      file="k.yaml")
    assert str(err.value) == "k.yaml: registers.x.address: -1 is out of range (allowed: 0..65535)"
    with pytest.raises(ConfigError) as cerr:
        parse_yaml_config("history: {retention_days: 0}")
    assert str(cerr.value) == "history.retention_days: 0 is out of range (allowed: 1..3650)"


def test_backtest_inputs_report_through_the_same_mechanism_with_key_paths():
    site = Site(bess=BessConfig(min_soc_pct=90, max_soc_pct=80), tariff=Tariff(vat_pct=120), soc0_pct=-1)
    assert site.check() == [("bess.min_soc_pct", "must be below max_soc_pct (80)"),
                            ("tariff.vat_pct", "120 is out of range (allowed: 0..100)"),
                            ("soc0_pct", "-1 is out of range (allowed: 0..100)")]
    policy = RecedingHorizon(strategy="sideways", publication_hhmm="24:00", replan_every_h=0)
    assert dict(policy.check()) == {
        "strategy": "'sideways' is not allowed (allowed: auto, arbitrage, peak_shaving, self_consumption, "
                    "load_balancing)",
        "publication_hhmm": "'24:00' has the wrong format (allowed: HH:MM, 00:00..23:59)",
        "replan_every_h": "0 is out of range (allowed: > 0 and <= 744)",
    }
    assert Site().check() == [] and RecedingHorizon(publication_hhmm="9:30").check() == []


def test_backtest_cli_options_are_checked_against_the_dataclass_fields(capsys):
    parser = argparse.ArgumentParser(prog="ems backtest")
    add_arguments(parser)
    assert parser.parse_args(["--vat-pct", "19", "--efficiency", "90"]).efficiency == pytest.approx(0.9)
    assert parser.parse_args(["--replan-every-h", "0"]).replan_every_h is None
    for option, value, field in (("--vat-pct", "120", (Tariff, "vat_pct", 120.0)),
                                 ("--capacity-kwh", "0", (BessConfig, "capacity_kwh", 0.0)),
                                 ("--strategy", "sideways", (RecedingHorizon, "strategy", "sideways"))):
        with pytest.raises(SystemExit):
            parser.parse_args([option, value])
        message = field_problem(*field)
        assert message and f"argument {option}: {message}" in capsys.readouterr().err


def test_profile_references_are_checked_against_the_files_registers_in_the_same_pass():
    doc = {"meta": META,
           "registers": {"flags": {"address": 1, "function": 3, "type": "uint16"},
                         "set_w": {"address": 2, "function": 3, "type": "int16", "access": "rw"},
                         "broken": {"address": 3, "function": 3, "type": "uint99"}},
           "alarms": [{"register": "flags", "bit": 16, "name": "a", "severity": "info", "text": "t"},
                      {"register": "flags", "bit": 1, "name": "a", "severity": "info", "text": "t"},
                      {"register": "broken", "name": "b", "severity": "info", "text": "t"}],
           "controls": {"active_power_set_w": "set_w", "remote_enable": "flgs"}}
    problems = profile_problems(doc)
    assert problems == {
        "registers.broken.type": "'uint99' is not allowed (allowed: int16, uint16, int32, uint32, int64, uint64, "
                                 "float32, float64, string, bool, bitfield)",
        "alarms[0].register": "register 'flags' is a uint16 (allowed: bool, bitfield)",
        "alarms[1].register": "register 'flags' is a uint16 (allowed: bool, bitfield)",
        "alarms[1].name": "'a' is used twice (each name must be unique)",
        "controls.remote_enable.register": "unknown register 'flgs', did you mean 'flags'?",
    }


def test_alarm_bits_are_checked_against_the_width_of_their_register():
    doc = {"meta": META, "registers": {"flags": {"address": 1, "function": 3, "type": "bitfield"}},
           "alarms": [{"register": "flags", "bit": 16, "name": "a", "severity": "info", "text": "t"}]}
    assert profile_problems(doc) == {"alarms[0].bit": "16 is out of range for flags (allowed: 0..15)"}


# --- the reader's primitives ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ref:
    SHORTHAND: ClassVar[str] = "name"
    name: str = constrained(check=lambda v, known: None if known is None or v in known else f"unknown '{v}'")
    weight: int = constrained(1, min=1, max=9)


@dataclass(frozen=True)
class Doc:
    refs: tuple[Ref, ...] = constrained((), unique="name")
    codes: Mapping[int, str] = constrained(default_factory=dict, key_doc="code")
    na: Optional[Union[list[int], Literal["auto"]]] = None
    label: str = constrained("x", pattern=r"[a-z]+", doc="lower-case letters")
    step: float = constrained(1.0, min=0, exclusive_min=True)


def test_reader_reads_shorthands_unions_int_keys_and_collects_every_problem():
    assert parse_config(Doc, {"refs": ["a", {"name": "b", "weight": 3}], "codes": {"0x10": "hex", 2: "two"},
                              "na": "auto"}) == Doc((Ref("a"), Ref("b", 3)), {16: "hex", 2: "two"}, "auto")
    assert parse_config(Doc, {"na": [1, 2]}).na == (1, 2)
    reader = Reader(context={"a"})
    result = reader.read_dataclass(Doc, {"refs": ["a", "a", "z", {"name": "a", "weight": 0}], "codes": {"x": "?"},
                                         "na": 5, "label": "X1", "step": 0}, "doc")
    assert result is INVALID
    assert {p.path: p.message for p in reader.problems} == {
        "doc.refs[2].name": "unknown 'z'",
        "doc.refs[3].weight": "0 is out of range (allowed: 1..9)",
        "doc.refs[1].name": "'a' is used twice (each name must be unique)",
        "doc.refs[3].name": "'a' is used twice (each name must be unique)",
        "doc.codes.x": "'x' is not an integer key (allowed: integers, e.g. 3 or 0x0A)",
        "doc.na": "must be a list, one of auto or null (got 5)",
        "doc.label": "'X1' has the wrong format (allowed: lower-case letters)",
        "doc.step": "0 is out of range (allowed: > 0)",
    }


def test_null_means_unset_only_when_the_reader_is_told_so():
    with pytest.raises(ConfigError, match="label: must be a string"):
        parse_config(Doc, {"label": None})
    reader = Reader(null_is_unset=True)
    assert reader.read_dataclass(Doc, {"label": None}, "") == Doc() and not reader.problems


def test_a_german_reader_gets_every_config_problem_in_german():
    """The settings pages show these texts: in the reader's language, the key paths and values unchanged."""
    text = ("site: {timezone: Europe/Wein}\n"
            "bess: {min_soc_pct: 90, max_soc_pct: 80.5, capacity_kwh: -5, charge_efficency: 0.9}\n"
            "strategy: {mode: automatic}\n"
            "mqtt: {broker: 'bad host!', tls: false, reconnect_min_s: 70, reconnect_max_s: 60}\n"
            "power_control: {enabled: yes please}\n")
    with pytest.raises(ConfigError) as err:
        parse_yaml_config(text)
    german = {p.path: p.text("de") for p in err.value.problems}
    assert german == {
        "site.timezone": "unbekannte Zeitzone 'Europe/Wein' (ein IANA-Name wie Europe/Vienna)",
        "bess.capacity_kwh": "-5 liegt außerhalb des erlaubten Bereichs (möglich: > 0 und <= 100000)",
        "bess.charge_efficency": german["bess.charge_efficency"],  # checked below: the key list is long
        "strategy.mode": "'automatic' ist nicht erlaubt (möglich: auto, manual)",
        "mqtt.broker": "'bad host!' hat das falsche Format (möglich: ein Hostname oder eine IP-Adresse)",
        "power_control.enabled": "muss true oder false sein (erhalten: 'yes please')",
    }, german
    assert german["bess.charge_efficency"].startswith("unbekannter Schlüssel, meinten Sie „charge_efficiency“?")
    # A section's cross-field rules run once its fields are valid.
    with pytest.raises(ConfigError) as err:
        parse_yaml_config("bess: {min_soc_pct: 90, max_soc_pct: 80.5}\n"
                          "mqtt: {tls: false, reconnect_min_s: 70, reconnect_max_s: 60}\n"
                          "history: {raw_retention_h: 100, minute_retention_days: 2}\n")
    german = {p.path: p.text("de") for p in err.value.problems}
    assert german == {"bess.min_soc_pct": "muss unter max_soc_pct (80,5) liegen",
                      "mqtt.reconnect_min_s": "darf reconnect_max_s (60 s) nicht überschreiten",
                      "history.minute_retention_days": "muss raw_retention_h (100 h) abdecken"}
    assert {p.path: p.message for p in err.value.problems}["bess.min_soc_pct"] == \
        "must be below max_soc_pct (80.5)", "English stays the default text"



def test_an_out_of_range_value_is_quoted_as_it_was_given_not_rounded():
    """1.001 is refused because it is above 1: a message saying "1 is out of range" would make no sense."""
    with pytest.raises(ConfigError) as err:
        parse_yaml_config("bess: {charge_efficiency: 1.001, discharge_efficiency: 0.4999, min_soc_pct: -0.001}\n")
    problems = {p.path: (p.message, p.text("de")) for p in err.value.problems}
    assert problems == {
        "bess.charge_efficiency": ("1.001 is out of range (allowed: 0.5..1)",
                                   "1,001 liegt außerhalb des erlaubten Bereichs (möglich: 0,5..1)"),
        "bess.discharge_efficiency": ("0.4999 is out of range (allowed: 0.5..1)",
                                      "0,4999 liegt außerhalb des erlaubten Bereichs (möglich: 0,5..1)"),
        "bess.min_soc_pct": ("-0.001 is out of range (allowed: 0..100)",
                             "-0,001 liegt außerhalb des erlaubten Bereichs (möglich: 0..100)"),
    }

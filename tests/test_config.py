"""Configuration: every error named with its key path, atomic saves with a backup, live notification."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ems.config import ConfigStore, EmsConfig, load_config, parse_yaml_config
from ems.config.validate import to_plain
from ems.errors import ConfigError
from ems.resources import demo_config_text

BROKEN = """
bess:
  capacity_kwh: -5
  max_charge_power_kw: 5
  max_dischrage_power_kw: 5
strategy:
  mode: automatic
"""


def ems_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ems", *args], capture_output=True, text=True, timeout=timeout)


def test_demo_config_is_valid_and_uses_the_simulator():
    cfg = parse_yaml_config(demo_config_text())
    assert cfg.simulator.enabled
    assert cfg.bess.capacity_kwh == 10.0


def test_empty_file_gives_defaults():
    cfg = parse_yaml_config("")
    assert cfg == EmsConfig()


def test_all_three_errors_are_reported_with_their_key_paths():
    with pytest.raises(ConfigError) as err:
        parse_yaml_config(BROKEN)
    messages = [str(p) for p in err.value.problems]
    assert len(messages) == 3, messages
    assert any(m.startswith("bess.capacity_kwh: -5 is out of range (allowed: > 0") for m in messages)
    assert any(m.startswith("bess.max_dischrage_power_kw: unknown key, did you mean 'max_discharge_power_kw'?")
               for m in messages)
    assert "strategy.mode: 'automatic' is not allowed (allowed: auto, manual)" in messages


def test_check_config_cli_prints_every_error_and_exits_2(tmp_path: Path):
    path = tmp_path / "ems.yaml"
    path.write_text(BROKEN)
    result = ems_cli("check-config", str(path))
    assert result.returncode == 2
    for key in ("bess.capacity_kwh:", "bess.max_dischrage_power_kw:", "strategy.mode:"):
        assert key in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_cli_accepts_a_good_file(tmp_path: Path):
    path = tmp_path / "ems.yaml"
    path.write_text(demo_config_text())
    result = ems_cli("check-config", str(path))
    assert result.returncode == 0
    assert result.stdout.strip() == "ok"


def test_run_refuses_a_bad_config_with_the_same_messages(tmp_path: Path):
    path = tmp_path / "ems.yaml"
    path.write_text(BROKEN)
    check = ems_cli("check-config", str(path))
    run = ems_cli("run", "--config", str(path), "--data-dir", str(tmp_path / "data"), "--port", "0")
    assert run.returncode == 2
    error_lines = [line for line in check.stderr.splitlines() if ": " in line and not line.startswith(str(path))]
    assert error_lines and all(line in run.stderr for line in error_lines)


def test_version_flag():
    result = ems_cli("--version")
    assert result.returncode == 0
    assert "phoenyra-ems" in result.stdout


@pytest.mark.parametrize("text, key", [
    ("bess: [1, 2]", "bess"),
    ("bess: {capacity_kwh: lots}", "bess.capacity_kwh"),
    ("bess: {capacity_kwh: .nan}", "bess.capacity_kwh"),
    ("bess: {min_soc_pct: 90, max_soc_pct: 80}", "bess.min_soc_pct"),
    ("strategy: {mode: manual}", "strategy.current"),
    ("web: {port: 70000}", "web.port"),
    ("mqtt: {enabled: yes please}", "mqtt.enabled"),
    ("modbus: [{name: bms, role: bms, profile: hithium_ess_5016}]", "modbus[0].host"),
    ("modbus: [{name: bms, role: battery, profile: x, host: h}]", "modbus[0].role"),
    ("feedin_limitation: {dynamic_rules: [{start: '25:00'}]}", "feedin_limitation.dynamic_rules[0].start"),
    ("grid_tariffs: {network_level: NE9}", "grid_tariffs.network_level"),
    ("grid_tariffs: {high_load_windows: [{months: [13]}]}", "grid_tariffs.high_load_windows[0].months[0]"),
    ("simulator: {speed: 0}", "simulator.speed"),
    ("simulator: {dso_script: [{mode: trip}]}", "simulator.dso_script[0].at_s"),
    ("bess:\n  capacity_kwh: 5\n capacity: 3", "line"),
    ("- a\n- b", "(top level)"),
])
def test_each_bad_value_names_its_key(text: str, key: str):
    with pytest.raises(ConfigError) as err:
        parse_yaml_config(text)
    assert any(p.path.startswith(key) for p in err.value.problems), err.value.problems


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                         st.text(max_size=8))
yaml_values = st.recursive(yaml_scalars, lambda children: st.one_of(
    st.lists(children, max_size=3), st.dictionaries(st.text(max_size=10), children, max_size=3)), max_leaves=8)
section_names = st.sampled_from(["bess", "strategy", "mqtt", "modbus", "web", "simulator", "grid_tariffs", "x"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(section_names, st.one_of(yaml_values, st.dictionaries(
    st.sampled_from(["capacity_kwh", "mode", "port", "enabled", "speed", "high_load_windows", "name"]),
    yaml_values, max_size=3)), max_size=4))
def test_any_garbage_gives_config_error_or_a_valid_config(data):
    """Whatever a user types, validation answers with ConfigError (with key paths), never a crash."""
    try:
        cfg = parse_yaml_config(yaml.safe_dump(data))
    except ConfigError as err:
        assert err.problems and all(p.path and p.message for p in err.problems)
    else:
        assert isinstance(cfg, EmsConfig)
        assert parse_yaml_config(yaml.safe_dump(to_plain(cfg))) == cfg  # round-trips


def test_section_update_is_saved_atomically_with_a_backup_and_notifies(tmp_path: Path):
    path = tmp_path / "ems.yaml"
    path.write_text(demo_config_text())
    original = path.read_text()
    store = ConfigStore.open(path)
    seen = []
    store.subscribe("grid_connection", lambda cfg: seen.append(cfg.grid_connection.max_power_kw))
    store.subscribe("bess", lambda cfg: seen.append("bess should not be told"))

    store.update_section("grid_connection", {"max_power_kw": 22.5, "monitoring_enabled": True})

    assert seen == [22.5]
    assert load_config(path).grid_connection.max_power_kw == 22.5
    assert (tmp_path / "ems.yaml.bak").read_text() == original
    assert store.config.bess.capacity_kwh == 10.0  # other sections untouched
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_invalid_section_update_changes_nothing(tmp_path: Path):
    path = tmp_path / "ems.yaml"
    path.write_text(demo_config_text())
    before = path.read_text()
    store = ConfigStore.open(path)
    seen = []
    store.subscribe("bess", lambda cfg: seen.append(cfg))
    with pytest.raises(ConfigError) as err:
        store.update_section("bess", {"capacity_kwh": 0})
    assert err.value.problems[0].path == "bess.capacity_kwh"
    assert path.read_text() == before
    assert not (tmp_path / "ems.yaml.bak").exists()
    assert seen == [] and store.config.bess.capacity_kwh == 10.0


def test_a_failing_subscriber_does_not_stop_the_others(tmp_path: Path):
    path = tmp_path / "ems.yaml"
    path.write_text("")
    store = ConfigStore.open(path)
    seen = []
    store.subscribe("web", lambda cfg: 1 / 0)
    store.subscribe("web", lambda cfg: seen.append(cfg.web.sse_interval_s))
    store.update_section("web", {"sse_interval_s": 3})
    assert seen == [3.0]

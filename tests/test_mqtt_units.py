"""The MQTT uplink's parts without a broker: the on-disk outbox (order, batching, bound, restart and crash), the
command schema, MQTT source payloads, the messages, the topic layout, the settings and the connection test's
rules for secrets."""
from __future__ import annotations

import asyncio
import hashlib
import json
import math
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ems.config.schema import EmsConfig, MqttConfig
from ems.config.validate import parse_config
from ems.errors import ApiError, ConfigError
from ems.mqtt import commands, homeassistant, topics, uplink
from ems.mqtt.commands import CommandError, CommandHandler, RateLimit
from ems.mqtt.outbox import SEQ_BLOCK, Outbox
from ems.mqtt.sources import SourceMap, SourceValueError, reading
from ems.state import PlantState, plant_state_to_json
from support import free_port


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- the outbox ------------------------------------------------------------------------------------------------------

def test_the_outbox_keeps_order_disk_first_and_forgets_a_message_only_once_acknowledged(tmp_path: Path):
    async def main() -> None:
        box = Outbox(tmp_path / "o.db", 10_000_000)
        await box.open()
        for i in range(5):
            box.put("telemetry", {"i": i})
        await box.flush()  # 0..4 on disk
        for i in range(5, 8):
            box.put("telemetry", {"i": i})  # 5..7 in memory
        box.put("notifications", {"i": 8})
        head = await box.head(100)
        assert [json.loads(m.payload)["i"] for m in head] == list(range(9))
        assert [m.seq for m in head] == [1, 2, 3, 4, 5, 6, 7, 8, 1]  # per stream
        assert json.loads(head[0].payload)["boot"] == 1
        await box.ack(head[3].qid)  # the broker has the first four
        assert [json.loads(m.payload)["i"] for m in await box.head(3)] == [4, 5, 6]
        await box.ack(head[-1].qid)
        assert len(box) == 0 and box.status()["queued_on_disk"] == 0
        await box.close()

    run(main())


def test_while_the_broker_keeps_up_nothing_is_written_and_a_backlog_is_written_in_one_batch(tmp_path: Path):
    ticks = Ticks()

    async def main() -> None:
        box = Outbox(tmp_path / "o.db", 10_000_000, monotonic=ticks)
        await box.open()
        flusher = asyncio.create_task(box.run_flusher(lambda: 60.0))
        opened = box.transactions
        for _ in range(50):  # delivered as fast as produced
            message = box.put("telemetry", {"soc_pct": 50.0})
            await box.ack(message.qid)
            ticks.t += 10.0
        await asyncio.sleep(0.3)
        assert box.transactions == opened  # not one write for 50 delivered messages
        for _ in range(30):  # the broker is away: nothing is acknowledged
            box.put("telemetry", {"soc_pct": 50.0})
            ticks.t += 1.0
        ticks.t += 60.0
        for _ in range(100):
            if box.status()["queued_on_disk"] == 30:
                break
            await asyncio.sleep(0.02)
        assert box.status()["queued_on_disk"] == 30 and box.transactions == opened + 1  # one batch
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        await box.close()

    run(main())


def test_a_clean_close_keeps_every_message_and_the_numbering_goes_on_after_a_restart(tmp_path: Path):
    async def first() -> None:
        box = Outbox(tmp_path / "o.db", 10_000_000)
        await box.open()
        for i in range(3):
            box.put("telemetry", {"i": i})
        box.put("state", {"i": "s"})
        await box.close()  # nothing flushed before: close writes memory too

    async def second() -> tuple[list[Any], int, int]:
        box = Outbox(tmp_path / "o.db", 10_000_000)
        await box.open()
        box.put("telemetry", {"i": 3})
        head = await box.head(10)
        boot = box.boot
        await box.close()
        return [(m.stream, m.seq, json.loads(m.payload)["boot"]) for m in head], boot, len(head)

    run(first())
    messages, boot, count = run(second())
    assert boot == 2 and count == 5
    assert messages == [("telemetry", 1, 1), ("telemetry", 2, 1), ("telemetry", 3, 1), ("state", 1, 1),
                        ("telemetry", 4, 2)]


def test_after_a_crash_no_sequence_number_is_given_twice(tmp_path: Path):
    crash = textwrap.dedent(f"""
        import asyncio, os
        from pathlib import Path
        from ems.mqtt.outbox import Outbox
        async def main():
            box = Outbox(Path({str(tmp_path / 'o.db')!r}), 10_000_000)
            await box.open()
            for i in range(7):
                box.put("telemetry", {{"i": i}})   # sent while online, never written
            await box.flush()
            box.put("telemetry", {{"i": 7}})       # still in memory when the power goes
            os._exit(0)
        asyncio.run(main())
        """)
    subprocess.run([sys.executable, "-c", crash], check=True, timeout=60)

    async def after() -> tuple[list[int], int]:
        box = Outbox(tmp_path / "o.db", 10_000_000)
        await box.open()
        box.put("telemetry", {"i": "new"})
        seqs = [m.seq for m in await box.head(20)]
        boot = box.boot
        await box.close()
        return seqs, boot

    seqs, boot = run(after())
    assert boot == 2
    assert seqs[:7] == list(range(1, 8))  # flushed before the crash: kept
    assert seqs[7] > SEQ_BLOCK  # numbering resumes above the reservation, never reusing 8 (lost in memory)


def test_beyond_its_bound_the_outbox_drops_the_oldest_and_counts_them(tmp_path: Path):
    dropped: list[dict[str, int]] = []

    async def main() -> tuple[dict[str, Any], list[int]]:
        box = Outbox(tmp_path / "o.db", 20_000, on_drop=lambda d: dropped.append(dict(d)))
        await box.open()
        for i in range(200):
            box.put("telemetry" if i % 10 else "notifications", {"i": i, "pad": "x" * 200})
        await box.flush()
        status = box.status()
        remaining = [json.loads(m.payload)["i"] for m in await box.head(1000)]
        await box.close()
        return status, remaining

    status, remaining = run(main())
    assert status["queued_bytes"] <= 20_000 and status["dropped"] == 200 - len(remaining) > 0
    assert remaining == list(range(200 - len(remaining), 200))  # the newest are kept, in order
    assert sum(sum(d.values()) for d in dropped) == status["dropped"]
    assert status["dropped_by_stream"]["notifications"] > 0

    async def reopened() -> dict[str, Any]:
        box = Outbox(tmp_path / "o.db", 20_000)
        await box.open()
        status = box.status()
        await box.close()
        return status

    assert run(reopened())["dropped"] == status["dropped"]  # the count survives a restart


def test_an_unreadable_outbox_is_moved_aside_and_a_new_one_started(tmp_path: Path):
    (tmp_path / "o.db").write_bytes(b"this is not a database" * 100)

    async def main() -> Outbox:
        box = Outbox(tmp_path / "o.db", 10_000_000)
        await box.open()
        box.put("telemetry", {})
        await box.close()
        return box

    box = run(main())
    assert box.recovered_from is not None and box.recovered_from.read_bytes().startswith(b"this is not")
    with sqlite3.connect(tmp_path / "o.db") as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1


# -- commands -------------------------------------------------------------------------------------------------------

NOW = 1_750_000_000.0


@pytest.mark.parametrize("name, payload, field", [
    ("set_strategy", b"", "payload"),
    ("set_strategy", b"not json", "payload"),
    ("set_strategy", b'"arbitrage"', "payload"),
    ("set_strategy", b"[" * 40 + b"]" * 40, "payload"),
    ("set_strategy", b'{"strategy": "x"}' + b" " * 5000, "payload"),
    ("set_strategy", b'{"strategy": "moon"}', "strategy"),
    ("set_strategy", b'{"strategy": null}', "strategy"),
    ("set_strategy", b'{"strategy": "arbitrage", "id": "has space"}', "id"),
    ("set_strategy", b'{"strategy": "arbitrage", "power_w": 1}', "power_w"),
    ("request_setpoint", b'{"power_w": 1000}', "duration_s"),
    ("request_setpoint", b'{"power_w": true, "duration_s": 60}', "power_w"),
    ("request_setpoint", b'{"power_w": 1e400, "duration_s": 60}', "power_w"),
    ("request_setpoint", b'{"power_w": 1000, "duration_s": 14401}', "duration_s"),
    ("acknowledge", b'{"notification_id": 1.5}', "notification_id"),
    ("set_auto", b'{"ts": "yesterday"}', "ts"),
    ("set_auto", b'{"ts": %d}' % (NOW - 61), "ts"),
    ("set_auto", b'{"ts": %d}' % (NOW + 3600), "ts"),
    ("reboot", b"{}", "command"),
    ("set_auto/extra", b"{}", "command"),
])
def test_a_command_that_does_not_fit_its_schema_is_refused_naming_the_field(name: str, payload: bytes, field: str):
    with pytest.raises(CommandError) as caught:
        commands.parse(name, commands.decode(payload), False, None, NOW, 60.0)
    assert caught.value.field == field, caught.value.message


def test_well_formed_commands_parse_to_their_arguments():
    parse = commands.parse
    assert parse("set_strategy", {"strategy": "peak_shaving", "id": "c-1"}, False, None, NOW, 60).args == \
        {"strategy": "peak_shaving"}
    cmd = parse("request_setpoint", {"power_w": -2500, "duration_s": 900, "ts": NOW - 5}, False, None, NOW, 60)
    assert cmd.args == {"power_w": -2500.0, "duration_s": 900.0} and cmd.reply_id is None
    assert parse("acknowledge", {"notification_id": 12, "id": "a.b:c-d_e"}, False, None, NOW, 60).reply_id == "a.b:c-d_e"
    with pytest.raises(CommandError) as caught:
        parse("set_auto", {}, True, None, NOW, 60)
    assert caught.value.field == "retain"


def test_with_a_shared_secret_nothing_else_is_looked_at_before_it_matches():
    for body in ({}, {"secret": "wrong"}, {"secret": 7}, {"strategy": "moon"}):
        with pytest.raises(CommandError) as caught:
            commands.parse("set_strategy", body, False, "s3cret", NOW, 60)
        assert caught.value.field == "secret"
    assert commands.parse("set_auto", {"secret": "s3cret"}, False, "s3cret", NOW, 60).name == "set_auto"


class RecordingPort:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def set_strategy(self, name: str) -> dict[str, Any]:
        self.calls.append(name)
        return {"current": name}

    def set_auto(self) -> dict[str, Any]:
        self.calls.append("auto")
        return {"mode": "auto"}

    def request_setpoint(self, power_w: float, duration_s: float) -> dict[str, Any]:
        raise ApiError(400, "must be within ±5000 W", "power_w")

    def acknowledge(self, notification_id: int) -> dict[str, Any]:
        raise RuntimeError("a bug in the port")


def test_the_handler_answers_everything_and_limits_the_rate():
    ticks = Ticks()
    port = RecordingPort()
    handler = CommandHandler(port, RateLimit(lambda: 3, ticks), wall_time=lambda: NOW)

    async def main() -> list[Any]:
        return [await handler.handle(name, payload, False, None, 60) for name, payload in [
            ("set_strategy", b'{"id": "1", "strategy": "arbitrage"}'),
            ("request_setpoint", b'{"id": "2", "power_w": 9000, "duration_s": 60}'),
            ("acknowledge", b'{"id": "3", "notification_id": 4}'),
            ("set_auto", b'{"id": "4"}'),  # the fourth within a minute
        ]]

    replies = run(main())
    assert [(r.reply_id, r.ok, r.payload.get("field")) for r in replies] == \
        [("1", True, None), ("2", False, "power_w"), ("3", False, None), ("4", False, "rate")]
    assert replies[2].payload["error"] == "internal error (logged)"
    ticks.t += 61.0
    assert run(handler.handle("set_auto", b"{}", False, None, 60)).ok
    assert port.calls == ["arbitrage", "auto"] and handler.accepted == 2 and handler.refused == 3


# -- MQTT sources ---------------------------------------------------------------------------------------------------

def source(**kw: Any) -> MqttConfig.Source:
    return MqttConfig.Source(**{"topic": "t", "point": "grid.power_w", **kw})


@pytest.mark.parametrize("kw, payload, value", [
    ({}, b"1234.5", 1234.5),
    ({}, b" -80 \n", -80.0),
    ({"scale": 1000}, b"1.5", 1500.0),
    ({"scale": -1}, b"200", -200.0),
    ({"json_key": "ENERGY.Power"}, b'{"ENERGY": {"Power": 321}}', 321.0),
    ({"json_key": "emeters.1.power"}, b'{"emeters": [{"power": 1}, {"power": 2.5}]}', 2.5),
    ({"json_key": "p"}, b'{"p": "17.25"}', 17.25),
    ({"point": "battery.soc_pct"}, b"55", 55.0),
])
def test_source_payloads_are_read_as_numbers(kw: dict[str, Any], payload: bytes, value: float):
    assert reading(source(**kw), payload) == value


@pytest.mark.parametrize("kw, payload", [
    ({}, b"hello"), ({}, b"NaN"), ({}, b"true"), ({}, b"\xff\xfe"), ({}, b"1e12"),
    ({"json_key": "p"}, b'{"q": 1}'), ({"json_key": "p.0"}, b'{"p": []}'), ({"json_key": "p"}, b"[1]"),
    ({"point": "battery.soc_pct"}, b"101"), ({}, b"1" * 70_000),
])
def test_source_garbage_is_an_error_never_a_value(kw: dict[str, Any], payload: bytes):
    with pytest.raises(SourceValueError):
        reading(source(**kw), payload)


def test_a_source_message_becomes_mqtt_measurements_and_garbage_unknown():
    sources = SourceMap([source(topic="m", json_key="a", max_age_s=5), source(topic="m", point="pv.power_w",
                                                                              json_key="b")])
    update = sources.readings("m", b'{"a": 10, "b": "x"}', 100.0)
    assert (update["grid.power_w"].value, update["grid.power_w"].source, update["grid.power_w"].max_age_s) == \
        (10.0, "mqtt", 5.0)
    assert update["pv.power_w"].value is None and sources.rejected == 1
    assert sources.readings("other", b"1", 100.0) == {}
    assert all(m.value is None for m in sources.unknown_all(101.0).values())


# -- the messages ---------------------------------------------------------------------------------------------------

def api_state(**plant: Any) -> dict[str, Any]:
    from ems.state import Measurement
    state = PlantState().with_updates({k: Measurement(v, 90.0 if k != "pv.power_w" else 0.0, "sim",
                                                      30.0) for k, v in plant.items()})
    return {"ts": 100.0, "plant": plant_state_to_json(state, 100.0),
            "power_control": {"state": "limited", "effective_setpoint_w": 1000.0, "reasons": ["DSO limit 20 %"],
                              "reason_codes": ["dso_limit"]},
            "strategy": {"mode": "auto", "active": "arbitrage"}, "devices": {"bms": {"online": True}}}


def test_telemetry_has_units_in_keys_and_never_repeats_a_stale_value_as_current():
    msg = uplink.telemetry(api_state(**{"battery.soc_pct": 61.23456, "pv.power_w": 3000.0,
                                        "grid.power_w": float("nan")}), "s1")
    assert msg["soc_pct"] == 61.235 and msg["site"] == "s1" and msg["ts"] == 100.0
    assert msg["pv_power_w"] is None and "pv_power_w" in msg["stale"]  # 100 s old, 30 s max age
    assert msg["grid_power_w"] is None  # NaN is no number
    assert msg["setpoint_w"] == 1000.0 and msg["power_control_state"] == "limited" and msg["strategy"] == "arbitrage"
    assert all(k.endswith(("_pct", "_w", "_v", "_a", "_c", "_eur")) for k in uplink.TELEMETRY_POINTS)


def test_a_state_message_goes_out_on_a_change_of_what_matters_not_of_the_reasons():
    facts = uplink.state_facts(api_state(**{"dso.mode": "limit", "dso.limit_pct": 20.0}))
    first = uplink.state_change(None, facts, 100.0, "s")
    assert first is not None and first["dso_mode"] == "limit" and first["dso_limit_pct"] == 20.0
    assert uplink.state_change(facts, {**facts, "reasons": ["other"]}, 101.0, "s") is None
    changed = uplink.state_change(facts, {**facts, "power_control_state": "shutdown"}, 102.0, "s")
    assert changed is not None and changed["changed"] == ["power_control_state"]
    offline = uplink.state_change(facts, {**facts, "devices_online": {"bms": False}}, 103.0, "s")
    assert offline is not None and offline["changed"] == ["devices_online"]


def test_a_plan_summary_is_hourly_and_notifications_lose_their_secrets():
    steps = [{"ts": 7200.0 + 900 * k, "bess_power_w": 1000.0 * k, "grid_power_w": 0.0, "pv_power_w": 0.0,
              "load_power_w": 500.0, "soc_pct": 90.0 - k, "import_price_eur_per_kwh": 0.1 * k,
              "export_price_eur_per_kwh": 0.0} for k in range(8)]
    summary = uplink.plan_summary({"plan": {"strategy": "arbitrage", "expected_profit_eur": 1.234, "steps": steps},
                                   "planned_at": 7000.0}, "s")
    assert summary is not None and [h["start_ts"] for h in summary["hours"]] == [7200, 10800]
    assert summary["hours"][0]["battery_power_w"] == 1500.0 and summary["hours"][0]["soc_pct"] == 87.0
    assert summary["expected_profit_24h_eur"] == 1.23
    assert uplink.plan_summary({"plan": None}, "s") is None
    note = uplink.notification({"id": 3, "ts": 1.0, "level": "warning", "category": "forecast",
                                "message": "GET https://x/?appid=owm-key-9f3b failed"}, "s", ["owm-key-9f3b"])
    assert note["message"] == "GET https://x/?appid=******** failed" and note["id"] == 3


# -- topics, settings, Home Assistant, the connection test's rules ----------------------------------------------------

def test_the_layout_is_phoenyra_site_and_the_pre_release_defaults_mean_not_set(tmp_path: Path):
    machine = tmp_path / "machine-id"
    machine.write_text("0123456789abcdef0123456789abcdef\n")
    legacy = MqttConfig(client_id="phoenyra-ems", topics=parse_config(MqttConfig, {"topics": {
        "telemetry": "phoenyra/bess/telemetry", "commands": "phoenyra/bess/commands",
        "status": "phoenyra/bess/status"}}).topics)
    lay = topics.layout(legacy, machine)
    site = hashlib.sha256(b"phoenyra-ems/0123456789abcdef0123456789abcdef").hexdigest()[:12]
    assert lay.site_id == site and "0123456789abcdef" not in lay.site_id  # derived, not the machine id itself
    assert (lay.telemetry, lay.status, lay.command_filter, lay.client_id) == \
        (f"phoenyra/{site}/telemetry", f"phoenyra/{site}/status", f"phoenyra/{site}/cmd/+", f"phoenyra-{site}")
    assert lay.reply("abc") == f"phoenyra/{site}/reply/abc" and lay.reply(None).endswith("/reply/no-id")
    own = topics.layout(MqttConfig(site_id="gw-7", topic_prefix="acme/eu/", client_id="gw7",
                                   topics=parse_config(MqttConfig, {"topics": {"telemetry": "acme/t"}}).topics))
    assert (own.telemetry, own.state, own.commands, own.client_id) == ("acme/t", "acme/eu/state", "acme/eu/cmd", "gw7")
    assert topics.layout(MqttConfig(), tmp_path / "none").site_id  # no machine id: the host name


def test_mqtt_settings_are_bounded_and_tls_files_must_be_existing_regular_files(tmp_path: Path):
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")

    def problems(section: dict[str, Any]) -> dict[str, str]:
        try:
            parse_config(EmsConfig, {"mqtt": section})
        except ConfigError as exc:
            return {p.path: p.message for p in exc.problems}
        return {}

    assert problems({"tls": True, "tls_ca_file": str(pem)}) == {}
    found = problems({"tls": True, "tls_ca_file": "ca.pem", "tls_cert_file": str(tmp_path),
                      "tls_key_file": str(tmp_path / "missing.key"), "broker": "a b", "topic_prefix": "x/#/",
                      "client_id": "", "qos": 3, "outbox_max_mb": 0, "sources": [{"topic": "a/+", "point": "dso.mode"}]})
    assert "absolute" in found["mqtt.tls_ca_file"] and "regular file" in found["mqtt.tls_cert_file"]
    assert "does not exist" in found["mqtt.tls_key_file"]
    assert {"mqtt.broker", "mqtt.topic_prefix", "mqtt.client_id", "mqtt.qos", "mqtt.outbox_max_mb",
            "mqtt.sources[0].topic", "mqtt.sources[0].point"} <= set(found)
    assert problems({"tls": True, "tls_cert_file": str(pem)}) == \
        {"mqtt.tls_key_file": "tls_cert_file and tls_key_file go together (allowed: both or neither)"}
    assert problems({"tls_ca_file": str(pem)}) == {"mqtt.tls": "must be true when TLS files are set"}
    assert problems({"sources": [{"topic": "a", "point": "grid.power_w"}, {"topic": "b", "point": "grid.power_w"}]})
    assert problems({"reconnect_min_s": 90, "reconnect_max_s": 60}) == \
        {"mqtt.reconnect_min_s": "must not exceed reconnect_max_s (60 s)"}


def test_every_mqtt_setting_says_what_it_is_and_the_safety_relevant_ones_are_for_admins():
    from ems.config.validate import init_fields
    fields = init_fields(MqttConfig)
    undocumented = [n for n, f in fields.items() if not f.metadata.get("doc") and n not in ("username",)]
    assert undocumented == []
    for name in ("broker", "port", "site_id", "topic_prefix", "tls", "tls_ca_file", "tls_cert_file", "tls_key_file",
                 "topics", "commands_enabled", "command_secret", "sources"):
        assert fields[name].metadata["admin_only"], name
    assert fields["password"].metadata["secret"] and fields["command_secret"].metadata["secret"]


def test_home_assistant_offers_the_strategy_select_only_without_a_command_secret():
    lay = topics.layout(MqttConfig(site_id="a.b"))
    with_select = homeassistant.discovery(lay, "homeassistant", "1.0", 10.0, select=True)
    without = homeassistant.discovery(lay, "homeassistant", "1.0", 10.0, select=False)
    assert "homeassistant/select/phoenyra_a_b/strategy/config" in with_select
    assert "homeassistant/sensor/phoenyra_a_b/strategy/config" in without
    assert not any("/select/" in t for t in without)
    assert len(with_select) == len(without) == 8
    soc = with_select["homeassistant/sensor/phoenyra_a_b/soc/config"]
    assert soc["expire_after"] == 60 and soc["value_template"] == "{{ value_json.soc_pct }}"


def test_the_connection_test_never_carries_a_stored_password_to_another_broker():
    from ems.api.mqtt_routes import test_settings
    stored = MqttConfig(broker="broker.lan", port=8883, username="ems", password="stored-pw", tls=True)
    assert test_settings(stored, {}, False, "operator").password == "stored-pw"
    assert test_settings(stored, {"password": {"set": True}, "keepalive_s": 30}, False, "operator").password == \
        "stored-pw"
    moved = test_settings(stored, {"broker": "other.lan"}, True, "admin")
    assert moved.broker == "other.lan" and moved.password is None
    assert test_settings(stored, {"broker": "other.lan", "password": {"replace": "given"}}, True, "admin").password == \
        "given"
    with pytest.raises(ApiError) as caught:
        test_settings(stored, {"broker": "other.lan"}, False, "operator")
    assert (caught.value.status, caught.value.field) == (403, "mqtt.broker")
    with pytest.raises(ConfigError):
        test_settings(stored, {"port": 0}, True, "admin")
    with pytest.raises(ApiError):
        test_settings(stored, ["not", "a", "section"], True, "admin")


def test_mqtt_off_imports_neither_aiomqtt_nor_paho(tmp_path: Path):
    script = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        import yaml
        from ems.bus import TelemetryBus
        from ems.clock import ScaledClock
        from ems.config import ConfigStore
        from ems.notifications import Notifications
        import ems.api.mqtt_routes
        from ems.mqtt.service import MqttService
        Path({str(tmp_path / 'ems.yaml')!r}).write_text(yaml.safe_dump({{"mqtt": {{"enabled": False}}}}))
        async def main():
            clock = ScaledClock()
            service = MqttService(ConfigStore.open({str(tmp_path / 'ems.yaml')!r}), TelemetryBus(), clock,
                                  Path({str(tmp_path)!r}), Notifications(clock.now), None, None)
            task = asyncio.create_task(service.run())
            await asyncio.sleep(0.2)
            assert service.status() == {{"enabled": False, "state": "disabled"}}
            task.cancel()
        asyncio.run(main())
        loaded = sorted(m for m in sys.modules if m.startswith(("aiomqtt", "paho")))
        assert not loaded, loaded
        assert not Path({str(tmp_path / 'mqtt-outbox.db')!r}).exists()
        """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_message_payloads_are_valid_json_even_with_nan_in_them():
    from ems.mqtt.outbox import encode
    assert json.loads(encode({"a": math.nan, "b": [math.inf, 1.0], "c": {"d": -math.inf}})) == \
        {"a": None, "b": [None, 1.0], "c": {"d": None}}


def test_reconnects_back_off_with_jitter_and_an_outage_is_notified_once(tmp_path: Path):
    import yaml

    from ems.bus import TelemetryBus
    from ems.clock import ScaledClock
    from ems.config import ConfigStore
    from ems.mqtt.service import MqttService
    from ems.notifications import Notifications

    port = free_port()  # nothing listens on it: every attempt is refused at once
    (tmp_path / "ems.yaml").write_text(yaml.safe_dump({"mqtt": {
        "enabled": True, "broker": "127.0.0.1", "port": port, "reconnect_min_s": 2, "reconnect_max_s": 16}}))

    class Clock(ScaledClock):
        """Real time for everything, but the reconnect waits are recorded and skipped."""

        def __init__(self) -> None:
            super().__init__()
            self.waits: list[float] = []

        async def sleep(self, seconds: float) -> None:
            if seconds in (1.0, 10.0):  # the state watch and the telemetry period: let them pass at real pace
                await asyncio.sleep(0.01)
                return
            self.waits.append(seconds)
            await asyncio.sleep(0)

    clock = Clock()
    notes = Notifications(clock.now)
    jitter = iter([1.0, 0.0, 1.0, 0.5, 1.0, 1.0, 0.0] + [1.0] * 100)

    class Source:
        def state(self) -> dict[str, Any]:
            return {"ts": clock.now(), "plant": {}}

        def plan(self) -> dict[str, Any]:
            return {"plan": None, "planned_at": None}

        def notifications_since(self, after_id: int) -> list[Any]:
            return []

    service = MqttService(ConfigStore.open(tmp_path / "ems.yaml"), TelemetryBus(), clock, tmp_path, notes, Source(),
                          RecordingPort(), random=lambda: next(jitter), machine_id_path=tmp_path / "none")

    async def main() -> None:
        task = asyncio.create_task(service.run())
        for _ in range(2000):
            if len(clock.waits) >= 7:
                break
            await asyncio.sleep(0.005)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(main())
    # 2 s doubling to 16 s, each scaled into [50 %, 100 %] by the random draw
    assert clock.waits[:7] == [2.0, 2.0, 8.0, 12.0, 16.0, 16.0, 8.0]
    assert service.last_error_kind == "refused" and "connection refused" in (service.last_error or "")
    warnings = [n for n in notes.recent(50) if n.category == "mqtt"]
    assert len(warnings) == 1 and warnings[0].level == "warning"

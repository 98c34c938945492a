"""The MQTT uplink against a real Mosquitto started by this module on 127.0.0.1 (plain, password and TLS
listeners; CA and certificates made here with openssl): telemetry arrives; a broker outage loses no sequence
number; SIGKILL leaves `offline` by the last will; commands get replies (errors for garbage) and cannot push the
battery past a DSO limit; MQTT feeds the bus; Home Assistant discovery parses as HA expects; the connection test
names each failure. The test subscriber is aiomqtt itself."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import aiomqtt
import pytest
import yaml

from appliance import Session, demo_config
from ems.api.app import create_app
from ems.api.facade import RuntimeSnapshot
from ems.api.mqtt_routes import install as install_mqtt_routes
from ems.api.server import WebServer
from ems.bus import TelemetryBus
from ems.clock import ScaledClock
from ems.config import ConfigStore
from ems.errors import ApiError
from ems.mqtt.homeassistant import POWER_CONTROL_STATES
from ems.mqtt.probe import probe
from ems.mqtt.service import MqttService
from ems.notifications import Notifications
from ems.runtime import Listen, Runtime
from ems.state import Measurement, plant_state_to_json
from support import free_port, until, wait_until

WAIT_S = 20.0  # every wait is bounded; on a loaded 2-core machine a reconnect takes well under this
PASSWORD = "broker-pw-7f3a"
WIRED = "mqtt" in RuntimeSnapshot.__dataclass_fields__  # the runtime wiring of issue 13 (ems/runtime.py) has landed


# -- the broker ---------------------------------------------------------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(d: Path) -> None:
    """A CA, a server certificate for localhost (not for 127.0.0.1) and a client certificate, all EC P-256."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Phoenyra Test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    for name, usage, san in (("server", "serverAuth", "subjectAltName=DNS:localhost\n"),
                             ("client", "clientAuth", "")):
        (d / f"{name}.ext").write_text(f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                       f"extendedKeyUsage={usage}\nsubjectKeyIdentifier=hash\n"
                                       f"authorityKeyIdentifier=keyid,issuer\n{san}")
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}-localhost", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    # Another CA the broker's certificate does not chain to.
    _openssl("req", "-x509", *ec, "-keyout", "other.key", "-out", "other-ca.pem", "-days", "2", "-subj", "/CN=Other CA",
             "-addext", "basicConstraints=critical,CA:TRUE", cwd=d)


class Broker:
    """Mosquitto on three free ports: plain (anonymous), password, TLS with client certificates. Persistence on,
    so a persistent test subscriber keeps its session across a broker restart."""

    def __init__(self, d: Path):
        self.dir = d
        self.plain, self.auth, self.tls = free_port(), free_port(), free_port()
        make_certificates(d)
        subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwd"), "ems", PASSWORD], check=True,
                       capture_output=True, timeout=30)
        (d / "data").mkdir()
        (d / "mosquitto.conf").write_text(textwrap.dedent(f"""\
            user root
            per_listener_settings true
            persistence true
            persistence_location {d / 'data'}/
            log_dest file {d / 'mosquitto.log'}
            log_type error
            log_type warning
            log_type notice
            listener {self.plain} 127.0.0.1
            allow_anonymous true
            listener {self.auth} 127.0.0.1
            allow_anonymous false
            password_file {d / 'passwd'}
            listener {self.tls} 127.0.0.1
            allow_anonymous true
            cafile {d / 'ca.pem'}
            certfile {d / 'server.pem'}
            keyfile {d / 'server.key'}
            require_certificate true
            """))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.dir / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def listening() -> bool:
            import socket
            try:
                with socket.create_connection(("127.0.0.1", self.plain), timeout=0.5):
                    return True
            except OSError:
                assert self.proc is not None and self.proc.poll() is None, self.log()
                return False

        wait_until(listening, WAIT_S, 0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its sessions
            self.proc.wait(timeout=WAIT_S)
        self.proc = None

    def log(self) -> str:
        try:
            return (self.dir / "mosquitto.log").read_text()[-3000:]
        except OSError:
            return ""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


# -- the EMS side, as small real objects -------------------------------------------------------------------------

class Plant:
    """An `UplinkSource` over a real bus: state JSON like `/api/state`, a plan view, the notification log."""

    def __init__(self, clock: ScaledClock, notifications: Notifications):
        self.clock = clock
        self.bus = TelemetryBus()
        self.notifications = notifications
        self.power_control = {"state": "normal", "requested_w": 0.0, "effective_setpoint_w": 0.0, "limit_w": 5000.0,
                              "charge_limit_w": 5000.0, "export_limit_w": None, "remote_shutdown_requested": False,
                              "reasons": [], "reason_codes": []}
        self.strategy = {"mode": "auto", "active": "self_consumption"}
        self.planned_at: float | None = None
        self.feed(soc_pct=55.0, bess_w=-1200.0, grid_w=300.0)

    def feed(self, soc_pct: float, bess_w: float, grid_w: float, dso: str = "normal") -> None:
        now = self.clock.now()
        self.bus.publish({"battery.soc_pct": Measurement(soc_pct, now, "sim", 3600.0),
                          "bess.power_w": Measurement(bess_w, now, "sim", 3600.0),
                          "grid.power_w": Measurement(grid_w, now, "sim", 3600.0),
                          "pv.power_w": Measurement(2000.0, now, "sim", 3600.0),
                          "load.power_w": Measurement(1100.0, now, "sim", 3600.0),
                          "dso.mode": Measurement(dso, now, "sim", 3600.0),
                          "dso.limit_pct": Measurement(100.0, now, "sim", 3600.0)})

    def state(self) -> dict[str, Any]:
        now = self.clock.now()
        return {"ts": now, "plant": plant_state_to_json(self.bus.snapshot(), now), "power_control": self.power_control,
                "strategy": self.strategy, "grid_connection": {"utilisation_pct": 2.0}, "devices": {},
                "expected_profit_24h_eur": 1.25 if self.planned_at else None}

    def plan(self) -> dict[str, Any]:
        if self.planned_at is None:
            return {"plan": None, "planned_at": None}
        steps = [{"ts": self.planned_at + 900 * k, "bess_power_w": 1000.0, "grid_power_w": 0.0, "pv_power_w": 0.0,
                  "load_power_w": 1000.0, "soc_pct": 50.0 - k, "import_price_eur_per_kwh": 0.2,
                  "export_price_eur_per_kwh": 0.05} for k in range(8)]
        return {"plan": {"strategy": "arbitrage", "reason": "spread", "status": "optimal", "fallback": False,
                         "expected_profit_eur": 1.25, "start_ts": self.planned_at, "step_s": 900, "steps": steps},
                "planned_at": self.planned_at}

    def notifications_since(self, after_id: int) -> list[dict[str, Any]]:
        return [n.to_json() for n in reversed(self.notifications.recent(500)) if n.id > after_id]


class Port:
    """A `CommandPort` that records what it was asked, refusing setpoints beyond the battery's 5 kW as the
    runtime's manual request does."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def set_strategy(self, name: str) -> dict[str, Any]:
        self.calls.append(("set_strategy", name))
        return {"mode": "manual", "current": name}

    def set_auto(self) -> dict[str, Any]:
        self.calls.append(("set_auto",))
        return {"mode": "auto"}

    def request_setpoint(self, power_w: float, duration_s: float) -> dict[str, Any]:
        if abs(power_w) > 5000:
            raise ApiError(400, "must be within ±5000 W (the battery's configured maximum)", "power_w")
        self.calls.append(("request_setpoint", power_w, duration_s))
        return {"power_w": power_w, "until_ts": time.time() + duration_s}

    def acknowledge(self, notification_id: int) -> dict[str, Any]:
        self.calls.append(("acknowledge", notification_id))
        return {"acknowledged_up_to": notification_id}


def mqtt_section(b: Broker, **overrides: Any) -> dict[str, Any]:
    return {"enabled": True, "broker": "127.0.0.1", "port": b.plain, "site_id": "site-1",
            "reconnect_min_s": 0.2, "reconnect_max_s": 1.0, "outbox_flush_interval_s": 1.0, **overrides}


@dataclasses.dataclass
class Ems:
    store: ConfigStore
    plant: Plant
    port: Port
    service: MqttService
    notifications: Notifications
    task: asyncio.Task[None] | None = None


@pytest.fixture
def make_ems(tmp_path: Path) -> Any:
    """An MqttService on a real ConfigStore, bus, clock and notification log, with `Plant` and `Port`."""

    def make(section: dict[str, Any], data: str = "data", interval_s: float = 0.1) -> Ems:
        path = tmp_path / f"{data}.yaml"
        path.write_text(yaml.safe_dump(demo_config(mqtt=section)))
        store = ConfigStore.open(path)
        clock = ScaledClock()
        notifications = Notifications(clock.now)
        plant, port = Plant(clock, notifications), Port()
        service = MqttService(store, plant.bus, clock, tmp_path / data, notifications, plant, port,
                              machine_id_path=tmp_path / "no-machine-id")
        # Telemetry faster than the schema's 1 s minimum: many messages in a short test, the same code path.
        fast = dataclasses.replace(store.config, mqtt=dataclasses.replace(store.config.mqtt,
                                                                          publish_interval_s=interval_s))
        store._config = fast  # the one shortcut: a rate the settings cannot ask for
        return Ems(store, plant, port, service, notifications)

    return make


@pytest.fixture
def running() -> Iterator[Any]:
    """`async with running(ems):` runs the service as the supervisor would, and stops it (cancel) after."""
    import contextlib

    @contextlib.asynccontextmanager
    async def run(ems: Ems) -> AsyncIterator[Ems]:
        ems.task = asyncio.create_task(ems.service.run())
        try:
            yield ems
        finally:
            ems.task.cancel()
            await asyncio.gather(ems.task, return_exceptions=True)

    yield run


class Subscriber:
    """aiomqtt as a cloud ingestion would use it; keeps every message; reconnects after a broker restart."""

    def __init__(self, port: int, topics: list[str], client_id: str | None = None, persistent: bool = False):
        self.port, self.topics, self.client_id, self.persistent = port, topics, client_id, persistent
        self.messages: list[tuple[str, bytes, bool]] = []
        self.subscribed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.client: aiomqtt.Client | None = None

    async def __aenter__(self) -> "Subscriber":
        self.task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.subscribed.wait(), WAIT_S)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier=self.client_id,
                                          clean_session=not self.persistent) as client:
                    self.client = client
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    self.subscribed.set()
                    async for m in client.messages:
                        self.messages.append((m.topic.value, bytes(m.payload), bool(m.retain)))  # type: ignore[arg-type]
            except aiomqtt.MqttError:
                self.client = None
                await asyncio.sleep(0.1)

    def on(self, topic: str) -> list[Any]:
        return [json.loads(p) if p[:1] == b"{" else p for t, p, _ in self.messages if t == topic]

    async def publish(self, topic: str, payload: Any, retain: bool = False) -> None:
        await until(lambda: self.client is not None, WAIT_S, "subscriber connected")
        assert self.client is not None
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        await self.client.publish(topic, data, qos=1, retain=retain)


# -- telemetry, sequence numbers, outage, restart ----------------------------------------------------------------

def test_a_subscriber_receives_telemetry_with_units_timestamps_and_sequence_numbers(broker, make_ems, running):
    ems = make_ems(mqtt_section(broker))

    async def main() -> None:
        async with Subscriber(broker.plain, ["phoenyra/+/telemetry", "phoenyra/+/status", "phoenyra/+/info"]) as sub:
            async with running(ems):
                await until(lambda: len(sub.on("phoenyra/site-1/telemetry")) >= 3, WAIT_S, "telemetry")
                assert ems.service.status()["connected"] is True
            await until(lambda: sub.on("phoenyra/site-1/status")[-1:] == [b"offline"], WAIT_S, "offline at the stop")
            telemetry = sub.on("phoenyra/site-1/telemetry")
            first = telemetry[0]
            assert [m["seq"] for m in telemetry[:3]] == [1, 2, 3] and first["boot"] == 1
            assert first["site"] == "site-1" and abs(first["ts"] - time.time()) < 60
            assert first["soc_pct"] == 55.0 and first["battery_power_w"] == -1200.0 and first["grid_power_w"] == 300.0
            assert first["power_control_state"] == "normal" and first["stale"] == ["soh_pct", "battery_voltage_v",
                                                                                  "battery_current_a",
                                                                                  "battery_temperature_c",
                                                                                  "max_charge_power_w",
                                                                                  "max_discharge_power_w"]
            assert all(first[key] is None for key in first["stale"])
            info = sub.on("phoenyra/site-1/info")[0]
            assert info["topics"]["telemetry"] == "phoenyra/site-1/telemetry" and info["layout_version"] == 1
            assert sub.on("phoenyra/site-1/status")[:1] == [b"online"]

    asyncio.run(main())


def first_occurrences(seqs: list[int]) -> tuple[list[int], int]:
    """The sequence numbers in order of first arrival, and how many were QoS 1 duplicates."""
    seen: set[int] = set()
    order = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            order.append(s)
    return order, len(seqs) - len(order)


def test_a_broker_outage_loses_no_sequence_number_and_keeps_the_order(broker, make_ems, running):
    ems = make_ems(mqtt_section(broker))
    streams = ["telemetry", "notifications", "state"]

    async def main() -> dict[str, tuple[list[int], int]]:
        async with Subscriber(broker.plain, [f"phoenyra/+/{s}" for s in streams], client_id="ingest-outage",
                              persistent=True) as sub:
            async with running(ems):
                await until(lambda: len(sub.on("phoenyra/site-1/telemetry")) >= 3, WAIT_S, "telemetry before")
                await asyncio.get_running_loop().run_in_executor(None, broker.stop)
                outbox = ems.service.outbox
                assert outbox is not None
                ems.notifications.add("warning", "test", "raised while the broker is away")
                ems.plant.feed(soc_pct=40.0, bess_w=0.0, grid_w=0.0, dso="limit")  # a state change while away
                await until(lambda: outbox.status()["queued_on_disk"] >= 10, WAIT_S, "messages on disk")
                assert ems.service.status()["connected"] is False
                await asyncio.get_running_loop().run_in_executor(None, broker.start)
                await until(lambda: ems.service.connected and len(outbox) < 5, WAIT_S, "replayed")
                produced = {s: outbox.last_seq(s) for s in streams}
            await until(lambda: all(max([m["seq"] for m in sub.on(f"phoenyra/site-1/{s}")], default=0) >= produced[s]
                                    for s in streams), WAIT_S, "every message delivered")
            return {s: first_occurrences([m["seq"] for m in sub.on(f"phoenyra/site-1/{s}")]) for s in streams}

    result = asyncio.run(main())
    for stream, (order, duplicates) in result.items():
        assert order == list(range(1, len(order) + 1)), (stream, order, duplicates)  # none missing, in order
        print(f"{stream}: {len(order)} messages, {duplicates} QoS 1 duplicates")
    assert len(result["telemetry"][0]) >= 13 and len(result["notifications"][0]) >= 1 and len(result["state"][0]) >= 2


def test_messages_queued_at_a_clean_stop_are_sent_after_the_restart_numbering_on(broker, make_ems, running):
    section = mqtt_section(broker, port=free_port())  # nobody listens: everything queues
    first = make_ems(section)

    async def queue_then_stop() -> None:
        async with running(first):
            await until(lambda: first.service.outbox is not None and first.service.outbox.last_seq("telemetry") >= 5,
                        WAIT_S, "queued")

    asyncio.run(queue_then_stop())
    assert first.service.outbox is None  # closed: everything on disk
    second = make_ems(mqtt_section(broker))  # the same data dir, now with the broker

    async def restart() -> list[tuple[int, int]]:
        async with Subscriber(broker.plain, ["phoenyra/+/telemetry"]) as sub:
            async with running(second):
                await until(lambda: sum(m["boot"] == 2 for m in sub.on("phoenyra/site-1/telemetry")) >= 5, WAIT_S,
                            "the queued messages, then new ones")
            return [(m["boot"], m["seq"]) for m in sub.on("phoenyra/site-1/telemetry")]

    received = asyncio.run(restart())
    order, _ = first_occurrences([seq for _, seq in received])
    assert order == list(range(1, len(order) + 1))  # none missing, in order …
    queued = [seq for boot, seq in received if boot == 1]
    after = [seq for boot, seq in received if boot == 2]
    assert len(queued) >= 5 and min(after) == max(queued) + 1  # … the queued ones first, numbering on from there


def test_stopping_while_the_broker_hangs_ends_promptly_and_keeps_the_queue(broker, make_ems):
    ems = make_ems(mqtt_section(broker))

    async def main() -> None:
        task = asyncio.create_task(ems.service.run())
        await until(lambda: ems.service.connected and ems.service.published >= 3, WAIT_S, "publishing")
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)  # the TCP link stays up, nothing answers
        try:
            await until(lambda: ems.service.outbox is not None and len(ems.service.outbox) >= 3, WAIT_S, "unacked")
            task.cancel()
            # The supervisor allows 3 s: the offline message and the DISCONNECT wait 1 s each at most.
            done, _ = await asyncio.wait([task], timeout=WAIT_S)
            assert done, "the service did not stop"
        finally:
            broker.proc.send_signal(signal.SIGCONT)

    asyncio.run(main())
    assert ems.service.outbox is None  # closed: what was queued is written
    with sqlite3.connect(ems.service.outbox_path) as db:
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] >= 3  # on disk for the next start


def test_sigkill_leaves_offline_on_the_status_topic_by_the_last_will(broker, tmp_path):
    config = tmp_path / "ems.yaml"
    config.write_text(yaml.safe_dump(demo_config(mqtt=mqtt_section(broker, site_id="killed"))))
    script = textwrap.dedent(f"""
        import asyncio
        from pathlib import Path
        from ems.bus import TelemetryBus
        from ems.clock import ScaledClock
        from ems.config import ConfigStore
        from ems.mqtt.service import MqttService
        from ems.notifications import Notifications
        class Source:
            def state(self): return {{"ts": 0, "plant": {{}}}}
            def plan(self): return {{"plan": None, "planned_at": None}}
            def notifications_since(self, after_id): return []
        async def main():
            clock = ScaledClock()
            store = ConfigStore.open({str(config)!r})
            service = MqttService(store, TelemetryBus(), clock, Path({str(tmp_path / 'data')!r}),
                                  Notifications(clock.now), Source(), None)
            await service.run()
        asyncio.run(main())
        """)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)

    async def main() -> list[Any]:
        async with Subscriber(broker.plain, ["phoenyra/killed/status"]) as sub:
            await until(lambda: sub.on("phoenyra/killed/status")[-1:] == [b"online"], WAIT_S, "online")
            proc.send_signal(signal.SIGKILL)
            await until(lambda: sub.on("phoenyra/killed/status")[-1:] == [b"offline"], WAIT_S, "offline by the will")
        async with Subscriber(broker.plain, ["phoenyra/killed/status"]) as late:  # retained for newcomers
            await until(lambda: late.messages, WAIT_S, "retained status")
            return late.messages

    try:
        assert asyncio.run(main()) == [("phoenyra/killed/status", b"offline", True)]
    finally:
        proc.kill()
        proc.wait(timeout=WAIT_S)


def test_tls_with_a_ca_and_a_client_certificate_made_by_the_test(broker, make_ems, running):
    d = broker.dir
    ems = make_ems(mqtt_section(broker, port=broker.tls, broker="localhost", tls=True, tls_ca_file=str(d / "ca.pem"),
                                tls_cert_file=str(d / "client.pem"), tls_key_file=str(d / "client.key")))

    async def main() -> None:
        async with Subscriber(broker.plain, ["phoenyra/site-1/telemetry"]) as sub:
            async with running(ems):
                await until(lambda: sub.on("phoenyra/site-1/telemetry"), WAIT_S, "telemetry over TLS")
                assert ems.service.status()["tls"] is True

    asyncio.run(main())


# -- the connection test ------------------------------------------------------------------------------------------

def test_the_connection_test_reports_the_round_trip_or_the_exact_error(broker, tmp_path):
    from ems.config.schema import MqttConfig
    d = broker.dir
    tls = {"tls": True, "broker": "localhost", "port": broker.tls, "tls_ca_file": str(d / "ca.pem"),
           "tls_cert_file": str(d / "client.pem"), "tls_key_file": str(d / "client.key")}
    cases = {
        "ok": {"broker": "127.0.0.1", "port": broker.plain},
        "ok_tls": tls,
        "ok_password": {"broker": "127.0.0.1", "port": broker.auth, "username": "ems", "password": PASSWORD},
        "refused": {"broker": "127.0.0.1", "port": free_port()},
        "dns": {"broker": "no-such-broker.invalid", "port": 1883},
        "auth": {"broker": "127.0.0.1", "port": broker.auth, "username": "ems", "password": "wrong"},
        "tls_untrusted": {**tls, "tls_ca_file": str(d / "other-ca.pem")},
        "tls_hostname": {**tls, "broker": "127.0.0.1"},  # the certificate names localhost only
        "tls_no_client_certificate": {**tls, "tls_cert_file": None, "tls_key_file": None},
    }

    async def main() -> dict[str, dict[str, Any]]:
        return {name: await probe(MqttConfig(**values), timeout_s=5.0, machine_id_path=tmp_path / "none")
                for name, values in cases.items()}

    results = asyncio.run(main())
    for name in ("ok", "ok_tls", "ok_password"):
        assert results[name]["ok"] is True and results[name]["round_trip_ms"] > 0, results[name]
        assert results[name]["topic"].startswith("phoenyra/") and "-test-" in results[name]["client_id"]
    expected = {"refused": "refused", "dns": "dns", "auth": "auth", "tls_untrusted": "tls", "tls_hostname": "tls",
                "tls_no_client_certificate": "tls"}
    for name, kind in expected.items():
        assert results[name]["ok"] is False and results[name]["error_kind"] == kind, results[name]
        assert results[name]["error"], results[name]
    assert "certificate" in results["tls_untrusted"]["error"]


def test_post_api_mqtt_test_as_admin_and_operator(broker, tmp_path):
    cfg = demo_config(mqtt={"broker": "127.0.0.1", "port": broker.auth, "username": "ems", "password": PASSWORD,
                            "site_id": "api"})
    (tmp_path / "ems.yaml").write_text(yaml.safe_dump(cfg))
    rt = Runtime(ConfigStore.open(tmp_path / "ems.yaml"), tmp_path, Listen("127.0.0.1", 0))
    rt.stopping.set()
    facade = rt.facade()
    app = create_app(facade)
    if not any(r.rule == "/api/mqtt/test" for r in app.routes):  # until ems/api/app.py installs it
        install_mqtt_routes(app, facade)
    server = WebServer(app, "127.0.0.1", 0, threads=4)
    host, port = server.start()
    try:
        rt.security.users.create("admin1", "admin-pass-27182", role="admin")
        rt.security.users.create("operator1", "operator-pass-31415", role="operator")
        sessions = {}
        for user, password in (("admin1", "admin-pass-27182"), ("operator1", "operator-pass-31415")):
            s = Session(f"http://{host}:{port}")
            status, body = s.request("POST", "/login", {"username": user, "password": password})
            assert status == 200, body
            s.csrf = body["csrf_token"]
            sessions[user] = s
        admin, op = sessions["admin1"], sessions["operator1"]
        status, body = admin.request("POST", "/api/mqtt/test", {}, timeout=30)  # the stored settings, password kept
        assert status == 200 and body["ok"] is True and body["round_trip_ms"] > 0, body
        assert PASSWORD not in json.dumps(body)
        status, body = op.request("POST", "/api/mqtt/test", {"keepalive_s": 30}, timeout=30)
        assert status == 200 and body["ok"] is True, body
        # The stored password never goes to another broker: without one of its own, the login fails there.
        status, body = admin.request("POST", "/api/mqtt/test", {"broker": "localhost"}, timeout=30)
        assert status == 200 and body["ok"] is False and body["error_kind"] == "auth", body
        status, body = op.request("POST", "/api/mqtt/test", {"broker": "10.0.0.9"}, timeout=30)
        assert (status, body["field"]) == (403, "mqtt.broker")
        status, body = admin.request("POST", "/api/mqtt/test", {"port": 0}, timeout=30)
        assert (status, body["field"]) == (400, "mqtt.port")
    finally:
        server.stop()
        rt.security.close()


# -- commands -----------------------------------------------------------------------------------------------------

def test_commands_get_replies_and_bad_payloads_get_error_replies_never_a_crash(broker, make_ems, running):
    ems = make_ems(mqtt_section(broker))
    cmd = "phoenyra/site-1/cmd/"
    sent = [
        ("set_strategy", {"id": "a1", "strategy": "arbitrage"}, True, None),
        ("set_strategy", {"id": "a2", "strategy": "auto"}, True, None),
        ("set_auto", {"id": "a3", "ts": time.time()}, True, None),
        ("request_setpoint", {"id": "a4", "power_w": -3000, "duration_s": 600}, True, None),
        ("acknowledge", {"id": "a5", "notification_id": 7}, True, None),
        ("request_setpoint", {"id": "b1", "power_w": 9000, "duration_s": 60}, False, "power_w"),
        ("request_setpoint", {"id": "b2", "power_w": 1000, "duration_s": 0}, False, "duration_s"),
        ("request_setpoint", {"id": "b3", "power_w": "lots", "duration_s": 60}, False, "power_w"),
        ("set_strategy", {"id": "b4", "strategy": "moon"}, False, "strategy"),
        ("set_strategy", {"id": "b5", "strategy": "arbitrage", "force": True}, False, "force"),
        ("set_auto", {"id": "b6", "ts": time.time() - 3600}, False, "ts"),
        ("fly", {"id": "b7"}, False, "command"),
        ("acknowledge", {"id": "b8", "notification_id": -1}, False, "notification_id"),
    ]
    garbage = [b"\xff\xfe not json", b"[1, 2, 3]", b"{" * 100, b'{"id": "x"' , b"9" * 5000]

    async def main() -> None:
        async with Subscriber(broker.plain, ["phoenyra/site-1/reply/#"]) as sub:
            await sub.publish(cmd + "set_auto", {"id": "r1"}, retain=True)  # kept by the broker from before
            async with running(ems):
                await until(lambda: sub.on("phoenyra/site-1/reply/r1"), WAIT_S, "the retained command refused")
                await sub.publish(cmd + "set_auto", b"", retain=True)  # cleared: delivered empty, ignored
                for name, body, _, _ in sent:
                    await sub.publish(cmd + name, body)
                for payload in garbage:
                    await sub.publish(cmd + "set_strategy", payload)
                await until(lambda: len(sub.messages) >= 1 + len(sent) + len(garbage), WAIT_S, "replies")
                assert ems.service.status()["connected"] is True  # nothing ended the connection
            retained = sub.on("phoenyra/site-1/reply/r1")
            assert len(retained) == 1 and retained[0]["ok"] is False and retained[0]["field"] == "retain"
            for name, body, ok, field in sent:
                replies = sub.on(f"phoenyra/site-1/reply/{body['id']}")
                assert len(replies) == 1, (name, body, sub.messages)
                reply = replies[0]
                assert reply["ok"] is ok and reply["command"] == name and reply["id"] == body["id"], reply
                assert ok or reply["field"] == field, reply
            anonymous = sub.on("phoenyra/site-1/reply/no-id")
            assert len(anonymous) >= len(garbage) and not any(r["ok"] for r in anonymous)
            assert {r["field"] for r in anonymous} == {"payload"}

    asyncio.run(main())
    assert ems.port.calls == [("set_strategy", "arbitrage"), ("set_auto",), ("set_auto",),
                              ("request_setpoint", -3000.0, 600.0), ("acknowledge", 7)]


def test_a_shared_secret_is_required_when_configured_and_never_echoed(broker, make_ems, running):
    secret = "cmd-secret-5d1e"
    ems = make_ems(mqtt_section(broker, command_secret=secret))

    async def main() -> None:
        async with Subscriber(broker.plain, ["phoenyra/site-1/reply/#"]) as sub:
            async with running(ems):
                await until(lambda: ems.service.connected, WAIT_S, "connected")
                await sub.publish("phoenyra/site-1/cmd/set_auto", {"id": "s1"})
                await sub.publish("phoenyra/site-1/cmd/set_auto", {"id": "s2", "secret": "guess"})
                await sub.publish("phoenyra/site-1/cmd/set_auto", {"id": "s3", "secret": secret})
                await until(lambda: len(sub.messages) >= 3, WAIT_S, "replies")
        replies = [json.loads(p) for _, p, _ in sub.messages]
        assert [(r["id"], r["ok"]) for r in replies] == [(None, False), (None, False), ("s3", True)]
        assert {r.get("field") for r in replies[:2]} == {"secret"}
        assert all(secret not in json.dumps(r) for r in replies)
        assert [t for t, _, _ in sub.messages][:2] == ["phoenyra/site-1/reply/no-id"] * 2

    asyncio.run(main())
    assert ems.port.calls == [("set_auto",)]


class RuntimePort:
    """The `CommandPort` over a real runtime, as the wiring does it: a setpoint is the runtime's manual request."""

    def __init__(self, rt: Runtime):
        self.rt = rt

    def set_strategy(self, name: str) -> dict[str, Any]:
        self.rt.config.update_section("strategy", {**self.rt.config.section_plain("strategy"), "mode": "manual",
                                                   "current": name})
        return self.rt.config.section_plain("strategy")

    def set_auto(self) -> dict[str, Any]:
        self.rt.config.update_section("strategy", {**self.rt.config.section_plain("strategy"), "mode": "auto"})
        return self.rt.config.section_plain("strategy")

    def request_setpoint(self, power_w: float, duration_s: float) -> dict[str, Any]:
        return self.rt.request_setpoint(power_w, duration_s, "mqtt")

    def acknowledge(self, notification_id: int) -> dict[str, Any]:
        self.rt.notifications.acknowledge(0, notification_id)
        return {"acknowledged_up_to": self.rt.notifications.acknowledged(0)}


def test_a_command_cannot_push_the_battery_past_a_dso_limit(broker, tmp_path):
    from ems.mqtt.ports import SnapshotUplink
    cfg = demo_config(mqtt=mqtt_section(broker, site_id="dso"),
                      power_control={"enabled": True, "auto_write": True, "safety_period_s": 0.2},
                      simulator={"initial_soc_pct": 80.0})
    (tmp_path / "ems.yaml").write_text(yaml.safe_dump(cfg))

    async def main() -> tuple[Any, dict[str, Any]]:
        rt = Runtime(ConfigStore.open(tmp_path / "ems.yaml"), tmp_path, Listen("127.0.0.1", 0))
        if not WIRED:  # until ems/runtime.py wires the service itself
            service = MqttService(rt.config, rt.bus, rt.clock, tmp_path, rt.notifications,
                                  SnapshotUplink(rt.snapshot, rt.plan_view, rt.notifications), RuntimePort(rt))
            rt.supervisor.add("mqtt", service.run)
        await rt.start()
        try:
            assert rt.simulation is not None
            rt.simulation.apply_event(rt.simulation.parse_event({"type": "dso_limit", "limit_pct": 20}))
            rt.safety.wake()
            async with Subscriber(broker.plain, ["phoenyra/dso/reply/#", "phoenyra/dso/state",
                                                 "phoenyra/dso/status"]) as sub:
                await until(lambda: sub.on("phoenyra/dso/status")[-1:] == [b"online"], WAIT_S, "online")
                await until(lambda: rt.safety.last_decision is not None and rt.safety.last_decision.state == "limited",
                            WAIT_S, "the DSO limit in force")
                await sub.publish("phoenyra/dso/cmd/request_setpoint", {"id": "max", "power_w": 5000, "duration_s": 120})
                await until(lambda: sub.on("phoenyra/dso/reply/max"), WAIT_S, "the reply")
                await until(lambda: rt.safety.last_decision.requested_w == 5000.0, WAIT_S, "the request taken up")
                decision = rt.safety.last_decision
                reply = sub.on("phoenyra/dso/reply/max")[0]
                await until(lambda: any(s.get("dso_mode") == "limit" for s in sub.on("phoenyra/dso/state")
                                        if isinstance(s, dict)), WAIT_S, "the state message")
        finally:
            await rt.stop()
        return decision, reply

    decision, reply = asyncio.run(main())
    print("decision under the DSO limit:", decision.to_json())
    assert reply["ok"] is True and reply["result"]["power_w"] == 5000.0  # accepted as a request …
    assert decision.requested_w == 5000.0
    assert decision.state == "limited" and decision.limit_pct == 20.0  # … but the safety loop decides:
    assert decision.setpoint_w <= decision.limit_w + 1e-6 and decision.setpoint_w <= 0.2 * 5000.0 + 1e-6


# -- MQTT as a source ---------------------------------------------------------------------------------------------

def test_mqtt_sources_feed_the_bus_and_garbage_or_a_lost_link_reads_as_unknown(broker, make_ems, running):
    ems = make_ems(mqtt_section(broker, sources=[
        {"topic": "meter/status", "point": "grid.power_w", "json_key": "emeters.0.power", "max_age_s": 5},
        {"topic": "meter/status", "point": "pv.power_w", "json_key": "pv_kw", "scale": 1000},
        {"topic": "wallbox/soc", "point": "battery.soc_pct"}]))
    bus = ems.plant.bus

    def point(path: str) -> Any:
        group, _, name = path.partition(".")
        return getattr(getattr(bus.snapshot(), group), name)

    async def main() -> None:
        async with Subscriber(broker.plain, []) as pub:
            async with running(ems):
                await until(lambda: ems.service.connected, WAIT_S, "connected")
                await pub.publish("meter/status", {"emeters": [{"power": 1234.5}], "pv_kw": 2.5})
                await pub.publish("wallbox/soc", b" 61.5 ")
                await until(lambda: point("battery.soc_pct").value == 61.5, WAIT_S, "plain number")
                grid = point("grid.power_w")
                assert (grid.value, grid.source, grid.max_age_s) == (1234.5, "mqtt", 5.0)
                assert point("pv.power_w").value == 2500.0
                await pub.publish("meter/status", {"emeters": [{"power": "NaN"}], "pv_kw": 1e9})
                await until(lambda: point("grid.power_w").value is None, WAIT_S, "garbage → unknown")
                assert point("pv.power_w").value is None  # implausible: 1 TW
                await pub.publish("wallbox/soc", b"61.0")
                await until(lambda: point("battery.soc_pct").value == 61.0, WAIT_S, "fresh again")
                await asyncio.get_running_loop().run_in_executor(None, broker.stop)
                await until(lambda: point("battery.soc_pct").value is None, WAIT_S, "lost link → unknown")
                await asyncio.get_running_loop().run_in_executor(None, broker.start)
            assert ems.service.sources.rejected == 2

    try:
        asyncio.run(main())
    finally:
        if broker.proc is None:
            broker.start()


# -- Home Assistant -----------------------------------------------------------------------------------------------

# Keys HA's MQTT discovery documents for these components (full names), and those it requires.
HA_COMMON = {"name", "unique_id", "device", "origin", "availability_topic", "payload_available",
             "payload_not_available", "state_topic", "value_template", "icon", "entity_category", "enabled_by_default"}
HA_KEYS = {"sensor": HA_COMMON | {"unit_of_measurement", "device_class", "state_class", "expire_after", "options",
                                  "suggested_display_precision", "force_update"},
           "select": HA_COMMON | {"command_topic", "command_template", "options", "optimistic", "retain", "qos"}}
HA_REQUIRED = {"sensor": {"state_topic"}, "select": {"command_topic", "options"}}
HA_DEVICE_CLASSES = {"battery", "power", "monetary", "enum"}
HA_STATE_CLASSES = {"measurement", "total", "total_increasing"}
TEMPLATE_KEYS = re.compile(r"value_json\.([A-Za-z_][A-Za-z0-9_]*)")


def check_home_assistant_config(topic: str, config: dict[str, Any], published: dict[str, dict[str, Any]]) -> None:
    """What HA checks when it reads a discovery message, and that each template finds its key in what we publish."""
    match = re.fullmatch(r"homeassistant/(sensor|select)/([A-Za-z0-9_-]+)/([A-Za-z0-9_-]+)/config", topic)
    assert match, topic
    component = match.group(1)
    assert set(config) <= HA_KEYS[component], (topic, set(config) - HA_KEYS[component])
    assert HA_REQUIRED[component] <= set(config), topic
    assert config["unique_id"].startswith(match.group(2))
    assert config["availability_topic"] == "phoenyra/ha/status"
    assert set(config["device"]) <= {"identifiers", "name", "manufacturer", "model", "sw_version"}
    assert config["device"]["identifiers"] == [match.group(2)]
    assert config.get("device_class") in HA_DEVICE_CLASSES | {None}
    assert config.get("state_class") in HA_STATE_CLASSES | {None}
    if config.get("device_class") == "enum":
        assert config["options"] == list(POWER_CONTROL_STATES)
    for key in TEMPLATE_KEYS.findall(config["value_template"]):
        assert key in published[config["state_topic"]], (topic, key)
    if component == "select":
        assert config["command_topic"] == "phoenyra/ha/cmd/set_strategy"
        assert json.loads(config["command_template"].replace("{{ value }}", config["options"][1]))["strategy"]


def test_home_assistant_discovery_parses_as_home_assistant_expects_and_is_removed_when_disabled(broker, make_ems,
                                                                                                running):
    ems = make_ems(mqtt_section(broker, site_id="ha", homeassistant_discovery=True))
    ems.plant.planned_at = time.time()

    async def main() -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
        async with Subscriber(broker.plain, ["homeassistant/#", "phoenyra/ha/#"]) as sub:
            async with running(ems):
                await until(lambda: sub.on("phoenyra/ha/telemetry") and sub.on("phoenyra/ha/state")
                            and sub.on("phoenyra/ha/plan"), WAIT_S, "uplink")
                await until(lambda: len({t for t, _, _ in sub.messages if t.startswith("homeassistant/")}) >= 8,
                            WAIT_S, "discovery")
                configs = {t: json.loads(p) for t, p, _ in sub.messages if t.startswith("homeassistant/")}
                published = {t: sub.on(t)[-1] for t in ("phoenyra/ha/telemetry", "phoenyra/ha/state", "phoenyra/ha/plan")}
                # HA's select sends a command: the strategy changes through the port.
                select = next(c for t, c in configs.items() if "/select/" in t)
                await sub.publish(select["command_topic"],
                                  select["command_template"].replace("{{ value }}", "peak_shaving").encode())
                await until(lambda: ("set_strategy", "peak_shaving") in ems.port.calls, WAIT_S, "select → command")
                section = {**ems.store.section_plain("mqtt"), "homeassistant_discovery": False,
                           "publish_interval_s": 1.0}
                await asyncio.get_running_loop().run_in_executor(None, ems.store.update_section, "mqtt", section)
                await until(lambda: sum(1 for t, p, _ in sub.messages if t in configs and p == b"") == len(configs),
                            WAIT_S, "removal")
            async with Subscriber(broker.plain, ["homeassistant/#"]) as late:
                # Retained messages come right after the subscription; a marker sent now arrives after them.
                await late.publish("homeassistant/test/marker", b"marker")
                await until(lambda: late.messages, WAIT_S, "the marker")
                return configs, published, late.messages

    configs, published, left = asyncio.run(main())
    assert len(configs) == 8
    for topic, config in configs.items():
        check_home_assistant_config(topic, config, published)
    names = {c["unique_id"] for c in configs.values()}
    assert len(names) == len(configs)
    assert left == [("homeassistant/test/marker", b"marker", False)]  # nothing retained is left behind


# -- the appliance as shipped (needs the runtime wiring) ---------------------------------------------------------

@pytest.mark.skipif(not WIRED, reason="until ems/runtime.py wires ems.mqtt (issue 13: RuntimeSnapshot.mqtt)")
def test_ems_run_with_mqtt_on_publishes_reports_in_api_state_and_dies_into_offline(broker, ems_factory):
    ems = ems_factory(demo_config(mqtt=mqtt_section(broker, site_id="appliance", publish_interval_s=1.0)))

    async def main() -> None:
        async with Subscriber(broker.plain, ["phoenyra/appliance/#"]) as sub:
            await until(lambda: len(sub.on("phoenyra/appliance/telemetry")) >= 2, WAIT_S, "telemetry")
            status, state = await asyncio.get_running_loop().run_in_executor(None, ems.get, "/api/state")
            assert status == 200 and state["mqtt"]["connected"] is True and state["mqtt"]["outbox"]["dropped"] == 0
            ems.proc.send_signal(signal.SIGKILL)
            await until(lambda: sub.on("phoenyra/appliance/status")[-1:] == [b"offline"], WAIT_S, "offline by the will")

    asyncio.run(main())

"""The MQTT uplink (issue 13) against a real Mosquitto on 127.0.0.1: publish rate, replay after an outage, the
backlog's size on disk, and the EMS's memory with MQTT on.

1. Sustained publish rate: BENCH_MQTT_MESSAGES (20,000) telemetry messages — real payloads built by
   `ems.mqtt.uplink.telemetry` from a fully populated plant state — put into a connected `MqttService`'s
   outbox; timed until the broker has acknowledged the last (QoS 1), and a subscriber (QoS 1) has received
   every one. Baseline: bare aiomqtt (the uplink's own client settings) publishing the same payloads, QoS 1,
   the same window of 100.
2. A one-hour outage at the defaults: telemetry every 10 s, a state change a minute, four plans, twenty
   notifications (444 messages), written as the outbox writes them while the broker is away (one batch per
   60 s flush), then the EMS "restarts": a new service opens the outbox and connects. Replay rate: messages
   per second from connecting until the queue is empty. The same with telemetry every second (3,684
   messages): the busiest setting. Disk: the outbox file (WAL included) holding each backlog, in KiB.
3. RSS: the EMS (the demo through Modbus, as `ems run` starts it) with MQTT on — connected, telemetry every
   10 s — and with MQTT off, each median of BENCH_MQTT_RSS_SECONDS (30) s of 1 s samples after a 20 s
   warm-up; baseline a bare interpreter. Until the runtime wires `ems.mqtt` itself, the launcher adds the
   service to the supervisor the way the wiring will. Two runs differ by ±1-2 MB (allocator, timing), more than
   MQTT's share, so that share is also measured on its own: the RSS a process with the runtime's imports gains
   by importing aiomqtt and paho and making a client (median of 3).
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import aiomqtt
import yaml

from ems.bus import TelemetryBus
from ems.clock import ScaledClock
from ems.config import ConfigStore
from ems.mqtt import uplink
from ems.mqtt.client import Connection, PahoLog, make_client
from ems.mqtt.outbox import Outbox, encode
from ems.mqtt.service import OUTBOX_FILE, MqttService
from ems.notifications import Notifications
from ems.resources import demo_config_text
from ems.state import Measurement, PlantState, plant_state_to_json

MESSAGES = int(os.environ.get("BENCH_MQTT_MESSAGES", "20000"))
RSS_SECONDS = float(os.environ.get("BENCH_MQTT_RSS_SECONDS", "30"))
WARMUP_S = 20.0
WINDOW = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self, d: Path):
        self.port = free_port()
        conf = d / "mosquitto.conf"
        conf.write_text(f"user root\nlistener {self.port} 127.0.0.1\nallow_anonymous true\nlog_dest none\n"
                        "max_queued_messages 100000\n")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


def full_state(now: float) -> dict[str, Any]:
    """/api/state's shape with every telemetry point present and fresh."""
    values = {"battery.soc_pct": 61.234, "battery.soh_pct": 98.0, "battery.voltage_v": 402.7,
              "battery.current_a": -7.41, "battery.temperature_c": 27.5, "battery.max_charge_power_w": 5000.0,
              "battery.max_discharge_power_w": 5000.0, "bess.power_w": -2987.2, "pv.power_w": 5312.9,
              "load.power_w": 1466.1, "grid.power_w": -859.6, "dso.mode": "normal", "dso.limit_pct": 100.0}
    state = PlantState().with_updates({k: Measurement(v, now, "modbus", 30.0) for k, v in values.items()})
    return {"ts": now, "plant": plant_state_to_json(state, now),
            "power_control": {"state": "normal", "requested_w": -2987.2, "effective_setpoint_w": -2987.2,
                              "limit_w": 5000.0, "charge_limit_w": 5000.0, "export_limit_w": 15000.0,
                              "reasons": [], "reason_codes": []},
            "strategy": {"mode": "auto", "active": "self_consumption"}, "grid_connection": {"utilisation_pct": 5.7},
            "expected_profit_24h_eur": 1.87, "devices": {}}


class Source:
    def __init__(self, clock: ScaledClock):
        self.clock = clock

    def state(self) -> dict[str, Any]:
        return full_state(self.clock.now())

    def plan(self) -> dict[str, Any]:
        return {"plan": None, "planned_at": None}

    def notifications_since(self, after_id: int) -> list[Any]:
        return []


def config_file(d: Path, port: int, **mqtt: Any) -> Path:
    cfg = yaml.safe_load(demo_config_text())
    cfg["mqtt"] = {"enabled": True, "broker": "127.0.0.1", "port": port, "site_id": "bench", **mqtt}
    path = d / "ems.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


async def until(predicate: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("bench wait timed out")
        await asyncio.sleep(0.001)


async def counting_subscriber(port: int, topic: str, received: list[int], ready: asyncio.Event) -> None:
    async with aiomqtt.Client("127.0.0.1", port, max_queued_incoming_messages=0) as client:
        await client.subscribe(topic, qos=1)
        ready.set()
        async for _ in client.messages:
            received[0] += 1


async def service_publish_rate(d: Path, port: int) -> tuple[float, float, int]:
    clock = ScaledClock()
    store = ConfigStore.open(config_file(d, port, publish_interval_s=3600))
    service = MqttService(store, TelemetryBus(), clock, d, Notifications(clock.now), Source(clock), None,
                          machine_id_path=d / "none")
    received, ready = [0], asyncio.Event()
    sub = asyncio.create_task(counting_subscriber(port, "phoenyra/bench/telemetry", received, ready))
    await asyncio.wait_for(ready.wait(), 20)
    task = asyncio.create_task(service.run())
    await until(lambda: service.connected and service.outbox is not None and len(service.outbox) == 0, 30)
    outbox = service.outbox
    assert outbox is not None
    body = uplink.telemetry(full_state(clock.now()), "bench")
    before_published, before_received = service.published, received[0]
    t0 = time.perf_counter()
    for _ in range(MESSAGES):
        outbox.put("telemetry", body)
    await until(lambda: service.published - before_published >= MESSAGES, 300)
    acked_s = time.perf_counter() - t0
    await until(lambda: received[0] - before_received >= MESSAGES, 300)
    delivered_s = time.perf_counter() - t0
    task.cancel()
    sub.cancel()
    await asyncio.gather(task, sub, return_exceptions=True)
    return MESSAGES / acked_s, MESSAGES / delivered_s, len(encode({"seq": MESSAGES, "boot": 1, **body}))


async def raw_publish_rate(port: int) -> float:
    """Bare aiomqtt with the uplink's client settings (the same `make_client`), no outbox, no service."""
    body = encode({"seq": 1, "boot": 1, **uplink.telemetry(full_state(time.time()), "bench")})
    conn = Connection("127.0.0.1", port, "bench-raw", None, None, 60, False, None, None, None, None)
    async with make_client(conn, None, PahoLog()) as client:
        t0 = time.perf_counter()
        for start in range(0, MESSAGES, WINDOW):
            await asyncio.gather(*(client.publish("raw/telemetry", body, qos=1)
                                   for _ in range(min(WINDOW, MESSAGES - start))))
        return MESSAGES / (time.perf_counter() - t0)


async def build_backlog(d: Path, telemetry_s: float) -> int:
    """One hour of messages as the outbox stores them while the broker is away: a batch per 60 s flush."""
    box = Outbox(d / OUTBOX_FILE, 20 * 1024 * 1024)
    await box.open()
    now = time.time() - 3600
    count = 0
    for second in range(3600):
        ts = now + second
        if second % telemetry_s == 0:
            box.put("telemetry", uplink.telemetry(full_state(ts), "bench"))
            count += 1
        if second % 60 == 0:
            facts = uplink.state_facts(full_state(ts))
            box.put("state", uplink.state_change(None, facts, ts, "bench") or {})
            count += 1
        if second % 900 == 0:
            box.put("plan", {"ts": ts, "site": "bench", "strategy": "arbitrage", "hours": [
                {"start_ts": ts + 3600 * h, "battery_power_w": 1000.0, "grid_power_w": 0.0, "pv_power_w": 0.0,
                 "load_power_w": 800.0, "soc_pct": 50.0, "import_price_eur_per_kwh": 0.21,
                 "export_price_eur_per_kwh": 0.07} for h in range(24)]})
            count += 1
        if second % 180 == 0:
            box.put("notifications", {"ts": ts, "site": "bench", "id": second, "level": "warning",
                                      "category": "mqtt", "message": "MQTT: connection refused (127.0.0.1:1883)"})
            count += 1
        if second % 60 == 59:
            await box.flush()
    await box.close()
    return count


async def replay(d: Path, port: int) -> tuple[float, int]:
    clock = ScaledClock()
    store = ConfigStore.open(config_file(d, port, publish_interval_s=3600))
    service = MqttService(store, TelemetryBus(), clock, d, Notifications(clock.now), Source(clock), None,
                          machine_id_path=d / "none")
    task = asyncio.create_task(service.run())
    await until(lambda: service.connected, 30)
    t0 = time.perf_counter()
    outbox = service.outbox
    assert outbox is not None
    queued = len(outbox)
    await until(lambda: len(outbox) == 0, 300)
    rate = queued / (time.perf_counter() - t0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return rate, queued


LAUNCHER = textwrap.dedent("""
    import asyncio, logging, sys
    from pathlib import Path
    from ems.config import ConfigStore
    from ems.runtime import Listen, Runtime
    logging.basicConfig(level=logging.WARNING)
    data = Path(sys.argv[1])
    rt = Runtime(ConfigStore.open(data / "ems.yaml"), data, Listen("127.0.0.1", 0))
    if rt.config.config.mqtt.enabled and not hasattr(rt, "mqtt"):  # until ems/runtime.py wires it
        from ems.mqtt.ports import SnapshotUplink
        from ems.mqtt.service import MqttService
        service = MqttService(rt.config, rt.bus, rt.clock, data, rt.notifications,
                              SnapshotUplink(rt.snapshot, rt.plan_view, rt.notifications), None)
        rt.supervisor.add("mqtt", service.run)
    asyncio.run(rt.run())
    """)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def ems_rss(d: Path, port: int, mqtt_on: bool) -> float:
    cfg = yaml.safe_load(demo_config_text())
    cfg["modbus"] = [{**dev, "port": free_port()} for dev in cfg["modbus"]]
    cfg["mqtt"] = {"enabled": mqtt_on, "broker": "127.0.0.1", "port": port, "site_id": "rss"}
    d.mkdir(parents=True, exist_ok=True)
    (d / "ems.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(d)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(WARMUP_S)
        assert proc.poll() is None, "the EMS stopped"
        samples = []
        end = time.monotonic() + RSS_SECONDS
        while time.monotonic() < end:
            samples.append(rss_mb(proc.pid))
            time.sleep(1.0)
        if mqtt_on:
            assert (d / OUTBOX_FILE).exists(), "MQTT did not start"
        return statistics.median(samples)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


IMPORTS = textwrap.dedent("""
    import asyncio, sys
    import ems.runtime
    if sys.argv[1] == "on":
        from ems.mqtt.client import Connection, PahoLog, make_client
        async def client():
            make_client(Connection("127.0.0.1", 1883, "x", None, None, 60, False, None, None, None, "s"), None, PahoLog())
        asyncio.run(client())
    print(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])
    """)


def import_cost_mb() -> float:
    """What aiomqtt, paho and a client object add to a process that has the runtime's imports (median of 3)."""
    def rss(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", IMPORTS, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1]) / 1024
    return statistics.median(rss("on") - rss("off") for _ in range(3))


def bare_rss() -> float:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    time.sleep(1.0)
    value = rss_mb(proc.pid)
    proc.wait()
    return value


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ems-bench-mqtt-"))
    broker = Broker(tmp)
    try:
        (tmp / "rate").mkdir()
        acked, delivered, payload_bytes = asyncio.run(service_publish_rate(tmp / "rate", broker.port))
        raw = asyncio.run(raw_publish_rate(broker.port))
        figures: dict[str, float] = {
            "mqtt_publish_rate_msgs_per_s": round(acked, 1),
            "mqtt_publish_delivered_rate_msgs_per_s": round(delivered, 1),
            "baseline_aiomqtt_publish_rate_msgs_per_s": round(raw, 1),
            "mqtt_publish_vs_aiomqtt_ratio": round(acked / raw, 3),
            "mqtt_telemetry_payload_bytes": payload_bytes,
        }
        for name, every_s in (("1h", 10), ("1h_1s_telemetry", 1)):
            d = tmp / f"backlog-{name}"
            d.mkdir()
            count = asyncio.run(build_backlog(d, every_s))
            size = sum(p.stat().st_size for p in d.glob(OUTBOX_FILE + "*"))
            rate, queued = asyncio.run(replay(d, broker.port))
            figures[f"mqtt_backlog_{name}_messages"] = count
            figures[f"mqtt_backlog_{name}_disk_kib"] = round(size / 1024, 1)
            figures[f"mqtt_replay_{name}_rate_msgs_per_s"] = round(rate, 1)
            figures[f"mqtt_replay_{name}_s"] = round(queued / rate, 3)
        figures["mqtt_replay_vs_aiomqtt_ratio"] = round(figures["mqtt_replay_1h_1s_telemetry_rate_msgs_per_s"] / raw, 3)
        on = ems_rss(tmp / "rss-on", broker.port, True)
        off = ems_rss(tmp / "rss-off", broker.port, False)
        figures.update({"ems_rss_mqtt_on_mb": round(on, 1), "ems_rss_mqtt_off_mb": round(off, 1),
                        "ems_rss_mqtt_on_minus_off_mb": round(on - off, 1),
                        "mqtt_import_and_client_rss_mb": round(import_cost_mb(), 2),
                        "baseline_python_rss_mb": round(bare_rss(), 1)})
    finally:
        broker.stop()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""The MQTT uplink as one supervised task: `supervisor.add("mqtt", service.run)`.

While `mqtt.enabled` is off the task only waits for a config change (aiomqtt is not imported, no file is
opened). While it is on:

- producers put messages into the outbox whether or not the broker is there: telemetry every
  `publish_interval_s`, a state message when the power-control state, the DSO order, the alarms, the strategy or
  a device's link changes (looked at every `WATCH_PERIOD_S`), a plan summary after each planning run, and each
  notification as it is raised;
- the connection loop connects (`async with` = the connection's lifetime), announces `online` (retained; the
  last will says `offline` when the EMS dies), the info and the Home Assistant discovery, subscribes to
  commands and source topics, then sends the outbox in order — a window at a time, each message removed only
  once the broker has acknowledged it — while it receives. A lost or refused connection is retried after a
  backoff with jitter (`reconnect_min_s` doubling to `reconnect_max_s`, each × 50–100 %);
- a change of the `mqtt` section ends the connection cleanly (`offline`) and starts again with the new
  settings; the outbox and its sequence numbers carry on.

Stopping (the supervisor cancels the task) publishes `offline`, disconnects and writes every queued message to
disk, so nothing is lost across a restart. Time comes from the injected clock; wall time only for the age of a
command (the sender's clock is a wall clock, whatever the plant's time is).
"""
from __future__ import annotations

import asyncio
import logging
import random as _random
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Protocol, Sequence

from .. import __version__
from ..backoff import Backoff
from ..bus import TelemetryBus
from ..clock import Clock
from ..config.guard import secret_values
from ..config.schema import EmsConfig, MqttConfig
from .. import i18n
from ..notifications import Notifications
from . import uplink
from .client import Connection, PahoLog, describe_failure, is_connection_error, make_client, tls_context
from .commands import CommandHandler, RateLimit
from .homeassistant import discovery
from .outbox import Outbox, encode
from .ports import CommandPort, UplinkSource
from .sources import SourceMap
from .topics import LAYOUT_VERSION, MACHINE_ID, RETAINED_STREAMS, Layout, layout

log = logging.getLogger(__name__)

OUTBOX_FILE = "mqtt-outbox.db"
WATCH_PERIOD_S = 1.0
SEND_WINDOW = 100
"""Messages published before waiting for their acknowledgements (paho keeps MAX_INFLIGHT of them on the wire)."""
OFFLINE_TIMEOUT_S = 1.0
HEALTHY_SESSION_S = 30.0
"""A connection that lasted this long resets the reconnect backoff; one that drops at once keeps backing off."""
DROP_NOTICE_INTERVAL_S = 3600.0


class ConfigSource(Protocol):
    """The live configuration (ConfigStore): the current config and a change subscription."""

    @property
    def config(self) -> EmsConfig: ...

    def subscribe(self, section: str, callback: Callable[[EmsConfig], object]) -> None: ...


class _Reconfigure(Exception):
    """The mqtt section changed: end what runs and start again with the new settings."""


async def _race(*coroutines: Awaitable[Any]) -> None:
    """Run the coroutines until the first ends; cancel (and wait for) the others; re-raise its exception."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if task in done and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]  # checked not None just above


async def _publish_in_order(client: Any, messages: Sequence[tuple[str, bytes, bool]], qos: int) -> None:
    """Publish `messages` in order and wait until the broker has them all (paho sends them in call order)."""
    tasks = [asyncio.ensure_future(client.publish(topic, payload, qos=qos, retain=retain))
             for topic, payload, retain in messages]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class MqttService:
    def __init__(self, config: ConfigSource, bus: TelemetryBus, clock: Clock, data_dir: Path,
                 notifications: Notifications, source: UplinkSource, commands: CommandPort,
                 version: str = __version__, wall_time: Callable[[], float] = time.time,
                 random: Callable[[], float] = _random.random, machine_id_path: Path = MACHINE_ID):
        self._config = config
        self.bus = bus
        self.clock = clock
        self.outbox_path = Path(data_dir) / OUTBOX_FILE
        self.notifications = notifications
        self.source = source
        self.version = version
        self.wall_time = wall_time
        self.random = random
        self.machine_id_path = machine_id_path
        self.commands = CommandHandler(commands, RateLimit(lambda: self.cfg.commands_per_minute, clock.monotonic),
                                       wall_time)
        self.outbox: Outbox | None = None
        self.sources = SourceMap(())
        self.layout: Layout | None = None
        self.state = "disabled"
        self.connected = False
        self.connected_since: float | None = None
        self.connects = 0
        self.published = 0
        self.last_error: str | None = None
        self.last_error_kind: str | None = None
        self.last_error_ts: float | None = None
        self.next_retry_s: float | None = None
        self._outage_noticed = False
        self._ever_connected = False
        self._last_facts: Mapping[str, Any] | None = None
        self._last_planned_at: Any = None
        self._last_notification_id = 0
        self._dropped_unreported = 0
        self._last_drop_notice: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        config.subscribe("mqtt", self._on_config_change)

    @property
    def cfg(self) -> MqttConfig:
        return self._config.config.mqtt

    def _on_config_change(self, _cfg: EmsConfig) -> None:
        """Called by the config store (on the loop, or in a web thread in tests): restart with the new settings."""
        loop, changed = self._loop, self._changed
        if loop is not None and changed is not None:
            loop.call_soon_threadsafe(changed.set)

    # -- the task ---------------------------------------------------------------------------------------------
    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        try:
            while True:
                self._changed.clear()
                cfg = self.cfg
                if not cfg.enabled:
                    await self._close_outbox()
                    self._set_state("disabled")
                    await self._changed.wait()
                    continue
                try:
                    await self._run_enabled(cfg)
                except _Reconfigure:
                    log.info("mqtt settings changed: reconnecting with the new ones")
        finally:
            self._set_state("stopped")
            await self._close_outbox()

    async def _run_enabled(self, cfg: MqttConfig) -> None:
        self.layout = layout(cfg, self.machine_id_path)
        self.sources = SourceMap(cfg.sources)
        max_bytes = int(cfg.outbox_max_mb * 1024 * 1024)
        if self.outbox is None:
            self.outbox = Outbox(self.outbox_path, max_bytes, self._on_drop, self.clock.monotonic)
            await self.outbox.open()
            if self.outbox.recovered_from is not None:
                self.notifications.add("error", "mqtt", i18n.mark(
                    "the store of messages waiting for the cloud was damaged and has been put aside: the messages "
                    "in it are not sent"), f"outbox moved to {self.outbox.recovered_from.name}")
            if len(self.outbox):
                log.info("MQTT outbox: %d messages queued from before, sent first", len(self.outbox))
        self.outbox.max_bytes = max_bytes
        outbox = self.outbox
        await _race(self._config_changed(), self._telemetry(cfg, self.layout), self._watch(self.layout),
                    outbox.run_flusher(lambda: self.cfg.outbox_flush_interval_s),
                    self._connection_loop(cfg, self.layout))

    async def _config_changed(self) -> None:
        assert self._changed is not None
        await self._changed.wait()
        raise _Reconfigure()

    async def _close_outbox(self) -> None:
        outbox, self.outbox = self.outbox, None
        if outbox is not None:
            await outbox.close()

    # -- producers --------------------------------------------------------------------------------------------
    def _put(self, stream: str, body: Mapping[str, Any]) -> None:
        assert self.outbox is not None
        self.outbox.put(stream, body)

    async def _telemetry(self, cfg: MqttConfig, lay: Layout) -> None:
        while True:
            self._put("telemetry", uplink.telemetry(self.source.state(), lay.site_id))
            await self.clock.sleep(cfg.publish_interval_s)

    async def _watch(self, lay: Layout) -> None:
        while True:
            self._watch_once(lay)
            await self.clock.sleep(WATCH_PERIOD_S)

    def _watch_once(self, lay: Layout) -> None:
        state = self.source.state()
        facts = uplink.state_facts(state)
        message = uplink.state_change(self._last_facts, facts, float(state.get("ts") or self.clock.now()), lay.site_id)
        if message is not None:
            self._put("state", message)
            self._last_facts = facts
        plan = self.source.plan()
        if plan.get("planned_at") != self._last_planned_at:
            summary = uplink.plan_summary(plan, lay.site_id)
            if summary is not None:
                self._put("plan", summary)
            self._last_planned_at = plan.get("planned_at")
        new = self.source.notifications_since(self._last_notification_id)
        if new:
            secrets = secret_values(self._config.config)
            for item in new:
                self._put("notifications", uplink.notification(item, lay.site_id, secrets))
                self._last_notification_id = max(self._last_notification_id, int(item.get("id") or 0))

    def _on_drop(self, dropped: Mapping[str, int]) -> None:
        """The outbox hit its bound: counted in the status; a notification at most once an hour."""
        self._dropped_unreported += sum(dropped.values())
        now = self.clock.monotonic()
        if self._last_drop_notice is not None and now - self._last_drop_notice < DROP_NOTICE_INTERVAL_S:
            return
        self._last_drop_notice = now
        total = sum(self.outbox.dropped.values()) if self.outbox is not None else self._dropped_unreported
        self.notifications.add("warning", "mqtt", i18n.mark(
            "the cloud connection has been down for long: the {n} oldest waiting messages were dropped to make "
            "room"), f"MQTT outbox full ({self.cfg.outbox_max_mb:g} MB): dropped {self._dropped_unreported} "
            f"({total} in all) while the broker is unreachable", n=self._dropped_unreported)
        self._dropped_unreported = 0

    # -- the connection ---------------------------------------------------------------------------------------
    async def _connection_loop(self, cfg: MqttConfig, lay: Layout) -> None:
        backoff = Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s, jitter=0.5, random=self.random)
        conn = Connection.of(cfg, lay.client_id, lay.status)
        loop = asyncio.get_running_loop()
        while True:
            self._set_state("connecting")
            self.next_retry_s = None
            started = self.clock.monotonic()
            paho_log = PahoLog()
            cancelled = False
            try:
                context = await loop.run_in_executor(None, tls_context, conn) if conn.tls else None
                async with make_client(conn, context, paho_log, qos=cfg.qos) as client:
                    try:
                        await self._session(client, cfg, lay, conn)
                    except asyncio.CancelledError:
                        cancelled = True
                        client.timeout = OFFLINE_TIMEOUT_S  # the DISCONNECT's wait, too, is bounded then
                        raise
            except Exception as exc:
                if cancelled:  # a disconnect that failed while stopping must not swallow the stop
                    raise asyncio.CancelledError() from exc
                if not is_connection_error(exc):
                    raise
                self._failed(*describe_failure(exc, conn, paho_log), conn)
            if self.clock.monotonic() - started >= HEALTHY_SESSION_S:
                backoff.reset()
            delay = backoff.next_delay()
            self.next_retry_s = round(delay, 2)
            self._set_state("waiting")
            await self.clock.sleep(delay)

    async def _session(self, client: Any, cfg: MqttConfig, lay: Layout, conn: Connection) -> None:
        assert self.outbox is not None
        qos = max(1, cfg.qos)
        try:
            # Subscribed before "online": a cloud that sees online may send commands at once.
            if cfg.commands_enabled:
                await client.subscribe(lay.command_filter, qos=qos)
            for topic in self.sources.topics:
                await client.subscribe(topic, qos=qos)
            await client.publish(lay.status, b"online", qos=qos, retain=True)
            await client.publish(lay.info, encode(self._info(cfg, lay)), qos=qos, retain=True)
            await self._announce_homeassistant(client, cfg, lay)
            self._connected(conn)
            await _race(self._send(client, cfg, lay), self._receive(client, cfg, lay))
        except asyncio.CancelledError:
            # A clean end (stop, new settings, disabled): say so ourselves, the will is only for a death.
            try:
                await asyncio.wait_for(client.publish(lay.status, b"offline", qos=qos, retain=True),
                                       OFFLINE_TIMEOUT_S)
            except Exception as exc:
                log.info("could not publish offline before disconnecting: %s", exc)
            raise
        finally:
            self.connected = False
            if self.sources.sources:
                self.bus.publish(self.sources.unknown_all(self.clock.now()))

    def _info(self, cfg: MqttConfig, lay: Layout) -> dict[str, Any]:
        assert self.outbox is not None
        return {"ts": round(self.clock.now(), 3), "site": lay.site_id, "version": self.version,
                "boot": self.outbox.boot, "layout_version": LAYOUT_VERSION, "client_id": lay.client_id,
                "topics": {"telemetry": lay.telemetry, "state": lay.state, "plan": lay.plan,
                           "notifications": lay.notifications, "status": lay.status,
                           "commands": lay.command_filter if cfg.commands_enabled else None,
                           "replies": f"{lay.replies}/+"},
                "telemetry_interval_s": cfg.publish_interval_s, "command_secret_required": cfg.command_secret is not None}

    async def _announce_homeassistant(self, client: Any, cfg: MqttConfig, lay: Layout) -> None:
        """Publish the discovery configs (retained); clear those announced before and no longer wanted."""
        assert self.outbox is not None
        announced = set(self.outbox.meta.get("ha_topics") or [])
        wanted = discovery(lay, cfg.homeassistant_prefix, self.version, cfg.publish_interval_s,
                           select=cfg.commands_enabled and cfg.command_secret is None) \
            if cfg.homeassistant_discovery else {}
        for topic in sorted(announced - set(wanted)):
            await client.publish(topic, b"", qos=1, retain=True)  # empty retained: HA removes the entity
        for topic, payload in wanted.items():
            await client.publish(topic, encode(payload), qos=1, retain=True)
        if set(wanted) != announced:
            await self.outbox.set_meta("ha_topics", sorted(wanted))

    async def _send(self, client: Any, cfg: MqttConfig, lay: Layout) -> None:
        outbox = self.outbox
        assert outbox is not None
        while True:
            batch = await outbox.head(SEND_WINDOW)
            await _publish_in_order(client, [(lay.stream_topic(m.stream), m.payload, m.stream in RETAINED_STREAMS)
                                             for m in batch], cfg.qos)
            await outbox.ack(batch[-1].qid)
            self.published += len(batch)

    async def _receive(self, client: Any, cfg: MqttConfig, lay: Layout) -> None:
        command_prefix = lay.commands + "/"
        async for message in client.messages:
            topic = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            if cfg.commands_enabled and topic.startswith(command_prefix):
                if not payload:  # how MQTT deletes a retained message; never a command: no answer either
                    continue
                name = topic[len(command_prefix):]
                reply = await self.commands.handle(name, payload, bool(message.retain), cfg.command_secret,
                                                   cfg.command_max_age_s)
                await client.publish(lay.reply(reply.reply_id), encode(reply.payload), qos=max(1, cfg.qos))
            else:
                updates = self.sources.readings(topic, payload, self.clock.now())
                if updates:
                    self.bus.publish(updates)

    # -- status and notices -----------------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        self.state = state

    def _connected(self, conn: Connection) -> None:
        assert self.outbox is not None
        self.connected = True
        self.connected_since = self.clock.now()
        self.connects += 1
        self._set_state("connected")
        queued = len(self.outbox)
        if self._outage_noticed:
            self.notifications.add("info", "mqtt", i18n.mark(
                "the cloud connection (MQTT) is back: {n} waiting messages are being sent"),
                f"MQTT connected to {conn.address} again", n=queued)
        elif not self._ever_connected:
            self.notifications.add("info", "mqtt", i18n.mark("the cloud connection (MQTT) is up"),
                                   f"MQTT connected to {conn.address} as {conn.client_id}")
        log.info("MQTT connected to %s as %s (%d queued)", conn.address, conn.client_id, queued)
        self._outage_noticed = False
        self._ever_connected = True

    def _failed(self, kind: str, message: str, conn: Connection) -> None:
        self.last_error, self.last_error_kind, self.last_error_ts = message, kind, self.clock.now()
        log.warning("MQTT: %s", message)
        if not self._outage_noticed:
            self._outage_noticed = True
            queued = len(self.outbox) if self.outbox is not None else 0
            self.notifications.add("warning", "mqtt", i18n.mark(
                "the cloud connection (MQTT) is down: messages are kept and sent when it is back"),
                f"MQTT: {message} ({queued} queued)")

    def status(self) -> dict[str, Any]:
        """For `/api/state` under "mqtt" (any thread)."""
        cfg, lay, outbox = self.cfg, self.layout, self.outbox
        if not cfg.enabled:
            return {"enabled": False, "state": self.state}
        return {"enabled": True, "state": self.state, "connected": self.connected, "broker": f"{cfg.broker}:{cfg.port}",
                "tls": cfg.tls, "client_id": lay.client_id if lay else None, "site_id": lay.site_id if lay else None,
                "topic_prefix": lay.prefix if lay else None, "connected_since": self.connected_since,
                "connects": self.connects, "published": self.published, "last_error": self.last_error,
                "last_error_kind": self.last_error_kind, "last_error_ts": self.last_error_ts,
                "next_retry_s": self.next_retry_s if self.state == "waiting" else None,
                "outbox": outbox.status() if outbox is not None else None,
                "commands": {"accepted": self.commands.accepted, "refused": self.commands.refused,
                             "last": self.commands.last},
                "sources": self.sources.status()}

"""The connection test behind `POST /api/mqtt/test`: connect, subscribe, publish a test message, receive it.

It answers what an installer needs at the broker's end: does the name resolve, does something listen, does TLS
verify, are the credentials accepted, may this client publish and subscribe under its prefix — and the
round-trip time. It uses its own client id (`<client id>-test-<nonce>`, so the running uplink is not thrown off
the broker), no last will, a non-retained message on `<prefix>test/<nonce>`, and it never waits longer than
`timeout_s` for any step. It runs on an event loop of its own (`run_probe`, in a web thread), so a slow broker
holds up no one but the caller.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any, Callable

from ..config.schema import MqttConfig
from .client import Connection, PahoLog, describe, describe_failure, is_connection_error, make_client, tls_context
from .topics import MACHINE_ID, layout

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 10.0


async def probe(cfg: MqttConfig, timeout_s: float = PROBE_TIMEOUT_S,
                monotonic: Callable[[], float] = time.monotonic, machine_id_path: Any = MACHINE_ID) -> dict[str, Any]:
    """{ok, broker, tls, client_id, username, client_certificate, topic, connect_ms, round_trip_ms, stage,
    error_kind, error}: `stage` is where it failed (connect, subscribe, publish, receive)."""
    lay = layout(cfg, machine_id_path)
    nonce = secrets.token_hex(6)
    conn = Connection.of(cfg, f"{lay.client_id[:48]}-test-{nonce}", None)
    topic = lay.test_topic(nonce)
    result: dict[str, Any] = {"ok": False, **describe(conn), "topic": topic, "connect_ms": None,
                              "round_trip_ms": None, "stage": "connect", "error_kind": None, "error": None}
    loop = asyncio.get_running_loop()
    paho_log = PahoLog()
    try:
        started = monotonic()
        context = await loop.run_in_executor(None, tls_context, conn) if conn.tls else None
        client = make_client(conn, context, paho_log, qos=1)
        client.timeout = timeout_s
        async with client:
            result["connect_ms"] = round((monotonic() - started) * 1000.0, 1)
            result["stage"] = "subscribe"
            await client.subscribe(topic, qos=1)
            result["stage"] = "publish"
            payload = f"phoenyra-ems test {nonce}".encode()
            sent = monotonic()
            await client.publish(topic, payload, qos=1)
            result["stage"] = "receive"

            async def echo() -> None:
                async for message in client.messages:
                    if message.topic.value == topic and message.payload == payload:
                        return

            try:
                await asyncio.wait_for(echo(), max(0.1, timeout_s - (monotonic() - started)))
            except asyncio.TimeoutError:
                result.update(error_kind="no_echo", error=f"the broker accepted the test message but did not deliver "
                                                          f"it back on {topic} within {timeout_s:g} s (do its ACLs "
                                                          "allow this client to subscribe there?)")
                return result
            result.update(ok=True, stage="done", round_trip_ms=round((monotonic() - sent) * 1000.0, 2))
            return result
    except Exception as exc:
        if not is_connection_error(exc):
            raise
        kind, message = describe_failure(exc, conn, paho_log)
        if result["stage"] != "connect" and kind == "network":
            kind = "refused_by_broker"  # e.g. an ACL that denies the subscription ends the connection
        result.update(error_kind=kind, error=message)
        return result


def run_probe(cfg: MqttConfig, timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """`probe` on a fresh event loop in the calling (web) thread."""
    return asyncio.run(probe(cfg, timeout_s))

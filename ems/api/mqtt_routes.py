"""`POST /api/mqtt/test`: the settings wizard's connection test, before or after the settings are saved.

The body is the `mqtt` section as the wizard holds it (any keys left out are the stored ones). Secrets follow
the config API's rules (`{"set": true}` or no key = the stored one, `{"replace": "…"}` or a plain string = this
one), with one more: the stored password only ever goes to the stored broker — a test against another host
must bring its own, so the test cannot carry a saved credential anywhere new. Keys that are admin-only in the
settings (where the broker is, TLS files, …) are admin-only here too: others may test the configured broker
with their changes to the rest. One test runs at a time; each step waits at most `PROBE_TIMEOUT_S`.

Answer: 200 with the probe's result (`ok`, `connect_ms`, `round_trip_ms`, or `stage`, `error_kind` — dns,
refused, timeout, tls, auth, protocol, no_echo, … — and the exact `error`); 400 for settings that do not
validate, 403 for an admin-only key, 409 while another test runs.
"""
from __future__ import annotations

import threading
from typing import Any

import bottle

from .. import i18n
from ..config import guard
from ..config.schema import MqttConfig
from ..config.validate import parse_config, to_plain
from ..errors import ApiError
from .auth_plugin import current_auth
from .facade import EmsFacade
from .http import json_body
from .http import json_response as _json

SECRET_KEYS = ("password", "command_secret")
DESTINATION_KEYS = ("broker", "port")


def test_settings(stored: MqttConfig, body: Any, may_change_admin_only: bool, role: str) -> MqttConfig:
    """The settings to test: `body` over the stored section, secrets resolved, admin-only keys guarded."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ApiError(400, i18n.mark("must be a JSON object (the mqtt section, or part of it)"), "mqtt")
    stored_plain = to_plain(stored)
    incoming = {**stored_plain, **body}
    merged = guard.merge_secrets("mqtt", stored_plain, incoming)
    moved = any(incoming.get(k) != stored_plain.get(k) for k in DESTINATION_KEYS)
    if moved:  # a stored secret never travels to a broker it was not saved for
        for key in SECRET_KEYS:
            given = body.get(key)
            if not (isinstance(given, str) or (isinstance(given, dict) and set(given) == {"replace"})):
                merged[key] = None
    config = parse_config(MqttConfig, merged, "mqtt")
    guard.refuse_unless_admin(guard.changes("mqtt", stored_plain, to_plain(config)), may_change_admin_only, role)
    return config


def install(app: bottle.Bottle, ems: EmsFacade) -> None:
    running = threading.Lock()

    @app.post("/api/mqtt/test", action="configure")
    def mqtt_test() -> str:
        principal = current_auth().principal
        assert principal is not None
        config = test_settings(ems.config.config.mqtt, json_body(), principal.can("configure_safety"),
                               principal.role)
        if not running.acquire(blocking=False):
            raise ApiError(409, i18n.mark("another MQTT connection test is running; try again when it has finished"),
                           "mqtt")
        try:
            from ..mqtt.probe import run_probe  # aiomqtt only when a test is asked for
            return _json(run_probe(config))
        finally:
            running.release()

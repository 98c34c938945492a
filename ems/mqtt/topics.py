"""The topic layout and the site id, resolved from `mqtt` settings (pure, apart from reading the machine id).

Layout under the prefix (default `phoenyra/<site id>/`), so a cloud ingestion subscribes to
`phoenyra/+/telemetry` for a whole fleet:

    <prefix>status          retained  online / offline (offline also by the last will)
    <prefix>info            retained  version, site id, boot counter, topic layout version
    <prefix>telemetry                 every publish_interval_s
    <prefix>state           retained  on a change of power-control state, DSO order, alarms, strategy
    <prefix>plan            retained  after every planning run
    <prefix>notifications             each notification as it is raised
    <prefix>cmd/<name>      (in)      set_strategy, set_auto, request_setpoint, acknowledge
    <prefix>reply/<id>                the answer to a command, `<id>` from its "id" (no-id without one)
"""
from __future__ import annotations

import hashlib
import logging
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from ..config.schema import MqttConfig

log = logging.getLogger(__name__)

LAYOUT_VERSION = 1
STREAMS = ("telemetry", "state", "plan", "notifications")
"""The queued, sequence-numbered message streams; each has a topic of its own and a sequence of its own."""
RETAINED_STREAMS = frozenset({"state", "plan"})
"""Streams whose newest message is what a new subscriber needs first (replayed in order, so the newest stays)."""

# What earlier versions wrote into every saved ems.yaml before any MQTT client existed: it means "not set".
LEGACY_TOPIC_DEFAULTS = {"telemetry": "phoenyra/bess/telemetry", "commands": "phoenyra/bess/commands",
                         "status": "phoenyra/bess/status"}
LEGACY_CLIENT_ID = "phoenyra-ems"
MACHINE_ID = Path("/etc/machine-id")
_SITE_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
REPLY_WITHOUT_ID = "no-id"


def derived_site_id(machine_id_path: Path = MACHINE_ID) -> str:
    """A stable id of this gateway: a hash of its machine id (never the id itself, which systemd says must not be
    shown to the network), or its host name where there is none. Flashed images share a host name, not a machine id."""
    try:
        machine_id = machine_id_path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        machine_id = ""
    if machine_id:
        return hashlib.sha256(b"phoenyra-ems/" + machine_id.encode()).hexdigest()[:12]
    host = _SITE_CHARS.sub("-", socket.gethostname()).strip("-._")[:64]
    log.warning("no machine id in %s: the MQTT site id is the host name %r", machine_id_path, host or "gateway")
    return host or "gateway"


@dataclass(frozen=True)
class Layout:
    """Every topic the uplink uses, resolved."""

    site_id: str
    prefix: str
    client_id: str
    telemetry: str
    state: str
    plan: str
    notifications: str
    status: str
    info: str
    commands: str  # commands arrive on <commands>/<name>
    replies: str  # replies go to <replies>/<id>

    def stream_topic(self, stream: str) -> str:
        topic: str = getattr(self, stream)
        return topic

    @property
    def command_filter(self) -> str:
        return f"{self.commands}/+"

    def reply(self, reply_id: str | None) -> str:
        return f"{self.replies}/{reply_id or REPLY_WITHOUT_ID}"

    def test_topic(self, nonce: str) -> str:
        return f"{self.prefix}test/{nonce}"


def _override(value: str | None, key: str) -> str | None:
    return None if value is None or value == LEGACY_TOPIC_DEFAULTS[key] else value


def layout(cfg: MqttConfig, machine_id_path: Path = MACHINE_ID) -> Layout:
    site_id = cfg.site_id or derived_site_id(machine_id_path)
    prefix = cfg.topic_prefix or f"phoenyra/{site_id}/"
    client_id = cfg.client_id if cfg.client_id and cfg.client_id != LEGACY_CLIENT_ID else f"phoenyra-{site_id}"
    topics = cfg.topics
    return Layout(
        site_id=site_id, prefix=prefix, client_id=client_id[:64],
        telemetry=_override(topics.telemetry, "telemetry") or f"{prefix}telemetry",
        state=f"{prefix}state", plan=f"{prefix}plan", notifications=f"{prefix}notifications",
        status=_override(topics.status, "status") or f"{prefix}status", info=f"{prefix}info",
        commands=_override(topics.commands, "commands") or f"{prefix}cmd", replies=f"{prefix}reply")

"""The aiomqtt connection: settings grouped, TLS set up, the last will attached, failures told apart.

`aiomqtt` (and paho) are imported here, on the first connection, never at module import: a gateway with MQTT
off does not pay their memory. `connect()` returns an `aiomqtt.Client` to be used as `async with client:` —
that block is the connection's lifetime (see STYLE.md) — and `describe_failure()` turns whatever a connection
attempt raised into (kind, message), kind one of `dns`, `refused`, `timeout`, `tls`, `auth`, `protocol`,
`network`, so the status, the notifications and `POST /api/mqtt/test` can say exactly what is wrong.
"""
from __future__ import annotations

import logging
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config.schema import MqttConfig

if TYPE_CHECKING:
    import aiomqtt

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
"""A connection attempt (TCP, TLS, CONNACK) and each later wait for the broker take at most this."""
MAX_INFLIGHT = 20
PENDING_CALLS_WARNING = 1000


class PahoLog(logging.LoggerAdapter):
    """paho's log for one connection, which remembers the last error: a TLS alert that arrives after the
    handshake (TLS 1.3: "certificate required") only shows here, while aiomqtt waits for a CONNACK in vain."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("ems.mqtt.paho"), {})
        self.last_error: str | None = None

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if level >= logging.ERROR:
            try:
                self.last_error = str(msg) % args if args else str(msg)
            except (TypeError, ValueError):
                self.last_error = str(msg)
        super().log(level, msg, *args, **kwargs)


class TlsFileError(Exception):
    """A configured TLS file that is not (any longer) a readable regular file."""


@dataclass(frozen=True)
class Connection:
    """What one connection needs, resolved from the settings: where, who, how, and the last will."""

    host: str
    port: int
    client_id: str
    username: str | None
    password: str | None
    keepalive_s: int
    tls: bool
    tls_ca_file: str | None
    tls_cert_file: str | None
    tls_key_file: str | None
    will_topic: str | None  # None: no last will (the connection test)

    @classmethod
    def of(cls, cfg: MqttConfig, client_id: str, will_topic: str | None) -> Connection:
        return cls(cfg.broker, cfg.port, client_id, cfg.username, cfg.password, cfg.keepalive_s, cfg.tls,
                   cfg.tls_ca_file, cfg.tls_cert_file, cfg.tls_key_file, will_topic)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def tls_context(conn: Connection) -> ssl.SSLContext:
    """The TLS context: the broker's certificate verified against the CA file (or the system CAs) and its host
    name checked; a client certificate when configured. Reads files: call it off the event loop."""
    for path in (conn.tls_ca_file, conn.tls_cert_file, conn.tls_key_file):
        problem = MqttConfig.tls_file_problem(path) if path is not None else None
        if problem:  # checked when the config was read; a file swapped or removed since is refused here
            raise TlsFileError(problem)
    context = ssl.create_default_context(cafile=conn.tls_ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if conn.tls_cert_file and conn.tls_key_file:
        context.load_cert_chain(conn.tls_cert_file, conn.tls_key_file)
    return context


def make_client(conn: Connection, context: ssl.SSLContext | None, paho_log: PahoLog, will_payload: bytes = b"offline",
                qos: int = 1) -> "aiomqtt.Client":
    """An unconnected client for `conn` (enter it with `async with`). Clean session: commands are only taken
    while connected, never a backlog of stale ones the broker kept."""
    import aiomqtt  # only here: MQTT off never imports it

    will = aiomqtt.Will(conn.will_topic, will_payload, qos=max(1, qos), retain=True) if conn.will_topic else None
    client = aiomqtt.Client(conn.host, conn.port, username=conn.username, password=conn.password,
                            identifier=conn.client_id, will=will, clean_session=True, keepalive=conn.keepalive_s,
                            timeout=CONNECT_TIMEOUT_S, tls_context=context, max_inflight_messages=MAX_INFLIGHT,
                            # Small packets (acknowledgements, replies) go out at once, not after Nagle's wait.
                            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                            logger=paho_log)  # type: ignore[arg-type]  # a Logger's interface
    client.pending_calls_threshold = PENDING_CALLS_WARNING  # a full send window is normal, not a warning
    return client


_AUTH_CODES = {4, 5, 134, 135}  # 3.1.1: bad user name or password, not authorised; 5.0: the same
_TLS_HINTS = ("ssl", "tls", "certificate", "handshake")


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it was raised from or during (aiomqtt re-raises socket errors `from None`)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def describe_failure(exc: BaseException, conn: Connection | None = None,
                     paho_log: PahoLog | None = None) -> tuple[str, str]:
    """(kind, message) of a failed connection or a lost one; `paho_log`'s last error explains a wait that timed out."""
    where = f" ({conn.address})" if conn is not None else ""
    kind, message = _describe(exc, where)
    if kind in ("timeout", "network") and paho_log is not None and paho_log.last_error:
        detail = paho_log.last_error
        if any(h in detail.lower() for h in _TLS_HINTS):
            return "tls", f"TLS failed{where}: {detail}"
        return kind, f"{message}: {detail}"
    return kind, message


def _describe(exc: BaseException, where: str) -> tuple[str, str]:
    for e in _chain(exc):
        if isinstance(e, TlsFileError):
            return "tls", str(e)
        if isinstance(e, socket.gaierror):
            return "dns", f"cannot resolve the broker's name{where}: {e.strerror or e}"
        if isinstance(e, ConnectionRefusedError):
            return "refused", f"connection refused{where}: nothing listens there (broker down, wrong port?)"
        if isinstance(e, ssl.SSLCertVerificationError):
            return "tls", f"the broker's certificate is not trusted{where}: {e.verify_message or e.reason or e}"
        if isinstance(e, ssl.SSLError):
            return "tls", f"TLS failed{where}: {e.reason or e}"
        if isinstance(e, (TimeoutError, socket.timeout)):
            return "timeout", f"no answer from the broker{where} within {CONNECT_TIMEOUT_S:g} s"
        rc = getattr(e, "rc", None)
        code = getattr(rc, "value", rc)
        if type(e).__name__ == "MqttConnectError" and isinstance(code, int):
            if code in _AUTH_CODES:
                return "auth", f"the broker refused the login{where}: {e}"
            return "protocol", f"the broker refused the connection{where}: {e}"
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if any(h in lowered for h in _TLS_HINTS):
        return "tls", f"TLS failed{where}: {text}"
    if "timed out" in lowered:
        return "timeout", f"no answer from the broker{where} within {CONNECT_TIMEOUT_S:g} s"
    return "network", f"{text}{where}"


def is_connection_error(exc: BaseException) -> bool:
    """True for what a broken or refused connection raises (then: reconnect), False for bugs of ours."""
    import aiomqtt
    return isinstance(exc, (aiomqtt.MqttError, OSError, TlsFileError, ssl.SSLError, TimeoutError))


def describe(conn: Connection) -> dict[str, Any]:
    return {"broker": conn.address, "tls": conn.tls, "client_id": conn.client_id,
            "username": conn.username, "client_certificate": bool(conn.tls_cert_file)}

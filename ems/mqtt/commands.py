"""Commands from the cloud: `<prefix>cmd/<name>` with a JSON object, answered on `<prefix>reply/<id>`.

Schema (every key checked, unknown keys refused):

    set_strategy      {"strategy": "<a registered strategy>" | "auto"}     manual mode with it ("auto" = set_auto)
    set_auto          {}                                                 automatic strategy selection
    request_setpoint  {"power_w": W (> 0 = discharge), "duration_s": 1..14400}
    acknowledge       {"notification_id": n}                             notifications up to n seen
  and in each, optionally: "id" (letters, digits, _ . : -, at most 64: the reply topic), "ts" (epoch seconds when
  it was sent: older than `command_max_age_s` is refused), "secret" (required when `command_secret` is set).

The broker's ACLs decide who may publish there; the shared secret is a second lock for brokers whose ACLs are
coarse. A command is handed to the `CommandPort` — the same code path as its HTTP twin — so it only ever
*requests*, and the safety loop decides. Everything that is not a well-formed, authorised, fresh command of a
known name gets an error reply naming the field; nothing a payload holds can raise out of `handle`.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import math
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..errors import ApiError, ConfigError
from ..manual import MAX_DURATION_S
from ..optimizer.strategies import STRATEGY_NAMES
from .ports import CommandPort

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 4096
COMMAND_TIMEOUT_S = 10.0
ENVELOPE = frozenset({"id", "ts", "secret"})
ARGUMENTS: Mapping[str, frozenset[str]] = {
    "set_strategy": frozenset({"strategy"}),
    "set_auto": frozenset(),
    "request_setpoint": frozenset({"power_w", "duration_s"}),
    "acknowledge": frozenset({"notification_id"}),
}
COMMAND_NAMES = tuple(ARGUMENTS)
REPLY_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class CommandError(Exception):
    """A refused command: what is wrong and which field, for the error reply."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Command:
    name: str
    args: Mapping[str, Any]
    reply_id: str | None


@dataclass(frozen=True)
class Reply:
    reply_id: str | None
    payload: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.payload.get("ok"))


def _number(body: Mapping[str, Any], key: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CommandError(f"must be a finite number (got {str(value)[:40]!r})", key)
    return float(value)


def reply_id_of(body: Any) -> str | None:
    """The command's "id" if it may name a reply topic, else None (the reply goes to reply/no-id)."""
    if isinstance(body, Mapping):
        value = body.get("id")
        if isinstance(value, str) and REPLY_ID.fullmatch(value):
            return value
    return None


def decode(payload: bytes) -> dict[str, Any]:
    """The payload as a JSON object, within the size, depth and Unicode limits, or CommandError."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CommandError(f"payload larger than {MAX_PAYLOAD_BYTES} bytes", "payload")
    from ..api.http import parse_json  # the web's bounded JSON reader: depth and Unicode limits, one place
    if not payload.strip():
        raise CommandError("empty payload (a command is a JSON object, {} when it has no arguments)", "payload")
    try:
        body = parse_json(payload)
    except ApiError as exc:
        raise CommandError(exc.message, "payload") from None
    if not isinstance(body, dict):
        raise CommandError("must be a JSON object", "payload")
    return body


def authorised(body: Mapping[str, Any], secret: str | None) -> bool:
    """No secret configured, or the command carries it (compared in constant time)."""
    if secret is None:
        return True
    given = body.get("secret")
    return isinstance(given, str) and hmac.compare_digest(given.encode(), secret.encode())


def parse(name: str, body: Mapping[str, Any], retained: bool, secret: str | None, now_s: float,
          max_age_s: float) -> Command:
    """The command `name` with the decoded `body`, or CommandError saying what is wrong. `now_s`: wall-clock
    epoch seconds (a command's "ts" is the sender's wall clock, whatever time the plant runs on)."""
    if not authorised(body, secret):  # before anything else is looked at: no oracle for the unauthorised
        raise CommandError("missing or wrong shared secret", "secret")
    if "id" in body and reply_id_of(body) is None:
        raise CommandError("must be 1-64 letters, digits, _ . : -", "id")
    if name not in ARGUMENTS:
        raise CommandError(f"unknown command {name[:64]!r} (allowed: {', '.join(COMMAND_NAMES)})", "command")
    if retained:
        raise CommandError("retained commands are ignored (publish commands with retain off)", "retain")
    unknown = sorted(set(body) - ENVELOPE - ARGUMENTS[name])
    if unknown:
        allowed = ", ".join(sorted(ARGUMENTS[name] | ENVELOPE))
        raise CommandError(f"unknown key {unknown[0][:40]!r} for {name} (allowed: {allowed})", unknown[0][:40])
    if "ts" in body:
        sent = _number(body, "ts")
        if now_s - sent > max_age_s:
            raise CommandError(f"sent {now_s - sent:.0f} s ago, more than {max_age_s:g} s: too old to apply", "ts")
        if sent - now_s > max_age_s:
            raise CommandError(f"sent {sent - now_s:.0f} s in the future: check the sender's clock", "ts")
    args: dict[str, Any] = {}
    if name == "set_strategy":
        strategy = body.get("strategy")
        if strategy != "auto" and strategy not in STRATEGY_NAMES:
            raise CommandError(f"must be one of {', '.join(STRATEGY_NAMES)} or auto (got {str(strategy)[:40]!r})",
                               "strategy")
        args["strategy"] = strategy
    elif name == "request_setpoint":
        args["power_w"] = _number(body, "power_w")
        args["duration_s"] = _number(body, "duration_s")
        if not 1.0 <= args["duration_s"] <= MAX_DURATION_S:
            raise CommandError(f"must be between 1 and {MAX_DURATION_S:.0f} s", "duration_s")
    elif name == "acknowledge":
        value = body.get("notification_id")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CommandError(f"must be a notification id, an integer >= 0 (got {str(value)[:40]!r})",
                               "notification_id")
        args["notification_id"] = value
    return Command(name, args, reply_id_of(body))


class RateLimit:
    """At most `per_minute()` commands in any 60 s (sliding window, on the injected monotonic clock)."""

    def __init__(self, per_minute: Callable[[], int], monotonic: Callable[[], float]):
        self._per_minute = per_minute
        self._monotonic = monotonic
        self._times: deque[float] = deque()

    def allow(self) -> bool:
        now = self._monotonic()
        while self._times and now - self._times[0] >= 60.0:
            self._times.popleft()
        if len(self._times) >= self._per_minute():
            return False
        self._times.append(now)
        return True


class CommandHandler:
    """Parses, rate-limits and applies commands through a `CommandPort` in an executor thread; counts outcomes."""

    def __init__(self, port: CommandPort, rate: RateLimit, wall_time: Callable[[], float] = time.time):
        self.port = port
        self.rate = rate
        self.wall_time = wall_time
        self.accepted = 0
        self.refused = 0
        self.last: dict[str, Any] | None = None

    async def handle(self, name: str, payload: bytes, retained: bool, secret: str | None,
                     max_age_s: float) -> Reply:
        reply_id: str | None = None
        try:
            body = decode(payload)
            # An unauthorised sender does not choose where we write: its refusal goes to reply/no-id.
            reply_id = reply_id_of(body) if authorised(body, secret) else None
            if not self.rate.allow():
                raise CommandError("too many commands: at most the configured commands_per_minute", "rate")
            command = parse(name, body, retained, secret, self.wall_time(), max_age_s)
            result = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, self._apply, command),
                                            COMMAND_TIMEOUT_S)
            self.accepted += 1
            answer: dict[str, Any] = {"id": command.reply_id, "command": name, "ok": True, "result": dict(result)}
        except CommandError as exc:
            answer = self._refusal(reply_id, name, exc.message, exc.field)
        except ApiError as exc:
            answer = self._refusal(reply_id, name, exc.message, exc.field)
        except ConfigError as exc:
            first = exc.problems[0]
            answer = self._refusal(reply_id, name, first.message, first.path)
        except asyncio.TimeoutError:
            answer = self._refusal(reply_id, name, f"no answer from the EMS within {COMMAND_TIMEOUT_S:g} s", None)
        except Exception:  # a bug of ours must not end the connection: logged, answered
            log.exception("MQTT command %s failed", name[:64])
            answer = self._refusal(reply_id, name, "internal error (logged)", None)
        answer["ts"] = round(self.wall_time(), 3)
        self.last = {"command": name[:64], "ok": answer["ok"], "ts": answer["ts"],
                     **({"error": answer["error"]} if not answer["ok"] else {})}
        return Reply(answer["id"], answer)

    def _refusal(self, reply_id: str | None, name: str, message: str, field: str | None) -> dict[str, Any]:
        self.refused += 1
        log.info("MQTT command %r refused: %s (%s)", name[:64], message, field)
        return {"id": reply_id, "command": name[:64], "ok": False, "error": message, "field": field}

    def _apply(self, command: Command) -> Mapping[str, Any]:
        args = command.args
        if command.name == "set_auto" or (command.name == "set_strategy" and args["strategy"] == "auto"):
            return self.port.set_auto()
        if command.name == "set_strategy":
            return self.port.set_strategy(args["strategy"])
        if command.name == "request_setpoint":
            return self.port.request_setpoint(args["power_w"], args["duration_s"])
        return self.port.acknowledge(args["notification_id"])


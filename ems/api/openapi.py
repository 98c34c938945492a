"""OpenAPI 3.1 description of every /api route, served at `/api/openapi.json`, and the request-body check built on it.

Why one module does both: a description that only documents drifts from what the server accepts. Here the
request-body schemas are the ones the server validates with (`BodyValidation`, a Bottle plugin installed
innermost, so the permission check runs first and an anonymous caller gets 401/403, never a body error), and
the document is generated from the app's own route table: a route without an entry in `OPERATIONS` still
appears (with path parameters and generic answers) but is listed by `undocumented(app)`, which the tests
require to be empty. The config sections' schemas come from the config schema as data
(`ems.config.describe`), so the settings form, the validator and this description cannot disagree.

The body validator is a small JSON-Schema subset (type, properties, required, additionalProperties, enum,
const, anyOf, minimum/maximum/exclusiveMinimum, minLength/maxLength, pattern, items, maxItems,
maxProperties, propertyNames, $ref to components) raising `ApiError(400, …, field)` with the JSON path of the
offending value (`bess.capacity_kwh`, `modbus[0].port`), as the handlers do. It is never stricter than the
handlers for what the pages send: it checks shapes and bounds; cross-field rules stay with the handlers.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import re
import threading
import types
import typing
from typing import Any, Callable, Literal, Mapping, Union

import bottle

from .. import __version__
from .. import i18n
from ..config.describe import describe_class
from ..config.guard import SECRET_FORMS, SECRET_WRITE_ONLY
from ..config.schema import EmsConfig
from ..config.validate import TYPE_WORDS, allowed_range, either, init_fields, type_hints
from ..errors import ApiError
from ..optimizer.strategies import STRATEGY_NAMES
from ..sim.events import ALARM_NAMES, EVENT_TYPES
from ..users.auth import CSRF_HEADER, SESSION_COOKIE
from ..users.permissions import ROLES
from .auth_plugin import route_action
from .http import MAX_BODY_BYTES, json_body
from .http import json_response as _json

log = logging.getLogger(__name__)

OPENAPI_PATH = "/api/openapi.json"
REF = "#/components/schemas/"
STATE_CHANGING = ("POST", "PUT", "DELETE", "PATCH")
_RULE_PARAM = re.compile(r"<([A-Za-z_][A-Za-z_0-9]*)(?::([A-Za-z_]*)(?::[^>]*)?)?>")

Schema = dict[str, Any]


# -- schema shorthands ------------------------------------------------------------------------------------------

def ref(name: str) -> Schema:
    return {"$ref": REF + name}


def nullable(schema: Schema) -> Schema:
    """`schema` or null: a type list where the schema has a type, else anyOf."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    if isinstance(kind, list):
        return schema if "null" in kind else {**schema, "type": [*kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: Mapping[str, Schema] | None = None, required: tuple[str, ...] | str = (),
        extra: bool | Schema = True, **more: Any) -> Schema:
    """An object schema; `required="all"` requires every listed property; `extra` is additionalProperties."""
    props = dict(properties or {})
    out: Schema = {"type": "object"}
    if props:
        out["properties"] = props
    needed = list(props) if required == "all" else list(required)
    if needed:
        out["required"] = needed
    if extra is not True:
        out["additionalProperties"] = extra
    out.update(more)
    return out


def arr(items: Schema, **more: Any) -> Schema:
    return {"type": "array", "items": items, **more}


S: Schema = {"type": "string"}
N: Schema = {"type": "number"}
I: Schema = {"type": "integer"}  # noqa: E741
B: Schema = {"type": "boolean"}
ANY_OBJ: Schema = {"type": "object"}
S_N, N_N, I_N = nullable(S), nullable(N), nullable(I)


# -- the config schema as JSON Schema ---------------------------------------------------------------------------

SECRET_SCHEMA: Schema = {
    "description": "write-only: a GET shows {\"set\": true|false}; post that (or leave the key out) to keep it, "
                   "{\"replace\": \"…\"} or a string to set it, {\"clear\": true} or null to remove it",
    "anyOf": [{"type": ["string", "null"]},
              obj({"set": B}, "all", extra=False),
              obj({"replace": {"type": "string", "minLength": 1}}, "all", extra=False),
              obj({"clear": {"const": True}}, "all", extra=False)],
    "x-error": SECRET_WRITE_ONLY.replace("{forms}", SECRET_FORMS.msgid),  # the document's English words
}
# An x-error's words as a msgid with parameters, so the answer is in the reader's language.
_X_ERRORS: dict[str, tuple[str, dict[str, Any]]] = {
    SECRET_SCHEMA["x-error"]: (SECRET_WRITE_ONLY, {"forms": SECRET_FORMS})}
_SCALAR_TYPES = {"number": "number", "integer": "integer", "boolean": "boolean", "string": "string"}


def _unwrap(tp: Any) -> Any:
    """The dataclass or item type inside Optional[...] / list[...] / Mapping[str, ...] (for nested classes)."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else tp
    return tp


def _bounds(entry: Mapping[str, Any], kind: str) -> Schema:
    out: Schema = {}
    if kind in ("number", "integer"):
        if entry.get("min") is not None:
            out["exclusiveMinimum" if entry.get("exclusive_min") else "minimum"] = entry["min"]
        if entry.get("max") is not None:
            out["maximum"] = entry["max"]
    if kind == "string" and entry.get("pattern"):
        out["pattern"] = f"^(?:{entry['pattern']})$"
    return out


def class_schema(cls: Any) -> Schema:
    """A JSON Schema of dataclass `cls` as the config reader accepts it: unknown keys refused, keys without a
    default required, every key's kind, bounds, choices and marks from `describe_class`."""
    hints = type_hints(cls)
    fields = init_fields(cls)
    props: dict[str, Schema] = {}
    required = []
    for entry in describe_class(cls):
        key = entry["key"]
        props[key] = _field_schema(entry, hints[key], fields[key].metadata)
        f = fields[key]
        if f.metadata.get("required") or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING):
            required.append(key)
    schema = obj(props, tuple(required), extra=False)
    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    if doc and not doc.startswith(cls.__name__ + "("):
        schema["description"] = " ".join(doc.split())
    return schema


def _field_schema(entry: Mapping[str, Any], hint: Any, meta: Mapping[str, Any]) -> Schema:
    if entry.get("secret"):
        out: Schema = dict(SECRET_SCHEMA)
    else:
        kind = entry["kind"]
        tp = _unwrap(hint)
        if kind == "choice":
            out = {"enum": list(entry["choices"])}
        elif kind in _SCALAR_TYPES:
            out = {"type": _SCALAR_TYPES[kind], **_bounds(entry, kind)}
        elif kind == "list":
            item_kind = _SCALAR_TYPES.get(entry.get("item_kind", "string"), "string")
            (item_tp,) = typing.get_args(tp)[:1] or (str,)
            item: Schema = ({"enum": list(typing.get_args(item_tp))} if typing.get_origin(item_tp) is Literal
                            else {"type": item_kind, **_bounds(entry, item_kind)})
            out = arr(item)
        elif kind == "table":
            (item_tp,) = typing.get_args(tp)[:1]
            out = arr(class_schema(item_tp))
        elif kind == "group":
            out = nullable(class_schema(tp))  # the reader takes null for a nested section: its defaults
        elif kind == "mapping":
            _key_tp, value_tp = typing.get_args(tp)
            value = class_schema(value_tp) if dataclasses.is_dataclass(value_tp) else {}
            out = obj(extra=value)
            if meta.get("key_pattern"):
                out["propertyNames"] = {"pattern": f"^(?:{meta['key_pattern']})$"}
        else:
            out = {}
        if kind in ("list", "table", "mapping") and entry.get("max_items") is not None:
            out["maxProperties" if kind == "mapping" else "maxItems"] = entry["max_items"]
        if entry.get("nullable") and kind != "group":
            out = {"enum": [*out["enum"], None]} if "enum" in out else nullable(out)
    doc = entry.get("doc")
    if doc:
        out["description"] = doc
    if entry.get("admin_only"):
        out["x-admin-only"] = True
    default = entry.get("default")
    if isinstance(default, (bool, int, float, str)) and not entry.get("secret"):
        out["default"] = default
    return out


def section_schema(section: str) -> Schema:
    """A config section's body (and what a GET shows): an object, or for `modbus` a list of devices."""
    tp = type_hints(EmsConfig)[section]
    meta = init_fields(EmsConfig)[section].metadata
    if typing.get_origin(tp) in (list, tuple):
        (item,) = typing.get_args(tp)[:1]
        out = arr(class_schema(item))
        if meta.get("max_items"):
            out["maxItems"] = meta["max_items"]
        return out
    return class_schema(_unwrap(tp))


# -- what each route takes and answers --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Op:
    """One route's description: its answer, the query parameters its handler reads, its JSON body."""

    summary: str
    response: Schema | None = None  # the success body (JSON); None: `content` below with a string
    status: int = 200
    query: Mapping[str, Schema] = dataclasses.field(default_factory=dict)
    body: Schema | None = None
    body_required: bool = True
    body_limit: int = MAX_BODY_BYTES
    body_root: str = ""  # the field path prefix of the body's keys in errors ("bess", "device", …)
    json_only: bool = False  # the handler reads form fields unless the body is application/json
    content: str = "application/json"
    errors: tuple[int, ...] = ()


ERROR: Schema = obj({"error": S, "field": S_N,
                     "problems": arr(obj({"field": S, "message": S}, "all")),
                     "more_problems": I}, ("error",),
                    description="every refusal: what is wrong and the field (key path, parameter or header) it is about")
TOKEN: Schema = obj({"id": S, "user_id": I, "name": S, "created_ts": N, "last_used_ts": N_N}, "all")
USER: Schema = obj({"id": I, "username": S, "name": S, "email": S, "role": S, "created_ts": N,
                    "last_login_ts": N_N, "disabled": B, "credential_version": I,
                    "one_time_credential": B}, ("id", "username", "role", "disabled"))
READING: Schema = nullable(obj({"value": {}, "unit": S_N, "ts": N, "source": S_N, "age_s": N, "stale": B},
                               ("value", "ts", "stale")))
SERIES: Schema = nullable(obj({"start_ts": N, "step_s": N, "end_ts": N, "unit": S_N, "source": S_N, "model": S_N,
                               "values": arr(N_N), "is_forecast": arr(B), "quantiles": ANY_OBJ}))
RUN: Schema = obj({"id": I, "ts": N, "strategy": S_N, "status": S_N, "solver": S_N, "objective_eur": N_N,
                   "expected_profit_eur": N_N, "duration_ms": N_N, "reason": S_N}, ("id", "ts"))
STRATEGY_SECTION = obj({"strategy": ref("config.strategy")}, "all")
_HISTORY_RANGE: dict[str, Schema] = {"from": {"type": "string", "description": "epoch seconds or ISO 8601 with an offset"},
                  "to": {"type": "string", "description": "epoch seconds or ISO 8601 with an offset; default now"},
                  "hours": {"type": "number", "minimum": 0.01, "maximum": 24 * 366 * 20,
                            "description": "the range's length ending at `to`, when `from` is not given"}}
_DAYS_INT: dict[str, Schema] = {"days": {"type": "integer", "minimum": 1, "maximum": 366}}
_USER_FIELDS: dict[str, Schema] = {"name": {"type": "string", "maxLength": 100},
                                   "email": {"type": "string", "maxLength": 300}, "role": {"enum": list(ROLES)}}


def _operations() -> dict[tuple[str, str], Op]:
    """Every /api route but the config sections (`_config_operations`), by (method, Bottle rule)."""
    return {
        ("GET", OPENAPI_PATH): Op("This document: OpenAPI 3.1 of every /api route",
                                  obj({"openapi": S, "info": ANY_OBJ, "paths": ANY_OBJ}, "all")),
        ("GET", "/api/health"): Op("Liveness, without a login", obj({"status": S, "version": S}, "all")),
        ("GET", "/api/state"): Op(
            "The plant state (each value with ts, source, age_s, stale), power-control decision, devices",
            obj({"ts": N, "plant": obj(extra=obj(extra=READING)), "power_control": ANY_OBJ,
                 "grid_connection": obj({"max_power_kw": N, "utilisation_pct": N_N, "monitoring_enabled": B}),
                 "feedin_limitation": obj({"enabled": B, "mode": {"enum": ["off", "fixed", "dynamic"]},
                                           "limit_pct": N_N, "reference": {"enum": ["pv_peak", "grid_connection"]},
                                           "reference_kw": N_N, "export_limit_w": N_N},
                                          ("enabled", "mode", "limit_pct", "reference")),
                 "devices": ANY_OBJ,
                 "strategy": obj({"mode": S, "active": S_N, "reason": S_N}, ("mode",)),
                 "expected_profit_24h_eur": N_N, "runtime": ANY_OBJ, "history": ANY_OBJ, "mqtt": ANY_OBJ,
                 "notifications": obj({"latest_id": I})}, ("ts", "plant", "power_control", "strategy"))),
        ("GET", "/api/events"): Op("Server-Sent Events: the whole state each web.sse_interval_s (with deltas=1: "
                                   "JSON merge patches in between)", None, content="text/event-stream",
                                   query={"deltas": {"type": "string", "enum": ["0", "1"]}}, errors=(429, 503)),
        ("GET", "/api/notifications"): Op(
            "Recent notifications and what the caller acknowledged",
            obj({"notifications": arr(obj({"id": I, "ts": N, "level": S, "category": S, "message": S},
                                          ("id", "ts", "level", "message"))),
                 "acknowledged_up_to": I, "unacknowledged": I}, "all"),
            query={"limit": {"type": "integer", "minimum": 1, "maximum": 500}}),
        ("POST", "/api/notifications/ack"): Op(
            "Acknowledge notifications up to an id", obj({"acknowledged_up_to": I}, "all"),
            body=obj({"up_to_id": {"type": "integer", "minimum": 0}}, "all")),
        ("GET", "/api/settings/form"): Op(
            "The settings form (translated), the stored values and what the caller may change",
            obj({"sections": arr(ANY_OBJ), "setup": {}, "values": ANY_OBJ, "may": obj(extra=B)},
                ("sections", "values", "may"))),
        ("GET", "/api/audit"): Op(
            "The audit log of setting changes (newest last) and its hash chain",
            obj({"entries": arr(ANY_OBJ), "chain": obj({"ok": B}, ("ok",)), "export": obj(extra=S)}, "all"),
            query={"limit": {"type": "integer", "minimum": 1, "maximum": 5000}}),
        ("GET", "/api/audit/export"): Op("The whole audit log as a download", None, content="text/csv",
                                         query={"format": {"type": "string", "enum": ["csv", "jsonl"]}}),
        ("GET", "/api/forecast"): Op(
            "Price, consumer price, load and PV forecasts with their sources",
            obj({"ts": N, "horizon_h": N, "price": SERIES, "consumer_price": SERIES, "load": SERIES, "pv": SERIES,
                 "status": ANY_OBJ})),
        ("GET", "/api/plan"): Op("The planner's current plan",
                                 obj({"plan": nullable(ANY_OBJ), "planned_at": N_N, "runs": I, "last_error": S_N},
                                     "all")),
        ("GET", "/api/strategies"): Op(
            "The strategies, the mode and the active one",
            obj({"strategies": arr(obj({"name": S, "title": S, "description": S}, ("name", "title"))),
                 "mode": {"enum": ["auto", "manual"]}, "current": S_N, "active": S_N}, "all")),
        ("POST", "/api/strategy"): Op("Run one strategy (mode manual)", STRATEGY_SECTION,
                                      body=obj({"strategy": {"enum": list(STRATEGY_NAMES)}}, "all")),
        ("POST", "/api/strategy/auto"): Op("Let the EMS pick the strategy (mode auto)", STRATEGY_SECTION,
                                           body={"type": ["object", "null"], "description": "ignored; the pages send {}"},
                                           body_required=False),
        ("POST", "/api/simulator/events"): Op(
            "A scripted event for the simulated plant", obj({"applied": S}, "all"),
            body=obj({"type": {"enum": list(EVENT_TYPES)},
                      "limit_pct": {"type": "number", "minimum": 0, "maximum": 100,
                                    "description": "for dso_limit"},
                      "device": {"type": "string", "description": "for device_offline / device_online"},
                      "alarm": {"enum": list(ALARM_NAMES), "description": "for alarm / clear_alarm"}}, ("type",)),
            errors=(409,)),
        ("GET", "/api/modbus/profiles"): Op(
            "The device profiles (with profile=key: that profile in full)",
            obj({"profiles": arr(obj({"key": S, "vendor": S, "model": S, "kind": S, "verified": B,
                                      "description": S_N, "notes": S_N, "sunspec": B, "defaults": ANY_OBJ},
                                     ("key", "vendor", "model", "kind"))),
                 "profile": obj({"key": S, "meta": ANY_OBJ, "connection": ANY_OBJ, "registers": ANY_OBJ}, ("key",))},
                minProperties=1, maxProperties=1),
            query={"profile": {"type": "string"}}, errors=(404,)),
        ("GET", "/api/modbus/serial_ports"): Op(
            "The gateway's serial ports", obj({"serial_ports": arr(obj({"path": S, "by_id": S_N}, ("path",)))}, "all")),
        ("POST", "/api/modbus/test"): Op(
            "Read a device once (saved or not) and show the decoded values", obj({"ok": B}, ("ok",)),
            body=ref("config.modbus.device"), body_root="device", errors=(403, 409)),
        ("POST", "/api/mqtt/test"): Op(
            "A round trip to the MQTT broker with the settings as given (missing keys: the stored ones)",
            obj({"ok": B, "broker": S, "connect_ms": N_N, "round_trip_ms": N_N, "stage": S_N, "error_kind": S_N,
                 "error": S_N}, ("ok",)),
            body=nullable(ref("config.mqtt")), body_required=False, body_root="mqtt", errors=(403, 409)),
        # -- history and analytics
        ("GET", "/api/monitoring/telemetry"): Op(
            "Raw telemetry rows of the last minutes", obj({"minutes": N, "rows": arr(ANY_OBJ)}, "all"),
            query={"minutes": {"type": "number", "minimum": 1, "maximum": 1440},
                   "limit": {"type": "integer", "minimum": 1, "maximum": 20000}}),
        ("GET", "/api/history/state"): Op(
            "Mean/min/max per bucket from the coarsest fine-enough tier",
            obj({"hours": N, "from": N, "to": N, "tier": S, "bucket_s": N, "channels": arr(S), "rows": arr({})},
                ("hours", "channels", "rows")),
            query={**_HISTORY_RANGE, "points": {"type": "integer", "minimum": 10, "maximum": 5000},
                   "channels": {"type": "string", "description": "comma-separated channel names"}}),
        ("GET", "/api/history/energy_flows"): Op(
            "kWh per flow (for the Sankey) and money over a range",
            obj({"from": N, "to": N, "flows_kwh": obj(extra=N), "totals_kwh": obj(extra=N), "cost_eur": N_N,
                 "cost_no_battery_eur": N_N, "savings_eur": N_N}, ("from", "to", "flows_kwh")),
            query=dict(_HISTORY_RANGE)),
        ("GET", "/api/history/optimization"): Op(
            "The planning runs of the last days", obj({"days": N, "runs": arr(RUN)}, "all"),
            query={"days": {"type": "number", "minimum": 0.01, "maximum": 400}}),
        ("GET", "/api/analytics/daily"): Op(
            "Money and energy per local day", obj({"timezone": S, "capacity_kwh": N, "days": arr(ANY_OBJ)}, ("days",)),
            query=dict(_DAYS_INT)),
        ("GET", "/api/analytics/summary"): Op(
            "Savings against the no-battery counterfactual, cycles, SoC, self-consumption, strategy share",
            obj({"days": I, "days_with_data": I, "savings_eur": N_N, "strategy_share_pct": obj(extra=N),
                 "last_optimizations": arr(RUN)}, ("days",)),
            query=dict(_DAYS_INT)),
        ("GET", "/api/analytics/plan_vs_actual"): Op(
            "Plan against what happened, per step of a local day",
            obj({"date": S, "from": N, "to": N, "steps": arr(ANY_OBJ), "summary": ANY_OBJ}, ("steps",)),
            query={"day": {"type": "string", "pattern": r"^2[01][0-9][0-9]-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$",
                           "description": "YYYY-MM-DD (years 2000-2200); default today"}}),
        # -- own account
        ("GET", "/api/me"): Op("The caller, the role and the actions the UI may offer",
                               obj({"authenticated": B, "user": nullable(USER), "via": S, "role": S,
                                    "actions": arr(S), "csrf_token": S_N}, ("authenticated", "actions"))),
        ("POST", "/api/me/password"): Op(
            "Change one's own password (every session ends; a session caller gets a new one)",
            obj({"changed": B, "csrf_token": S_N}, ("changed",)),
            body=obj({"current_password": S, "new_password": S}, "all"), json_only=True, errors=(429,)),
        ("GET", "/api/me/tokens"): Op("One's own API tokens", obj({"tokens": arr(TOKEN)}, "all")),
        ("POST", "/api/me/tokens"): Op(
            "A new API token (shown once)", obj({"token": S, "info": TOKEN, "note": S}, "all"), status=201,
            body=obj({"name": {"type": "string", "minLength": 1, "maxLength": 64}}), json_only=True, errors=(409,)),
        ("DELETE", "/api/me/tokens/<token_id>"): Op("Revoke one of one's own API tokens",
                                                    obj({"revoked": TOKEN}, "all"), errors=(404,)),
        # -- administration
        ("GET", "/api/users"): Op("Every account and API token",
                                  obj({"users": arr(USER), "tokens": arr(TOKEN)}, "all")),
        ("POST", "/api/users"): Op(
            "Create an account", obj({"user": USER}, "all"), status=201,
            body=obj({"username": S, "password": S, **_USER_FIELDS}, ("username", "password"), extra=False),
            json_only=True, errors=(409,)),
        ("PUT", "/api/users/<user_id:int>"): Op(
            "Change an account's name, e-mail, role or disabled flag", obj({"user": USER}, "all"),
            body=obj({**_USER_FIELDS, "disabled": B}, extra=False), json_only=True, errors=(404, 409)),
        ("DELETE", "/api/users/<user_id:int>"): Op("Delete an account (never the last enabled admin)",
                                                   obj({"deleted": USER}, "all"), errors=(404, 409)),
        ("POST", "/api/users/<user_id:int>/password"): Op(
            "Set an account's password (its sessions end, its API tokens are revoked)", obj({"user": USER}, "all"),
            body=obj({"password": S}, "all"), json_only=True, errors=(404,)),
        ("DELETE", "/api/tokens/<token_id>"): Op("Revoke anyone's API token", obj({"revoked": TOKEN}, "all"),
                                                 errors=(404,)),
    }


def _config_operations() -> dict[tuple[str, str], Op]:
    # Imported here: `ems.api.app` imports this module, and has finished loading by the time install() runs.
    from .app import CONFIG_ROUTES, DEFAULT_SECTION_BODY_BYTES, SECTION_BODY_BYTES
    out = {}
    for section, paths in CONFIG_ROUTES.items():
        limit = SECTION_BODY_BYTES.get(section, DEFAULT_SECTION_BODY_BYTES)
        for path in paths:
            out[("GET", path)] = Op(f"The `{section}` config section (secrets as {{\"set\": …}})",
                                    obj({section: ref(f"config.{section}")}, "all"))
            out[("POST", path)] = Op(
                f"Change the `{section}` section: validated as a whole file, saved atomically, applied live; "
                "keys left out get their defaults, admin-only keys are for admins (403 naming the key)",
                obj({section: ref(f"config.{section}"), "saved": B, "changed": arr(S)}, "all"),
                body=ref(f"config.{section}"), body_limit=limit, body_root=section, errors=(403,))
    return out


def _components(sections: list[str]) -> dict[str, Any]:
    schemas: dict[str, Schema] = {"Error": ERROR}
    for section in sections:
        schemas[f"config.{section}"] = section_schema(section)
    modbus = schemas.get("config.modbus")
    if modbus is not None:  # one device: the body of /api/modbus/test too
        schemas["config.modbus.device"] = modbus["items"]
        schemas["config.modbus"] = {**modbus, "items": ref("config.modbus.device")}
    return {
        "schemas": schemas,
        "responses": {"Error": {"description": "refused: `field` names what to fix",
                                "content": {"application/json": {"schema": ref("Error")}}}},
        "securitySchemes": {
            "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                        "description": "the session cookie of POST /login"},
            "csrf": {"type": "apiKey", "in": "header", "name": CSRF_HEADER,
                     "description": "the session's CSRF token (csrf_token of /login and /api/me); required with "
                                    "the session cookie on every state-changing request"},
            "token": {"type": "http", "scheme": "bearer", "description": "an API token (POST /api/me/tokens)"},
        },
    }


# -- the document ----------------------------------------------------------------------------------------------

def openapi_path(rule: str) -> tuple[str, list[Schema]]:
    """A Bottle rule as an OpenAPI path with its path parameters: `<user_id:int>` → `{user_id}` (integer)."""
    params: list[Schema] = []

    def one(match: re.Match[str]) -> str:
        name, kind = match.group(1), match.group(2) or ""
        schema: Schema = ({"type": "integer"} if kind == "int" else {"type": "number"} if kind == "float"
                          else {"type": "string", "minLength": 1, "pattern": "^[^/]+$"})
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"
    return _RULE_PARAM.sub(one, rule), params


def api_routes(app: bottle.Bottle) -> list[tuple[str, str]]:
    """(method, rule) of every /api route of `app`, in table order."""
    return [(r.method, r.rule) for r in app.routes if r.rule.startswith("/api/")]


def operations() -> dict[tuple[str, str], Op]:
    return {**_operations(), **_config_operations()}


def undocumented(app: bottle.Bottle) -> list[str]:
    """/api routes of `app` without an entry in the operation table (the tests require none)."""
    table = operations()
    return [f"{m} {r}" for m, r in api_routes(app) if (m, r) not in table]


def _security(action: Any, method: str) -> list[dict[str, list[str]]]:
    if action is None:
        return []
    session: dict[str, list[str]] = {"session": [], "csrf": []} if method in STATE_CHANGING else {"session": []}
    return [session, {"token": []}]


def _responses(op: Op, action: Any, has_body: bool, has_params: bool) -> dict[str, Any]:
    error = {"$ref": "#/components/responses/Error"}
    if op.response is not None:
        content = {"application/json": {"schema": op.response}}
    elif op.content == "text/csv":
        content = {"text/csv": {"schema": S}, "application/x-ndjson": {"schema": S}}
    else:
        content = {op.content: {"schema": S}}
    out: dict[str, Any] = {str(op.status): {"description": "done", "content": content}}
    codes = {400, 421, *op.errors}
    if action is not None:
        codes |= {401, 403}
    if has_body:
        codes |= {413}
    if has_params:
        codes |= {404}
    for code in sorted(codes):
        out[str(code)] = error
    out["default"] = error
    return out


def build_document(app: bottle.Bottle) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app`'s /api routes."""
    from .app import CONFIG_ROUTES
    table = operations()
    paths: dict[str, dict[str, Any]] = {}
    for route in app.routes:
        if not route.rule.startswith("/api/"):
            continue
        method, action = route.method, route_action(route)
        op = table.get((method, route.rule))
        if op is None:
            log.warning("%s %s has no OpenAPI description (ems/api/openapi.py)", method, route.rule)
            op = Op(f"{method} {route.rule} (not described yet)", {})
        path, params = openapi_path(route.rule)
        params += [{"name": name, "in": "query", "required": False, "schema": schema}
                   for name, schema in op.query.items()]
        entry: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(method, route.rule),
                                 "x-ems-action": action, "security": _security(action, method),
                                 "responses": _responses(op, action, op.body is not None, bool(params))}
        if params:
            entry["parameters"] = params
        if op.body is not None:
            entry["requestBody"] = {"required": op.body_required,
                                    "content": {"application/json": {"schema": op.body}},
                                    "x-max-bytes": op.body_limit}
        paths.setdefault(path, {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Phoenyra EMS API", "version": __version__,
                 "description": "JSON over HTTP; session cookie + X-CSRF-Token, or Authorization: Bearer <token>. "
                                "Bad input gets a 4xx with {\"error\": …, \"field\": …}. Sign conventions: battery "
                                "power > 0 = discharging, grid power > 0 = import."},
        "paths": paths,
        "components": _components(list(CONFIG_ROUTES)),
    }


def _operation_id(method: str, rule: str) -> str:
    words = re.sub(r"<([^:>]+)[^>]*>", r"by_\1", rule.removeprefix("/api/"))
    return method.lower() + "_" + re.sub(r"[^A-Za-z0-9]+", "_", words).strip("_")


# -- the body check ---------------------------------------------------------------------------------------------

class BodyInvalid(ApiError):
    """A body that does not fit its route's schema: 400 naming the JSON path."""


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path or 'body'}[{key}]"
    return f"{path}.{key}" if path else key


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _is_type(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return kind == "number" or isinstance(value, int) or float(value).is_integer()
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    return kind == "object" and isinstance(value, dict)


# A JSON Schema type in words: the config validator's words, but a body's object is "a JSON object".
_TYPE_WORDS: dict[str, i18n.Msg] = {
    "null": TYPE_WORDS[type(None)], "boolean": TYPE_WORDS[bool], "number": TYPE_WORDS[float],
    "integer": TYPE_WORDS[int], "string": TYPE_WORDS[str], "array": TYPE_WORDS[list],
    "object": i18n.Msg(i18n.mark("a JSON object"))}


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


class Validator:
    """The JSON-Schema subset of this module's schemas, with `$ref`s into the document's components."""

    def __init__(self, components: Mapping[str, Schema]):
        self.components = components

    def resolve(self, schema: Schema) -> Schema:
        while "$ref" in schema:
            schema = self.components[schema["$ref"].removeprefix(REF)]
        return schema

    def errors(self, schema: Schema, value: Any, path: str) -> str | None:
        """None when `value` fits, else the message of its first problem (for anyOf to pick among)."""
        try:
            self.check(schema, value, path)
        except ApiError as exc:
            return exc.message
        return None

    def check(self, schema: Schema, value: Any, path: str) -> None:
        schema = self.resolve(schema)
        where = path or "body"
        if "anyOf" in schema:
            options = schema["anyOf"]
            if not any(self.errors(s, value, path) is None for s in options):
                # One option of the value's own type explains best what is wrong inside it.
                fitting = [s for s in options if self._type_fits(self.resolve(s), value)]
                if len(fitting) == 1 and "x-error" not in schema:
                    self.check(fitting[0], value, path)
                if "x-error" in schema:
                    msgid, params = _X_ERRORS.get(schema["x-error"], (schema["x-error"], {}))
                    raise BodyInvalid(400, msgid, where, **params)
                raise BodyInvalid(400, i18n.mark("does not fit any allowed form (got {got})"), where,
                                  got=_short(value))
        kind = schema.get("type")
        if kind is not None:
            kinds = [kind] if isinstance(kind, str) else list(kind)
            if not any(_is_type(value, k) for k in kinds):
                if kinds == ["integer"]:
                    raise BodyInvalid(400, i18n.mark("must be an integer (got {got})"), where, got=_short(value))
                raise BodyInvalid(400, i18n.mark("must be {wanted} (got {got})"), where,
                                  wanted=either([_TYPE_WORDS.get(k, k) for k in kinds]), got=_short(value))
        if "const" in schema and not _same(value, schema["const"]):
            raise BodyInvalid(400, i18n.mark("must be {wanted} (got {got})"), where, wanted=_short(schema["const"]),
                              got=_short(value))
        if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
            allowed = ", ".join("null" if e is None else str(e) for e in schema["enum"])
            raise BodyInvalid(400, i18n.mark("must be one of {allowed} (got {got})"), where, allowed=allowed,
                              got=_short(value))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self._number(schema, value, where)
        elif isinstance(value, str):
            self._string(schema, value, where)
        elif isinstance(value, list):
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                raise BodyInvalid(400, i18n.mark("{n} items is too many (allowed: at most {most})"), where,
                                  n=len(value), most=schema["maxItems"])
            if "minItems" in schema and len(value) < schema["minItems"]:
                raise BodyInvalid(400, i18n.mark("must have at least {least} items"), where, least=schema["minItems"])
            if "items" in schema:
                for i, item in enumerate(value):
                    self.check(schema["items"], item, _join(path, i))
        elif isinstance(value, dict):
            self._object(schema, value, path)

    def _type_fits(self, schema: Schema, value: Any) -> bool:
        kind = schema.get("type")
        if kind is None:
            return False
        return any(_is_type(value, k) for k in ([kind] if isinstance(kind, str) else kind))

    @staticmethod
    def _number(schema: Schema, value: float, where: str) -> None:
        if value != value or value in (float("inf"), float("-inf")):
            raise BodyInvalid(400, i18n.mark("must be a finite number (got {got})"), where, got=str(value))
        lo, hi, excl = schema.get("minimum"), schema.get("maximum"), schema.get("exclusiveMinimum")
        if (lo is not None and value < lo) or (excl is not None and value <= excl) or (hi is not None and value > hi):
            raise BodyInvalid(400, i18n.mark("{got} is out of range (allowed: {allowed})"), where, got=float(value),
                              allowed=allowed_range(excl if excl is not None else lo, hi, excl is not None))

    @staticmethod
    def _string(schema: Schema, value: str, where: str) -> None:
        if "minLength" in schema and len(value) < schema["minLength"]:
            raise BodyInvalid(400, i18n.mark("must be at least {least} characters"), where, least=schema["minLength"])
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise BodyInvalid(400, i18n.mark("must be at most {most} characters (got {n})"), where,
                              most=schema["maxLength"], n=len(value))
        pattern = schema.get("pattern")
        if pattern and not _compiled(pattern).search(value):
            description = schema.get("description")  # a config key's doc, a msgid (`i18n.mark` in the schema)
            raise BodyInvalid(400, i18n.mark("{got} has the wrong format (allowed: {allowed})"), where,
                              got=_short(value), allowed=i18n.Msg(description) if description else pattern)

    def _object(self, schema: Schema, value: dict[str, Any], path: str) -> None:
        where = path or "body"
        props: Mapping[str, Schema] = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            raise BodyInvalid(400, i18n.mark("{n} entries is too many (allowed: at most {most})"), where,
                              n=len(value), most=schema["maxProperties"])
        names = schema.get("propertyNames")
        for key, item in value.items():
            if names is not None:
                self.check({**names, "type": "string"}, key, _join(path, key))
            if key in props:
                self.check(props[key], item, _join(path, key))
            elif extra is False:
                close = difflib.get_close_matches(key[:100], list(props), n=1)
                if close:
                    raise BodyInvalid(400, i18n.mark("unknown key, did you mean '{close}'? (allowed: {allowed})"),
                                      _join(path, key[:40]), close=close[0], allowed=list(props))
                raise BodyInvalid(400, i18n.mark("unknown key (allowed: {allowed})"), _join(path, key[:40]),
                                  allowed=list(props))
            elif isinstance(extra, dict):
                self.check(extra, item, _join(path, key))
        for key in schema.get("required", ()):
            if key not in value:
                raise BodyInvalid(400, i18n.mark("is required"), _join(path, key))


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    found = _PATTERNS.get(pattern)
    if found is None:
        found = _PATTERNS[pattern] = re.compile(pattern)
    return found


class BodyValidation:
    """Bottle plugin: a route's JSON body checked against its schema before the handler runs. Installed after the
    AuthPlugin, so it runs inside it: permission and CSRF checks come first. The body is read with the route's
    own limit (413 above it, 400 for JSON that cannot be read), as the handler then reads it again."""

    name = "ems_openapi_bodies"
    api = 2

    def __init__(self, table: Mapping[tuple[str, str], Op], validator: Callable[[], Validator]):
        self.table = table
        self.validator = validator

    def apply(self, callback: Callable[..., Any], route: bottle.Route) -> Callable[..., Any]:
        op = self.table.get((route.method, route.rule))
        if op is None or op.body is None:
            return callback
        schema, limit, root, json_only = op.body, op.body_limit, op.body_root, op.json_only

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not json_only or bottle.request.content_type.startswith("application/json"):
                data = json_body(limit)
                if not (data is None and not op.body_required):
                    self.validator().check(schema, data, root)
            return callback(*args, **kwargs)
        return wrapper


def install(app: bottle.Bottle) -> None:
    """Serve `/api/openapi.json` (built once, on first use, from the route table) and validate request bodies."""
    lock = threading.Lock()
    built: dict[str, Any] = {}

    def document() -> dict[str, Any]:
        with lock:
            if "doc" not in built:
                doc = build_document(app)
                built["doc"] = doc
                built["text"] = json.dumps(doc, separators=(",", ":"), allow_nan=False)
                built["validator"] = Validator(doc["components"]["schemas"])
            return built

    @app.get(OPENAPI_PATH, action="read")
    def openapi_json() -> str:
        text = document()["text"]
        _json(None)  # status, type and caching as every JSON answer
        return str(text)

    app.install(BodyValidation(operations(), lambda: document()["validator"]))

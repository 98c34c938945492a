"""`/api/openapi.json`: valid OpenAPI 3.1, generated from the app's route table (every /api route described, nothing
else — a new route without a description fails here), and the request bodies checked by the same schemas: every
documented body refuses a wrong-typed field with a 4xx naming it, through the real server (`ems run`), after the
permission check, and takes back what a GET shows."""
from __future__ import annotations

import gzip
import json
import re
import urllib.request
from typing import Any

import jsonschema_rs
import pytest

from appliance import demo_config
from ems.api.app import CONFIG_ROUTES
from ems.api.openapi import REF, Validator, openapi_path, operations, section_schema, undocumented
from ems.config.schema import SECTIONS
from ems.errors import ApiError
from security_rig import Rig

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: Any) -> Any:
    rig = Rig(tmp_path_factory.mktemp("openapi-rig"))
    rig.add_users()
    yield rig
    rig.close()


@pytest.fixture(scope="module")
def document(rig: Rig) -> dict[str, Any]:
    status, headers, doc = rig.call("GET", "/api/openapi.json", as_role="viewer")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    return doc


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: Any) -> Any:
    from appliance import start_ems
    ems = start_ems(tmp_path_factory.mktemp("openapi-ems"), demo_config())
    yield ems, ems.login()
    ems.stop()


def test_the_document_is_valid_openapi_3_1_with_valid_json_schemas(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    definitions = pytest.importorskip("schemathesis.specs.openapi.definitions")
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message[:200]}"
              for e in definitions.OPENAPI_31_VALIDATOR.iter_errors(document)]
    assert not errors, errors[:10]
    for name, schema in document["components"]["schemas"].items():
        jsonschema_rs.meta.validate(schema)  # Draft 2020-12, the dialect of OpenAPI 3.1
        assert name
    for path, item in document["paths"].items():
        for method, op in item.items():
            assert method in METHODS, (path, method)
            for schema in _schemas(op):
                jsonschema_rs.meta.validate(schema)
            names = re.findall(r"{([^}]+)}", path)
            declared = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
            assert names == declared, (method, path)
            assert op["responses"] and "default" in op["responses"], (method, path)
            assert op["operationId"]
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs <= set(document["components"]["schemas"])


def _schemas(op: dict[str, Any]) -> list[Any]:
    found = [p["schema"] for p in op.get("parameters", [])]
    found += [c["schema"] for c in op.get("requestBody", {}).get("content", {}).values()]
    for response in op["responses"].values():
        found += [c["schema"] for c in response.get("content", {}).values()]
    return found


def test_every_api_route_of_the_app_is_described_and_nothing_else(rig: Rig, document: dict[str, Any]) -> None:
    table = {(r.method, r.rule) for r in rig.app.routes if r.rule.startswith("/api/")}
    assert ("GET", "/api/openapi.json") in table
    assert not undocumented(rig.app), "describe these routes in ems/api/openapi.py"
    stale = set(operations()) - table
    assert not stale, f"described but not routes of the app: {sorted(stale)}"
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert documented == {(method, openapi_path(rule)[0]) for method, rule in table}
    assert all(path.startswith("/api/") for path in document["paths"])
    for path, item in document["paths"].items():
        for method, op in item.items():
            assert "not described yet" not in op["summary"], (method, path)


def test_operations_declare_who_may_call_them(rig: Rig, document: dict[str, Any]) -> None:
    from ems.api.auth_plugin import route_action
    actions = {(r.method, openapi_path(r.rule)[0]): route_action(r) for r in rig.app.routes}
    schemes = document["components"]["securitySchemes"]
    assert schemes["session"] == {**schemes["session"], "type": "apiKey", "in": "cookie", "name": "ems_session"}
    assert schemes["csrf"]["in"] == "header" and schemes["token"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for method, op in item.items():
            action = actions[(method.upper(), path)]
            assert op["x-ems-action"] == action
            if action is None:
                assert op["security"] == [], path
                continue
            assert {"token": []} in op["security"] and {"401", "403"} <= set(op["responses"]), (method, path)
            assert any("csrf" in s for s in op["security"]) == (method in ("post", "put", "delete")), (method, path)
    assert document["paths"]["/api/events"]["get"]["responses"]["200"]["content"].keys() == {"text/event-stream"}


def test_config_sections_come_from_the_config_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert set(CONFIG_ROUTES) <= set(SECTIONS)
    bess = schemas["config.bess"]
    assert bess["additionalProperties"] is False
    assert bess["properties"]["capacity_kwh"]["exclusiveMinimum"] == 0
    assert bess["properties"]["capacity_kwh"]["maximum"] == 100_000
    assert schemas["config.power_control"]["properties"]["max_battery_temperature_c"]["maximum"] == 60
    assert schemas["config.power_control"]["properties"]["enabled"]["x-admin-only"] is True
    assert schemas["config.strategy"]["properties"]["mode"]["enum"] == ["auto", "manual"]
    assert "anyOf" in schemas["config.mqtt"]["properties"]["password"]  # write-only: {"set"}, {"replace"}, …
    windows = schemas["config.grid_tariffs"]["properties"]["high_load_windows"]
    assert windows["maxItems"] == 48 and windows["items"]["properties"]["months"]["items"]["maximum"] == 12
    assert schemas["config.modbus"]["maxItems"] == 32
    assert set(schemas["config.modbus.device"]["required"]) == {"name", "role", "profile"}
    for section, paths in CONFIG_ROUTES.items():
        for path in paths:
            body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
            assert body == {"$ref": REF + f"config.{section}"}


def test_the_validator_names_the_json_path_and_takes_every_form_of_a_secret() -> None:
    validator = Validator({"config.mqtt": section_schema("mqtt"), "config.modbus": section_schema("modbus")})
    mqtt = {"$ref": REF + "config.mqtt"}
    for ok in ({}, {"password": {"set": True}}, {"password": {"replace": "s3cret"}}, {"password": {"clear": True}},
               {"password": "plain"}, {"password": None}, {"topics": None}, {"topics": {"telemetry": "a/b"}},
               {"port": 1883.0}, {"sources": [{"topic": "meter/power", "point": "grid.power_w"}]}):
        validator.check(mqtt, ok, "mqtt")
    for bad, field in (({"password": 5}, "mqtt.password"), ({"password": {"replace": ""}}, "mqtt.password"),
                       ({"topics": {"telemetry": 5}}, "mqtt.topics.telemetry"), ({"port": True}, "mqtt.port"),
                       ({"port": 0}, "mqtt.port"), ({"port": 1.5}, "mqtt.port"), ({"brokr": "x"}, "mqtt.brokr"),
                       ({"sources": [{"topic": "t"}]}, "mqtt.sources[0].point"), ([], "mqtt"),
                       ({"topics": {"telemetry": "#"}}, "mqtt.topics.telemetry"), ({"qos": float("nan")}, "mqtt.qos")):
        with pytest.raises(ApiError) as err:
            validator.check(mqtt, bad, "mqtt")
        assert (err.value.status, err.value.field) == (400, field), bad
    with pytest.raises(ApiError, match="did you mean 'broker'"):
        validator.check(mqtt, {"brokr": "x"}, "mqtt")
    device = {"name": "meter", "role": "meter", "profile": "eastron_sdm630", "host": "10.0.0.5",
              "register_overrides": {"power_w": {"scale": 2, "function": 3}}}
    validator.check({"$ref": REF + "config.modbus"}, [device], "modbus")
    for bad_device, field in (({**device, "port": "502"}, "modbus[0].port"),
                              ({**device, "register_overrides": {"power_w": {"function": 5}}},
                               "modbus[0].register_overrides.power_w.function"),
                              ({**device, "role": "boss"}, "modbus[0].role"),
                              ({k: v for k, v in device.items() if k != "role"}, "modbus[0].role")):
        with pytest.raises(ApiError) as err:
            validator.check({"$ref": REF + "config.modbus"}, [bad_device], "modbus")
        assert err.value.field == field


# Each kind of refusal the validator makes, and the German words it must answer with.
REFUSALS = [
    ({"type": ["number", "null"]}, "x", "muss eine Zahl oder null sein (erhalten: 'x')"),
    ({"type": ["string", "number", "null"]}, [], "muss ein Text, eine Zahl oder null sein (erhalten: [])"),
    ({"type": "boolean"}, 1, "muss true oder false sein (erhalten: 1)"),
    ({"type": "array"}, {}, "muss eine Liste sein (erhalten: {})"),
    ({"type": "object"}, 1, "muss ein JSON-Objekt sein (erhalten: 1)"),
    ({"type": "integer"}, 1.5, "muss eine ganze Zahl sein (erhalten: 1.5)"),
    ({"const": True}, False, "muss true sein (erhalten: false)"),
    ({"enum": ["a", "b"]}, "c", "muss eines von a, b sein (erhalten: 'c')"),
    ({"type": "number", "minimum": 0, "maximum": 100}, 150.5,
     "150,5 liegt außerhalb des erlaubten Bereichs (möglich: 0..100)"),
    ({"type": "number", "minimum": 0.5, "maximum": 1}, 1.001,
     "1,001 liegt außerhalb des erlaubten Bereichs (möglich: 0,5..1)"),
    ({"type": "number", "exclusiveMinimum": 0}, 0, "0 liegt außerhalb des erlaubten Bereichs (möglich: > 0)"),
    ({"type": "number"}, float("inf"), "muss eine endliche Zahl sein (erhalten: inf)"),
    ({"type": "string", "minLength": 3}, "a", "muss mindestens 3 Zeichen lang sein"),
    ({"type": "string", "maxLength": 3}, "abcd", "darf höchstens 3 Zeichen lang sein (erhalten: 4)"),
    ({"type": "string", "pattern": "^[0-9]{2}:[0-9]{2}$", "description": "HH:MM"}, "9 Uhr",
     "'9 Uhr' hat das falsche Format (möglich: HH:MM)"),
    ({"type": "array", "maxItems": 1}, [1, 2], "2 Einträge sind zu viele (möglich: höchstens 1)"),
    ({"type": "array", "minItems": 2}, [1], "muss mindestens 2 Einträge haben"),
    ({"type": "object", "maxProperties": 1}, {"a": 1, "b": 2}, "2 Einträge sind zu viele (möglich: höchstens 1)"),
    ({"type": "object", "properties": {"alpha": {}}, "additionalProperties": False}, {"alpah": 1},
     "unbekannter Schlüssel, meinten Sie „alpha“? (möglich: alpha)"),
    ({"type": "object", "properties": {"alpha": {}}, "additionalProperties": False}, {"zzz": 1},
     "unbekannter Schlüssel (möglich: alpha)"),
    ({"type": "object", "required": ["alpha"]}, {}, "ist erforderlich"),
    ({"anyOf": [{"type": "number"}, {"type": "string"}]}, [], "passt zu keiner erlaubten Form (erhalten: [])"),
]


@pytest.mark.parametrize(("schema", "value", "german"), REFUSALS, ids=[f"refusal{i}" for i in range(len(REFUSALS))])
def test_every_refusal_of_the_body_check_reads_german_to_a_german_reader(schema: Any, value: Any, german: str) -> None:
    with pytest.raises(ApiError) as err:
        Validator({}).check(schema, value, "field")
    assert err.value.text("de") == german
    assert err.value.message != german and err.value.text("en") == err.value.message


def test_a_secret_in_the_wrong_form_is_explained_in_the_readers_language() -> None:
    mqtt = {"$ref": REF + "config.mqtt"}
    with pytest.raises(ApiError) as err:
        Validator({"config.mqtt": section_schema("mqtt")}).check(mqtt, {"password": {"set": "yes"}}, "mqtt")
    assert err.value.field == "mqtt.password"
    assert err.value.text("de") == ('kann nur geschrieben werden (möglich: {"set": …} oder den Schlüssel weglassen, '
                                    'um ihn zu behalten; {"replace": "<neuer Wert>"}, um ihn zu setzen; '
                                    '{"clear": true}, um ihn zu entfernen)')
    assert err.value.message.startswith('is write-only (allowed: {"set": …} or no key to keep it')


def _wrong(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """A value of the wrong type for `schema` (never null: some fields are nullable)."""
    while "$ref" in schema:
        schema = components[schema["$ref"].removeprefix(REF)]
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    if "enum" in schema:
        return 12345 if all(isinstance(e, str) or e is None for e in schema["enum"]) else "no-such-choice"
    return 12345 if "string" in kinds or "anyOf" in schema else "not-a-number"


def _body_cases(document: dict[str, Any]) -> list[tuple[str, str, Any, str]]:
    """(method, path, body, the field the answer must name) for every property of every documented body."""
    components = document["components"]["schemas"]
    cases = []
    for path, item in document["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody")
            if body is None:
                continue
            concrete = path.replace("{user_id}", "1")
            schema = body["content"]["application/json"]["schema"]
            cases.append((method.upper(), concrete, "a string, not the document", ""))
            while "$ref" in schema or "anyOf" in schema:
                schema = components[schema["$ref"].removeprefix(REF)] if "$ref" in schema else next(
                    s for s in schema["anyOf"] if s.get("type") != "null")
            listed = schema.get("type") == "array"
            fields = (components[schema["items"]["$ref"].removeprefix(REF)] if listed else schema).get("properties", {})
            for key, field_schema in fields.items():
                wrong = {key: _wrong(field_schema, components)}
                cases.append((method.upper(), concrete, [wrong] if listed else wrong, key))
    return cases


def test_every_documented_body_refuses_a_wrong_typed_field_naming_it(appliance: Any, rig: Rig,
                                                                    document: dict[str, Any]) -> None:
    ems, admin = appliance
    status, served = admin.request("GET", "/api/openapi.json")
    assert status == 200 and served == document  # the appliance's app is the rig's: the same routes
    cases = _body_cases(document)
    assert len({(m, p) for m, p, *_ in cases}) >= 25 and len(cases) > 150
    for method, path, body, key in cases:
        status, answer = admin.request(method, path, body)
        where = f"{method} {path} {json.dumps(body)[:80]}"
        assert 400 <= status < 500 and status != 403, (where, status, answer)
        assert isinstance(answer, dict) and isinstance(answer.get("error"), str), (where, answer)
        field = answer.get("field") or ""
        if key:
            assert field == key or field.endswith("." + key), (where, answer)
    assert ems.proc.poll() is None


def test_what_a_get_shows_posts_back_unchanged(appliance: Any) -> None:
    _, admin = appliance
    for section, paths in CONFIG_ROUTES.items():
        status, shown = admin.request("GET", paths[0])
        assert status == 200
        status, answer = admin.request("POST", paths[-1], shown[section])
        assert (status, answer.get("changed")) == (200, []), (section, answer)


def test_the_permission_check_comes_before_the_body_check(rig: Rig) -> None:
    bad = {"capacity_kwh": "lots"}
    assert rig.call("POST", "/api/config/bess", bad)[0] == 401
    assert rig.call("POST", "/api/config/bess", bad, as_role="viewer")[0] == 403
    status, _, answer = rig.call("POST", "/api/config/bess", bad, as_role="operator")
    assert (status, answer["field"]) == (400, "bess.capacity_kwh")
    assert rig.call("POST", "/api/users", {"username": 5}, as_role="operator")[0] == 403
    headers = {"X-CSRF-Token": "wrong"}
    assert rig.call("POST", "/api/config/bess", bad, as_role="operator", headers=headers)[0] == 403
    # Over the body limit: 413 as the handler answers it, before anything is parsed.
    status, _, answer = rig.call("POST", "/api/strategy", raw=b" " * 20_000, as_role="operator")
    assert (status, answer["field"]) == (413, "body")


def test_the_pages_bodies_pass_and_form_posts_stay_forms(rig: Rig) -> None:
    operator = rig.callers["operator"]
    assert rig.call("POST", "/api/strategy/auto", {}, as_role="operator")[0] == 200
    assert rig.call("POST", "/api/strategy/auto", raw=b"", as_role="operator")[0] == 200
    assert rig.call("POST", "/api/strategy", {"strategy": "arbitrage"}, as_role="operator")[0] == 200
    status, _, answer = rig.call("POST", "/api/me/tokens", {"name": "laptop"}, as_role="operator")
    assert status == 201 and answer["info"]["name"] == "laptop"
    status, _, _ = rig.call("POST", "/api/me/tokens", raw=b"name=phone", as_role="operator",
                            content_type="application/x-www-form-urlencoded")
    assert status == 201
    assert operator.username == "operator1"


def test_the_document_is_built_once_and_served_compressed(rig: Rig, document: dict[str, Any]) -> None:
    headers = {**rig.callers["viewer"].session_headers(), "Accept-Encoding": "gzip"}
    url = rig.serve()
    try:
        req = urllib.request.Request(url + "/api/openapi.json", headers=headers)
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            raw = resp.read()
        assert json.loads(gzip.decompress(raw)) == document
        assert len(raw) < 32 * 1024
    finally:
        assert rig.server is not None
        rig.server.stop()
        rig.server = None
    again = rig.call("GET", "/api/openapi.json", as_role="admin")[2]
    assert again == document

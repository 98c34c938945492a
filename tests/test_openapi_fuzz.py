"""Schemathesis against the running appliance's own `/api/openapi.json`, as a signed-in operator (session cookie
and CSRF header): for every described operation a bounded number of generated requests — valid ones and, for
operations that take input, invalid ones — and not one answer may be a 5xx, carry a status the document does not
list, or have a body that does not fit the document's schema. Deterministic (derandomized Hypothesis, no example
database), bounded (`EXAMPLES` per operation and mode: about 700 requests), and `ems run` must be alive after.

The operator changes what an operator may: config sections (admin-only keys are refused with 403), the strategy,
simulator events, notifications, own API tokens. The appliance is this module's own, thrown away after.
"""
from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from appliance import create_user, demo_config, start_ems

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode, checks  # noqa: E402

log = logging.getLogger(__name__)

EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 6}
OPERATOR = ("operator1", "tidal-ferry-9-lantern")
# Left out, and why:
EXCLUDED = {
    ("GET", "/api/events"),  # a live stream that never ends: a request would wait forever (test_server.py reads it)
    ("POST", "/api/me/password"),  # would change the operator's own password and end the session the fuzz runs on
}
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.response_schema_conformance]


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: Any) -> Any:
    ems = start_ems(tmp_path_factory.mktemp("openapi-fuzz"), demo_config())
    admin = ems.login()
    create_user(admin, OPERATOR[0], OPERATOR[1], "operator")
    operator = ems.login(*OPERATOR)
    yield ems, operator
    ems.stop()


class Run:
    """The requests of one fuzz run: how many, their statuses, the first failure of each operation and mode."""

    def __init__(self, base_url: str, headers: dict[str, str]):
        self.base_url = base_url
        self.headers = headers
        self.sent = 0
        self.statuses: dict[int, int] = {}
        self.failures: dict[str, str] = {}

    def fuzz(self, operation: Any, mode: GenerationMode, examples: int) -> None:
        label = f"{operation.method.upper()} {operation.path} ({mode.value})"

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def one(case: Any) -> None:
            self.sent += 1
            try:
                response = case.call_and_validate(base_url=self.base_url, headers=self.headers, checks=CHECKS,
                                                  timeout=20)
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis's FailureGroup: kept, not shrunk
                self.failures.setdefault(label, f"{label}: {type(exc).__name__}: {str(exc)[:1500]}")
                return
            self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1

        try:
            one()
        except Unsatisfiable:  # nothing of this operation's input can be made invalid (a free-form path segment)
            assert mode is GenerationMode.NEGATIVE, label
            log.info("no invalid input for %s", label)


def test_generated_requests_as_an_operator_get_no_5xx_and_answers_that_fit_the_document(appliance: Any) -> None:
    ems, operator = appliance
    headers = {"Cookie": operator.cookie, "X-CSRF-Token": operator.csrf}
    schema = schemathesis.openapi.from_url(ems.base_url + "/api/openapi.json", headers=headers, timeout=10)
    schema.validate()
    # The operator's session is the credential: no generated cookie, CSRF token or bearer token beside it.
    schema.config.generation.update(with_security_parameters=False)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    run = Run(ems.base_url, headers)
    for operation in operations:
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue
        for mode, examples in EXAMPLES.items():
            definition = operation.definition.raw
            if mode is GenerationMode.POSITIVE or definition.get("parameters") or definition.get("requestBody"):
                run.fuzz(operation, mode, examples)
    log.info("openapi fuzz: %d requests over %d operations, statuses %s", run.sent, len(operations),
             dict(sorted(run.statuses.items())))
    assert not run.failures, "\n\n".join(run.failures.values())
    assert run.sent >= len(operations)
    assert run.statuses.get(200, 0) > 100  # signed in: most reads answered, not refused
    assert ems.proc.poll() is None, "ems run died"

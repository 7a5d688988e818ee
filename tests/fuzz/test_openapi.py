"""Every operation of the OpenAPI document, fuzzed by Schemathesis as the owner of a tenant.

Each operation gets a fresh tenant with a conversation, a run, a subscription, an
invitation, a second member and a deletion record; a generated id is, about half of the
time, one of these, so operations on a resource are reached with resources that exist and
not only with 404s.
"""

from __future__ import annotations

import os

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from api.main import create_app
from switchboard.settings import load_settings
from tests.fuzz.tenant import FuzzTenant

# Examples per operation in the fuzzing phase: small for CI, raised for a local run.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
# A fixed seed fuzzes the same inputs on every run; FUZZ_SEED explores others.
SEED = int(os.environ.get("FUZZ_SEED", "20261127"))

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
        # A stream that neither ends nor sends an event within this is cut; what it sent is
        # kept and checked. A plain response that takes this long is a failure.
        "request-timeout": 5,
        "max-stream-events": 50,
        # The test draws its own inputs (@schema.given), which Schemathesis cannot combine with
        # the document's examples (those /docs shows); tests/api/test_docs.py sends each example.
        "phases": {"examples": {"enabled": False}},
    }
)

# A 5xx, a body that its documented schema refuses, a status that the operation does not
# document: each is a failure.
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]

# The document as the application serves it (its routes, not a copy of them).
schema = schemathesis.openapi.from_dict(create_app(load_settings()).openapi(), config=CONFIG)


def use_real_values(case: Case, tenant: FuzzTenant, data: st.DataObject) -> None:
    """Replaces generated path, query and body values by real ones, each with even odds."""
    for container in (case.path_parameters, case.query, case.body):
        if not isinstance(container, dict):
            continue
        for name in list(container):
            real = tenant.values.get(name)
            if real and data.draw(st.booleans(), label=f"real {name}"):
                container[name] = data.draw(st.sampled_from(real), label=name)


@schema.given(data=st.data())
@schema.parametrize()
# The tenant is made once per operation on purpose: its examples share it, and its state.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_operation(
    case: Case, data: st.DataObject, fuzz_app: FastAPI, fuzz_tenant: FuzzTenant
) -> None:
    use_real_values(case, fuzz_tenant, data)
    case.call_and_validate(
        app=fuzz_app,
        headers=fuzz_tenant.headers,
        checks=CHECKS,
    )

"""Schemathesis against the gateway's own schema, with every check, for every role.

Each role's key calls every operation with generated valid and invalid input
(a bounded number of examples per operation, so the tier takes minutes on two
cores). Any 5xx, any answer the schema does not describe (status, media type,
body), any schema-violating request accepted, any undocumented method not
answered 405 with ``Allow`` fails the test. The per-role counts of requests the
gateway answered are written to the terminal summary.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks

from fuzz_stack import IDENTITIES, SUMMARY, fuzz_stack, gateway_schema

EXAMPLES = int(os.environ.get("CORRIDOR_FUZZ_EXAMPLES", "30"))

#: Operations whose valid input can still be refused with 400 by a constraint between
#: values that a JSON schema cannot state; the other checks still run on them.
CROSS_FIELD = {
    "GET /audit/proof/inclusion": "index < tree_size <= the log's size",
    "GET /audit/proof/consistency": "first <= second <= the log's size",
    "GET /audit/export": "tree_size <= the log's size",
    "POST /admin/crisis": "tenants and models must be the bundle's (the schema is public: not listed)",
    "POST /admin/keys": "tenant and scope must be the bundle's tenants (not listed), expires_at in "
                        "the future, and an operator names the tenant of app and admin keys",
}


#: Operations whose request body or repeated query parameters the schema does not describe yet:
#: the two data checks are left out for them until it does; server errors and every other check
#: still run. None now.
UNDESCRIBED: dict[str, str] = {}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with fuzz_stack(tmp_path_factory.mktemp("fuzz-home")) as stack:
        yield stack


@pytest.fixture(scope="module")
def tally(stack, request):
    yield stack.tally
    line = ", ".join(f"{role} {stack.tally.requests[role]}" for role in (*IDENTITIES, "none"))
    request.config.stash[SUMMARY] = (f"requests answered per role ({EXAMPLES} examples per "
                                     f"operation and phase): {line}; server errors: "
                                     f"{sum(stack.tally.server_errors.values())}")


schema = schemathesis.openapi.from_dict(gateway_schema())


def _checks():
    load_all_checks()
    return CHECKS.get_all()


FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def answers_as_documented(case, role: str, stack) -> None:
    """Send ``case`` with ``role``'s key; every check on the answer, and never a 5xx."""
    headers = {"Authorization": f"Bearer {stack.keys[role]}"}
    response = case.call(base_url=stack.url, headers=headers)
    checks = _checks()
    label = f"{case.method.upper()} {case.operation.path}"
    excluded = [c for c in checks if label in CROSS_FIELD and c.__name__ == "positive_data_acceptance"]
    excluded += [c for c in checks if label in UNDESCRIBED
                 and c.__name__ in ("positive_data_acceptance", "negative_data_rejection")]
    case.validate_response(response, checks=checks, excluded_checks=excluded, headers=headers)
    assert response.status_code < 500, (label, response.status_code, response.text[:300])


@schema.parametrize()
@FUZZ
def test_with_an_app_key_every_operation_answers_as_documented(case, stack, tally):
    answers_as_documented(case, "app", stack)


@schema.parametrize()
@FUZZ
def test_with_an_admin_key_every_operation_answers_as_documented(case, stack, tally):
    answers_as_documented(case, "admin", stack)


@schema.parametrize()
@FUZZ
def test_with_an_auditor_key_every_operation_answers_as_documented(case, stack, tally):
    answers_as_documented(case, "auditor", stack)


@schema.parametrize()
@FUZZ
def test_with_an_operator_key_every_operation_answers_as_documented(case, stack, tally):
    answers_as_documented(case, "operator", stack)


def test_no_generated_request_got_a_server_error(stack, tally):
    """Runs last: every role sent requests, and the gateway answered none with a 5xx."""
    assert stack.app.openapi() == schema.raw_schema, "the fuzzed schema is the served one"
    assert all(tally.requests[role] > 0 for role in IDENTITIES), dict(tally.requests)
    assert sum(tally.server_errors.values()) == 0, tally.failures[:20]

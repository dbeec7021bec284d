"""The operator API for crisis declarations, and crossing at the gateway only inside scope and window.

The French DR capacity is "lost": the only live replica of ``corridor-tiny``
is a stub in ``de-frankfurt``. Without an active declaration a DR request of
``fr-interior`` is answered 503 (allowed at home, nothing live there) and
never crosses; with one it is served in Frankfurt, naming the declaration in
the ``X-Corridor-Declaration`` header and in its routing ledger entry.
"""

from __future__ import annotations

import time

import pytest

from gateway_stack import endpoint
from defence_stack import defence_stack
from stub_upstream import ServerThread, make_stub

SCOPE = {"tenants": ["fr-interior"], "markings": ["DR"], "models": ["corridor-tiny"],
         "directions": ["FR->DE"]}


def declare(stack, who="FR/operator", hours=12.0, **scope):
    body = {"scope": {**SCOPE, **scope}, "reason": "fr-paris lost to a cyber attack",
            "valid_for_hours": hours}
    return stack.call("POST", "/admin/crisis", who, json=body)


def routing_entry(stack, decision_id):
    items = stack.ledger.entries(kind="routing", limit=1000)["data"]
    return next(i["entry"] for i in items if i["entry"]["decision_id"] == decision_id)


def crisis_steps(stack, declaration_id):
    return [i["entry"]["detail"]["step"] for i in stack.ledger.entries(kind="crisis", limit=1000)["data"]
            if i["entry"]["declaration"] == declaration_id]


@pytest.fixture
def stack(tmp_path):
    with defence_stack(tmp_path) as stack:
        yield stack


class TestOperatorApi:
    def test_declare_self_approve_one_side_then_both_sides(self, stack):
        created = declare(stack)
        assert created.status_code == 200
        body = created.json()
        assert body["id"].startswith("crisis_") and body["status"] == "pending"
        assert body["declared_by"]["jurisdiction"] == "FR" and body["awaiting"] == ["DE"]
        path = f"/admin/crisis/{body['id']}"

        own = stack.call("POST", path + "/approve", "FR/operator")
        assert own.status_code == 403
        error = own.json()["error"]
        assert (error["code"], error["type"]) == ("self_approval", "permission_error")
        assert "two-person rule" in error["message"]

        same_side = stack.call("POST", path + "/approve", "FR/operator-2").json()
        assert same_side["status"] == "pending" and same_side["backed_by"] == ["FR"]

        both = stack.call("POST", path + "/approve", "DE/operator").json()
        assert both["status"] == "active" and both["backed_by"] == ["FR", "DE"] and both["awaiting"] == []
        assert crisis_steps(stack, body["id"]) == ["declared", "approved", "approved", "activated"]

        listed = stack.call("GET", "/admin/crisis", "DE/operator").json()
        assert listed["object"] == "list" and [d["id"] for d in listed["data"]] == [body["id"]]
        assert stack.call("GET", path, "DE/operator").json()["status"] == "active"

    def test_only_operators_may_call_it(self, stack):
        assert declare(stack, who="fr-interior/admin").status_code == 403
        assert stack.call("GET", "/admin/crisis", "*/auditor").json()["error"]["code"] == "wrong_role"

    @pytest.mark.parametrize(("body", "param"), [
        ({"scope": SCOPE, "reason": "r", "valid_for_hours": 73}, "valid_for_hours"),
        ({"scope": {**SCOPE, "tenants": ["nobody"]}, "reason": "r", "valid_for_hours": 1}, "scope.tenants[0]"),
        ({"scope": {**SCOPE, "markings": ["GEHEIM"]}, "reason": "r", "valid_for_hours": 1}, "scope.markings[0]"),
        ({"scope": SCOPE, "reason": "r", "valid_for_hours": "12"}, "valid_for_hours"),
        ({"scope": SCOPE, "reason": "r", "valid_for_hours": 1, "approved": True}, "approved"),
        ({"scope": SCOPE, "valid_for_hours": 1}, "reason"),
    ], ids=["a window over the bundle's maximum", "an unknown tenant", "a classified marking",
            "a window given as a string", "an unknown field", "no reason"])
    def test_a_bad_declaration_is_a_400_naming_the_parameter(self, stack, body, param):
        response = stack.call("POST", "/admin/crisis", "FR/operator", json=body)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["param"] == param and error["type"] == "invalid_request_error"

    def test_unknown_ids_are_404_and_steps_the_status_no_longer_allows_are_409(self, stack):
        assert stack.call("POST", "/admin/crisis/crisis_nope/approve", "DE/operator").status_code == 404
        declaration = declare(stack).json()["id"]
        assert stack.call("POST", f"/admin/crisis/{declaration}/revoke", "DE/operator").status_code == 200
        again = stack.call("POST", f"/admin/crisis/{declaration}/revoke", "FR/operator")
        assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_state"
        late = stack.call("POST", f"/admin/crisis/{declaration}/approve", "DE/operator-2")
        assert late.status_code == 409


class TestCrossingAtTheGateway:
    def test_without_an_active_declaration_dr_never_crosses(self, stack):
        refused = stack.chat("fr-interior/app", "DR")
        assert refused.status_code == 503 and "x-corridor-declaration" not in refused.headers
        declare(stack)
        assert stack.chat("fr-interior/app", "DR").status_code == 503, "pending is not active"

    def test_an_active_declaration_crosses_naming_itself_in_headers_and_ledger(self, stack):
        declaration = declare(stack).json()["id"]
        stack.call("POST", f"/admin/crisis/{declaration}/approve", "DE/operator")
        response = stack.chat("fr-interior/app", "DR")
        assert response.status_code == 200
        assert response.json()["system_fingerprint"] == "de-frankfurt"
        assert response.headers["x-corridor-declaration"] == declaration
        assert (response.headers["x-corridor-pool"], response.headers["x-corridor-jurisdiction"]) == (
            "de-frankfurt", "DE")
        entry = routing_entry(stack, response.headers["x-corridor-decision"])
        assert (entry["declaration"], entry["jurisdiction"], entry["allowed"]) == (declaration, "DE", True)

    @pytest.mark.parametrize(("who", "marking", "scope"), [
        ("fr-health/app", "PUBLIC", {}),
        ("fr-interior/app", "PUBLIC", {}),
        ("fr-interior/app", "DR", {"models": ["minilm"]}),
        ("fr-interior/app", "DR", {"directions": ["DE->FR"]}),
    ], ids=["another tenant", "another marking", "a declaration for another model",
            "a declaration for the other direction"])
    def test_outside_the_scope_nothing_crosses(self, stack, who, marking, scope):
        declaration = declare(stack, **scope).json()["id"]
        assert stack.call("POST", f"/admin/crisis/{declaration}/approve", "DE/operator").json()["status"] == "active"
        response = stack.chat(who, marking)
        assert response.status_code == 503 and "x-corridor-declaration" not in response.headers

    def test_with_a_live_home_replica_the_request_stays_home(self, stack):
        with ServerThread(make_stub("fr-paris")) as paris:
            stack.endpoints.items.append(endpoint("fr-paris", paris.url))
            declaration = declare(stack).json()["id"]
            stack.call("POST", f"/admin/crisis/{declaration}/approve", "DE/operator")
            for _ in range(3):
                response = stack.chat("fr-interior/app", "DR")
                assert response.headers["x-corridor-pool"] == "fr-paris"
                assert "x-corridor-declaration" not in response.headers
            stack.endpoints.items.pop()

    def test_revocation_stops_crossing_at_once(self, stack):
        declaration = declare(stack).json()["id"]
        stack.call("POST", f"/admin/crisis/{declaration}/approve", "DE/operator")
        assert stack.chat("fr-interior/app", "DR").status_code == 200
        revoked = stack.call("POST", f"/admin/crisis/{declaration}/revoke", "DE/operator")
        assert revoked.json()["status"] == "revoked"
        assert stack.chat("fr-interior/app", "DR").status_code == 503
        assert crisis_steps(stack, declaration) == ["declared", "approved", "activated", "revoked"]

    def test_expiry_stops_crossing_within_seconds_and_is_logged(self, stack):
        created = declare(stack, hours=2.0 / 3600).json()
        stack.call("POST", f"/admin/crisis/{created['id']}/approve", "DE/operator")
        assert stack.chat("fr-interior/app", "DR").status_code == 200
        until = time.time() + 2.0 - (time.time() - _epoch(created["valid_from"]))
        while time.time() < until:
            time.sleep(0.05)
        stopped_after = None
        while stopped_after is None and time.time() < until + 5:
            if stack.chat("fr-interior/app", "DR").status_code == 503:
                stopped_after = time.time() - until
            time.sleep(0.05)
        assert stopped_after is not None and stopped_after < 1.5, stopped_after
        deadline = time.time() + 3
        while "expired" not in crisis_steps(stack, created["id"]) and time.time() < deadline:
            time.sleep(0.05)
        assert crisis_steps(stack, created["id"])[-1] == "expired"


def _epoch(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()

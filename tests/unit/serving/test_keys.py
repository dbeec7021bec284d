"""Managed API keys: issue, list, revoke, expiry, the role rules around them, revocation seen at
once by every worker, ledger entries without the secret, a minimum marking per key."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from serving.gateway.auth import KeyStore
from serving.gateway.keys import parse_expiry
from serving.gateway.keys_api import KeyBody

from frontdoor_stack import frontdoor_stack
from gateway_stack import gateway_stack

T0 = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


class TestKeyStore:
    def test_a_key_works_until_it_expires_then_stops(self):
        clock = Clock()
        store = KeyStore(clock=clock)
        record, key = store.create("app", tenant="fr-interior", name="triage",
                                   expires_at=T0 + dt.timedelta(hours=1))
        assert store.authenticate(key).tenant == "fr-interior"
        clock.now = T0 + dt.timedelta(minutes=59, seconds=59)
        assert store.authenticate(key) is not None
        clock.now = T0 + dt.timedelta(hours=1)
        assert store.authenticate(key) is None
        assert store.list()[0].status(clock.now) == "expired"

    def test_revocation_stops_the_key_at_once_in_another_worker_sharing_the_file(self, tmp_path):
        worker_a, worker_b = KeyStore(tmp_path / "keys.json"), KeyStore(tmp_path / "keys.json")
        record, key = worker_a.create("app", tenant="fr-interior")
        assert worker_b.authenticate(key) is not None, "a key issued by one worker works on another"
        worker_a.revoke(record.id, by="key:op")
        assert worker_b.authenticate(key) is None
        assert worker_b.get(record.id).revoked_by == "key:op"

    def test_the_file_holds_no_secret_and_lists_last_use(self, tmp_path):
        clock = Clock()
        store = KeyStore(tmp_path / "keys.json", clock=clock)
        record, key = store.create("admin", tenant="de-health")
        assert store.list()[0].last_used_at is None
        clock.now = T0 + dt.timedelta(minutes=5)
        store.authenticate(key)
        assert KeyStore(tmp_path / "keys.json").list()[0].last_used_at == clock.now.isoformat()
        assert key.split("_", 2)[2] not in (tmp_path / "keys.json").read_text()
        assert "sha256" not in json.dumps(record.to_json())

    @pytest.mark.parametrize(("kwargs", "problem"), [
        ({"role": "root"}, "role: unknown role"),
        ({"role": "app"}, "tenant: role 'app' needs a tenant"),
        ({"role": "operator", "jurisdiction": "US"}, "jurisdiction: role 'operator' needs"),
        ({"role": "app", "tenant": "t", "expires_at": T0 - dt.timedelta(seconds=1)}, "expires_at:"),
        ({"role": "app", "tenant": "t", "minimum_marking": "SECRET"}, "minimum_marking: SECRET is above"),
        ({"role": "app", "tenant": "t", "minimum_marking": "XX"}, "unknown marking 'XX'"),
    ], ids=["an unknown role", "an app key without tenant", "an operator without jurisdiction",
            "an expiry in the past", "a minimum above restricted", "an unknown minimum marking"])
    def test_a_bad_key_request_is_refused_naming_the_field(self, kwargs, problem):
        with pytest.raises(ValueError, match=problem):
            KeyStore(clock=Clock()).create(**kwargs)

    def test_expiry_reads_durations_dates_and_times(self):
        assert parse_expiry("12h", now=T0) == T0 + dt.timedelta(hours=12)
        assert parse_expiry("2026-12-31") == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
        assert parse_expiry("2026-12-31T18:00:00Z") == dt.datetime(2026, 12, 31, 18, tzinfo=dt.UTC)
        with pytest.raises(ValueError, match="want 30d"):
            parse_expiry("soon")


@pytest.fixture
def stack(tmp_path):
    with frontdoor_stack(tmp_path / "home") as stack:
        yield stack


def security(stack, event):
    return [e for e in stack.entries("security") if e["detail"].get("event") == event]


class TestKeyApi:
    def test_an_operator_issues_lists_and_revokes_and_the_key_stops_at_once(self, stack):
        issued = stack.call("POST", "/admin/keys", "FR/operator",
                            json={"role": "app", "tenant": "fr-interior", "name": "case-triage",
                                  "expires_at": "30d"})
        assert issued.status_code == 200, issued.text
        body = issued.json()
        key = body["key"]
        assert body["status"] == "active" and body["name"] == "case-triage" and body["expires_at"]
        stack.keys["new"] = key
        assert stack.call("GET", "/admin/pools", "new").json()["error"]["code"] == "wrong_role", \
            "the new key authenticates (as an app)"
        listed = stack.call("GET", "/admin/keys", "FR/operator").json()["data"]
        assert body["id"] in [k["id"] for k in listed] and all("key" not in k for k in listed)
        revoked = stack.call("DELETE", f"/admin/keys/{body['id']}", "FR/operator").json()
        assert revoked["status"] == "revoked"
        refused = stack.call("GET", "/admin/pools", "new")
        assert refused.status_code == 401
        (issue,), (revoke,) = security(stack, "api_key_issued")[-1:], security(stack, "api_key_revoked")
        assert issue["detail"]["key_id"] == body["id"] and revoke["detail"]["key_id"] == body["id"]
        assert issue["tenant"] == "fr-interior" and issue["jurisdiction"] == "FR"
        assert key.split("_", 2)[2] not in json.dumps(stack.entries())

    def test_a_tenant_admin_manages_only_its_own_tenants_app_keys(self, stack):
        own = stack.call("POST", "/admin/keys", "fr-interior/admin", json={"role": "app"})
        assert own.status_code == 200 and own.json()["tenant"] == "fr-interior"
        for body in ({"role": "admin"}, {"role": "app", "tenant": "fr-health"}):
            refused = stack.call("POST", "/admin/keys", "fr-interior/admin", json=body)
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_your_tenant"
        listed = stack.call("GET", "/admin/keys", "fr-interior/admin").json()["data"]
        assert {(k["role"], k["tenant"]) for k in listed} == {("app", "fr-interior")}
        other = stack.keystore.create("app", tenant="fr-health")[0]
        assert stack.call("DELETE", f"/admin/keys/{other.id}", "fr-interior/admin").status_code == 404
        assert stack.keystore.get(other.id).revoked_at is None

    def test_an_operator_issues_keys_of_its_own_jurisdiction_only(self, stack):
        refused = stack.call("POST", "/admin/keys", "FR/operator", json={"role": "app", "tenant": "de-health"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "other_jurisdiction"
        assert "DE" in refused.json()["error"]["message"]
        refused = stack.call("POST", "/admin/keys", "FR/operator", json={"role": "operator", "jurisdiction": "DE"})
        assert refused.status_code == 403
        assert stack.call("POST", "/admin/keys", "DE/operator",
                          json={"role": "app", "tenant": "de-health"}).status_code == 200

    @pytest.mark.parametrize(("body", "param"), [
        ({"role": "app", "tenant": "fr-interior", "expires_at": "tomorrow"}, "expires_at"),
        ({"role": "app", "tenant": "fr-interior", "secret": "x"}, "secret"),
        ({"role": "auditor", "scope": ["nobody"]}, "scope"),
        ({"role": "app", "tenant": "nobody"}, "tenant"),
        ({"role": "root"}, "role"),
    ], ids=["an expiry it cannot read", "an unknown field", "an auditor scope of unknown tenants",
            "an unknown tenant", "an unknown role"])
    def test_a_bad_request_is_a_400_naming_the_parameter(self, stack, body, param):
        refused = stack.call("POST", "/admin/keys", "FR/operator", json=body)
        assert refused.status_code == 400 and refused.json()["error"]["param"] == param

    def test_an_unknown_field_is_a_400_naming_it_and_what_a_key_request_takes(self, stack):
        before = len(stack.keystore.list())
        refused = stack.call("POST", "/admin/keys", "FR/operator",
                             json={"role": "app", "tenant": "fr-interior", "residency": "FR"})
        error = refused.json()["error"]
        assert refused.status_code == 400 and (error["code"], error["param"]) == ("unknown_parameter",
                                                                                  "residency")
        assert "'residency'" in error["message"] and "expires_at" in error["message"]
        assert len(stack.keystore.list()) == before, "nothing issued"

    def test_a_query_parameter_sent_twice_is_a_400_naming_it(self, stack):
        refused = stack.call("GET", "/admin/keys?tenant=fr-interior&tenant=fr-health", "FR/operator")
        error = refused.json()["error"]
        assert refused.status_code == 400 and (error["code"], error["param"]) == ("duplicate_parameter",
                                                                                  "tenant")
        assert "2 times" in error["message"]
        assert stack.call("GET", "/admin/keys?tenant=fr-interior", "FR/operator").status_code == 200

    def test_the_schema_describes_the_key_request_as_it_is_checked(self, stack):
        schema = stack.call("GET", "/openapi.json", "FR/operator").json()
        body = schema["paths"]["/admin/keys"]["post"]["requestBody"]
        assert body["required"] is True
        ref = body["content"]["application/json"]["schema"]["$ref"]
        described = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
        assert described["additionalProperties"] is False and described["required"] == ["role"]
        assert set(described["properties"]) == set(KeyBody.model_fields)
        assert described["properties"]["role"]["enum"] == ["app", "admin", "operator", "auditor"]

    def test_apps_may_not_manage_keys(self, stack):
        assert stack.call("GET", "/admin/keys", "fr-interior/app").json()["error"]["code"] == "wrong_role"


def test_a_key_with_a_minimum_marking_has_its_requests_treated_at_that_marking(tmp_path):
    with gateway_stack(tmp_path) as stack:
        guarded = stack.gateway.auth.keys.issue("app", tenant="fr-interior", minimum_marking="DR")
        import httpx

        response = httpx.post(stack.url + "/v1/chat/completions", timeout=10, json={
            "model": "corridor-tiny", "messages": [{"role": "user", "content": "x"}]},
            headers={"authorization": f"Bearer {guarded}", "X-Corridor-Marking": "PUBLIC"})
        assert response.status_code == 200 and response.headers["x-corridor-pool"] == "fr-paris"
        entry = next(i["entry"] for i in stack.ledger.entries(kind="routing", limit=100)["data"]
                     if i["entry"]["decision_id"] == response.headers["x-corridor-decision"])
        assert entry["workload"]["marking"] == "DR"
        plain = httpx.post(stack.url + "/v1/chat/completions", timeout=10, json={
            "model": "corridor-tiny", "messages": [{"role": "user", "content": "x"}]},
            headers={"authorization": f"Bearer {stack.keys['fr-interior/app']}", "X-Corridor-Marking": "PUBLIC"})
        entry = next(i["entry"] for i in stack.ledger.entries(kind="routing", limit=100)["data"]
                     if i["entry"]["decision_id"] == plain.headers["x-corridor-decision"])
        assert entry["workload"]["marking"] == "PUBLIC"

"""Who may call what: every route of the app × every role × two tenants, generated from the app's
own routes, so a route added without an access rule here fails the first test.

A role the rule does not name gets 403 (a valid key) or 401 (no key, a bad key);
a role it names is let through (never 401/403, never a 5xx). A tenant's admin
asking for another tenant's file or batch gets 404, as if it did not exist, and
sees none of it in lists; an auditor scoped to one tenant sees only its entries.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from policies import Policy
from scheduler.crisis import STORE_FILENAME, CrisisRegistry
from scheduler.ledger import Ledger
from serving.batch import BatchService
from serving.gateway import Authenticator, Gateway, KeyStore, create_app
from serving.routing import Router, StaticEndpoints
from stub_upstream import ServerThread, make_stub

from gateway_stack import endpoint

OWNER, OTHER = "fr-interior", "de-federal-it"
EVERYONE = None  # no credentials needed

#: The access rule of every route: the roles that may call it.
ACCESS: dict[tuple[str, str], tuple[str, ...] | None] = {
    ("GET", "/healthz"): EVERYONE,
    ("GET", "/readyz"): EVERYONE,
    ("GET", "/metrics"): ("operator", "auditor"),
    ("GET", "/v1/models"): ("app", "admin"),
    ("POST", "/v1/chat/completions"): ("app", "admin"),
    ("POST", "/v1/completions"): ("app", "admin"),
    ("POST", "/v1/embeddings"): ("app", "admin"),
    ("POST", "/v1/files"): ("admin",),
    ("GET", "/v1/files"): ("admin",),
    ("GET", "/v1/files/{file_id}"): ("admin",),
    ("DELETE", "/v1/files/{file_id}"): ("admin",),
    ("GET", "/v1/files/{file_id}/content"): ("admin",),
    ("POST", "/v1/batches"): ("admin",),
    ("GET", "/v1/batches"): ("admin",),
    ("GET", "/v1/batches/{batch_id}"): ("admin",),
    ("POST", "/v1/batches/{batch_id}/cancel"): ("admin",),
    ("GET", "/audit/entries"): ("auditor",),
    ("GET", "/audit/tree-head"): ("auditor",),
    ("GET", "/audit/public-key"): ("auditor",),
    ("GET", "/audit/proof/inclusion"): ("auditor",),
    ("GET", "/audit/proof/consistency"): ("auditor",),
    ("GET", "/audit/export"): ("auditor",),
    ("GET", "/admin/pools"): ("operator",),
    ("GET", "/admin/deployments"): ("operator", "admin"),
    ("POST", "/admin/deployments"): ("operator", "admin"),
    ("POST", "/admin/deployments/apply"): ("operator", "admin"),
    ("GET", "/admin/deployments/{name}"): ("operator", "admin"),
    ("PATCH", "/admin/deployments/{name}"): ("operator", "admin"),
    ("DELETE", "/admin/deployments/{name}"): ("operator", "admin"),
    ("GET", "/admin/keys"): ("operator", "admin"),
    ("POST", "/admin/keys"): ("operator", "admin"),
    ("DELETE", "/admin/keys/{key_id}"): ("operator", "admin"),
    ("GET", "/admin/policy"): ("operator", "auditor"),
    ("POST", "/admin/policy"): ("operator",),
    ("GET", "/admin/crisis"): ("operator",),
    ("POST", "/admin/crisis"): ("operator",),
    ("GET", "/admin/crisis/{declaration_id}"): ("operator",),
    ("POST", "/admin/crisis/{declaration_id}/approve"): ("operator",),
    ("POST", "/admin/crisis/{declaration_id}/revoke"): ("operator",),
    ("GET", "/audit/witness"): ("auditor",),
    ("GET", "/audit/checkpoint"): ("auditor",),
    ("GET", "/admin/peer"): ("operator",),
    ("POST", "/admin/peer/clear"): ("operator",),
    ("GET", "/console"): EVERYONE,  # the page and its assets; every call it makes is checked
    ("GET", "/console/"): EVERYONE,
    ("GET", "/console/static/{name}"): EVERYONE,
    ("GET", "/console/api/whoami"): ("app", "admin", "operator", "auditor"),
    ("GET", "/console/api/corridor"): ("operator", "auditor"),
    ("GET", "/console/api/security-events"): ("operator",),
}

#: Who calls: (role, tenant) by name; "none" sends no credentials, "bad" an unknown key.
CALLERS = {"owner/app": ("app", OWNER), "owner/admin": ("admin", OWNER),
           "other/app": ("app", OTHER), "other/admin": ("admin", OTHER),
           "auditor": ("auditor", None), "scoped-auditor": ("auditor", OTHER),
           "operator": ("operator", None), "none": (None, None), "bad": (None, None)}

#: Routes on one tenant's resource: another tenant's admin must not learn it exists.
TENANT_RESOURCES = {key for key in ACCESS if "{file_id}" in key[1] or "{batch_id}" in key[1]}

CHAT = {"model": "corridor-tiny", "messages": [{"role": "user", "content": "x"}]}
LINE = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": CHAT})
DECLARATION = {"scope": {"tenants": [OWNER], "markings": ["DR"], "models": ["corridor-tiny"],
                         "directions": ["FR->DE"]}, "reason": "drill", "valid_for_hours": 1}


@dataclass
class Matrix:
    url: str
    app: Any
    keys: dict[str, str]

    def call(self, method: str, path: str, caller: str, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if caller == "bad":
            headers["authorization"] = "Bearer cor_000000000000_nobody"
        elif caller != "none":
            headers["authorization"] = f"Bearer {self.keys[caller]}"
        return httpx.request(method, self.url + path, headers=headers, timeout=20, **kwargs)

    def upload(self, caller: str = "owner/admin") -> str:
        response = self.call("POST", "/v1/files", caller, data={"purpose": "batch"},
                             files={"file": ("in.jsonl", io.BytesIO(LINE.encode()))})
        assert response.status_code == 200, response.text
        return response.json()["id"]

    def batch(self) -> str:
        response = self.call("POST", "/v1/batches", "owner/admin",
                             json={"input_file_id": self.upload(), "endpoint": "/v1/chat/completions",
                                   "completion_window": "24h"})
        assert response.status_code == 200, response.text
        return response.json()["id"]

    def declaration(self) -> str:
        """A declaration made by the DE side, so the FR operator key may approve it."""
        response = self.call("POST", "/admin/crisis", "de-operator", json=DECLARATION)
        assert response.status_code == 200, response.text
        return response.json()["id"]


@contextlib.contextmanager
def matrix_stack(home) -> Iterator[Matrix]:
    policy = Policy.load()
    store = KeyStore()
    keys = {name: store.issue(role, tenant=tenant if role in ("app", "admin") else None,
                              jurisdiction="FR" if role == "operator" else None,
                              scope=((tenant or "*"),) if role == "auditor" else ())
            for name, (role, tenant) in CALLERS.items() if role is not None}
    keys["de-operator"] = store.issue("operator", jurisdiction="DE")
    with contextlib.ExitStack() as stack:
        ledger = stack.enter_context(Ledger.open(home / "ledger"))
        crisis = CrisisRegistry(policy, ledger, home / STORE_FILENAME).start()
        stack.callback(crisis.stop)
        upstreams = {pool: stack.enter_context(ServerThread(make_stub(pool))).url
                     for pool in ("fr-paris", "de-frankfurt")}
        endpoints = StaticEndpoints([endpoint(pool, url, model)
                                     for pool, url in upstreams.items()
                                     for model in ("corridor-tiny", "minilm")])
        gateway = Gateway(policy=policy, ledger=ledger, auth=Authenticator(store),
                          router=Router(policy, endpoints, declarations=crisis.declarations),
                          crisis=crisis, batches=BatchService.open(home / "batches"))
        app = create_app(gateway)
        server = stack.enter_context(ServerThread(app))
        yield Matrix(server.url, app, keys)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Iterator[Matrix]:
    with matrix_stack(tmp_path_factory.mktemp("home")) as built:
        yield built


@pytest.fixture(scope="module")
def owned(matrix) -> dict[str, str]:
    """A file and a batch of the owner tenant, and a chat that put an entry in the ledger."""
    assert matrix.call("POST", "/v1/chat/completions", "owner/app", json=CHAT).status_code == 200
    return {"file_id": matrix.upload(), "batch_id": matrix.batch()}


def app_routes(app) -> set[tuple[str, str]]:
    return {(method, route.path) for route in app.routes if isinstance(route, Route)
            for method in (route.methods or ()) if method != "HEAD"}


def test_every_route_has_an_access_rule(matrix):
    routes = app_routes(matrix.app) - {("GET", "/openapi.json")}
    assert routes - set(ACCESS) == set(), "add an access rule (and a request) for each new route"
    assert set(ACCESS) - routes == set(), "these rules name routes the app no longer has"


def _request(matrix: Matrix, owned: dict[str, str], method: str, path: str) -> tuple[str, dict]:
    """A concrete, well-formed request for a route (fresh resources for destructive ones)."""
    ids = dict(owned)
    if (method, path) == ("DELETE", "/v1/files/{file_id}"):
        ids["file_id"] = matrix.upload()
    if path.endswith("/cancel"):
        ids["batch_id"] = matrix.batch()
    if "{declaration_id}" in path:
        ids["declaration_id"] = matrix.declaration()
    ids["name"] = "app.js" if path.startswith("/console") else "no-such-deployment"
    ids["key_id"] = "000000000000"
    kwargs: dict[str, Any] = {
        "/v1/chat/completions": {"json": CHAT},
        "/v1/completions": {"json": {"model": "corridor-tiny", "prompt": "x"}},
        "/v1/embeddings": {"json": {"model": "minilm", "input": "x"}},
        "/audit/proof/inclusion": {"params": {"index": 0, "tree_size": 1}},
        "/audit/proof/consistency": {"params": {"first": 1, "second": 1}},
    }.get(path, {})
    if (method, path) == ("POST", "/v1/files"):
        kwargs = {"data": {"purpose": "batch"}, "files": {"file": ("in.jsonl", io.BytesIO(LINE.encode()))}}
    elif (method, path) == ("POST", "/v1/batches"):
        kwargs = {"json": {"input_file_id": owned["file_id"], "endpoint": "/v1/chat/completions",
                           "completion_window": "24h"}}
    elif (method, path) == ("POST", "/admin/crisis"):
        kwargs = {"json": DECLARATION}
    return path.format(**ids), kwargs


CASES = [(method, path, caller) for (method, path) in ACCESS for caller in CALLERS]


@pytest.mark.parametrize(("method", "path", "caller"), CASES,
                         ids=[f"{m} {p} as {c}" for m, p, c in CASES])
def test_each_role_is_let_through_exactly_where_its_rule_says(matrix, owned, method, path, caller):
    allowed = ACCESS[(method, path)]
    role, tenant = CALLERS[caller]
    concrete, kwargs = _request(matrix, owned, method, path)
    response = matrix.call(method, concrete, caller, **kwargs)
    assert response.status_code < 500, response.text
    if allowed is EVERYONE:
        assert response.status_code in (200, 503)
    elif role is None:
        assert response.status_code == 401, response.text
        assert response.json()["error"]["type"] == "authentication_error"
    elif role not in allowed:
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "wrong_role"
    elif (method, path) in TENANT_RESOURCES and tenant != OWNER:
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] in ("file_not_found", "batch_not_found")
    else:  # through; the rulebook may still refuse (403 policy_denied), the role never
        assert response.status_code != 401, response.text
        assert response.status_code != 403 or response.json()["error"]["code"] == "policy_denied"


def test_another_tenants_lists_show_nothing_of_the_owner(matrix, owned):
    for path in ("/v1/files", "/v1/batches"):
        theirs = {item["id"] for item in matrix.call("GET", path, "other/admin").json()["data"]}
        mine = {item["id"] for item in matrix.call("GET", path, "owner/admin").json()["data"]}
        assert mine & set(owned.values()), "the owner sees its own"
        assert theirs.isdisjoint(mine)


def test_a_scoped_auditor_sees_only_its_tenants_entries_through_every_filter(matrix, owned):
    everything = matrix.call("GET", "/audit/entries", "auditor", params={"limit": 1000}).json()["data"]
    assert any(item["entry"].get("tenant") == OWNER for item in everything)
    for params in ({}, {"kind": "routing"}, {"jurisdiction": "FR"}, {"since": "2000-01-01T00:00:00Z"}):
        scoped = matrix.call("GET", "/audit/entries", "scoped-auditor", params=params).json()["data"]
        assert all(item["entry"].get("tenant") == OTHER for item in scoped)
    refused = matrix.call("GET", "/audit/entries", "scoped-auditor", params={"tenant": OWNER})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "outside_audit_scope"
    export = matrix.call("GET", "/audit/export", "scoped-auditor").text
    assert OWNER not in export

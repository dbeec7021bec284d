"""The gateway with the official OpenAI SDK, in front of stub upstreams (no Ray, no vLLM)."""

import base64
import hashlib
import json

import httpx
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policies.canonical import canonical_json
from stub_upstream import ServerThread, make_stub

from gateway_stack import endpoint, gateway_stack
from rfc6962_reference import accepts_inclusion

PROMPT = "Résumez le dossier 4711 du préfet"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with gateway_stack(tmp_path_factory.mktemp("home")) as stack:
        yield stack


def client(stack, who="fr-interior/app", **headers):
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=stack.keys[who], max_retries=0,
                         default_headers=headers)


def entry_for(stack, decision_id):
    items = stack.ledger.entries(kind="routing", limit=1000)["data"]
    return next(item["entry"] for item in items if item["entry"]["decision_id"] == decision_id)


def test_dr_chat_of_a_french_ministry_is_served_in_paris_and_logged_without_the_prompt(stack):
    raw = client(stack).chat.completions.with_raw_response.create(
        model="corridor-tiny", messages=[{"role": "user", "content": PROMPT}])
    completion = raw.parse()
    assert completion.system_fingerprint == "fr-paris"
    assert raw.headers["x-corridor-pool"] == "fr-paris"
    assert raw.headers["x-corridor-jurisdiction"] == "FR"
    entry = entry_for(stack, raw.headers["x-corridor-decision"])
    assert (entry["pool"], entry["jurisdiction"], entry["allowed"]) == ("fr-paris", "FR", True)
    assert entry["node_id"] == "node-fr-paris"
    assert entry["tenant"] == "fr-interior" and entry["workload"]["marking"] == "DR"
    assert entry["policy_digest"] == stack.gateway.policy.digest
    assert PROMPT not in json.dumps(stack.ledger.entries(limit=1000), ensure_ascii=False)


def test_vs_nfd_of_the_german_federal_it_provider_is_served_in_frankfurt(stack):
    raw = client(stack, "de-federal-it/app").chat.completions.with_raw_response.create(
        model="corridor-tiny", messages=[{"role": "user", "content": "Hallo"}])
    assert raw.parse().system_fingerprint == "de-frankfurt"
    assert raw.headers["x-corridor-jurisdiction"] == "DE"


def test_streaming_chat_passes_every_chunk_through(stack):
    chunks = list(client(stack).chat.completions.create(
        model="corridor-tiny", messages=[{"role": "user", "content": "x"}], stream=True))
    assert [c.choices[0].delta.content for c in chunks] == ["tok0 ", "tok1 ", "tok2 ", "tok3 "]
    assert {c.system_fingerprint for c in chunks} == {"fr-paris"}


def test_completions_and_embeddings_are_proxied(stack):
    c = client(stack, "eu-agency/app", **{"X-Corridor-Marking": "RESTREINT UE"})
    assert c.completions.create(model="corridor-tiny", prompt="x").choices[0].text.startswith("hello from")
    assert c.embeddings.create(model="corridor-tiny", input="x").data[0].embedding == [0.25, -0.5, 0.125]


def test_secret_is_refused_with_classified_never_and_the_refusal_is_logged(stack):
    with pytest.raises(openai.PermissionDeniedError) as info:
        client(stack, **{"X-Corridor-Marking": "SECRET"}).chat.completions.create(
            model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
    error = info.value.body
    assert error["code"] == "policy_denied" and error["type"] == "permission_error"
    assert "CLASSIFIED_NEVER (classified-never)" in error["message"]
    entry = entry_for(stack, info.value.response.headers["x-corridor-decision"])
    assert entry["allowed"] is False and "CLASSIFIED_NEVER" in entry["reasons"] and entry["pool"] is None


def audit_entries(stack, **params):
    response = httpx.get(stack.url + "/audit/entries", params=params,
                         headers={"Authorization": f"Bearer {stack.keys['*/auditor']}"})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_a_refusals_decision_id_finds_its_ledger_entry_and_the_rules_that_fired(stack):
    with pytest.raises(openai.PermissionDeniedError) as info:
        client(stack, "fr-interior/app", **{"X-Corridor-Marking": "VS-NfD"}).chat.completions.create(
            model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
    decision_id = info.value.response.headers["x-corridor-decision"]
    (item,) = audit_entries(stack, decision_id=decision_id)
    entry = item["entry"]
    assert (entry["decision_id"], entry["kind"], entry["allowed"]) == (decision_id, "routing", False)
    assert entry["reasons"][0] == "MARKING_NOT_ALLOWED_FOR_TENANT"
    rules = entry["detail"]["decision"]["rules"]
    assert rules[0] == "tenant-marking"
    assert all(f"({rule})" in info.value.body["message"] for rule in rules), \
        "the error names every rule the entry names"


def test_each_request_has_its_own_decision_id_and_its_entry_names_the_summary(stack):
    ids = []
    for _ in range(2):
        raw = client(stack).chat.completions.with_raw_response.create(
            model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
        ids.append(raw.headers["x-corridor-decision"])
    assert ids[0] != ids[1], "cached verdicts must not make two requests share one decision id"
    (item,) = audit_entries(stack, decision_id=ids[1])
    assert item["entry"]["pool"] == "fr-paris"
    assert item["entry"]["detail"]["decision"]["summary"].startswith("1/4 pools")
    assert audit_entries(stack, decision_id="dec_does_not_exist") == []


def test_an_unknown_marking_is_a_400_naming_the_header(stack):
    with pytest.raises(openai.BadRequestError) as info:
        client(stack, **{"X-Corridor-Marking": "SECRETISH"}).chat.completions.create(
            model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["param"] == "X-Corridor-Marking"
    assert info.value.body["code"] == "unknown_marking"
    assert "VS-NfD" in info.value.body["message"]


def test_an_unknown_data_flag_is_a_400(stack):
    with pytest.raises(openai.BadRequestError) as info:
        client(stack, **{"X-Corridor-Data": "health,secret-sauce"}).chat.completions.create(
            model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["param"] == "X-Corridor-Data"


def test_an_unknown_model_is_a_404(stack):
    with pytest.raises(openai.NotFoundError) as info:
        client(stack).chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "model_not_found" and info.value.body["param"] == "model"


def post(stack, body, who="fr-interior/app", path="/v1/chat/completions", **headers):
    return httpx.post(stack.url + path, content=body, timeout=10,
                      headers={"authorization": f"Bearer {stack.keys[who]}", **headers})


@pytest.mark.parametrize(("body", "status", "code", "param"), [
    (b'{"model": "corridor-tiny", "messages": [', 400, "invalid_json", None),
    (b'["not", "an", "object"]', 400, "invalid_json", None),
    (b'{"messages": []}', 400, "missing_required_parameter", "model"),
    (b'{"model": "corridor-tiny"}', 400, "missing_required_parameter", "messages"),
    (b'{"model": 7, "messages": []}', 400, "invalid_type", "model"),
    (b'{"model": "corridor-tiny", "messages": "' + b"x" * 70_000 + b'"}', 413, "request_too_large", None),
], ids=["malformed JSON", "a JSON array", "no model", "no messages", "a model that is not a string",
        "a body over the limit"])
def test_bad_input_is_a_4xx_in_openai_format(stack, body, status, code, param):
    response = post(stack, body)
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param)
    assert error["type"] == "invalid_request_error" and error["message"]


def test_missing_and_invalid_credentials_are_401_and_a_wrong_role_is_403(stack):
    body = b'{"model": "corridor-tiny", "messages": []}'
    assert httpx.post(stack.url + "/v1/chat/completions", content=body).status_code == 401
    bad = httpx.post(stack.url + "/v1/chat/completions", content=body,
                     headers={"authorization": "Bearer cor_000000000000_nope"})
    assert bad.status_code == 401 and bad.json()["error"]["type"] == "authentication_error"
    assert post(stack, body, who="*/auditor").status_code == 403
    assert httpx.get(stack.url + "/admin/pools",
                     headers={"authorization": f"Bearer {stack.keys['fr-interior/admin']}"}).status_code == 403


def test_models_lists_the_models_of_the_callers_tenant(stack):
    assert sorted(m.id for m in client(stack).models.list()) == ["corridor-small", "corridor-tiny", "minilm"]


def test_an_unknown_route_is_a_404_in_openai_format(stack):
    response = httpx.get(stack.url + "/v1/nothing")
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_route"


def test_health_readiness_and_metrics(stack):
    assert httpx.get(stack.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(stack.url + "/readyz").status_code == 200
    client(stack).chat.completions.create(model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
    text = httpx.get(stack.url + "/metrics",
                     headers={"authorization": f"Bearer {stack.keys['FR/operator']}"}).text
    assert 'corridor_requests_total{jurisdiction="FR",model="corridor-tiny",status="200",tenant="fr-interior"}' in text
    assert "corridor_gateway_overhead_seconds_bucket" in text
    assert "corridor_ledger_entries" in text


class TestRouting:
    """Routing never picks a replica the policy denies, and retries once before the first byte."""

    def test_allowed_but_no_live_replica_is_a_503_and_never_the_other_jurisdiction(self, tmp_path):
        with gateway_stack(tmp_path, pools=("de-frankfurt",)) as stack:
            with pytest.raises(openai.InternalServerError) as info:
                client(stack).chat.completions.create(
                    model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
            assert info.value.status_code == 503
            assert info.value.body["code"] == "no_replica_available"
            entry = entry_for(stack, info.value.response.headers["x-corridor-decision"])
            assert entry["reasons"] == ["NO_LIVE_REPLICA"] and entry["pool"] is None

    def test_a_replica_that_refuses_connections_is_skipped_once_and_kept_out(self, tmp_path):
        with gateway_stack(tmp_path, pools=("fr-paris",)) as stack:
            dead = endpoint("fr-paris", "http://127.0.0.1:9", replica="dead")
            live = stack.endpoints.items[0]
            stack.endpoints.items.insert(0, dead)
            stack.gateway.router.acquire(live)  # the dead replica looks less loaded: tried first
            completion = client(stack).chat.completions.create(
                model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
            stack.gateway.router.release(live)
            assert completion.system_fingerprint == "fr-paris"
            route = stack.gateway.router.route(_workload("fr-interior", "DR"))
            assert [e.replica_id for e in route.candidates] == ["corridor-tiny@fr-paris"]

    def test_a_replica_answering_500_is_retried_on_another(self, tmp_path):
        with gateway_stack(tmp_path, pools=("fr-paris",)) as stack, \
                ServerThread(make_stub("broken", fail=True)) as broken:
            stack.endpoints.items.insert(0, endpoint("fr-paris", broken.url, replica="broken"))
            completion = client(stack).chat.completions.create(
                model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
            assert completion.system_fingerprint == "fr-paris"

    def test_the_least_loaded_allowed_replica_is_chosen(self, tmp_path):
        with gateway_stack(tmp_path, pools=("fr-paris",)) as stack, \
                ServerThread(make_stub("fr-paris-2")) as second:
            stack.endpoints.items.append(endpoint("fr-paris", second.url, replica="second"))
            stack.gateway.router.outstanding["corridor-tiny@fr-paris"] = 5
            completion = client(stack).chat.completions.create(
                model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
            assert completion.system_fingerprint == "fr-paris-2"


def _workload(tenant, marking):
    from policies import Workload
    return Workload.create(tenant, marking, model="corridor-tiny")


class TestAuditApi:
    def get(self, stack, path, who="*/auditor", **params):
        return httpx.get(stack.url + path, params=params,
                         headers={"authorization": f"Bearer {stack.keys[who]}"})

    def test_the_tree_head_is_signed_by_the_published_key(self, stack):
        client(stack).chat.completions.create(model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
        head = self.get(stack, "/audit/tree-head").json()
        key = self.get(stack, "/audit/public-key").json()
        raw = base64.b64decode(key["public_key"])
        assert key["key_id"] == hashlib.sha256(raw).hexdigest() == head["key_id"]
        signed = canonical_json({k: head[k] for k in ("tree_size", "root_hash", "timestamp", "key_id")})
        Ed25519PublicKey.from_public_bytes(raw).verify(base64.b64decode(head["signature"]), signed)
        assert head["tree_size"] == stack.ledger.size

    def test_entries_are_scoped_to_the_auditors_tenants(self, stack):
        client(stack, "de-federal-it/app").chat.completions.create(
            model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
        scoped = self.get(stack, "/audit/entries", who="fr-interior/auditor", limit=500).json()
        assert scoped["data"] and {i["entry"]["tenant"] for i in scoped["data"]} == {"fr-interior"}
        assert self.get(stack, "/audit/entries", who="fr-interior/auditor", tenant="de-federal-it").status_code == 403
        everyone = self.get(stack, "/audit/entries", limit=500).json()
        assert {"fr-interior", "de-federal-it"} <= {i["entry"]["tenant"] for i in everyone["data"]}

    def test_leaf_hashes_are_rfc6962_hashes_of_the_canonical_entry(self, stack):
        for item in self.get(stack, "/audit/entries", limit=50).json()["data"]:
            assert item["leaf_hash"] == hashlib.sha256(b"\x00" + canonical_json(item["entry"])).hexdigest()

    def test_proofs_and_export(self, stack):
        client(stack).chat.completions.create(model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
        size = self.get(stack, "/audit/tree-head").json()["tree_size"]
        proof = self.get(stack, "/audit/proof/inclusion", index=0, tree_size=size).json()
        assert proof["leaf_index"] == 0 and proof["tree_size"] == size and proof["inclusion_path"]
        consistency = self.get(stack, "/audit/proof/consistency", first=1, second=size).json()
        assert consistency["first"] == 1 and consistency["second"] == size
        bad = self.get(stack, "/audit/proof/inclusion", index=size + 5, tree_size=size)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_proof_request"
        lines = self.get(stack, "/audit/export", tenant="fr-interior").text.splitlines()
        assert lines and all(json.loads(line)["entry"]["tenant"] == "fr-interior" for line in lines)
        proven = [json.loads(line) for line in
                  self.get(stack, "/audit/export", tenant="fr-interior", tree_size=size).text.splitlines()]
        head = self.get(stack, "/audit/tree-head").json()
        root = bytes.fromhex(stack.ledger.root_hash(size))
        for item in proven:
            assert item["tree_size"] == size
            assert accepts_inclusion(item["index"], size, bytes.fromhex(item["leaf_hash"]),
                                     [bytes.fromhex(h) for h in item["inclusion_path"]], root)
        assert head["tree_size"] >= size

    def test_a_non_integer_index_is_a_400(self, stack):
        response = self.get(stack, "/audit/proof/inclusion", index="one", tree_size=1)
        assert response.status_code == 400 and response.json()["error"]["param"] == "index"


def test_a_banner_above_the_declared_marking_is_refused_and_logged_without_the_text(stack):
    text = "VS – NUR FÜR DEN DIENSTGEBRAUCH\nLagebericht Nord: Einzelheiten"
    with pytest.raises(openai.PermissionDeniedError) as info:
        client(stack, "de-federal-it/app", **{"X-Corridor-Marking": "PUBLIC"}).chat.completions.create(
            model="corridor-tiny", messages=[{"role": "user", "content": text}])
    assert info.value.body["code"] == "marking_spillage"
    assert "MARKING_SPILLAGE (marking-spillage)" in info.value.body["message"]
    (item,) = audit_entries(stack, decision_id=info.value.response.headers["x-corridor-decision"])
    entry = item["entry"]
    assert entry["reasons"] == ["MARKING_SPILLAGE"] and entry["detail"]["decision"]["banner"] == "VS-NfD"
    assert "Lagebericht" not in json.dumps(entry, ensure_ascii=False)
    served = client(stack, "de-federal-it/app", **{"X-Corridor-Marking": "VS-NfD"}).chat.completions.create(
        model="corridor-tiny", messages=[{"role": "user", "content": text}])
    assert served.system_fingerprint == "de-frankfurt", "declared at its level, it is served"


def test_a_national_only_caveat_is_read_from_its_header_and_an_unknown_one_is_a_400(stack):
    raw = client(stack, **{"X-Corridor-Marking": "DR", "X-Corridor-Caveats": "special france"}
                 ).chat.completions.with_raw_response.create(model="corridor-tiny",
                                                             messages=[{"role": "user", "content": "x"}])
    entry = entry_for(stack, raw.headers["x-corridor-decision"])
    assert entry["detail"]["decision"]["workload"]["caveats"] == ["SPECIAL FRANCE"]
    with pytest.raises(openai.BadRequestError) as info:
        client(stack, **{"X-Corridor-Caveats": "EYES ONLY MARS"}).chat.completions.create(
            model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "unknown_caveat" and info.value.body["param"] == "X-Corridor-Caveats"


def test_a_query_parameter_the_route_does_not_take_is_a_400_naming_it(stack):
    auth = {"Authorization": f"Bearer {stack.keys['fr-interior/app']}"}
    answer = httpx.get(stack.url + "/v1/models", params={"limit": "5"}, headers=auth)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("unknown_parameter", "limit")
    assert httpx.get(stack.url + "/v1/models", headers=auth).status_code == 200
    audit = {"Authorization": f"Bearer {stack.keys['*/auditor']}"}
    assert httpx.get(stack.url + "/audit/entries", params={"limit": 1}, headers=audit).status_code == 200
    answer = httpx.post(stack.url + "/v1/chat/completions", params={"stream": "true"}, headers=auth,
                        json={"model": "corridor-tiny", "messages": [{"role": "user", "content": "x"}]})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "stream", answer.text
    assert httpx.delete(stack.url + "/v1/models", params={"limit": "5"}, headers=auth).status_code == 405


def test_a_query_parameter_sent_twice_is_a_400_naming_it_not_the_last_one_wins(stack):
    audit = {"Authorization": f"Bearer {stack.keys['*/auditor']}"}
    answer = httpx.get(stack.url + "/audit/entries?limit=1&limit=1000", headers=audit)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("duplicate_parameter", "limit")

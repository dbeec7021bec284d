"""End to end: a real Ray cluster, real vLLM CPU servers, the gateway, the official openai SDK.

One installation for the whole module (``corridor up`` in-process): Ray with
one labelled node per pool, ``corridor-tiny`` placed for the French tenants
(fr-paris) and for the German tenants (de-frankfurt), ``minilm`` for PUBLIC
embeddings. Starting it takes a few minutes on 2 cores.
"""

from __future__ import annotations

import hashlib
import json
import time

import httpx
import openai
import pytest
import ray

from serving.installation.installation import Installation
from serving.installation.settings import UpConfig
from serving.replica.guard import group_members
from stub_upstream import ServerThread

from rfc6962_reference import MTH, accepts_inclusion, leaf_bytes, signature_verifies

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def corridor(tmp_path_factory):
    config = UpConfig(home=tmp_path_factory.mktemp("corridor-home"), ready_timeout_s=900)
    with Installation(config) as installation:
        with ServerThread(installation.app()) as server:
            installation.url = server.url
            yield installation


def sdk(corridor, who: str, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=corridor.url + "/v1", api_key=corridor.keys[who], max_retries=0,
                         timeout=120, default_headers=headers)


def ray_node_labels(node_id: str) -> dict[str, str]:
    return next(dict(n["Labels"]) for n in ray.nodes() if n["NodeID"] == node_id)


def routing_entry(corridor, decision_id: str) -> dict:
    items = corridor.ledger.entries(kind="routing", limit=1000)["data"]
    return next(item for item in items if item["entry"]["decision_id"] == decision_id)


def test_every_demo_replica_serves_from_the_pool_the_rulebook_chose(corridor):
    replicas = {view.name: view.replicas for view in corridor.deployments.list()}
    assert [r.pool for r in replicas["chat-fr"]] == ["fr-paris"]
    assert [r.pool for r in replicas["chat-de"]] == ["de-frankfurt"]
    for name, views in replicas.items():
        for replica in views:
            labels = ray_node_labels(replica.node_id)  # ask Ray, not the scheduler
            assert labels["corridor.eu/pool"] == replica.pool, name
            assert replica.endpoint, f"{name} is not serving"


def test_models_lists_what_the_tenant_may_use(corridor):
    assert sorted(m.id for m in sdk(corridor, "fr-interior/app").models.list()) == ["corridor-small", "corridor-tiny", "minilm"]


def test_dr_chat_of_fr_interior_lands_in_paris_as_headers_ledger_and_ray_say(corridor):
    raw = sdk(corridor, "fr-interior/app", **{"X-Corridor-Marking": "DR"}).chat.completions.with_raw_response.create(
        model="corridor-tiny", messages=[{"role": "user", "content": "Bonjour"}], max_tokens=8)
    completion = raw.parse()
    assert completion.choices[0].message.content is not None
    assert completion.usage.completion_tokens > 0
    assert raw.headers["x-corridor-pool"] == "fr-paris"
    assert raw.headers["x-corridor-jurisdiction"] == "FR"
    entry = routing_entry(corridor, raw.headers["x-corridor-decision"])["entry"]
    assert (entry["pool"], entry["jurisdiction"], entry["allowed"]) == ("fr-paris", "FR", True)
    assert ray_node_labels(entry["node_id"])["corridor.eu/jurisdiction"] == "FR"
    assert "Bonjour" not in json.dumps(entry)


def test_streaming_chat_arrives_in_chunks(corridor):
    stream = sdk(corridor, "fr-interior/app").chat.completions.create(
        model="corridor-tiny", messages=[{"role": "user", "content": "Bonjour"}], max_tokens=8, stream=True)
    chunks = [c for c in stream if c.choices]
    assert len(chunks) >= 2
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")


def test_completions(corridor):
    completion = sdk(corridor, "de-federal-it/app").completions.create(
        model="corridor-tiny", prompt="Guten Tag", max_tokens=5)
    assert completion.usage.completion_tokens > 0


def test_vs_nfd_of_the_german_federal_it_provider_lands_in_germany(corridor):
    raw = sdk(corridor, "de-federal-it/app", **{"X-Corridor-Marking": "VS-NfD"}).chat.completions.with_raw_response.create(
        model="corridor-tiny", messages=[{"role": "user", "content": "Hallo"}], max_tokens=4)
    assert raw.headers["x-corridor-jurisdiction"] == "DE"
    assert raw.headers["x-corridor-pool"] == "de-frankfurt"


def test_embeddings_are_real_vectors(corridor):
    result = sdk(corridor, "eu-agency/app").embeddings.create(model="minilm", input=["Bonjour", "Hallo"])
    assert len(result.data) == 2 and len(result.data[0].embedding) == 384
    assert result.data[0].embedding != result.data[1].embedding


def test_secret_is_refused_with_classified_never(corridor):
    with pytest.raises(openai.PermissionDeniedError) as info:
        sdk(corridor, "fr-interior/app", **{"X-Corridor-Marking": "SECRET"}).chat.completions.create(
            model="corridor-tiny", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert "CLASSIFIED_NEVER" in info.value.body["message"]


def test_a_tenant_without_access_to_the_marking_is_refused(corridor):
    with pytest.raises(openai.PermissionDeniedError) as info:
        sdk(corridor, "fr-health/app", **{"X-Corridor-Marking": "DR"}).chat.completions.create(
            model="corridor-tiny", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert "MARKING_NOT_ALLOWED_FOR_TENANT" in info.value.body["message"]


def test_an_auditor_verifies_a_request_with_an_independent_rfc6962_implementation(corridor):
    raw = sdk(corridor, "fr-interior/app").chat.completions.with_raw_response.create(
        model="corridor-tiny", messages=[{"role": "user", "content": "audit me"}], max_tokens=2)
    auditor = {"authorization": f"Bearer {corridor.keys['*/auditor']}"}
    head = httpx.get(corridor.url + "/audit/tree-head", headers=auditor).json()
    key = httpx.get(corridor.url + "/audit/public-key", headers=auditor).json()
    assert signature_verifies(head, key)
    item = routing_entry(corridor, raw.headers["x-corridor-decision"])
    assert hashlib.sha256(b"\x00" + leaf_bytes(item["entry"])).hexdigest() == item["leaf_hash"]
    proof = httpx.get(corridor.url + "/audit/proof/inclusion", headers=auditor,
                      params={"index": item["index"], "tree_size": head["tree_size"]}).json()
    assert accepts_inclusion(item["index"], head["tree_size"], bytes.fromhex(item["leaf_hash"]),
                             [bytes.fromhex(h) for h in proof["inclusion_path"]],
                             bytes.fromhex(head["root_hash"]))
    export = httpx.get(corridor.url + "/audit/export", headers=auditor).text.splitlines()
    leaves = [leaf_bytes(json.loads(line)["entry"]) for line in export][:head["tree_size"]]
    assert MTH(leaves).hex() == head["root_hash"]


def test_a_killed_replica_is_not_routed_to_and_nothing_moves_to_the_other_jurisdiction(corridor):
    """Runs last in the module: it takes the French chat replica away."""
    french = next(v for v in corridor.deployments.list() if v.name == "chat-fr").replicas[0]
    actor = ray.get_actor(f"corridor:{french.id}")
    server_group = ray.get(actor.describe.remote(), timeout=30)["pgid"]
    assert group_members(server_group), "the French vLLM server runs"
    ray.kill(actor, no_restart=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(e.pool == "fr-paris" and e.model == "corridor-tiny"
                                              for e in corridor.endpoints.refresh()):
        time.sleep(0.5)
    before = corridor.ledger.size
    client = sdk(corridor, "fr-interior/app", **{"X-Corridor-Marking": "DR"})
    for _ in range(3):
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="corridor-tiny",
                                           messages=[{"role": "user", "content": "x"}], max_tokens=2)
        assert info.value.status_code == 503
    routed = [i["entry"] for i in corridor.ledger.entries(kind="routing", after=before - 1, limit=100)["data"]]
    assert routed and all(e["jurisdiction"] in (None, "FR") for e in routed)
    assert not any(e["allowed"] and e["pool"] != "fr-paris" for e in routed)
    deadline = time.monotonic() + 30
    while group_members(server_group) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not group_members(server_group), "the killed replica's vLLM processes must not survive it"


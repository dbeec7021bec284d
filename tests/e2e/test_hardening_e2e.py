"""End to end, hardening: prefix-cache isolation between tenants on a real vLLM server, streams
relayed event by event, and healing of a vLLM server that dies inside a live replica actor.

One installation for the module (``corridor up`` in-process) with the two chat deployments
only, and vLLM's own metrics on, so the replica's ``/metrics`` shows its prefix-cache
queries and hits (``vllm:prefix_cache_queries``, ``vllm:prefix_cache_hits``).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import time

import httpx
import openai
import pytest
import ray

from serving.installation.installation import Installation
from serving.installation.settings import UpConfig
from stub_upstream import ServerThread

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

WORDS = ("le dossier du préfet concerne la sécurité civile et la coordination des services de "
         "secours dans la région ainsi que les moyens engagés par les collectivités territoriales ")


@pytest.fixture(scope="module")
def corridor(tmp_path_factory):
    home = tmp_path_factory.mktemp("corridor-home")
    chats = home / "chats.yaml"  # the two demo chat deployments, no embeddings
    chats.write_text(
        "deployments:\n"
        "  - {name: chat-fr, model: corridor-tiny, replicas: 1, audiences: [{tenant: fr-interior, marking: DR},\n"
        "     {tenant: fr-interior, marking: PUBLIC}, {tenant: fr-health, marking: PUBLIC}]}\n"
        "  - {name: chat-de, model: corridor-tiny, replicas: 1, audiences: [{tenant: de-federal-it, marking: VS-NfD},\n"
        "     {tenant: de-federal-it, marking: PUBLIC}, {tenant: de-health, marking: PUBLIC}]}\n")
    config = UpConfig(home=home, ready_timeout_s=900, engine_metrics=True, deployments=chats)
    with Installation(config) as installation:
        with ServerThread(installation.app()) as server:
            installation.url = server.url
            yield installation


def sdk(corridor, who: str, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=corridor.url + "/v1", api_key=corridor.keys[who], max_retries=0,
                         timeout=120, default_headers=headers)


def replica(corridor, name: str):
    """The deployment's replica, or None while healing has dropped it and not placed the next."""
    replicas = next(v for v in corridor.deployments.list() if v.name == name).replicas
    return replicas[0] if replicas else None


def prefix_cache(endpoint: str) -> tuple[float, float]:
    """(queries, hits) in tokens, from the replica's own Prometheus metrics."""
    text = httpx.get(endpoint + "/metrics", timeout=10).text

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}(?:_total)?(?:{{[^}}]*}})? ([0-9.e+]+)$",
                                                text, flags=re.M))
    return total("vllm:prefix_cache_queries"), total("vllm:prefix_cache_hits")


def counted(endpoint: str, before: tuple[float, float], timeout_s: float = 10.0) -> tuple[float, float]:
    """The (queries, hits) added since ``before``, once the replica has counted the request."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = prefix_cache(endpoint)
        if now[0] > before[0] or time.monotonic() > deadline:
            return now[0] - before[0], now[1] - before[1]
        time.sleep(0.2)


def test_the_same_long_prompt_hits_the_prefix_cache_for_its_tenant_only(corridor):
    endpoint = replica(corridor, "chat-fr").endpoint
    prompt = f"{secrets.token_hex(4)} " + WORDS * 5
    first = sdk(corridor, "fr-interior/app", **{"X-Corridor-Marking": "PUBLIC"})
    other = sdk(corridor, "fr-health/app", **{"X-Corridor-Marking": "PUBLIC"})

    def ask(client) -> tuple[float, float]:
        before = prefix_cache(endpoint)
        raw = client.completions.with_raw_response.create(model="corridor-tiny", prompt=prompt,
                                                          max_tokens=1)
        assert raw.headers["x-corridor-pool"] == "fr-paris"
        assert 128 <= raw.parse().usage.prompt_tokens < 500
        return counted(endpoint, before)

    queries, hits = ask(first)
    assert queries > 0 and hits == 0, "a new prompt: nothing cached yet"
    queries, hits = ask(other)
    print(f"prefix cache, same prompt from a second tenant: {queries:g} tokens queried, {hits:g} hit")
    assert queries > 0 and hits == 0, "another tenant's cached prefix must not serve (nor time) it"
    queries, hits = ask(first)
    print(f"prefix cache, the first tenant again: {queries:g} tokens queried, {hits:g} hit")
    assert hits > 0, "the first tenant's repeat is served from its own cache"


def test_a_real_stream_arrives_whole_with_usage_only_when_asked(corridor):
    client = sdk(corridor, "fr-interior/app")
    plain = list(client.chat.completions.create(
        model="corridor-tiny", messages=[{"role": "user", "content": "Bonjour"}], max_tokens=6, stream=True))
    assert plain and all(chunk.choices for chunk in plain)
    asked = list(client.chat.completions.create(
        model="corridor-tiny", messages=[{"role": "user", "content": "Bonjour"}], max_tokens=6,
        stream=True, stream_options={"include_usage": True}))
    assert asked[-1].choices == [] and asked[-1].usage.completion_tokens > 0


def test_a_vllm_server_dying_inside_a_live_actor_is_noticed_and_replaced(corridor):
    """Runs last: the German chat replica's server is killed, its actor left alive."""
    dead = replica(corridor, "chat-de")
    actor = ray.get_actor(f"corridor:{dead.id}")
    pgid = ray.get(actor.describe.remote(), timeout=30)["pgid"]
    os.killpg(pgid, signal.SIGKILL)
    client = sdk(corridor, "de-federal-it/app", **{"X-Corridor-Marking": "VS-NfD"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and ((now := replica(corridor, "chat-de")) is None
                                           or now.id == dead.id):
        time.sleep(1.0)
    assert replica(corridor, "chat-de").id != dead.id, "healing replaced the replica"
    with pytest.raises(openai.InternalServerError) as info:  # the new server is still starting
        client.chat.completions.create(model="corridor-tiny", messages=[{"role": "user", "content": "x"}],
                                       max_tokens=2)
    assert info.value.status_code == 503 and info.value.body["code"] == "no_replica_available"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            raw = client.chat.completions.with_raw_response.create(
                model="corridor-tiny", messages=[{"role": "user", "content": "Hallo"}], max_tokens=2)
            break
        except openai.InternalServerError:
            time.sleep(3.0)
    else:
        pytest.fail("the replacement replica never served")
    assert raw.headers["x-corridor-pool"] == "de-frankfurt"
    replaced = [i["entry"] for i in corridor.ledger.entries(kind="placement", limit=1000)["data"]
                if i["entry"]["detail"].get("replaces") == f"{dead.id} (server-dead)"]
    assert replaced and replaced[-1]["pool"] == "de-frankfurt" and replaced[-1]["allowed"] is True

"""Capacity at the gateway over HTTP: waiting in the admission queue, scores in the ledger,
on-demand replicas (placed, used, released, and home before crossing)."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import openai
import pytest

from batch_stack import CountingStub
from gateway_stack import active_declaration, endpoint, gateway_stack
from policies import Policy
from policies import load_bundle
from policies.bundle import Bundle, default_bundle_path
from serving.routing.on_demand import OnDemand
from serving.routing.settings import OnDemandSettings, QueueSettings
from stub_provisioner import StubProvisioner

MESSAGES = [{"role": "user", "content": "Quel est le délai de recours ?"}]


def client(stack, who="fr-interior/app"):
    return openai.OpenAI(base_url=stack.url + "/v1", api_key=stack.keys[who], max_retries=0)


def post(stack, who="fr-interior/app", timeout=30.0):
    return httpx.post(stack.url + "/v1/chat/completions", timeout=timeout,
                      headers={"authorization": f"Bearer {stack.keys[who]}"},
                      json={"model": "corridor-tiny", "messages": MESSAGES})


def routing_entries(stack):
    return [i["entry"] for i in stack.ledger.entries(kind="routing", limit=1000)["data"]]


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


class TestAdmissionQueue:
    def test_requests_beyond_a_replicas_concurrency_wait_and_are_all_served(self, tmp_path):
        slow = CountingStub("fr-paris", delay=0.2)
        with gateway_stack(tmp_path, pools=("fr-paris",), apps={"fr-paris": slow},
                           queue=QueueSettings(replica_concurrency=1, timeout_s=10)) as stack:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(lambda _: post(stack), range(4)))
            assert [a.status_code for a in answers] == [200] * 4
            assert slow.max_inflight == 1
            queue = stack.gateway.dispatch.queue
            assert queue.waiting == 0
            assert queue.outcomes.labels("fr-interior", "standard", "admitted")._value.get() >= 1

    def test_a_request_still_waiting_at_its_deadline_gets_503_with_retry_after_and_a_ledger_entry(
            self, tmp_path):
        slow = CountingStub("fr-paris", delay=1.0)
        with gateway_stack(tmp_path, pools=("fr-paris",), apps={"fr-paris": slow},
                           queue=QueueSettings(replica_concurrency=1, timeout_s=0.2)) as stack:
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                first = pool.submit(post, stack)
                time.sleep(0.1)
                second = post(stack)
            assert first.result().status_code == 200
            assert second.status_code == 503 and int(second.headers["retry-after"]) >= 1
            assert second.json()["error"]["code"] == "queue_timeout"
            decision = second.headers["x-corridor-decision"]
            entry = next(e for e in routing_entries(stack) if e["decision_id"] == decision)
            assert entry["reasons"] == ["QUEUE_TIMEOUT"] and entry["allowed"] is False

    def test_a_client_that_disconnects_while_waiting_leaves_the_queue_at_once(self, tmp_path):
        slow = CountingStub("fr-paris", delay=1.5)
        with gateway_stack(tmp_path, pools=("fr-paris",), apps={"fr-paris": slow},
                           queue=QueueSettings(replica_concurrency=1, timeout_s=30)) as stack:
            queue = stack.gateway.dispatch.queue
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                first = pool.submit(post, stack)
                time.sleep(0.1)
                with pytest.raises(httpx.TimeoutException):
                    post(stack, timeout=0.3)
                left = time.monotonic()
                wait_until(lambda: queue.waiting == 0, timeout=1.0)
                assert time.monotonic() - left < 1.0
                assert first.result().status_code == 200
            wait_until(lambda: any(e["reasons"] == ["CLIENT_GONE"] for e in routing_entries(stack)))
            assert slow.requests == 1  # the departed request never reached the replica


def test_the_routing_entry_records_the_score_components_of_the_chosen_replica(tmp_path):
    with gateway_stack(tmp_path, pools=("fr-paris",)) as stack:
        stack.endpoints.items.append(endpoint("fr-paris", stack.upstreams["fr-paris"],
                                              replica="second@fr-paris"))
        raw = client(stack).chat.completions.with_raw_response.create(model="corridor-tiny",
                                                                      messages=MESSAGES)
        entry = next(e for e in routing_entries(stack)
                     if e["decision_id"] == raw.headers["x-corridor-decision"])
        scores = entry["detail"]["scores"]
        assert set(scores) >= {"prefix", "tokens", "queue", "kv_cache", "total", "load"}


# -- on-demand replicas ----------------------------------------------------------------------


def on_demand_policy(*, declaration: bool = False) -> Policy:
    document = load_bundle(default_bundle_path()).model_dump(mode="json")
    for model in document["models"]:
        if model["id"] == "corridor-tiny":
            model["on_demand"] = True
    if declaration:
        document["declarations"] = [active_declaration("decl-paris-down", "fr-interior", "DR",
                                                       reason="fr-paris lost")]
    return Policy(Bundle.model_validate(document))


def on_demand_provisioner(ref: dict, pool: str, **options) -> StubProvisioner:
    """Places an on-demand replica as a stub upstream in ``pool`` (after 0.3 s by default)."""
    return StubProvisioner(ref, pool, prefix="on-demand", **{"delay": 0.3, **options})


def on_demand_stack(tmp_path, provisioner, *, pools=(), declaration=False, **settings):
    policy = on_demand_policy(declaration=declaration)
    on_demand = OnDemand(policy, provisioner, OnDemandSettings(
        **{"idle_release_s": 0.4, "wait_s": 10, "expected_start_s": 2, **settings}))
    return gateway_stack(tmp_path, pools=pools, policy=policy, on_demand=on_demand)


def test_a_request_with_no_live_replica_places_one_waits_for_it_and_it_is_released_when_idle(tmp_path):
    ref: dict = {}
    provisioner = on_demand_provisioner(ref, "fr-paris")
    with on_demand_stack(tmp_path, provisioner) as stack:
        ref["stack"] = stack
        first = post(stack)
        assert first.status_code == 200 and first.headers["x-corridor-pool"] == "fr-paris"
        assert post(stack).status_code == 200
        assert provisioner.placed == ["on-demand-1"]
        on_demand = stack.gateway.dispatch.on_demand
        assert len(on_demand.starts) == 1 and on_demand.starts[0] >= 0.3
        wait_until(lambda: provisioner.released == ["on-demand-1"], timeout=15)
        assert post(stack).status_code == 200  # placed again on the next request
        assert provisioner.placed == ["on-demand-1", "on-demand-2"]


def test_a_refused_placement_is_a_503_naming_the_refusal(tmp_path):
    ref: dict = {}
    provisioner = on_demand_provisioner(ref, "fr-paris", refuse=True)
    with on_demand_stack(tmp_path, provisioner) as stack:
        ref["stack"] = stack
        answer = post(stack)
        assert answer.status_code == 503
        assert "NO_CAPACITY" in answer.json()["error"]["message"]


def test_home_capacity_placed_on_demand_in_time_is_used_rather_than_crossing(tmp_path):
    ref: dict = {}
    provisioner = on_demand_provisioner(ref, "fr-paris", delay=0.5)
    with on_demand_stack(tmp_path, provisioner, pools=("de-frankfurt",), declaration=True) as stack:
        ref["stack"] = stack
        answer = post(stack)
        assert answer.status_code == 200
        assert answer.headers["x-corridor-pool"] == "fr-paris"
        assert "x-corridor-declaration" not in answer.headers


def test_it_crosses_under_the_declaration_only_when_home_capacity_cannot_be_placed(tmp_path):
    ref: dict = {}
    provisioner = on_demand_provisioner(ref, "fr-paris", refuse=True)
    with on_demand_stack(tmp_path, provisioner, pools=("de-frankfurt",), declaration=True) as stack:
        ref["stack"] = stack
        answer = post(stack)
        assert answer.status_code == 200
        assert answer.headers["x-corridor-pool"] == "de-frankfurt"
        assert answer.headers["x-corridor-declaration"] == "decl-paris-down"


def test_it_crosses_when_home_capacity_would_come_after_the_deadline(tmp_path):
    ref: dict = {}
    provisioner = on_demand_provisioner(ref, "fr-paris", delay=0.5)
    with on_demand_stack(tmp_path, provisioner, pools=("de-frankfurt",), declaration=True,
                         wait_s=5, expected_start_s=60) as stack:
        ref["stack"] = stack
        answer = post(stack)
        assert answer.headers["x-corridor-pool"] == "de-frankfurt"
        assert provisioner.placed == []


def test_traffic_under_an_active_declaration_is_served_before_waiting_standard_traffic(tmp_path):
    document = load_bundle(default_bundle_path()).model_dump(mode="json")
    document["priority_classes"] = [{"id": "crisis", "under_declaration": True}]
    document["declarations"] = [active_declaration("decl-floods", "fr-health", "PUBLIC",
                                                   reason="floods")]
    slow = CountingStub("fr-paris", delay=0.3)
    order: list[str] = []

    def timed(who):
        answer = post(stack, who)
        order.append(who.split("/")[0])
        return answer.status_code

    with gateway_stack(tmp_path, pools=("fr-paris",), apps={"fr-paris": slow},
                       policy=Policy(Bundle.model_validate(document)),
                       queue=QueueSettings(replica_concurrency=1, timeout_s=20)) as stack:
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            futures = [pool.submit(timed, "eu-agency/app")]  # takes the only slot
            time.sleep(0.1)
            futures += [pool.submit(timed, "eu-agency/app") for _ in range(2)]  # wait, standard
            time.sleep(0.1)
            futures.append(pool.submit(timed, "fr-health/app"))  # waits, under the declaration
            assert [f.result() for f in futures] == [200] * 4
        assert order.index("fr-health") == 1  # right after the request that held the slot
        queue = stack.gateway.dispatch.queue
        assert queue.outcomes.labels("fr-health", "crisis", "admitted")._value.get() == 1

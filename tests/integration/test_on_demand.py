"""On-demand replicas on a simulated FR/DE cluster: a request with no live replica places one
through the scheduler (same rules, same ledger entries), waits for it, and it is released once idle."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from scheduler import Binder, Deployments
from scheduler.ledger import Ledger
from serving.gateway import Authenticator, Gateway, KeyStore, create_app
from serving.installation.adapters import DeploymentEndpoints
from serving.provisioning import DeploymentProvisioner
from serving.routing import Router
from serving.routing.on_demand import OnDemand
from serving.routing.settings import OnDemandSettings
from stub_upstream import ServerThread

from scheduler_cluster import (POOLS, ServingReplica, default_document, entries, labels, policy_of,
                               simulated_cluster, wait_for)


@pytest.fixture(scope="module")
def cluster() -> Iterator:
    with simulated_cluster({pool: labels(pool) for pool in POOLS}) as simulated:
        yield simulated


def test_a_request_places_an_on_demand_replica_in_an_allowed_pool_and_it_is_released_when_idle(
        cluster, tmp_path) -> None:
    document = default_document()
    for model in document["models"]:
        if model["id"] == "corridor-tiny":
            model["on_demand"] = True
    policy = policy_of(document)
    keys = KeyStore()
    key = keys.issue("app", tenant="fr-interior")
    with Ledger.open(tmp_path) as ledger:
        deployments = Deployments(policy, ledger, ServingReplica, binder=Binder(timeout_s=30),
                                  heal_period_s=0.5).start()
        endpoints = DeploymentEndpoints(deployments, period_s=0.2).start()
        on_demand = OnDemand(policy, DeploymentProvisioner(deployments, {"corridor-tiny": {}}),
                             OnDemandSettings(idle_release_s=1.0, wait_s=60, expected_start_s=10))
        gateway = Gateway(policy=policy, ledger=ledger, auth=Authenticator(keys),
                          router=Router(policy, endpoints), on_demand=on_demand)
        try:
            with ServerThread(create_app(gateway)) as server:
                answer = httpx.post(server.url + "/v1/chat/completions", timeout=90,
                                    headers={"authorization": f"Bearer {key}", "x-corridor-marking": "DR"},
                                    json={"model": "corridor-tiny",
                                          "messages": [{"role": "user", "content": "Bonjour"}]})
                assert answer.status_code == 200, (answer.text, on_demand.placed.refusals)
                assert answer.headers["x-corridor-pool"] == "fr-paris"
                placed = [e for e in entries(ledger, kind="placement")
                          if e["detail"].get("action") == "deploy"]
                assert len(placed) == 1 and placed[0]["pool"] == "fr-paris" and placed[0]["allowed"]
                name = placed[0]["detail"]["deployment"]
                assert name.startswith("on-demand-")
                assert answer.json()["system_fingerprint"] == placed[0]["detail"]["replica"]
                routed = [e for e in entries(ledger, kind="routing")
                          if e["decision_id"] == answer.headers["x-corridor-decision"]]
                assert [e["pool"] for e in routed] == ["fr-paris"]
                wait_for(lambda: not deployments.list(), timeout_s=30)  # released once idle
        finally:
            endpoints.stop()
            deployments.close()

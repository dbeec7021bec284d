"""When nodes fail or lie: healing under the same rules, degraded rather than across the border.

One scenario on one simulated cluster (head, two Paris nodes, Lyon, Frankfurt);
the steps run in order and each starts where the previous one left the cluster.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
import ray

from policies import Declaration, Policy
from scheduler import Audience, Binder, DeploymentSpec, Deployments, Inventory, QuarantineCode
from scheduler.ledger import Ledger

from scheduler_cluster import (EchoReplica, crisis, entries, labels, ray_actor, ray_labels,
                               simulated_cluster, wait_for, where)

pytestmark = pytest.mark.integration

DR = DeploymentSpec("dr", "corridor-tiny", [Audience("fr-interior", "DR")])


@pytest.fixture(scope="module")
def cluster() -> Iterator:
    nodes = {"paris-a": labels("fr-paris"), "paris-b": labels("fr-paris"), "lyon": labels("fr-lyon"),
             "frankfurt": labels("de-frankfurt")}
    with simulated_cluster(nodes) as simulated:
        yield simulated


@pytest.fixture(scope="module")
def ledger(module_ledger: Ledger) -> Ledger:
    return module_ledger


@pytest.fixture(scope="module")
def declarations() -> list[Declaration]:
    return []


@pytest.fixture(scope="module")
def deployments(cluster, ledger, declarations) -> Iterator[Deployments]:
    policy = Policy.load()
    managed = Deployments(policy, ledger, EchoReplica, inventory=Inventory(policy, ledger=ledger, period_s=0.3),
                          binder=Binder(timeout_s=20), declarations=lambda: list(declarations),
                          heal_period_s=0.5)
    yield managed
    managed.inventory.stop()
    managed.close()


def alive_replica_nodes() -> set[str]:
    from ray._private.state import actors

    return {a["Address"]["NodeID"] for a in actors().values()
            if a["State"] == "ALIVE" and a["ActorClassName"] == "EchoReplica"}


def test_a_replica_whose_actor_dies_is_replaced_under_the_same_rules(deployments, ledger) -> None:
    (first,) = deployments.deploy(DR).replicas
    os.kill(ray_actor(first.actor_id)["Pid"], signal.SIGKILL)
    wait_for(lambda: ray_actor(first.actor_id)["State"] == "DEAD", timeout_s=10)
    report = deployments.heal()
    assert report.lost == (first.id,) and len(report.placed) == 1 and report.degraded == {}
    (view,) = deployments.list()
    assert where(view) == [("fr-paris", "FR")]
    assert entries(ledger, kind="placement")[-1]["detail"]["replaces"] == f"{first.id} (actor-dead)"


def test_a_replica_whose_server_dies_inside_a_live_actor_is_replaced(deployments, ledger) -> None:
    (first,) = deployments.get("dr").replicas
    ray.get(ray.get_actor(f"corridor:{first.id}").lose_server.remote(), timeout=10)
    deployments.heal()  # reads each replica's own state: the endpoint is withdrawn, the server dead
    assert deployments.get("dr").replicas[0].endpoint is None
    report = deployments.heal()
    assert report.lost == (first.id,) and len(report.placed) == 1 and report.degraded == {}
    (view,) = deployments.list()
    assert view.replicas[0].id != first.id and where(view) == [("fr-paris", "FR")]
    wait_for(lambda: ray_actor(first.actor_id)["State"] == "DEAD", timeout_s=10)
    assert entries(ledger, kind="placement")[-1]["detail"]["replaces"] == f"{first.id} (server-dead)"


def test_a_replica_whose_node_dies_comes_back_on_another_paris_node(deployments, cluster, ledger) -> None:
    (first,) = deployments.get("dr").replicas
    dead = next(name for name in ("paris-a", "paris-b") if cluster.node_id(name) == first.node_id)
    deployments.start()
    try:
        cluster.remove(dead)
        view = wait_for(lambda: next((v for v in deployments.list()
                                      if v.status == "ready" and v.replicas[0].id != first.id), None),
                        timeout_s=20)
    finally:
        deployments.stop()
    assert where(view) == [("fr-paris", "FR")]
    survivor = "paris-b" if dead == "paris-a" else "paris-a"
    assert ray_actor(view.replicas[0].actor_id)["Address"]["NodeID"] == cluster.node_id(survivor)
    healed = entries(ledger, kind="placement")[-1]
    assert healed["detail"]["action"] == "heal"
    assert healed["detail"]["replaces"] == f"{first.id} (node-lost)"
    assert healed["node_id"] == cluster.node_id(survivor) and healed["declaration"] is None


def test_without_compliant_capacity_the_deployment_is_degraded_not_moved(deployments, cluster, ledger) -> None:
    before = len(entries(ledger, kind="placement"))
    cluster.remove(next(name for name in ("paris-a", "paris-b") if name in cluster.nodes))
    report = deployments.heal()
    assert report.degraded["dr"] == ("0/4 pools: 2 RESIDENCY, 2 WRONG_JURISDICTION, "
                                     "1 MISSING_ACCREDITATION, 1 NO_LIVE_NODES")
    (view,) = deployments.list()
    assert (view.status, view.replicas, view.reason) == ("degraded", (), report.degraded["dr"])
    assert alive_replica_nodes() == set()
    deployments.heal()
    refusals = entries(ledger, kind="placement")[before:]
    assert len(refusals) == 1, "a shortfall is written once, not at every pass"
    assert refusals[0]["allowed"] is False and refusals[0]["detail"]["pools"]["fr-paris"] == ["NO_LIVE_NODES"]


def test_forged_nodes_are_quarantined_once_in_the_ledger_and_never_used(deployments, cluster, ledger) -> None:
    deployments.inventory.start()
    unknown = cluster.add("forged-unknown", labels("fr-paris") | {"corridor.eu/pool": "fr-marseille"})
    crossed = cluster.add("forged-jurisdiction", labels("fr-paris", "DE"))
    security = wait_for(lambda: (found := entries(ledger, kind="security")) and len(found) == 2 and found,
                        timeout_s=10)
    refreshes = deployments.inventory.refreshes
    wait_for(lambda: deployments.inventory.refreshes >= refreshes + 2, timeout_s=10)
    assert len(entries(ledger, kind="security")) == 2, "each node is reported once"
    assert {(e["node_id"], e["reasons"][0]) for e in security} == {
        (unknown, QuarantineCode.UNKNOWN_POOL_LABEL), (crossed, QuarantineCode.JURISDICTION_MISMATCH)}
    assert {e["detail"]["labels"]["corridor.eu/pool"] for e in security} == {"fr-marseille", "fr-paris"}
    report = deployments.heal()
    assert "1 QUARANTINED" in report.degraded["dr"]
    deployments.deploy(DeploymentSpec("eu", "corridor-tiny", [Audience("eu-agency", "PUBLIC")], replicas=2))
    assert alive_replica_nodes().isdisjoint({unknown, crossed})
    assert {ray_labels(n)["corridor.eu/pool"] for n in alive_replica_nodes()} == {"fr-lyon"}
    deployments.remove("eu")


def test_under_an_active_crisis_declaration_the_replica_crosses_and_the_ledger_names_it(
        deployments, cluster, ledger, declarations) -> None:
    declaration = crisis("fr-interior", "DR", "corridor-tiny", "FR->DE")
    declarations.append(declaration)
    report = deployments.heal()
    assert report.degraded == {} and len(report.placed) == 1
    (view,) = deployments.list()
    assert where(view) == [("de-frankfurt", "DE")]
    assert view.replicas[0].declaration == declaration.id
    crossed = entries(ledger, kind="placement")[-1]
    assert (crossed["jurisdiction"], crossed["declaration"], crossed["allowed"]) == ("DE", declaration.id, True)
    assert crossed["node_id"] == cluster.node_id("frankfurt")


def test_when_the_declaration_ends_the_replica_is_evicted_and_not_kept_abroad(
        deployments, ledger, declarations) -> None:
    declarations.clear()
    report = deployments.heal()
    assert len(report.evicted) == 1 and report.placed == ()
    assert "dr" in report.degraded
    evicted = [e for e in entries(ledger, kind="placement") if e["detail"].get("action") == "evict"]
    assert len(evicted) == 1
    assert (evicted[0]["pool"], evicted[0]["allowed"]) == ("de-frankfurt", False)
    assert set(evicted[0]["reasons"]) == {"RESIDENCY", "WRONG_JURISDICTION"}
    assert alive_replica_nodes() == set()
    assert deployments.list()[0].status == "degraded"

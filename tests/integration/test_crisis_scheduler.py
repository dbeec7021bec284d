"""Crisis declarations on a real Ray cluster: replicas cross only under an active, two-person
declaration, and are drained and removed within seconds when it is revoked or expires.

The cluster has no Paris node: France has no pool for DR (Lyon lacks the DR
homologation), Frankfurt holds the only compliant capacity across the
border. The registry drives the scheduler as in ``corridor up``: its
declarations feed the rulebook, and every change runs a healing pass at once
(:class:`scheduler.deployments.Deployments.request_heal`); the periodic pass is set far off so
that the speed measured is the registry's, not the period's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from policies import Policy, Workload
from policies.bundle import Operator
from scheduler import Audience, Binder, DeploymentSpec, Deployments, Inventory, PlacementError
from scheduler.ledger import Ledger
from scheduler.crisis import CrisisRegistry
from serving.installation.adapters import DeploymentEndpoints
from serving.routing import Router

from scheduler_cluster import EchoReplica, entries, labels, ray_actor, simulated_cluster, wait_for, where

pytestmark = pytest.mark.integration

ANNE = Operator(operator="anne", jurisdiction="FR")
BERND = Operator(operator="bernd", jurisdiction="DE")
SCOPE = {"tenants": ["fr-interior"], "markings": ["DR"], "models": ["corridor-tiny"], "directions": ["FR->DE"]}
DR = DeploymentSpec("dr", "corridor-tiny", [Audience("fr-interior", "DR")])
DR_WORKLOAD = Workload.create("fr-interior", "DR", model="corridor-tiny")


@pytest.fixture(scope="module")
def cluster() -> Iterator:
    with simulated_cluster({"lyon": labels("fr-lyon"), "frankfurt": labels("de-frankfurt")}) as simulated:
        yield simulated


@pytest.fixture(scope="module")
def ledger(module_ledger: Ledger) -> Ledger:
    return module_ledger


@pytest.fixture(scope="module")
def stack(cluster, ledger, tmp_path_factory):
    policy = Policy.load()
    registry = CrisisRegistry(policy, ledger, tmp_path_factory.mktemp("crisis") / "crisis.json",
                              tick_s=0.2).start()
    deployments = Deployments(policy, ledger, EchoReplica, inventory=Inventory(policy, ledger=ledger),
                              binder=Binder(timeout_s=20), declarations=registry.declarations,
                              heal_period_s=3600).start()
    registry.subscribe(deployments.request_heal)
    endpoints = DeploymentEndpoints(deployments)
    router = Router(policy, endpoints, declarations=registry.declarations)
    yield registry, deployments, endpoints, router
    registry.stop()
    deployments.close()


def crossed(deployments):
    views = [v for v in deployments.list() if v.name == "dr"]
    return views and views[0].replicas and views[0].status == "ready" and views[0]


def test_without_a_declaration_nothing_crosses_and_the_refusal_is_logged(stack, ledger):
    registry, deployments, *_ = stack
    with pytest.raises(PlacementError) as info:
        deployments.deploy(DR)
    assert "RESIDENCY" in str(info.value) and "MISSING_ACCREDITATION" in str(info.value)
    pending = registry.declare(ANNE, scope=SCOPE, reason="fr-paris lost", valid_for_hours=1)
    with pytest.raises(PlacementError):
        deployments.deploy(DR)  # pending: backed by France only
    registry.revoke(pending.id, ANNE)
    refusals = [e for e in entries(ledger, kind="placement") if e["allowed"] is False]
    assert len(refusals) == 2 and all(e["declaration"] is None for e in refusals)


def test_an_active_declaration_places_the_replica_across_and_names_itself(stack, ledger, cluster):
    registry, deployments, endpoints, router = stack
    declaration = registry.declare(ANNE, scope=SCOPE, reason="fr-paris lost", valid_for_hours=1)
    registry.approve(declaration.id, BERND)
    view = deployments.deploy(DR)
    assert where(view) == [("de-frankfurt", "DE")]
    assert view.replicas[0].declaration == declaration.id
    placed = entries(ledger, kind="placement")[-1]
    assert (placed["allowed"], placed["declaration"], placed["node_id"]) == (
        True, declaration.id, cluster.node_id("frankfurt"))
    deployments.heal()  # reads the started replica's endpoint back
    endpoints.refresh()
    route = router.route(DR_WORKLOAD)
    assert [e.pool for e in route.candidates] == ["de-frankfurt"]
    assert route.decision_for(route.candidates[0]).declaration == declaration.id


def test_outside_the_scope_nothing_crosses_even_while_it_is_active(stack):
    _, deployments, *_ = stack
    mixed = DeploymentSpec("mixed", "corridor-tiny", [Audience("fr-interior", "DR"), Audience("fr-health", "PUBLIC")])
    with pytest.raises(PlacementError) as info:
        deployments.deploy(mixed)
    assert "RESIDENCY" in str(info.value)


def test_revocation_drains_and_removes_the_crossed_replica_within_seconds(stack, ledger):
    registry, deployments, endpoints, router = stack
    (active,) = [d for d in registry.declarations() if d.status(registry.clock()) == "active"]
    actor = deployments.get("dr").replicas[0].actor_id
    started = time.monotonic()
    registry.revoke(active.id, BERND)
    assert router.route(DR_WORKLOAD).candidates == [], "routing across stops at once"
    wait_for(lambda: ray_actor(actor).get("State") == "DEAD", timeout_s=10, period_s=0.05)
    killed = time.monotonic() - started
    view = wait_for(lambda: (v := deployments.get("dr")).replicas == () and v, timeout_s=10, period_s=0.05)
    removed = time.monotonic() - started
    assert killed < 5 and removed < 8, f"actor dead after {killed:.1f} s, replica removed after {removed:.1f} s"
    assert view.status == "degraded"
    evicted = [e for e in entries(ledger, kind="placement") if e["detail"].get("action") == "evict"]
    assert evicted[-1]["pool"] == "de-frankfurt" and evicted[-1]["declaration"] == active.id
    assert set(evicted[-1]["reasons"]) == {"RESIDENCY", "WRONG_JURISDICTION"}
    steps = [e["detail"]["step"] for e in entries(ledger, kind="crisis") if e["declaration"] == active.id]
    assert steps == ["declared", "approved", "activated", "revoked"]


def test_a_new_declaration_heals_the_deployment_across_and_its_expiry_removes_it(stack, ledger):
    registry, deployments, endpoints, router = stack
    declaration = registry.declare(BERND, scope=SCOPE, reason="fr-paris still lost", valid_for_hours=8 / 3600)
    registry.approve(declaration.id, ANNE)
    view = wait_for(lambda: crossed(deployments), timeout_s=15, period_s=0.1)
    assert where(view) == [("de-frankfurt", "DE")] and view.replicas[0].declaration == declaration.id
    actor = view.replicas[0].actor_id
    ends = declaration.declaration.valid_until.timestamp()
    wait_for(lambda: ray_actor(actor).get("State") == "DEAD", timeout_s=20, period_s=0.05)
    late = time.time() - ends
    assert late < 5, f"removed {late:.1f} s after expiry"
    endpoints.refresh()
    assert router.route(DR_WORKLOAD).candidates == []
    steps = [e["detail"]["step"] for e in entries(ledger, kind="crisis") if e["declaration"] == declaration.id]
    assert steps == ["declared", "approved", "activated", "expired"]
    assert deployments.get("dr").status == "degraded"

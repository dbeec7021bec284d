"""Placement on a simulated FR/DE cluster: replicas land where the rulebook allows, asked of Ray."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from policies import Policy
from scheduler import (Audience, BindError, Binder, BindTimeout, DeploymentSpec, Deployments, PlacementError,
                       PlacementViolation, ReplicaBinding)
from scheduler.ledger import Ledger

from scheduler_cluster import (POOLS, EchoReplica, entries, labels, placement_group_record, ray_actor,
                               ray_labels, simulated_cluster, where)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator:
    with simulated_cluster({pool: labels(pool) for pool in POOLS}) as simulated:
        yield simulated


@pytest.fixture
def ledger(tmp_path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path) as opened:
        yield opened


@pytest.fixture
def deployments(cluster, ledger, default_policy: Policy) -> Iterator[Deployments]:
    managed = Deployments(default_policy, ledger, EchoReplica, binder=Binder(timeout_s=20))
    yield managed
    managed.close()


def alive_actor_nodes() -> list[str]:
    from ray._private.state import actors

    return [a["Address"]["NodeID"] for a in actors().values() if a["State"] == "ALIVE"]


LANDINGS = {
    "DR of the French interior ministry lands only on the Paris pool":
        (Audience("fr-interior", "DR"), 2, "fr-paris"),
    "VS-NfD of the German federal IT provider lands only on the Frankfurt pool":
        (Audience("de-federal-it", "VS-NfD"), 2, "de-frankfurt"),
    "health data of a French hospital lands only on the HDS-certified Paris pool":
        (Audience("fr-health", "PUBLIC"), 1, "fr-paris"),
}


@pytest.mark.parametrize("audience, replicas, pool", LANDINGS.values(), ids=LANDINGS.keys())
def test_replicas_land_where_the_rulebook_allows(deployments, ledger, audience, replicas, pool) -> None:
    view = deployments.deploy(DeploymentSpec("chat", "corridor-tiny", [audience], replicas=replicas))
    assert view.status == "ready"
    assert where(view) == [(pool, POOLS[pool])] * replicas
    placed = entries(ledger, kind="placement")
    assert [e["pool"] for e in placed] == [pool] * replicas
    assert sorted(e["node_id"] for e in placed) == sorted(
        ray_actor(r.actor_id)["Address"]["NodeID"] for r in view.replicas)
    for entry in placed:
        assert entry["allowed"] is True and entry["tenant"] == audience.tenant
        assert entry["decision_id"].startswith("dec_") and entry["policy_digest"].startswith("sha256:")
        assert ray_labels(entry["node_id"])["corridor.eu/pool"] == pool


def test_secret_is_refused_with_classified_never_before_ray_is_asked(deployments, ledger) -> None:
    began = time.perf_counter()
    with pytest.raises(PlacementError) as info:
        deployments.deploy(DeploymentSpec("secret", "corridor-tiny", [Audience("fr-interior", "SECRET")]))
    assert time.perf_counter() - began < 1.0
    assert deployments.inventory.refreshes == 0
    assert info.value.tally["CLASSIFIED_NEVER"] == 4
    assert "0/4 pools: 4 CLASSIFIED_NEVER" in str(info.value)
    (refusal,) = entries(ledger, kind="placement")
    assert refusal["allowed"] is False and "CLASSIFIED_NEVER" in refusal["reasons"]
    assert deployments.list() == []


def test_a_full_pool_fails_with_no_capacity_instead_of_spilling_over(deployments, ledger, cluster) -> None:
    dr = [Audience("fr-interior", "DR")]
    deployments.deploy(DeploymentSpec("first", "corridor-tiny", dr, replicas=2))
    with pytest.raises(PlacementError) as info:
        deployments.deploy(DeploymentSpec("second", "corridor-tiny", dr))
    assert str(info.value) == ("cannot place deployment 'second': room for 0 of 1 replicas; 0/4 pools: "
                               "2 RESIDENCY, 2 WRONG_JURISDICTION, 1 MISSING_ACCREDITATION, 1 NO_CAPACITY")
    assert info.value.pools["fr-paris"] == ["NO_CAPACITY"]
    assert cluster.node_id("fr-lyon") not in alive_actor_nodes()
    refusal = entries(ledger, kind="placement")[-1]
    assert refusal["allowed"] is False and refusal["detail"]["pools"]["fr-paris"] == ["NO_CAPACITY"]
    assert [d.name for d in deployments.list()] == ["first"]


def test_a_tensor_parallel_replica_is_a_strict_pack_group_on_one_compliant_node(deployments, cluster) -> None:
    spec = DeploymentSpec("tp", "corridor-tiny", [Audience("de-health", "PUBLIC")], tensor_parallel_size=2,
                          pool="de-berlin")
    (replica,) = deployments.deploy(spec).replicas
    berlin = cluster.node_id("de-berlin")
    group_id = replica.placement_group
    record = placement_group_record(group_id)
    selector = {**labels("de-berlin"), "ray.io/node-id": berlin}
    assert record["strategy"] == "STRICT_PACK" and record["state"] == "CREATED"
    assert record["bundles"] == [{"resources": {"GPU": 1.0}, "label_selector": selector, "node_id": berlin}] * 2
    assert ray_actor(replica.actor_id)["Address"]["NodeID"] == berlin
    deployments.remove("tp")
    assert placement_group_record(group_id)["state"] == "REMOVED"


def test_a_selector_no_node_satisfies_times_out_and_the_pending_actor_is_killed(cluster) -> None:
    binding = ReplicaBinding("probe-r1", "fr-paris", "FR", labels("fr-paris", "DE"))
    began = time.perf_counter()
    with pytest.raises(BindTimeout, match="still pending after 2 s"):
        Binder(timeout_s=2).bind(EchoReplica, binding, kwargs_for("probe-r1", "fr-paris"))
    assert time.perf_counter() - began < 4
    assert pending_actors() == []


def test_a_replica_whose_chosen_node_left_fails_at_once_with_a_bind_error(cluster) -> None:
    binding = ReplicaBinding("probe-r2", "fr-paris", "FR",
                             {**labels("fr-paris"), "ray.io/node-id": "0" * 56})
    began = time.perf_counter()
    with pytest.raises(BindError, match="cannot schedule replica probe-r2") as info:
        Binder(timeout_s=20).bind(EchoReplica, binding, kwargs_for("probe-r2", "fr-paris"))
    assert not isinstance(info.value, BindTimeout)
    assert time.perf_counter() - began < 5
    assert pending_actors() == []


def pending_actors() -> list[dict]:
    from ray._private.state import actors

    return [a for a in actors().values() if a["State"] in ("PENDING_CREATION", "DEPENDENCIES_UNREADY")]


def kwargs_for(replica: str, pool: str) -> dict:
    return {"deployment": "probe", "replica_id": replica, "model": "corridor-tiny", "pool": pool,
            "jurisdiction": POOLS[pool], "tensor_parallel_size": 1, "config": {}}


class MisroutingBinder(Binder):
    """A binding layer gone wrong: it asks Ray for Lyon whatever the decision said."""

    def __init__(self, cluster) -> None:
        super().__init__(timeout_s=20)
        self.lyon = {**labels("fr-lyon"), "ray.io/node-id": cluster.node_id("fr-lyon")}

    def bind(self, actor_class, binding, kwargs, *, timeout_s=None):
        wrong = ReplicaBinding(binding.replica, binding.pool, binding.jurisdiction, binding.expected,
                               self.lyon, binding.gpus, binding.tensor_parallel_size, binding.cpus)
        return super().bind(actor_class, wrong, kwargs, timeout_s=timeout_s)


def test_a_replica_landing_off_its_decision_is_killed_and_recorded(cluster, ledger, default_policy) -> None:
    managed = Deployments(default_policy, ledger, EchoReplica, binder=MisroutingBinder(cluster))
    try:
        with pytest.raises(PlacementViolation) as info:
            managed.deploy(DeploymentSpec("dr", "corridor-tiny", [Audience("fr-interior", "DR")]))
    finally:
        managed.close()
    lyon = cluster.node_id("fr-lyon")
    assert info.value.node_id == lyon
    assert {m.code for m in info.value.mismatches} >= {"LABEL_MISMATCH"}
    assert lyon not in alive_actor_nodes()
    (violation,) = entries(ledger, kind="violation")
    assert (violation["pool"], violation["node_id"], violation["allowed"]) == ("fr-paris", lyon, False)
    assert violation["detail"]["landed_labels"]["corridor.eu/pool"] == "fr-lyon"
    assert entries(ledger, kind="placement") == []
    assert managed.list() == []


def test_list_scale_and_remove_show_what_ray_runs(deployments, cluster) -> None:
    spec = DeploymentSpec("eu", "corridor-tiny", [Audience("eu-agency", "PUBLIC")], replicas=1)
    deployments.deploy(spec)
    view = deployments.scale("eu", 3)
    assert len(view.replicas) == 3 and view.status == "ready"
    assert {j for _, j in where(view)} == {"FR"}
    assert {p for p, _ in where(view)} == {"fr-paris", "fr-lyon"}
    deployments.heal()
    (listed,) = deployments.list()
    assert [r.endpoint for r in listed.replicas] == [f"echo://{r.id}" for r in listed.replicas]
    assert all(r.state == "ALIVE" and r.node_id == ray_actor(r.actor_id)["Address"]["NodeID"]
               for r in listed.replicas)
    shrunk = deployments.scale("eu", 1)
    assert [r.id for r in shrunk.replicas] == ["eu-r1"]
    gone = {r.actor_id for r in view.replicas} - {r.actor_id for r in shrunk.replicas}
    assert {ray_actor(a)["State"] for a in gone} == {"DEAD"}
    deployments.remove("eu")
    assert deployments.list() == []

"""A tenant's ``quotas.max_gpus`` at placement: replicas of its audiences count against it, and a
replica that would go over is refused everywhere with TENANT_GPU_QUOTA, never placed elsewhere."""

from __future__ import annotations

from policies import Policy
from scheduler import Audience, DeploymentSpec, Placer
from scheduler.placement import default_filters
from scheduler.quotas import TENANT_GPU_QUOTA, GpuQuotaFilter

from placement_cases import default_document, every_pool, policy_of, snapshot


def quota_policy(max_gpus: int) -> Policy:
    document = default_document()
    for tenant in document["tenants"]:
        tenant.setdefault("quotas", {})["max_gpus"] = max_gpus
    return policy_of(document)


def place(policy: Policy, held: dict[str, float], replicas: int, *audiences: tuple[str, str]):
    placer = Placer(policy, filters=[*default_filters(), GpuQuotaFilter(policy, lambda: held)])
    spec = DeploymentSpec("d", "corridor-tiny", [Audience(*a) for a in audiences], replicas=replicas)
    nodes = [node._replace(gpus_total=8, gpus_free=8) for node in every_pool()]
    return placer.place(placer.admit(spec), snapshot(policy, *nodes), replicas)


def test_replicas_within_the_quota_are_placed():
    placement = place(quota_policy(2), {}, 2, ("fr-interior", "DR"))
    assert placement.complete and [a.pool for a in placement.assignments] == ["fr-paris", "fr-paris"]


def test_the_replica_that_would_go_over_the_quota_is_refused_with_a_stable_code():
    placement = place(quota_policy(2), {"fr-interior": 1.0}, 2, ("fr-interior", "DR"))
    assert len(placement.assignments) == 1 and not placement.complete
    assert placement.tally()[TENANT_GPU_QUOTA] == 1
    (status,) = placement.rejected["fr-paris"]
    assert status.code == TENANT_GPU_QUOTA and status.details["tenant"] == "fr-interior"
    assert "quotas.max_gpus" in status.message


def test_a_shared_replica_counts_against_every_audiences_tenant():
    placement = place(quota_policy(3), {"fr-health": 3.0}, 1, ("eu-agency", "PUBLIC"),
                      ("fr-health", "PUBLIC"))
    assert placement.assignments == () and TENANT_GPU_QUOTA in placement.summary()


def test_deployments_enforce_the_quota_by_default(ledger):
    from scheduler.deployments import Deployments

    deployments = Deployments(Policy.load(), ledger, object)
    assert any(isinstance(f, GpuQuotaFilter) for f in deployments.placer.filters)
    assert deployments.tenant_gpus() == {}

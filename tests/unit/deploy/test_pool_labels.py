"""The manifests' worker-group labels are exactly what the inventory reads, for every pool of the bundle."""

from __future__ import annotations

import importlib.util
import sys

import pytest

import scheduler.snapshot
from policies import Policy
from policies.bundle import JURISDICTION_LABEL, POOL_LABEL
from scheduler.snapshot import QuarantineCode, RayNode, build_snapshot

from deploy_manifests import KUBERAY, OVERLAYS, REPO, find, rendered
from kustomize_render import render


def groups() -> dict[str, tuple[str, dict]]:
    """Worker group name → (overlay, group), over both overlays."""
    out = {}
    for overlay in OVERLAYS:
        (cluster,) = find(rendered(overlay), "RayCluster")
        for group in cluster["spec"]["workerGroupSpecs"]:
            assert group["groupName"] not in out, f"{group['groupName']} in two overlays"
            out[group["groupName"]] = (overlay, group)
    return out


def ray_nodes_of(overlay_groups) -> list[RayNode]:
    """The Ray nodes one pod of each group becomes: its labels, its GPUs."""
    return [RayNode(f"node-{g['groupName']}", True, g["labels"],
                    float(g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]),
                    0.0) for g in overlay_groups]


def test_the_inventory_reads_the_label_keys_the_manifests_set(default_policy: Policy) -> None:
    assert (scheduler.snapshot.POOL_LABEL, scheduler.snapshot.JURISDICTION_LABEL) == (POOL_LABEL, JURISDICTION_LABEL)
    for _, group in groups().values():
        assert set(group["labels"]) == {POOL_LABEL, JURISDICTION_LABEL}


def test_every_pool_of_the_default_bundle_is_one_worker_group_of_its_jurisdiction(default_policy: Policy) -> None:
    found = groups()
    pools = default_policy.bundle.pools
    assert sorted(found) == sorted(pool.id for pool in pools)
    for pool in pools:
        overlay, group = found[pool.id]
        assert OVERLAYS[overlay] == pool.jurisdiction
        assert group["labels"] == dict(pool.node_selector)


def test_no_worker_group_can_grow_beyond_the_gpus_its_pool_declares(default_policy: Policy) -> None:
    found = groups()
    for pool in default_policy.bundle.pools:
        _, group = found[pool.id]
        per_pod = int(group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
        assert group["maxReplicas"] * per_pod <= pool.gpu.count, pool.id


@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_the_inventory_puts_each_groups_nodes_in_its_pool(default_policy: Policy, overlay) -> None:
    (cluster,) = find(rendered(overlay), "RayCluster")
    snapshot = build_snapshot(default_policy.bundle.pools, ray_nodes_of(cluster["spec"]["workerGroupSpecs"]))
    assert not snapshot.quarantined
    for group in cluster["spec"]["workerGroupSpecs"]:
        assert [n.node_id for n in snapshot.pools[group["groupName"]].nodes] == [f"node-{group['groupName']}"]


def test_a_node_started_from_the_base_alone_is_quarantined_never_used(default_policy: Policy) -> None:
    (cluster,) = find(render(KUBERAY / "base"), "RayCluster")
    snapshot = build_snapshot(default_policy.bundle.pools, ray_nodes_of(cluster["spec"]["workerGroupSpecs"]))
    assert not snapshot.nodes
    assert {q.code for q in snapshot.quarantined.values()} == {QuarantineCode.UNKNOWN_POOL_LABEL}


def test_the_local_ray_start_cluster_labels_its_workers_the_same_way(default_policy: Policy) -> None:
    spec = importlib.util.spec_from_file_location("corridor_local_ray_cluster", REPO / "deploy/local/ray_cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.pool_labels() == {name: group["labels"] for name, (_, group) in groups().items()}

"""Ray options built for a placed replica, and the read-back check of where it landed (no cluster)."""

from __future__ import annotations

from typing import NamedTuple

import pytest
from ray.util.placement_group import PlacementGroup
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from scheduler import (NODE_ID_LABEL, Assignment, DeploymentSpec, LabelSelector, ReplicaBinding,
                       ViolationCode, check_landing)

PARIS = {"corridor.eu/pool": "fr-paris", "corridor.eu/jurisdiction": "FR"}
PARIS_NODE = {**PARIS, NODE_ID_LABEL: "n1"}


def assignment(node_id: str = "n1") -> Assignment:
    return Assignment("fr-paris", "FR", "Paris", node_id, PARIS, (), {})


def spec(**kwargs) -> DeploymentSpec:
    return DeploymentSpec("chat", "corridor-tiny", [("fr-interior", "DR")], **kwargs)


def test_a_single_gpu_replica_is_one_actor_pinned_by_label_selector() -> None:
    binding = ReplicaBinding.for_assignment("chat-r1", assignment(), spec())
    assert binding.placement_group_options() is None
    assert binding.actor_options() == {"num_cpus": 0.0, "num_gpus": 1, "max_restarts": 0,
                                       "name": "corridor:chat-r1", "label_selector": PARIS_NODE}


def test_a_tensor_parallel_replica_is_a_strict_pack_group_with_a_selector_per_bundle() -> None:
    binding = ReplicaBinding.for_assignment("chat-r1", assignment(), spec(tensor_parallel_size=2,
                                                                          cpus_per_replica=1))
    assert binding.placement_group_options() == {
        "bundles": [{"GPU": 1.0, "CPU": 1.0}, {"GPU": 1.0}], "strategy": "STRICT_PACK",
        "bundle_label_selector": [PARIS_NODE, PARIS_NODE], "name": "corridor:chat-r1"}


def test_the_tensor_parallel_actor_sits_in_bundle_zero_and_captures_child_tasks() -> None:
    binding = ReplicaBinding.for_assignment("chat-r1", assignment(), spec(tensor_parallel_size=4))
    group = PlacementGroup.empty()
    options = binding.actor_options(group)
    strategy = options.pop("scheduling_strategy")
    assert options == {"num_cpus": 0.0, "num_gpus": 0, "max_restarts": 0, "name": "corridor:chat-r1"}
    assert isinstance(strategy, PlacementGroupSchedulingStrategy)
    assert (strategy.placement_group, strategy.placement_group_bundle_index,
            strategy.placement_group_capture_child_tasks) == (group, 0, True)


def test_every_bundle_holds_at_most_one_gpu_as_vllm_requires() -> None:
    binding = ReplicaBinding.for_assignment("chat-r1", assignment(), spec(tensor_parallel_size=8))
    bundles = binding.placement_group_options()["bundles"]
    assert len(bundles) == 8 and all(b["GPU"] == 1.0 for b in bundles)


def test_a_tensor_parallel_actor_without_its_group_is_refused_with_the_fix() -> None:
    binding = ReplicaBinding.for_assignment("chat-r1", assignment(), spec(tensor_parallel_size=2))
    with pytest.raises(ValueError, match=r"actor_options\(ray.util.placement_group"):
        binding.actor_options()


BAD_SELECTORS = {
    "an empty selector": {},
    "a non-string value": {"corridor.eu/pool": 3},
    "an operator value, which the read-back cannot compare": {"corridor.eu/pool": "!fr-paris"},
    "an in() operator value": {"corridor.eu/pool": "in(fr-paris,fr-lyon)"},
    "a key Ray rejects": {"bad key!": "x"},
}


@pytest.mark.parametrize("labels", BAD_SELECTORS.values(), ids=BAD_SELECTORS.keys())
def test_label_selectors_are_checked_when_built(labels) -> None:
    with pytest.raises(ValueError, match="label selector"):
        LabelSelector(labels)


def test_label_selectors_compare_by_value_and_read_well() -> None:
    a = LabelSelector({"b": "2", "a": "1"})
    assert a == LabelSelector({"a": "1", "b": "2"}) and hash(a) == hash(LabelSelector(dict(a)))
    assert repr(a) == "LabelSelector({'a': '1', 'b': '2'})"
    assert a.to_ray() == {"a": "1", "b": "2"}


BAD_BINDINGS = {
    "a jurisdiction outside FR and DE": dict(jurisdiction="US"),
    "zero GPUs": dict(gpus=0),
    "tensor parallelism with fewer GPUs than ranks": dict(gpus=1, tensor_parallel_size=2),
    "negative CPUs": dict(cpus=-1),
}


@pytest.mark.parametrize("override", BAD_BINDINGS.values(), ids=BAD_BINDINGS.keys())
def test_bindings_are_checked_when_built(override) -> None:
    fields = dict(replica="r", pool="fr-paris", jurisdiction="FR", expected=PARIS) | override
    with pytest.raises(ValueError, match="want"):
        ReplicaBinding(**fields)


class Landing(NamedTuple):
    actor_node: str | None
    reported: dict
    node_labels: dict | None
    bundle_nodes: list
    codes: list


GOOD = {"node_id": "n1", "labels": PARIS_NODE}
CHECKS = {
    "a replica on the decided node with the decided labels passes":
        Landing("n1", GOOD, PARIS_NODE, [], []),
    "a replica on a Lyon node is a label mismatch":
        Landing("n2", {"node_id": "n2", "labels": {"corridor.eu/pool": "fr-lyon"}},
                {"corridor.eu/pool": "fr-lyon", "corridor.eu/jurisdiction": "FR", NODE_ID_LABEL: "n2"},
                [], [ViolationCode.LABEL_MISMATCH, ViolationCode.REPORTED_LABEL_MISMATCH]),
    "a replica on a German-labelled node is a jurisdiction mismatch too":
        Landing("n1", {"node_id": "n1", "labels": {**PARIS_NODE, "corridor.eu/jurisdiction": "DE"}},
                {**PARIS_NODE, "corridor.eu/jurisdiction": "DE"}, [],
                [ViolationCode.LABEL_MISMATCH, ViolationCode.JURISDICTION_MISMATCH]),
    "an actor that reports another node than Ray's actor table is caught":
        Landing("n1", {"node_id": "n9", "labels": PARIS_NODE}, PARIS_NODE, [],
                [ViolationCode.NODE_REPORT_MISMATCH]),
    "an actor whose labels differ from Ray's node table is caught":
        Landing("n1", {"node_id": "n1", "labels": {}}, PARIS_NODE, [],
                [ViolationCode.REPORTED_LABEL_MISMATCH]),
    "a node Ray does not list as alive is caught":
        Landing("n1", GOOD, None, [], [ViolationCode.NODE_UNKNOWN]),
    "a placement-group bundle on another node is caught":
        Landing("n1", GOOD, PARIS_NODE, ["n1", "n2"], [ViolationCode.BUNDLE_NODE_MISMATCH]),
}


@pytest.mark.parametrize("landing", CHECKS.values(), ids=CHECKS.keys())
def test_read_back(landing: Landing) -> None:
    binding = ReplicaBinding.for_assignment("chat-r1", assignment(), spec())
    found = check_landing(binding, actor_node=landing.actor_node, reported=landing.reported,
                          node_labels=landing.node_labels, bundle_nodes=landing.bundle_nodes)
    assert [m.code for m in found] == landing.codes

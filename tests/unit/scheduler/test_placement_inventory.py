"""Inventory: nodes matched to pools by node selector; contradicting nodes quarantined."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from policies import Policy
from scheduler import QuarantineCode, RayNode

from placement_cases import default_document, node, policy_of, snapshot


class Case(NamedTuple):
    node: RayNode
    pool: str | None  # the pool it joins
    quarantine: QuarantineCode | None
    message: str | None = None


CASES = {
    "a node labelled like the Paris pool joins the Paris pool":
        Case(node("fr-paris"), "fr-paris", None),
    "the head without corridor labels is in no pool and not quarantined":
        Case(node(None), None, None),
    "a node claiming a pool the bundle does not know is quarantined":
        Case(node("fr-marseille", name="n1"), None, QuarantineCode.UNKNOWN_POOL_LABEL,
             "node n1 claims pool fr-marseille, which the policy bundle does not know"),
    "a node claiming the Paris pool with a German jurisdiction label is quarantined":
        Case(node("fr-paris", jurisdiction="DE", name="n2"), None, QuarantineCode.JURISDICTION_MISMATCH,
             "node n2 claims pool fr-paris (FR) but is labelled jurisdiction DE"),
    "a node claiming a pool without any jurisdiction label is quarantined":
        Case(RayNode("n3", True, {"corridor.eu/pool": "de-berlin"}, 2, 2), None,
             QuarantineCode.SELECTOR_MISMATCH,
             "node n3 claims pool de-berlin but lacks labels of its node selector "
             "{'corridor.eu/pool': 'de-berlin', 'corridor.eu/jurisdiction': 'DE'}"),
    "extra labels do not keep a node out of its pool":
        Case(node("de-berlin", extra={"rack": "r7"}), "de-berlin", None),
    "a dead node is in no pool and not quarantined":
        Case(node("fr-paris", alive=False), None, None),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_inventory(default_policy: Policy, case: Case) -> None:
    snap = snapshot(default_policy, case.node)
    member = snap.nodes.get(case.node.node_id)
    assert (member.pool if member else None) == case.pool
    found = snap.quarantined.get(case.node.node_id)
    assert (found.code if found else None) == case.quarantine
    if case.message:
        assert found.message == case.message


def test_a_dead_node_is_listed_as_dead_in_its_pool(default_policy: Policy) -> None:
    snap = snapshot(default_policy, node("fr-paris", alive=False, name="gone"), node("fr-paris", name="up"))
    paris = snap.pools["fr-paris"]
    assert [n.node_id for n in paris.nodes] == ["up"]
    assert paris.dead == ("gone",)
    assert snap.dead == frozenset({"gone"})


def test_every_bundle_pool_is_in_the_snapshot_even_without_nodes(default_policy: Policy) -> None:
    snap = snapshot(default_policy)
    assert list(snap.pools) == ["fr-paris", "fr-lyon", "de-frankfurt", "de-berlin"]
    assert all(not state.nodes for state in snap.pools.values())


def test_a_quarantined_node_claiming_a_known_pool_is_listed_with_that_pool(default_policy: Policy) -> None:
    snap = snapshot(default_policy, node("fr-paris", jurisdiction="DE", name="forged"))
    assert snap.pools["fr-paris"].quarantined == ("forged",)
    assert snap.to_json()["quarantined"][0]["code"] == "JURISDICTION_MISMATCH"


def test_pools_sum_the_gpus_of_their_live_nodes(default_policy: Policy) -> None:
    snap = snapshot(default_policy, node("de-berlin", name="a", free=1), node("de-berlin", name="b"))
    berlin = snap.pools["de-berlin"]
    assert (berlin.gpus_total, berlin.gpus_free) == (4, 3)
    assert berlin.to_json()["nodes"] == [{"node_id": "a", "gpus_total": 2, "gpus_free": 1},
                                         {"node_id": "b", "gpus_total": 2, "gpus_free": 2}]


def test_a_custom_node_selector_matches_by_its_own_labels() -> None:
    document = default_document()
    document["pools"][0]["node_selector"] = {"site": "paris-1", "corridor.eu/jurisdiction": "FR"}
    policy = policy_of(document)
    snap = snapshot(policy, RayNode("p1", True, {"site": "paris-1", "corridor.eu/jurisdiction": "FR"}, 2, 2))
    assert snap.nodes["p1"].pool == "fr-paris"


def test_a_node_matching_two_pools_selectors_is_quarantined() -> None:
    document = default_document()
    document["pools"][0]["node_selector"] = {"zone": "eu-west"}
    document["pools"][1]["node_selector"] = {"zone": "eu-west"}
    policy = policy_of(document)
    snap = snapshot(policy, RayNode("both", True, {"zone": "eu-west"}, 2, 2))
    assert snap.quarantined["both"].code == QuarantineCode.AMBIGUOUS_POOL
    assert "both" not in snap.nodes


def test_a_node_of_the_other_jurisdiction_in_a_sites_own_cluster_is_quarantined(default_policy):
    from scheduler.snapshot import build_snapshot

    nodes = [RayNode("n-paris", True, {"corridor.eu/pool": "fr-paris", "corridor.eu/jurisdiction": "FR"}, 2, 2),
             RayNode("n-frankfurt", True, {"corridor.eu/pool": "de-frankfurt",
                                           "corridor.eu/jurisdiction": "DE"}, 2, 2)]
    snapshot = build_snapshot(default_policy.bundle.pools, nodes, site="FR")
    assert set(snapshot.nodes) == {"n-paris"}
    assert snapshot.quarantined["n-frankfurt"].code == QuarantineCode.FOREIGN_JURISDICTION
    assert "site FR" in snapshot.quarantined["n-frankfurt"].message
    everywhere = build_snapshot(default_policy.bundle.pools, nodes)
    assert set(everywhere.nodes) == {"n-paris", "n-frankfurt"}, "without a site, both are pool members"

"""Scores: the audiences' home jurisdiction first, then spread over nodes and sites, then packing."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from policies import Policy
from scheduler import Audience, DeploymentSpec, HomeJurisdiction, PackGpus, Placer, Spread

from placement_cases import every_pool, node, snapshot


class Case(NamedTuple):
    audiences: list[tuple]
    nodes: list
    replicas: int
    nodes_chosen: list[str]
    existing: list[str] = []
    held: dict = {}


CASES = {
    "an EU agency at home in France is placed in France although Germany is allowed too":
        Case([("eu-agency", "PUBLIC")], [node("de-frankfurt"), node("fr-lyon")], 1, ["node-fr-lyon"]),
    "a German and a French audience sharing a replica split the home preference evenly":
        Case([("eu-agency", "PUBLIC"), ("de-health", "PUBLIC")],
             [node("de-berlin", free=1), node("de-frankfurt")], 1, ["node-de-berlin"]),
    "two replicas spread over the two French sites before doubling up":
        Case([("eu-agency", "PUBLIC")], every_pool(), 2, ["node-fr-paris", "node-fr-lyon"]),
    "two replicas in one pool spread over its two nodes":
        Case([("fr-interior", "DR")], [node("fr-paris", name="a"), node("fr-paris", name="b")], 2,
             ["b", "a"]),
    "a replica avoids the node an existing replica of the deployment runs on":
        Case([("fr-interior", "DR")], [node("fr-paris", name="a"), node("fr-paris", name="b")], 1,
             ["a"], existing=["b"]),
    "packing prefers the partly used node so a whole node stays free":
        Case([("fr-interior", "DR")],
             [node("fr-paris", name="a", free=1), node("fr-paris", name="b", free=2)], 1, ["a"]),
    "GPUs this scheduler holds count as used even before Ray reports them":
        Case([("fr-interior", "DR")],
             [node("fr-paris", name="a", free=2), node("fr-paris", name="b", free=2)], 2, ["a", "a"],
             held={"b": 2}),
    "a node where this scheduler holds a GPU counts as partly used for packing":
        Case([("fr-interior", "DR")],
             [node("fr-paris", name="a", free=2), node("fr-paris", name="b", free=2)], 1, ["b"],
             held={"b": 1}),
    "a node Ray reports full is skipped although the scheduler holds nothing there":
        Case([("fr-interior", "DR")],
             [node("fr-paris", name="a", free=0), node("fr-paris", name="b", free=2)], 2, ["b", "b"]),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_scores(default_policy: Policy, case: Case) -> None:
    spec = DeploymentSpec("chat", "corridor-tiny", [Audience(*a) for a in case.audiences],
                          replicas=case.replicas)
    placer = Placer(default_policy)
    placement = placer.place(placer.admit(spec), snapshot(default_policy, *case.nodes), case.replicas,
                             existing=case.existing, held=case.held)
    assert [a.node_id for a in placement.assignments] == case.nodes_chosen


def test_each_assignment_records_the_score_of_every_scorer(default_policy: Policy) -> None:
    spec = DeploymentSpec("chat", "corridor-tiny", [Audience("eu-agency", "PUBLIC")])
    placer = Placer(default_policy)
    (assignment,) = placer.place(placer.admit(spec), snapshot(default_policy, *every_pool()), 1).assignments
    assert assignment.scores == {"home-jurisdiction": 1.0, "spread": 1.0, "pack": 0.5}


def test_scorers_are_pluggable_and_weighted(default_policy: Policy) -> None:
    spec = DeploymentSpec("chat", "corridor-tiny", [Audience("eu-agency", "PUBLIC")])
    placer = Placer(default_policy, scorers=[HomeJurisdiction(weight=0.0), PackGpus(), Spread()])
    nodes = [node("de-frankfurt", free=1), node("fr-lyon", free=2)]
    (assignment,) = placer.place(placer.admit(spec), snapshot(default_policy, *nodes), 1).assignments
    assert assignment.pool == "de-frankfurt"


def test_placement_is_deterministic_for_equal_scores(default_policy: Policy) -> None:
    spec = DeploymentSpec("chat", "corridor-tiny", [Audience("fr-interior", "DR")])
    placer = Placer(default_policy)
    nodes = [node("fr-paris", name=name) for name in ("c", "a", "b")]
    chosen = {placer.place(placer.admit(spec), snapshot(default_policy, *order), 1).assignments[0].node_id
              for order in (nodes, nodes[::-1])}
    assert chosen == {"c"}

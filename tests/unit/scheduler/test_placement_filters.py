"""Filters: the rulebook for every audience, the request's pin, then capacity. One row per case."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from policies import Policy
from scheduler import (Audience, CapacityFilter, DeploymentSpec, Placer, RulebookFilter, SchedulerCode,
                       Status)

from placement_cases import every_pool, node, snapshot


class Case(NamedTuple):
    audiences: list[tuple]
    nodes: list
    replicas: int
    pools: list[str] | None  # where the replicas go, or None: refused
    summary: str
    pin: dict = {}
    tp: int = 1


CASES = {
    "DR of a French ministry goes only to the DR-homologated Paris pool":
        Case([("fr-interior", "DR")], every_pool(), 2, ["fr-paris", "fr-paris"],
             "1/4 pools: 2 RESIDENCY, 2 WRONG_JURISDICTION, 1 MISSING_ACCREDITATION"),
    "VS-NfD of the German federal IT provider goes only to Frankfurt":
        Case([("de-federal-it", "VS-NfD")], every_pool(), 1, ["de-frankfurt"],
             "1/4 pools: 2 RESIDENCY, 2 WRONG_JURISDICTION, 1 MISSING_ACCREDITATION"),
    "health data of a French hospital goes only to the HDS-certified Paris pool":
        Case([("fr-health", "PUBLIC")], every_pool(), 1, ["fr-paris"],
             "1/4 pools: 3 MISSING_ACCREDITATION, 2 RESIDENCY"),
    "a replica shared by two audiences goes only where both are allowed":
        Case([("eu-agency", "PUBLIC"), ("fr-health", "PUBLIC")], every_pool(), 1, ["fr-paris"],
             "1/4 pools: 3 MISSING_ACCREDITATION, 2 RESIDENCY"),
    "audiences that share no allowed pool are refused by the rulebook alone":
        Case([("fr-interior", "DR"), ("de-federal-it", "VS-NfD")], every_pool(), 1, None,
             "0/4 pools: 4 RESIDENCY, 4 WRONG_JURISDICTION, 2 MISSING_ACCREDITATION"),
    "SECRET is refused everywhere by classified-never":
        Case([("fr-interior", "SECRET")], every_pool(), 1, None,
             "0/4 pools: 4 CLASSIFIED_NEVER, 4 MARKING_NOT_ALLOWED_FOR_TENANT, "
             "4 MODEL_NOT_ALLOWED_FOR_MARKING, 2 RESIDENCY"),
    "a full Paris pool is NO_CAPACITY and DR does not spill over to Lyon":
        Case([("fr-interior", "DR")], every_pool(free=0), 1, None,
             "0/4 pools: 2 RESIDENCY, 2 WRONG_JURISDICTION, 1 MISSING_ACCREDITATION, 1 NO_CAPACITY"),
    "the third DR replica finds Paris full after the first two took its GPUs":
        Case([("fr-interior", "DR")], every_pool(), 3, None,
             "0/4 pools: 2 RESIDENCY, 2 WRONG_JURISDICTION, 1 MISSING_ACCREDITATION, 1 NO_CAPACITY"),
    "a pool whose node is dead has NO_LIVE_NODES":
        Case([("de-federal-it", "VS-NfD")],
             [node("de-frankfurt", alive=False), node("de-berlin")], 1, None,
             "0/4 pools: 2 RESIDENCY, 2 WRONG_JURISDICTION, 1 MISSING_ACCREDITATION, 1 NO_LIVE_NODES"),
    "a pool whose only node is quarantined is QUARANTINED, never used":
        Case([("fr-interior", "DR")], [node("fr-paris", jurisdiction="DE"), node("fr-lyon")], 1, None,
             "0/4 pools: 2 RESIDENCY, 2 WRONG_JURISDICTION, 1 MISSING_ACCREDITATION, 1 QUARANTINED"),
    "a pin to Germany keeps an EU agency's replica in Germany":
        Case([("eu-agency", "PUBLIC")], every_pool(), 1, ["de-frankfurt"],
             "2/4 pools: 2 PINNED_ELSEWHERE", pin={"jurisdiction": "DE"}),
    "a pin to a pool the rulebook refuses is refused, not honoured":
        Case([("fr-interior", "DR")], every_pool(), 1, None,
             "0/4 pools: 2 RESIDENCY, 2 WRONG_JURISDICTION, 1 MISSING_ACCREDITATION, 1 PINNED_ELSEWHERE",
             pin={"pool": "fr-lyon"}),
    "tensor parallelism needs all its GPUs free on one node":
        Case([("fr-interior", "DR")], [node("fr-paris", free=1, name="a"), node("fr-paris", free=1, name="b")],
             1, None, "0/4 pools: 2 RESIDENCY, 2 WRONG_JURISDICTION, 1 MISSING_ACCREDITATION, "
             "1 NO_CAPACITY", tp=2),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_filters(default_policy: Policy, case: Case) -> None:
    spec = DeploymentSpec("chat", "corridor-tiny", [Audience(*a) for a in case.audiences],
                          replicas=case.replicas, tensor_parallel_size=case.tp, **case.pin)
    placer = Placer(default_policy)
    placement = placer.place(placer.admit(spec), snapshot(default_policy, *case.nodes), case.replicas)
    assert placement.summary() == case.summary
    if case.pools is None:
        assert not placement.complete
    else:
        assert placement.complete
        assert [a.pool for a in placement.assignments] == case.pools


def test_the_inventory_is_not_read_when_the_rulebook_allows_no_pool(default_policy: Policy) -> None:
    reads = []
    placer = Placer(default_policy)
    spec = DeploymentSpec("secret", "corridor-tiny", [Audience("fr-interior", "SECRET")])
    placement = placer.place(placer.admit(spec), lambda: reads.append(1), 1)
    assert reads == []
    assert placement.tally()["CLASSIFIED_NEVER"] == 4


def test_the_inventory_is_read_once_when_some_pool_is_allowed(default_policy: Policy) -> None:
    reads = []

    def read():
        reads.append(1)
        return snapshot(default_policy, *every_pool())

    placer = Placer(default_policy)
    spec = DeploymentSpec("dr", "corridor-tiny", [Audience("fr-interior", "DR")], replicas=2)
    assert placer.place(placer.admit(spec), read, 2).complete
    assert reads == [1]


def test_the_rulebook_is_asked_once_per_audience_not_per_pool(default_policy: Policy) -> None:
    calls = []

    class CountingPolicy(Policy):
        def decide_profiles(self, workload, **kwargs):
            calls.append(workload.tenant)
            return super().decide_profiles(workload, **kwargs)

        def decide_all(self, *args, **kwargs):
            raise AssertionError("placement must decide once per pool profile, not per pool")

        def decide(self, *args, **kwargs):
            raise AssertionError("placement must not ask pool by pool")

    policy = CountingPolicy(default_policy.bundle)
    spec = DeploymentSpec("shared", "corridor-tiny",
                          [Audience("eu-agency", "PUBLIC"), Audience("fr-health", "PUBLIC")], replicas=2)
    placer = Placer(policy)
    placer.place(placer.admit(spec), snapshot(policy, *every_pool()), 2)
    assert calls == ["eu-agency", "fr-health"]


def test_a_refused_pool_lists_the_reasons_of_every_audience(default_policy: Policy) -> None:
    spec = DeploymentSpec("shared", "corridor-tiny",
                          [Audience("fr-interior", "DR"), Audience("fr-health", "PUBLIC")])
    placer = Placer(default_policy)
    placement = placer.place(placer.admit(spec), snapshot(default_policy, *every_pool()), 1)
    assert placement.codes()["fr-lyon"] == ["MISSING_ACCREDITATION"]
    rules = {r.rule for r in placement.rejected["fr-lyon"]}
    assert rules == {"dr-national", "health-fr"}


def test_the_allowed_pool_carries_one_allowed_decision_per_audience(default_policy: Policy) -> None:
    spec = DeploymentSpec("shared", "corridor-tiny",
                          [Audience("fr-interior", "DR"), Audience("fr-health", "PUBLIC")])
    placer = Placer(default_policy)
    placement = placer.place(placer.admit(spec), snapshot(default_policy, *every_pool()), 1)
    (assignment,) = placement.assignments
    assert [d.workload.tenant for d in assignment.decisions] == ["fr-interior", "fr-health"]
    assert all(d.allowed and d.pool == "fr-paris" for d in assignment.decisions)
    assert assignment.declaration is None


def test_filters_explain_with_statuses_and_fixed_messages(default_policy: Policy) -> None:
    spec = DeploymentSpec("dr", "corridor-tiny", [Audience("fr-interior", "DR")], pool="fr-lyon")
    placer = Placer(default_policy)
    placement = placer.place(placer.admit(spec), snapshot(default_policy, node("fr-paris", free=0)), 1)
    assert placement.rejected["fr-paris"] == (Status(
        "PINNED_ELSEWHERE", "pin", "deployment dr is pinned to fr-lyon; pool fr-paris is not",
        {"deployment": "dr", "pin": "fr-lyon", "pool": "fr-paris"}),)
    assert [r.rule for r in placement.rejected["fr-lyon"]] == ["dr-national"]
    spec = DeploymentSpec("dr", "corridor-tiny", [Audience("fr-interior", "DR")])
    placement = placer.place(placer.admit(spec), snapshot(default_policy, node("fr-paris", free=0)), 1)
    (status,) = placement.rejected["fr-paris"]
    assert (status.code, status.rule) == (SchedulerCode.NO_CAPACITY, "capacity")
    assert status.message == "pool fr-paris has no node with 1 free GPUs (at most 0 free on one node)"


def test_custom_filters_plug_in_by_name_and_explain_themselves(default_policy: Policy) -> None:
    class Maintenance:
        name = "maintenance"
        needs_inventory = False

        def filter(self, cycle, keep):
            out = keep.copy()
            out[cycle.admission.index["fr-lyon"]] = False
            return out

        def why(self, cycle, pool):
            return (Status("MAINTENANCE", self.name, "pool fr-lyon is in maintenance", {}),)

    placer = Placer(default_policy, filters=[Maintenance(), RulebookFilter(), CapacityFilter()])
    spec = DeploymentSpec("eu", "corridor-tiny", [Audience("eu-agency", "PUBLIC")], replicas=2)
    placement = placer.place(placer.admit(spec), snapshot(default_policy, node("fr-lyon")), 2)
    assert placement.codes() == {"fr-lyon": ["MAINTENANCE"], "fr-paris": ["NO_LIVE_NODES"],
                                 "de-frankfurt": ["NO_LIVE_NODES"], "de-berlin": ["NO_LIVE_NODES"]}
    assert placement.summary() == "0/4 pools: 3 NO_LIVE_NODES, 1 MAINTENANCE"


def test_filters_that_need_the_inventory_must_come_last(default_policy: Policy) -> None:
    with pytest.raises(ValueError, match="must come first"):
        Placer(default_policy, filters=[CapacityFilter(), RulebookFilter()])

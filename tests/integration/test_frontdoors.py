"""The front doors on a real Ray cluster: a deployments file applied, scaled, updated replica by
replica, a deployment no pool allows, a policy change that moves a replica — each checked by
asking Ray (its actor and node tables), not the scheduler.

One scenario on one simulated cluster (head, two Paris nodes, Lyon, Frankfurt); the steps run
in order and each starts where the previous one left the cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import yaml

from scheduler import Binder, Deployments, Inventory
from scheduler.current_policy import CurrentPolicy
from scheduler.ledger import Ledger
from serving.deployments_file import DeploymentDecl
from serving.models.catalog import ModelCatalog
from serving.policy_switch import PolicySwitch
from serving.reconcile import Reconciler

from scheduler_cluster import (EchoReplica, default_document, entries, labels, policy_of, ray_actor,
                               simulated_cluster, where)

pytestmark = pytest.mark.integration

INTERIOR = {"name": "interior", "model": "corridor-tiny", "replicas": 2,
            "audiences": [{"tenant": "fr-interior", "marking": "DR"},
                          {"tenant": "fr-health", "marking": "PUBLIC"}]}
NOWHERE = {"name": "vsnfd-in-france", "model": "corridor-tiny", "jurisdiction": "FR",
           "audiences": [{"tenant": "de-federal-it", "marking": "VS-NfD"}]}


@pytest.fixture(scope="module")
def cluster() -> Iterator:
    nodes = {"paris-a": labels("fr-paris"), "paris-b": labels("fr-paris"), "lyon": labels("fr-lyon"),
             "frankfurt": labels("de-frankfurt")}
    with simulated_cluster(nodes) as simulated:
        yield simulated


@pytest.fixture(scope="module")
def document(tmp_path_factory) -> dict:
    models = tmp_path_factory.mktemp("models")
    document = default_document()
    for model in document["models"]:
        (models / model["id"]).mkdir()
        (models / model["id"] / "config.json").write_text("{}")
        model["artifact"] = {"path": str(models / model["id"])}
    return document


@pytest.fixture(scope="module")
def current(document) -> CurrentPolicy:
    return CurrentPolicy(policy_of(document))


@pytest.fixture(scope="module")
def deployments(cluster, module_ledger: Ledger, current) -> Iterator[Deployments]:
    managed = Deployments(current, module_ledger, EchoReplica, inventory=Inventory(current, ledger=module_ledger),
                          binder=Binder(timeout_s=20))
    yield managed
    managed.close()


@pytest.fixture(scope="module")
def reconciler(deployments, tmp_path_factory) -> Reconciler:
    return Reconciler(deployments, ModelCatalog(tmp_path_factory.mktemp("unused")), ready_timeout_s=30)


def decls(*items: dict) -> list[DeploymentDecl]:
    return [DeploymentDecl.model_validate(item) for item in items]


def alive(deployments: Deployments, name: str) -> list[str]:
    """Ray's state of each replica actor of ``name``."""
    return [ray_actor(r.actor_id).get("State") for r in deployments.get(name).replicas]


def test_applying_a_file_places_what_the_rules_allow_and_refuses_the_rest_with_the_tally(reconciler, deployments,
                                                                                         module_ledger):
    plan = reconciler.plan(decls(INTERIOR, NOWHERE))
    assert [(s.action, s.pools) for s in plan] == [("create", ["fr-paris", "fr-paris"]), ("create", [])]
    assert plan[1].refusal.startswith("0/4 pools:") and "PINNED_ELSEWHERE" in plan[1].refusal
    steps = reconciler.apply(decls(INTERIOR, NOWHERE))
    assert [s.status for s in steps] == ["done", "failed"] and "RESIDENCY" in steps[1].error
    assert where(deployments.get("interior")) == [("fr-paris", "FR"), ("fr-paris", "FR")]
    assert "vsnfd-in-france" not in [v.name for v in deployments.list()]
    refusals = [e for e in entries(module_ledger, kind="placement") if not e["allowed"]]
    assert refusals and refusals[-1]["detail"]["deployment"] == "vsnfd-in-france"


def test_scaling_up_and_down_starts_and_stops_ray_actors(reconciler, deployments):
    reconciler.scale("interior", 3)
    assert alive(deployments, "interior") == ["ALIVE"] * 3
    assert {pool for pool, _ in where(deployments.get("interior"))} == {"fr-paris"}
    gone = [r.actor_id for r in deployments.get("interior").replicas][1:]
    reconciler.scale("interior", 1)
    assert alive(deployments, "interior") == ["ALIVE"]
    assert {ray_actor(a)["State"] for a in gone} == {"DEAD"}


def test_a_rolling_update_replaces_each_replica_after_its_successor_serves(reconciler, deployments, module_ledger):
    reconciler.scale("interior", 2)
    old = [r.actor_id for r in deployments.get("interior").replicas]
    changed = {**INTERIOR, "engine_args": {"max_model_len": 1024}}
    (step,) = reconciler.apply(decls(changed))
    assert (step.action, step.status, step.changes) == ("update", "rolling", ["engine_args"])
    reconciler.wait_rollouts(120)
    rollout = reconciler.managed()["interior"].rollout
    assert rollout.state == "done" and len(rollout.replaced) == 2
    assert {ray_actor(a)["State"] for a in old} == {"DEAD"}
    view = deployments.get("interior")
    assert alive(deployments, "interior") == ["ALIVE", "ALIVE"] and not any(r.outdated for r in view.replicas)
    assert view.spec.replica_config["engine_args"] == ["--max-model-len", "1024"]
    rolled = [e["detail"] for e in entries(module_ledger, kind="placement")
              if e["detail"].get("deployment") == "interior" and e["detail"].get("action") == "rollout"]
    started = list(dict.fromkeys(d["replica"] for d in rolled if not d.get("released")))
    released = list(dict.fromkeys(d["replica"] for d in rolled if d.get("released")))
    assert started == [r.id for r in view.replicas] and len(released) == 2
    order = list(dict.fromkeys((d["replica"], bool(d.get("released"))) for d in rolled))
    assert order == [(started[0], False), (released[0], True), (started[1], False), (released[1], True)]


def test_a_policy_that_expires_an_accreditation_moves_the_replica_to_an_allowed_pool(
        reconciler, deployments, current, document, module_ledger, tmp_path_factory):
    reconciler.scale("interior", 1)
    new = copy.deepcopy(document)
    paris, lyon = new["pools"][0], new["pools"][1]
    for accreditation in paris["accreditations"]:
        if accreditation["id"] == "hds":
            accreditation["valid_until"] = "2025-01-31"
    lyon["accreditations"] += [{"id": "hds", "valid_until": "2031-12-31"},
                               {"id": "dr-homologation", "valid_until": "2031-12-31"}]
    switch = PolicySwitch(current, module_ledger, tmp_path_factory.mktemp("home"), deployments=deployments)
    text = yaml.safe_dump(new, sort_keys=False, allow_unicode=True)
    (old,) = deployments.get("interior").replicas
    plan = switch.plan(text)
    assert [(d.replica, d.pool, d.reasons) for d in plan.denied] == [(old.id, "fr-paris", ["EXPIRED_ACCREDITATION"])]
    applied = switch.apply(text)
    assert applied.healed["evicted"] == [old.id] and len(applied.healed["placed"]) == 1
    assert ray_actor(old.actor_id)["State"] == "DEAD"
    assert where(deployments.get("interior")) == [("fr-lyon", "FR")]
    log = entries(module_ledger)
    assert [e for e in log if e["kind"] == "policy"][-1]["policy_digest"] == current.policy.digest
    evict = next(e for e in reversed(log) if e["detail"].get("action") == "evict")
    heal = next(e for e in reversed(log) if e["detail"].get("action") == "heal")
    assert (evict["pool"], evict["allowed"], heal["pool"], heal["allowed"]) == ("fr-paris", False, "fr-lyon", True)
    assert evict["policy_digest"] == heal["policy_digest"] == current.policy.digest


def test_removing_stops_every_actor(reconciler, deployments):
    actors = [r.actor_id for r in deployments.get("interior").replicas]
    reconciler.remove("interior")
    assert {ray_actor(a)["State"] for a in actors} == {"DEAD"}
    assert [v.name for v in deployments.list()] == []

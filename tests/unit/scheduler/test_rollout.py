"""Rolling updates on the real scheduler over a table of fake Ray nodes: one replica at a time,
the old ones serving until each new one serves, never a replica where the rulebook denies."""

from __future__ import annotations

import threading
import time

import pytest

from policies import Policy
from scheduler.exceptions import PlacementError
from scheduler.rollout import Rollout, check_allowed
from scheduler.spec import Audience, DeploymentSpec

from fake_ray import table_scheduler

CHAT = DeploymentSpec("chat", "corridor-tiny", [Audience("fr-interior", "DR")], replicas=2,
                      replica_config={"engine_args": ["--max-model-len", "512"]})
NEW = DeploymentSpec("chat", "corridor-tiny", [Audience("fr-interior", "DR")], replicas=2,
                     replica_config={"engine_args": ["--max-model-len", "1024"]})


@pytest.fixture
def scheduler(ledger):
    deployments, cluster = table_scheduler(Policy.load(), ledger)
    cluster.add("node-fr-paris-2", "fr-paris", "FR")
    deployments.deploy(CHAT)
    return deployments, cluster


def configs(deployments):
    return [(r.id, r.outdated) for r in deployments.get("chat").replicas]


def test_each_old_replica_stops_only_after_its_replacement_serves(scheduler, ledger):
    deployments, cluster = scheduler
    cluster.serve_at_once = False
    rollout = Rollout(deployments, "chat", NEW, ready_timeout_s=10, poll_s=0.01).start()
    seen = []
    for new in ("chat-r3", "chat-r4"):
        deadline = time.monotonic() + 5
        while new not in [r.id for r in deployments.get("chat").replicas]:
            assert time.monotonic() < deadline, f"{new} never started"
            time.sleep(0.01)
        seen.append(configs(deployments))
        time.sleep(0.05)
        assert configs(deployments) == seen[-1], "an old replica stopped before its successor served"
        cluster.set_serving(next(r.actor_id for r in deployments.get("chat").replicas if r.id == new))
    rollout.wait(5)
    assert rollout.state == "done" and rollout.replaced == ["chat-r1", "chat-r2"]
    assert seen[0] == [("chat-r1", True), ("chat-r2", True), ("chat-r3", False)]
    assert seen[1] == [("chat-r2", True), ("chat-r3", False), ("chat-r4", False)]
    assert {a.kwargs["config"]["engine_args"][1] for a in cluster.alive().values()} == {"1024"}


def test_a_new_replica_that_fails_is_released_and_the_old_spec_comes_back(scheduler, ledger):
    deployments, cluster = scheduler
    cluster.serve_at_once = False

    def fail_the_new_one():
        while len(deployments.get("chat").replicas) < 3:
            time.sleep(0.01)
        cluster.set_serving(deployments.get("chat").replicas[-1].actor_id, "failed")

    threading.Thread(target=fail_the_new_one, daemon=True).start()
    rollout = Rollout(deployments, "chat", NEW, ready_timeout_s=10, poll_s=0.01).run()
    assert rollout.state == "failed" and "failed before serving" in rollout.error
    assert configs(deployments) == [("chat-r1", False), ("chat-r2", False)]
    assert deployments.get("chat").spec.replica_config["engine_args"][1] == "512"
    aborted = [i["entry"] for i in ledger.entries(kind="placement", limit=100)["data"]
               if i["entry"]["detail"]["action"] == "rollout-abort"]
    assert [e["detail"]["replica"] for e in aborted] == ["chat-r3"]


def test_an_update_no_pool_allows_is_refused_before_anything_starts(scheduler, ledger):
    deployments, cluster = scheduler
    denied = DeploymentSpec("chat", "corridor-tiny", [Audience("fr-interior", "DR")], replicas=2,
                            jurisdiction="DE")
    before = (len(cluster.actors), ledger.size)
    with pytest.raises(PlacementError, match=r"0/4 pools: .*PINNED_ELSEWHERE"):
        check_allowed(deployments, denied)
    assert (len(cluster.actors), ledger.size) == before


def test_without_room_for_one_more_the_rollout_stops_and_nothing_is_stopped(ledger):
    deployments, cluster = table_scheduler(Policy.load(), ledger)
    deployments.deploy(CHAT)  # fr-paris: one node, two GPUs, both held
    rollout = Rollout(deployments, "chat", NEW, ready_timeout_s=1, poll_s=0.01).run()
    assert rollout.state == "failed" and "NO_CAPACITY" in rollout.error
    assert configs(deployments) == [("chat-r1", False), ("chat-r2", False)]
    assert len(cluster.alive()) == 2

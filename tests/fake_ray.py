"""The real scheduler (:class:`scheduler.deployments.Deployments`) over a Ray that is only a table.

For unit tests of what sits on the scheduler (the deployments API, reconciling, rolling
updates, policy switches): placement, the rulebook, the ledger and healing run for real;
only Ray is replaced — :class:`TableInventory` reads nodes from a list, :class:`TableBinder`
"starts" a replica by recording it on the chosen node. Integration tests run the same code
on a real Ray cluster.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from policies.bundle import JURISDICTION_LABEL, POOL_LABEL
from scheduler.binding import Binder, BoundReplica, NODE_ID_LABEL
from scheduler.inventory import Inventory
from scheduler.snapshot import RayNode, Snapshot, build_snapshot


@dataclass
class Actor:
    node_id: str
    gpus: int
    state: str = "ALIVE"
    endpoint: str | None = None
    serving: str = "starting"  # starting, ready, failed
    kwargs: dict[str, Any] = field(default_factory=dict)


class FakeCluster:
    """Nodes (two GPUs each, labelled by pool) and the replica actors on them."""

    def __init__(self, pools: Mapping[str, str], *, gpus: int = 2) -> None:
        self.nodes: dict[str, RayNode] = {}
        self.actors: dict[str, Actor] = {}
        self.serve_at_once = True  # a started replica serves at once (else: set_serving)
        for pool, jurisdiction in pools.items():
            self.add(f"node-{pool}", pool, jurisdiction, gpus=gpus)

    def add(self, node_id: str, pool: str, jurisdiction: str, *, gpus: int = 2) -> None:
        labels = {POOL_LABEL: pool, JURISDICTION_LABEL: jurisdiction}
        self.nodes[node_id] = RayNode(node_id, True, labels, float(gpus), float(gpus))

    def ray_nodes(self) -> list[RayNode]:
        used: dict[str, int] = {}
        for actor in self.actors.values():
            if actor.state == "ALIVE":
                used[actor.node_id] = used.get(actor.node_id, 0) + actor.gpus
        return [n._replace(gpus_free=n.gpus_total - used.get(n.node_id, 0)) for n in self.nodes.values()]

    def alive(self) -> dict[str, Actor]:
        return {k: a for k, a in self.actors.items() if a.state == "ALIVE"}

    def set_serving(self, actor_id: str, state: str = "ready") -> None:
        actor = self.actors[actor_id]
        actor.serving = state
        actor.endpoint = f"http://replica/{actor_id}" if state == "ready" else None


class TableInventory(Inventory):
    def __init__(self, policy: Any, cluster: FakeCluster, **kwargs: Any) -> None:
        super().__init__(policy, **kwargs)
        self.cluster = cluster

    def refresh(self, policy: Any = None) -> Snapshot:
        policy = policy or self.policy
        snapshot = build_snapshot(policy.bundle.pools, self.cluster.ray_nodes())
        self._snapshot = snapshot
        return snapshot


class TableBinder(Binder):
    def __init__(self, cluster: FakeCluster) -> None:
        super().__init__()
        self.cluster = cluster
        self._ids = itertools.count(1)

    def bind(self, actor_class: Any, binding: Any, kwargs: Mapping[str, Any], *,
             timeout_s: float | None = None) -> BoundReplica:
        node_id = binding.selector[NODE_ID_LABEL]
        actor_id = f"actor{next(self._ids)}"
        self.cluster.actors[actor_id] = Actor(node_id, binding.gpus, kwargs=dict(kwargs))
        labels = dict(self.cluster.nodes[node_id].labels)
        return BoundReplica(binding, None, actor_id, None, node_id, labels, {"endpoint": None}, 0.0)

    def start(self, bound: BoundReplica, *, timeout_s: float | None = None) -> None:
        if self.cluster.serve_at_once:
            self.cluster.set_serving(bound.actor_id)

    def describe(self, bounds: Any, *, timeout_s: float = 2.0) -> dict[str, Any]:
        out = {}
        for bound in bounds:
            actor = self.cluster.actors.get(bound.actor_id)
            if actor is not None and actor.state == "ALIVE":
                out[bound.actor_id] = {"endpoint": actor.endpoint, "state": actor.serving}
        return out

    def actor_state(self, actor_id: str) -> str:
        actor = self.cluster.actors.get(actor_id)
        return actor.state if actor is not None else "DEAD"

    def release(self, bound: BoundReplica, *, graceful: bool = True, wait_s: float = 5.0) -> None:
        actor = self.cluster.actors.get(bound.actor_id)
        if actor is not None:
            actor.state = "DEAD"


DEFAULT_POOLS = {"fr-paris": "FR", "fr-lyon": "FR", "de-frankfurt": "DE", "de-berlin": "DE"}


def table_scheduler(policy: Any, ledger: Any, *, pools: Mapping[str, str] = DEFAULT_POOLS,
                    declarations: Any = None) -> tuple[Any, FakeCluster]:
    """A real :class:`Deployments` (``policy``: a Policy or a CurrentPolicy) over a fake cluster."""
    from scheduler.deployments import Deployments

    cluster = FakeCluster(pools)
    deployments = Deployments(policy, ledger, object, inventory=TableInventory(policy, cluster),
                              binder=TableBinder(cluster), declarations=declarations)
    return deployments, cluster

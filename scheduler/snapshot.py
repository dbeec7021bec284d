"""The pool snapshot: the Ray cluster's nodes, matched to the bundle's pools (pure, no Ray).

A live node belongs to a pool when its labels include every label of the
pool's ``node_selector`` (by default ``corridor.eu/pool=<id>`` and
``corridor.eu/jurisdiction=<FR|DE>``). Nodes without corridor labels (the
head, say) are in no pool and simply unused. A node whose labels contradict
the bundle is *quarantined*: never a placement candidate, and listed in every
snapshot. :func:`build_snapshot` computes a :class:`Snapshot` from
:class:`RayNode` records; :mod:`scheduler.inventory` reads them from Ray.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from policies import Pool
from policies.bundle import JURISDICTION_LABEL, POOL_LABEL


class QuarantineCode(enum.StrEnum):
    """Why a node is quarantined. Callers: the node is never used until an operator fixes
    its labels (or the bundle) and the node rejoins; the ledger holds a security entry."""

    UNKNOWN_POOL_LABEL = "UNKNOWN_POOL_LABEL"  # claims a pool the bundle does not know
    JURISDICTION_MISMATCH = "JURISDICTION_MISMATCH"  # jurisdiction label contradicts its pool's
    AMBIGUOUS_POOL = "AMBIGUOUS_POOL"  # matches the selectors of more than one pool
    SELECTOR_MISMATCH = "SELECTOR_MISMATCH"  # claims a known pool but lacks part of its selector
    FOREIGN_JURISDICTION = "FOREIGN_JURISDICTION"  # in this site's cluster, labelled for the other site


_QUARANTINE_MESSAGES = {
    "UNKNOWN_POOL_LABEL": "node {node_id} claims pool {claimed}, which the policy bundle does not know",
    "JURISDICTION_MISMATCH": "node {node_id} claims pool {pool} ({expected}) but is labelled "
                             "jurisdiction {got}",
    "AMBIGUOUS_POOL": "node {node_id} matches the node selectors of several pools: {pools}",
    "SELECTOR_MISMATCH": "node {node_id} claims pool {pool} but lacks labels of its node selector "
                         "{selector}",
    "FOREIGN_JURISDICTION": "node {node_id} joined the Ray cluster of site {site} but is labelled for "
                            "pool {pool} of jurisdiction {got}; a site commands only its own pools",
}


class RayNode(NamedTuple):
    """What Ray reports about one node: id, liveness, labels and GPUs."""

    node_id: str
    alive: bool
    labels: Mapping[str, str]
    gpus_total: float
    gpus_free: float


@dataclass(frozen=True, slots=True)
class Quarantine:
    """A node that is never used, and why (code, fixed message, the labels it carried)."""

    node_id: str
    code: QuarantineCode
    message: str
    labels: Mapping[str, str]
    pool: str | None  # the known pool it claimed, if any

    def to_json(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "code": str(self.code), "message": self.message,
                "labels": dict(self.labels), "pool": self.pool}


@dataclass(frozen=True, slots=True)
class Node:
    """A live node of a pool, usable for placement."""

    node_id: str
    pool: str
    jurisdiction: str
    site: str
    gpus_total: float
    gpus_free: float


@dataclass(frozen=True, slots=True)
class PoolState:
    """One bundle pool as Ray sees it: its usable nodes, and its dead or quarantined ones."""

    pool: Pool
    nodes: tuple[Node, ...] = ()
    dead: tuple[str, ...] = ()
    quarantined: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return self.pool.id

    @property
    def jurisdiction(self) -> str:
        return self.pool.jurisdiction

    @property
    def gpus_total(self) -> float:
        return sum(node.gpus_total for node in self.nodes)

    @property
    def gpus_free(self) -> float:
        return sum(node.gpus_free for node in self.nodes)

    def to_json(self) -> dict[str, Any]:
        """The per-pool shape of ``GET /admin/pools``."""
        return {
            "id": self.pool.id, "jurisdiction": self.pool.jurisdiction, "site": self.pool.site,
            "operator": self.pool.operator, "node_selector": dict(self.pool.node_selector),
            "nodes": [{"node_id": n.node_id, "gpus_total": n.gpus_total, "gpus_free": n.gpus_free}
                      for n in self.nodes],
            "gpus_total": self.gpus_total, "gpus_free": self.gpus_free,
            "dead_nodes": list(self.dead), "quarantined_nodes": list(self.quarantined),
        }


@dataclass(frozen=True, slots=True, eq=False)
class NodeTable:
    """The usable nodes of a snapshot as columns, grouped by pool in pool order.

    Placement filters and scores these columns at once instead of node by
    node, so a cycle over 10,000 pools stays in the millisecond range. Row
    ``i`` is ``nodes[i]``; ``pool[i]`` indexes ``pool_ids``; ``site[i]``
    indexes ``sites``; the rows of pool ``p`` are ``starts[p]:starts[p + 1]``.
    """

    pool_ids: tuple[str, ...]
    nodes: tuple[Node, ...]
    index: Mapping[str, int]  # node id -> row
    pool: np.ndarray  # int, per row
    site: np.ndarray  # int, per row
    sites: tuple[str, ...]
    gpus_total: np.ndarray  # float, per row
    gpus_free: np.ndarray  # float, per row
    starts: np.ndarray  # int, per pool + 1
    id_rank: np.ndarray  # int, per row: rank of the node id, for choices stable across reads

    @classmethod
    def build(cls, pool_ids: Sequence[str], members: Mapping[str, Sequence[Node]]) -> NodeTable:
        nodes = [node for pool_id in pool_ids for node in members[pool_id]]
        sites: dict[str, int] = {}
        site = [sites.setdefault(f"{n.jurisdiction}/{n.site}", len(sites)) for n in nodes]
        counts = [len(members[pool_id]) for pool_id in pool_ids]
        rank = np.empty(len(nodes), dtype=np.int64)
        rank[sorted(range(len(nodes)), key=lambda i: nodes[i].node_id)] = np.arange(len(nodes))
        return cls(tuple(pool_ids), tuple(nodes), {n.node_id: i for i, n in enumerate(nodes)},
                   np.repeat(np.arange(len(pool_ids)), counts), np.array(site, dtype=np.int64),
                   tuple(sites), np.array([n.gpus_total for n in nodes], dtype=np.float64),
                   np.array([n.gpus_free for n in nodes], dtype=np.float64),
                   np.concatenate(([0], np.cumsum(counts, dtype=np.int64))), rank)

    def per_pool_max(self, values: np.ndarray) -> np.ndarray:
        """The largest value per pool (``-inf`` for a pool without rows).

        >>> t = NodeTable.build(["a", "b", "c"], {"a": [Node("n1", "a", "FR", "s", 2, 1),
        ...     Node("n2", "a", "FR", "s", 2, 2)], "b": [], "c": [Node("n3", "c", "DE", "t", 2, 0)]})
        >>> t.per_pool_max(t.gpus_free).tolist()
        [2.0, -inf, 0.0]
        """
        out = np.full(len(self.pool_ids), -np.inf)
        if len(self.nodes):
            nonempty = self.starts[1:] > self.starts[:-1]
            out[nonempty] = np.maximum.reduceat(values, self.starts[:-1][nonempty])
        return out


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The pools at one instant: every bundle pool (in bundle order), even one without nodes."""

    at: float
    pools: Mapping[str, PoolState]
    nodes: Mapping[str, Node]
    quarantined: Mapping[str, Quarantine] = field(default_factory=dict)
    unpooled: tuple[str, ...] = ()  # live nodes in no pool, e.g. the head
    dead: frozenset[str] = frozenset()
    table: NodeTable | None = None  # set by build_snapshot

    def to_json(self) -> dict[str, Any]:
        """The shape of ``GET /admin/pools``."""
        return {"pools": [state.to_json() for state in self.pools.values()],
                "quarantined": [q.to_json() for q in self.quarantined.values()],
                "unpooled_nodes": list(self.unpooled)}


def _quarantine(node: RayNode, code: QuarantineCode, claimed_pool: str | None,
                **facts: Any) -> Quarantine:
    message = _QUARANTINE_MESSAGES[code].format(node_id=node.node_id, **facts)
    return Quarantine(node.node_id, code, message, dict(node.labels), claimed_pool)


def build_snapshot(pools: Sequence[Pool], ray_nodes: Iterable[RayNode], at: float | None = None,
                   site: str | None = None) -> Snapshot:
    """Match nodes to pools by node selector and quarantine contradicting nodes. Pure.

    With ``site`` (``FR``/``DE``), this is one site's own cluster: a node matching a pool of
    the other jurisdiction is quarantined (``FOREIGN_JURISDICTION``), never used.

    Cost is linear in nodes: pools are indexed by their ``corridor.eu/pool``
    selector value; only pools whose selector lacks that key are tried on
    every node.
    """
    by_label: dict[str, list[Pool]] = {}
    unindexed: list[Pool] = []
    for pool in pools:
        value = pool.node_selector.get(POOL_LABEL)
        if value is None:
            unindexed.append(pool)
        else:
            by_label.setdefault(value, []).append(pool)
    by_id = {pool.id: pool for pool in pools}
    members: dict[str, list[Node]] = {pool.id: [] for pool in pools}
    dead: dict[str, list[str]] = {pool.id: [] for pool in pools}
    suspects: dict[str, list[str]] = {pool.id: [] for pool in pools}
    nodes: dict[str, Node] = {}
    quarantined: dict[str, Quarantine] = {}
    unpooled: list[str] = []
    dead_ids: set[str] = set()

    for node in ray_nodes:
        labels = node.labels
        claimed = labels.get(POOL_LABEL)
        candidates = by_label.get(claimed, ()) if claimed is not None else ()
        matches = [p for p in (*candidates, *unindexed)
                   if all(labels.get(k) == v for k, v in p.node_selector.items())]
        if not node.alive:
            dead_ids.add(node.node_id)
            for pool in matches:
                dead[pool.id].append(node.node_id)
            continue
        jurisdiction = labels.get(JURISDICTION_LABEL)
        verdict: Quarantine | None = None
        if claimed is not None and claimed not in by_label and claimed not in by_id:
            verdict = _quarantine(node, QuarantineCode.UNKNOWN_POOL_LABEL, None, claimed=claimed)
        elif len(matches) > 1:
            verdict = _quarantine(node, QuarantineCode.AMBIGUOUS_POOL, None,
                                  pools=", ".join(p.id for p in matches))
        elif len(matches) == 1:
            pool = matches[0]
            if jurisdiction is not None and jurisdiction != pool.jurisdiction:
                verdict = _quarantine(node, QuarantineCode.JURISDICTION_MISMATCH, pool.id,
                                      pool=pool.id, expected=pool.jurisdiction, got=jurisdiction)
            elif site is not None and pool.jurisdiction != site:
                verdict = _quarantine(node, QuarantineCode.FOREIGN_JURISDICTION, pool.id, pool=pool.id,
                                      site=site, got=pool.jurisdiction)
            else:
                member = Node(node.node_id, pool.id, pool.jurisdiction, pool.site,
                              node.gpus_total, node.gpus_free)
                members[pool.id].append(member)
                nodes[node.node_id] = member
                continue
        elif claimed is not None:
            pool = (by_label.get(claimed) or [by_id[claimed]])[0]
            if jurisdiction is not None and jurisdiction != pool.jurisdiction:
                verdict = _quarantine(node, QuarantineCode.JURISDICTION_MISMATCH, pool.id,
                                      pool=pool.id, expected=pool.jurisdiction, got=jurisdiction)
            else:
                verdict = _quarantine(node, QuarantineCode.SELECTOR_MISMATCH, pool.id,
                                      pool=pool.id, selector=dict(pool.node_selector))
        if verdict is None:
            unpooled.append(node.node_id)
            continue
        quarantined[node.node_id] = verdict
        if verdict.pool is not None:
            suspects[verdict.pool].append(node.node_id)

    states = {pool.id: PoolState(pool, tuple(members[pool.id]), tuple(dead[pool.id]),
                                 tuple(suspects[pool.id])) for pool in pools}
    return Snapshot(time.time() if at is None else at, states, nodes, quarantined,
                    tuple(unpooled), frozenset(dead_ids), NodeTable.build(list(states), members))

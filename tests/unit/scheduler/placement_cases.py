"""Builders for the scheduler's unit tests: nodes as Ray reports them, snapshots, bundles."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from policies import Policy, load_bundle
from policies.bundle import JURISDICTION_LABEL, POOL_LABEL
from scheduler import RayNode, Snapshot, build_snapshot

REPO = Path(__file__).resolve().parents[3]
POOLS = {"fr-paris": "FR", "fr-lyon": "FR", "de-frankfurt": "DE", "de-berlin": "DE"}


def node(pool: str | None, *, jurisdiction: str | None = None, gpus: float = 2, free: float | None = None,
         alive: bool = True, name: str | None = None, extra: dict[str, str] | None = None) -> RayNode:
    """A node as Ray reports it, labelled by the pool convention (``pool=None``: no labels)."""
    node_labels: dict[str, str] = {}
    if pool is not None:
        node_labels = {POOL_LABEL: pool, JURISDICTION_LABEL: jurisdiction or POOLS.get(pool, "FR")}
    node_labels.update(extra or {})
    return RayNode(name or f"node-{pool or 'head'}", alive, node_labels, gpus,
                   gpus if free is None else free)


def every_pool(**kwargs: Any) -> list[RayNode]:
    """One node per default pool, plus an unlabelled head."""
    return [node(None, gpus=0), *(node(p, **kwargs) for p in POOLS)]


def snapshot(policy: Policy, *nodes: RayNode) -> Snapshot:
    return build_snapshot(policy.bundle.pools, nodes, at=0.0)


def default_document() -> dict[str, Any]:
    return yaml.safe_load((REPO / "policies" / "bundles" / "default.yaml").read_text())


def policy_of(document: dict[str, Any]) -> Policy:
    """Validate a bundle document exactly as a file would be, and compile it."""
    text = yaml.safe_dump(copy.deepcopy(document), sort_keys=False, allow_unicode=True)
    return Policy(load_bundle("test-bundle.yaml", text=text))

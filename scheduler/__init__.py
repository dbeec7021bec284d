"""Corridor's scheduler: pool inventory from Ray, placement, Ray binding, deployments, crisis
declarations, the ledger.

Depends on :mod:`policies`; never on :mod:`serving`.

- pure, no Ray: :mod:`~scheduler.spec`, :mod:`~scheduler.snapshot` (nodes matched to pools),
  :mod:`~scheduler.placement` (filter → score), :mod:`~scheduler.selectors` (where a replica
  must land, and the check of where it did), :mod:`~scheduler.ledger`,
  :mod:`~scheduler.crisis`, :mod:`~scheduler.periodic`, :mod:`~scheduler.exceptions`;
- on Ray: :mod:`~scheduler.inventory` (reads the node table), :mod:`~scheduler.binding`
  (label selectors, placement groups, read-back) and :mod:`~scheduler.deployments`
  (lifecycle and healing).

The names below are loaded on first use, so ``import scheduler.ledger`` (the gateway, the
audit CLI) never pays for Ray or numpy.

>>> from scheduler import Audience, DeploymentSpec, Placer
>>> from policies import Policy
>>> placer = Placer(Policy.load())
>>> spec = DeploymentSpec("interior-chat", "corridor-tiny", [Audience("fr-interior", "DR")])
>>> placer.admit(spec).allowed
['fr-paris']
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "scheduler.binding": ("Binder", "BoundReplica"),
    "scheduler.selectors": ("NODE_ID_LABEL", "LabelSelector", "Mismatch", "ReplicaActor", "ReplicaBinding",
                            "ViolationCode", "check_landing"),
    "scheduler.deployments": ("Deployments", "DeploymentView", "HealReport", "ReplicaView"),
    "scheduler.exceptions": ("BindError", "BindTimeout", "DeploymentError", "DuplicateDeploymentError",
                             "InventoryError", "PlacementError", "PlacementViolation",
                             "ReplicaStartError", "SchedulerError", "SpecError",
                             "UnknownDeploymentError"),
    "scheduler.inventory": ("Inventory", "LedgerWriter", "read_ray_nodes"),
    "scheduler.placement": ("Admission", "Assignment", "CapacityFilter", "Cycle", "Filter",
                            "HomeJurisdiction", "PackGpus", "PinFilter", "Placement", "Placer",
                            "RulebookFilter", "SchedulerCode", "Scorer", "Spread", "Status"),
    "scheduler.snapshot": ("Node", "NodeTable", "PoolState", "Quarantine", "QuarantineCode", "RayNode",
                           "Snapshot", "build_snapshot"),
    "scheduler.spec": ("Audience", "DeploymentSpec"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """Load the module that defines ``name`` on first use (PEP 562)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'scheduler' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

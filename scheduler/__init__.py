"""Corridor's scheduler: pool inventory from Ray, placement, Ray binding, batch queue, ledger.

Depends on :mod:`policies`; never on :mod:`serving`.

>>> from scheduler import Audience, DeploymentSpec, Placer
>>> from policies import Policy
>>> placer = Placer(Policy.load())
>>> spec = DeploymentSpec("interior-chat", "corridor-tiny", [Audience("fr-interior", "DR")])
>>> placer.admit(spec).allowed
['fr-paris']
"""

from scheduler.binding import (NODE_ID_LABEL, Binder, BoundReplica, LabelSelector, Mismatch,
                               ReplicaActor, ReplicaBinding, ViolationCode, check_landing)
from scheduler.deployments import Deployments, DeploymentView, HealReport, ReplicaView
from scheduler.exceptions import (BindError, BindTimeout, DeploymentError, DuplicateDeploymentError,
                                  InventoryError, PlacementError, PlacementViolation,
                                  ReplicaStartError, SchedulerError, SpecError,
                                  UnknownDeploymentError)
from scheduler.inventory import (Inventory, LedgerWriter, Node, NodeTable, PoolState, Quarantine,
                                 QuarantineCode, RayNode, Snapshot, build_snapshot, read_ray_nodes)
from scheduler.placement import (Admission, Assignment, CapacityFilter, Cycle, Filter, HomeJurisdiction,
                                 PackGpus, PinFilter, Placement, Placer, RulebookFilter, SchedulerCode,
                                 Scorer, Spread, Status)
from scheduler.spec import Audience, DeploymentSpec

__all__ = [
    "NODE_ID_LABEL", "Admission", "Assignment", "Audience", "BindError", "BindTimeout", "Binder",
    "BoundReplica", "CapacityFilter", "Cycle", "DeploymentError", "DeploymentSpec", "DeploymentView",
    "Deployments", "DuplicateDeploymentError", "Filter", "HealReport", "HomeJurisdiction",
    "Inventory", "InventoryError", "LabelSelector", "LedgerWriter", "Mismatch", "Node", "NodeTable", "PackGpus",
    "PinFilter", "Placement", "PlacementError", "PlacementViolation", "Placer", "PoolState",
    "Quarantine", "QuarantineCode", "RayNode", "ReplicaActor", "ReplicaBinding", "ReplicaStartError",
    "ReplicaView", "RulebookFilter", "SchedulerCode", "SchedulerError", "Scorer", "Snapshot",
    "SpecError", "Spread", "Status", "UnknownDeploymentError", "ViolationCode", "build_snapshot",
    "check_landing", "read_ray_nodes",
]

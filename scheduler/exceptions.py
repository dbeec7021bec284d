"""Exceptions of the scheduler.

A pool the rulebook refuses, or a pool without free GPUs, is not an exception:
filters return a status with a code (see :mod:`scheduler.placement`). These
exceptions are for the final "nowhere to place", for binding failures, and
for infrastructure that cannot be read. Ray's own errors are translated here
(``raise … from exc``), so callers see one vocabulary::

    SchedulerError
    ├── SpecError                  a deployment request that is not valid; also a ValueError
    ├── InventoryError             the Ray cluster's nodes could not be read
    ├── PlacementError             no allowed pool, or no capacity in any; carries the tally
    ├── BindError                  Ray could not start a replica where placement chose
    │   ├── BindTimeout            the actor or placement group stayed pending past its bound
    │   └── ReplicaStartError      the actor died or failed while starting
    ├── PlacementViolation         Ray started a replica off its decision; it was killed
    └── DeploymentError            a lifecycle call that does not fit the current deployments
        ├── UnknownDeploymentError no deployment of that name; also a KeyError
        └── DuplicateDeploymentError a deployment of that name exists already
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any


class SchedulerError(Exception):
    """Base class of every scheduler error."""


class SpecError(SchedulerError, ValueError):
    """A deployment request that is not valid; the message shows a correct example."""


class InventoryError(SchedulerError):
    """The Ray cluster could not be read (not connected, GCS unreachable). Retry later."""


class PlacementError(SchedulerError):
    """No pool may and can take the replicas; the deployment was refused and nothing started.

    ``tally`` counts, per reason code, the pools it fired on (a pool counts once
    per code); ``pools`` maps each refused pool to its codes; ``summary`` reads
    e.g. ``"0/4 pools: 2 RESIDENCY, 1 MISSING_ACCREDITATION, 1 NO_CAPACITY"``.
    Callers: the answer is final under the current policy and capacity; retry
    only after capacity or policy changes.
    """

    def __init__(self, deployment: str, summary: str, tally: Mapping[str, int],
                 pools: Mapping[str, Sequence[str]], *, placed: int = 0, requested: int = 0) -> None:
        self.deployment = deployment
        self.summary = summary
        self.tally = Counter(tally)
        self.pools = {pool: list(codes) for pool, codes in pools.items()}
        self.placed = placed
        self.requested = requested
        room = f"room for {placed} of {requested} replicas; " if requested else ""
        super().__init__(f"cannot place deployment {deployment!r}: {room}{summary}")


class BindError(SchedulerError):
    """Ray could not start a replica on the chosen node. Placement may be retried."""


class BindTimeout(BindError):
    """The actor or placement group stayed pending past its bound; it was killed or removed.

    Ray leaves an unsatisfiable label selector pending silently, so every wait
    is bounded; the usual causes are capacity taken since the inventory was
    read, or a node that left.
    """

    def __init__(self, what: str, selector: Mapping[str, str], timeout_s: float) -> None:
        self.what = what
        self.selector = dict(selector)
        self.timeout_s = timeout_s
        super().__init__(f"{what} still pending after {timeout_s:g} s for label selector "
                         f"{self.selector}; it was cancelled (no node with this selector has "
                         f"the resources free, or none matches it)")


class ReplicaStartError(BindError):
    """The replica actor died or raised while starting (constructor, ``describe`` or ``start``)."""


class PlacementViolation(SchedulerError):
    """Ray started a replica somewhere other than decided; it was killed before serving.

    ``mismatches`` lists the checks that failed (code and message each);
    ``node_id`` is where Ray actually put it, ``labels`` that node's labels.
    """

    def __init__(self, replica: str, node_id: str | None, mismatches: Sequence[Any],
                 labels: Mapping[str, str] | None = None) -> None:
        self.replica = replica
        self.node_id = node_id
        self.mismatches = tuple(mismatches)
        self.labels = dict(labels or {})
        what = "; ".join(f"{m.code}: {m.message}" for m in self.mismatches)
        super().__init__(f"replica {replica} landed off its decision on node {node_id} and was "
                         f"killed: {what}")


class DeploymentError(SchedulerError):
    """A lifecycle call that does not fit the current set of deployments."""


class UnknownDeploymentError(DeploymentError, KeyError):
    """No deployment has this name."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        super().__init__(f"unknown deployment {name!r}; known: {', '.join(sorted(known)) or 'none'}")

    def __str__(self) -> str:
        return str(self.args[0])


class DuplicateDeploymentError(DeploymentError):
    """A deployment of this name exists already; scale it or remove it first."""

"""Replicas placed when work needs them, and released once idle: one mechanism for batches
and for interactive requests to on-demand models.

A :class:`Provisioner` places one replica for a workload's audience (tenant,
marking, data flags, model) and releases it; :class:`DeploymentProvisioner`
does it with one-replica deployments of the scheduler, under the same
rulebook, writing the same ``placement`` ledger entries (a refusal too, when
no allowed pool has capacity). :class:`PlacedReplicas` keeps, per audience,
the replica placed for it: placed at most once at a time, not asked again for
``retry_s`` after a refusal, released when no work of the audience has used it
for ``idle_s``. The batch executor (:mod:`serving.batch.replicas`) and the
gateway's on-demand replicas (:mod:`serving.routing.on_demand`) each hold one.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from policies import Workload

log = logging.getLogger(__name__)


class ProvisionRefused(Exception):
    """No replica could be placed now (no capacity, or refused); retry later."""


class Provisioner(Protocol):
    """Places and releases replicas; methods block (callers run them in a thread)."""

    def provision(self, owner: str, workload: Workload) -> str:
        """Place one replica for ``workload`` on behalf of ``owner`` (a batch id, or
        ``"on-demand"``); return the deployment's name, or raise :class:`ProvisionRefused`."""
        ...

    def release(self, name: str) -> None:
        """Stop and release the deployment returned by :meth:`provision`."""
        ...


def audience(workload: Workload) -> tuple:
    """Who a placed replica serves: tenant, marking, flags and model."""
    return workload.tenant, workload.marking.id, workload.data_flags, workload.model


class DeploymentProvisioner:
    """Replicas as one-replica deployments of the scheduler (``corridor up``).

    ``replica_configs`` maps a model id to the replica actor's configuration
    (what :class:`scheduler.spec.DeploymentSpec` calls ``replica_config``); it is read at
    each provisioning, so a mapping that resolves models when asked serves models no
    deployment of the installation named (a site's batch of a model it does not serve).
    """

    def __init__(self, deployments: Any, replica_configs: Mapping[str, Mapping[str, Any]], *,
                 gpus_per_replica: int = 1) -> None:
        self.deployments = deployments
        self.replica_configs = replica_configs
        self.gpus_per_replica = gpus_per_replica

    def provision(self, owner: str, workload: Workload) -> str:
        from scheduler.exceptions import SchedulerError
        from scheduler.spec import Audience, DeploymentSpec

        config = self.replica_configs.get(workload.model or "")
        if config is None:
            raise ProvisionRefused(f"no replica configuration for model '{workload.model}' on "
                                   f"this installation")
        prefix = owner.replace("batch_", "batch-")[:18].rstrip("-_")
        name = f"{prefix}-{secrets.token_hex(2)}"
        spec = DeploymentSpec(name, workload.model,
                              [Audience(workload.tenant, workload.marking, workload.data_flags)],
                              replicas=1, gpus_per_replica=self.gpus_per_replica,
                              replica_config=config)
        try:
            self.deployments.deploy(spec)
        except SchedulerError as exc:
            raise ProvisionRefused(str(exc)) from exc
        return name

    def release(self, name: str) -> None:
        from scheduler.exceptions import UnknownDeploymentError

        try:
            self.deployments.remove(name)
        except UnknownDeploymentError:
            pass


@dataclass
class PlacedReplica:
    """The replica placed for one audience."""

    name: str | None = None  # None while being placed
    requested_at: float = 0.0
    placed_at: float | None = None
    idle_since: float | None = None
    served_at: float | None = None  # when it first served work that waited for it


class PlacedReplicas:
    """Per audience key, the replica placed for it; lives in one event loop.

    ``spawn`` runs a coroutine as a task of its owner (cancelled when the owner
    stops); ``on_placed`` is called (in the loop) once a placement returns.
    """

    def __init__(self, provisioner: Provisioner | None, *, idle_s: float, retry_s: float,
                 clock: Callable[[], float], spawn: Callable[[Coroutine[Any, Any, None]], None],
                 on_placed: Callable[[Hashable], None] = lambda key: None) -> None:
        if idle_s <= 0 or retry_s <= 0:
            raise ValueError(f"placed replicas: got idle_s={idle_s}, retry_s={retry_s}; "
                             f"want seconds > 0, e.g. 120 and 30")
        self.provisioner = provisioner
        self.idle_s, self.retry_s, self.clock = idle_s, retry_s, clock
        self._spawn, self._on_placed = spawn, on_placed
        self.replicas: dict[Hashable, PlacedReplica] = {}
        self._retry_after: dict[Hashable, float] = {}
        self.refusals: dict[Hashable, str] = {}  # why the last placement was refused

    def want(self, key: Hashable, owner: str, workload: Workload,
             on_refused: Callable[[str], None] = lambda message: None) -> bool:
        """Place a replica for ``key`` unless one is placed, being placed, or was refused less
        than ``retry_s`` ago. True when one is placed or coming."""
        if self.provisioner is None:
            return False
        if key in self.replicas:
            return True
        if self.clock() < self._retry_after.get(key, 0.0):
            return False
        self.replicas[key] = PlacedReplica(requested_at=self.clock())
        self._spawn(self._provision(key, owner, workload, on_refused))
        return True

    def backing_off(self, key: Hashable) -> bool:
        """True when the last placement for ``key`` was refused less than ``retry_s`` ago."""
        return key not in self.replicas and self.clock() < self._retry_after.get(key, 0.0)

    async def _provision(self, key: Hashable, owner: str, workload: Workload,
                         on_refused: Callable[[str], None]) -> None:
        assert self.provisioner is not None
        try:
            name = await asyncio.to_thread(self.provisioner.provision, owner, workload)
        except Exception as exc:  # noqa: BLE001 - a refusal, or a failure logged with its trace
            problem = str(exc)
            if not isinstance(exc, ProvisionRefused):  # its text may name internals: log only
                log.exception("placing a replica for %s failed", owner)
                problem = f"the placement failed ({type(exc).__name__}); the operator's log has why"
            self.replicas.pop(key, None)
            self._retry_after[key] = self.clock() + self.retry_s
            self.refusals[key] = problem
            on_refused(problem)
            return
        replica = self.replicas.get(key)
        if replica is None:  # released while being placed (the owner stopped)
            await asyncio.to_thread(self.provisioner.release, name)
            return
        replica.name, replica.placed_at = name, self.clock()
        self.refusals.pop(key, None)
        log.info("replica %s placed for %s", name, owner)
        self._on_placed(key)

    def release_idle(self, now: float, in_use: Iterable[Hashable]) -> None:
        """Release the replicas whose key was not in use for ``idle_s``."""
        if not self.replicas or self.provisioner is None:
            return
        wanted = set(in_use)
        for key, replica in list(self.replicas.items()):
            if replica.name is None:
                continue
            if key in wanted:
                replica.idle_since = None
            elif replica.idle_since is None:
                replica.idle_since = now
            elif now - replica.idle_since >= self.idle_s:
                del self.replicas[key]
                log.info("releasing idle replica %s", replica.name)
                self._spawn(asyncio.to_thread(self.provisioner.release, replica.name))

    async def release_all(self) -> None:
        """Release every placed replica (the owner stops)."""
        for replica in list(self.replicas.values()):
            if replica.name and self.provisioner is not None:
                await asyncio.to_thread(self.provisioner.release, replica.name)
        self.replicas.clear()

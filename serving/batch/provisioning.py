"""Batch replicas: a replica placed for batch work when no live replica may take it.

The executor asks a :class:`Provisioner` for a replica of the batch's model
for the batch's audience (tenant, marking, data flags) when the rulebook
allows pools but none has a live replica of that model. The scheduler places
it under the same rulebook, writing its ``placement`` entries to the ledger
(a refusal too, when no allowed pool has capacity); the replica serves once
its server answers, and is released when no batch has needed it for a while.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, Protocol

from policies import Workload


class ProvisionRefused(Exception):
    """No batch replica could be placed now (no capacity, or refused); retry later."""


class Provisioner(Protocol):
    """Places and releases batch replicas; methods block (the executor calls them in a thread)."""

    def provision(self, batch_id: str, workload: Workload) -> str:
        """Place one replica for ``workload``; return the deployment's name, or raise
        :class:`ProvisionRefused`."""
        ...

    def release(self, name: str) -> None:
        """Stop and release the deployment returned by :meth:`provision`."""
        ...


class DeploymentProvisioner:
    """Batch replicas as one-replica deployments of the scheduler (``corridor up``).

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

    def provision(self, batch_id: str, workload: Workload) -> str:
        from scheduler.exceptions import SchedulerError
        from scheduler.spec import Audience, DeploymentSpec

        config = self.replica_configs.get(workload.model or "")
        if config is None:
            raise ProvisionRefused(f"no replica configuration for model '{workload.model}' on "
                                   f"this installation")
        name = f"batch-{batch_id.removeprefix('batch_')[:12]}-{secrets.token_hex(2)}"
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

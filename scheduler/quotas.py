"""The tenants' GPU quotas at placement: ``quotas.max_gpus`` of the bundle. Pure: no Ray.

A replica serves every tenant of its audiences, so its GPUs count against each
of them. :class:`GpuQuotaFilter` is a placement filter (see
:mod:`scheduler.placement`): in each round it adds the GPUs this cycle already
reserved and the replica's own to what the tenant holds, and removes every pool
when any audience's tenant would go over its quota, with the stable reason code
``TENANT_GPU_QUOTA``. The caller gives up or frees GPUs: nothing spills elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from policies import Policy
from scheduler.placement import Cycle, Status

#: The reason a pool was not used: a tenant of the audiences is at its ``quotas.max_gpus``.
#: Final until that tenant's other replicas are removed or its quota is raised.
TENANT_GPU_QUOTA = "TENANT_GPU_QUOTA"

_MESSAGE = ("tenant {tenant} would hold {would:g} GPUs with this replica, over its quota of "
            "{quota} (quotas.max_gpus)")


class GpuQuotaFilter:
    """Removes every pool when a replica would take an audience's tenant over ``max_gpus``.

    ``held`` returns the GPUs each tenant's live replicas hold now (e.g.
    :meth:`scheduler.deployments.Deployments.tenant_gpus`), read once per cycle.
    """

    name = "gpu-quota"
    needs_inventory = True  # runs once per round, after the inventory filters

    def __init__(self, policy: Policy, held: Callable[[], Mapping[str, float]]) -> None:
        self.policy = policy
        self.held = held

    def _over(self, cycle: Cycle) -> tuple[str, float, int] | None:
        """The first tenant this round's replica takes over quota: (tenant, would hold, quota)."""
        notes = cycle.notes
        if "gpu-quota-held" not in notes:
            notes["gpu-quota-held"] = dict(self.held())
            notes["gpu-quota-round"] = 0
        else:
            notes["gpu-quota-round"] += 1
        held = notes["gpu-quota-held"]
        reserved = notes["gpu-quota-round"] * cycle.need
        for tenant in dict.fromkeys(a.tenant for a in cycle.spec.audiences):
            known = self.policy.tenants.get(tenant)
            if known is None:
                continue  # the rulebook refuses unknown tenants with its own reason
            would = held.get(tenant, 0.0) + reserved + cycle.need
            if would > known.quotas.max_gpus:
                return tenant, would, known.quotas.max_gpus
        return None

    def filter(self, cycle: Cycle, keep: np.ndarray) -> np.ndarray:
        over = self._over(cycle)
        cycle.notes[self.name] = over
        return keep if over is None else np.zeros_like(keep)

    def why(self, cycle: Cycle, pool: int) -> tuple[Any, ...]:
        tenant, would, quota = cycle.notes[self.name]
        details = {"tenant": tenant, "would": would, "quota": quota,
                   "pool": cycle.admission.pool_ids[pool]}
        return (Status(TENANT_GPU_QUOTA, self.name, _MESSAGE.format(**details), details),)

"""Batch replicas: placed when a batch's pools have no live replica of its model, released
when no batch has needed them for ``provision_idle_s``; the mechanism is
:class:`serving.provisioning.PlacedReplicas`, shared with on-demand replicas."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from serving.batch.runs import ExecutionSettings, Run
from serving.provisioning import PlacedReplicas, Provisioner, audience


class BatchReplicas:
    """The batch replicas of one executor, keyed by :func:`audience`; lives in its event loop.

    ``spawn`` runs a coroutine as one of the executor's tasks; ``wake`` starts a cycle.
    """

    def __init__(self, provisioner: Provisioner | None, settings: ExecutionSettings,
                 clock: Callable[[], float], spawn: Callable[[object], None],
                 wake: Callable[[], None]) -> None:
        self.placed = PlacedReplicas(provisioner, idle_s=settings.provision_idle_s,
                                     retry_s=settings.provision_retry_s, clock=clock, spawn=spawn,
                                     on_placed=lambda key: wake())

    def want(self, run: Run) -> None:
        """Place a replica for ``run``'s audience unless one is placed or being placed."""
        if run.workload is None:
            return

        def refused(problem: str) -> None:
            run.waiting = f"no batch replica could be placed: {problem}"

        self.placed.want(audience(run.workload), run.id, run.workload, refused)

    async def release_all(self) -> None:
        """Release every placed replica (the executor stops)."""
        await self.placed.release_all()

    def release_idle(self, now: float, runs: Iterable[Run]) -> None:
        """Release the replicas no active batch has needed for ``provision_idle_s``."""
        self.placed.release_idle(now, (audience(r.workload) for r in runs if r.workload is not None))

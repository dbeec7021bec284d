"""Batch replicas: placed when a batch's pools have no live replica of its model, released
when no batch has needed them for ``provision_idle_s`` (through a :class:`Provisioner`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from serving.batch.provisioning import ProvisionRefused, Provisioner
from serving.batch.runs import ExecutionSettings, Run, audience

log = logging.getLogger(__name__)


@dataclass
class BatchReplica:
    """A replica placed for batches of one audience and model."""

    name: str | None = None  # None while being placed
    idle_since: float | None = None



class BatchReplicas:
    """The batch replicas of one executor, keyed by :func:`audience`; lives in its event loop.

    ``spawn`` runs a coroutine as one of the executor's tasks; ``wake`` starts a cycle.
    """

    def __init__(self, provisioner: Provisioner | None, settings: ExecutionSettings,
                 clock: Callable[[], float], spawn: Callable[[object], None],
                 wake: Callable[[], None]) -> None:
        self.provisioner, self.settings, self.clock = provisioner, settings, clock
        self._spawn, self._wake = spawn, wake
        self._replicas: dict[tuple, BatchReplica] = {}
        self._provision_after: dict[tuple, float] = {}

    def want(self, run: Run) -> None:
        """Place a replica for ``run``'s audience unless one is placed or being placed."""
        if self.provisioner is None or run.workload is None:
            return
        key = audience(run.workload)
        if key in self._replicas or self.clock() < self._provision_after.get(key, 0.0):
            return
        self._replicas[key] = BatchReplica()
        self._spawn(self._provision(run, key))

    async def release_all(self) -> None:
        """Release every placed replica (the executor stops)."""
        for replica in list(self._replicas.values()):
            if replica.name and self.provisioner is not None:
                await asyncio.to_thread(self.provisioner.release, replica.name)
        self._replicas.clear()

    async def _provision(self, run: Run, key: tuple) -> None:
        assert self.provisioner is not None and run.workload is not None
        try:
            name = await asyncio.to_thread(self.provisioner.provision, run.id, run.workload)
        except ProvisionRefused as exc:
            self._replicas.pop(key, None)
            self._provision_after[key] = self.clock() + self.settings.provision_retry_s
            run.waiting = f"no batch replica could be placed: {exc}"
            return
        except Exception as exc:  # noqa: BLE001 - same as a refusal, with the trace in the log
            log.exception("placing a batch replica for %s failed", run.id)
            self._replicas.pop(key, None)
            self._provision_after[key] = self.clock() + self.settings.provision_retry_s
            run.waiting = f"no batch replica could be placed: {exc}"
            return
        self._replicas[key].name = name
        log.info("batch replica %s placed for batch %s", name, run.id)
        self._wake()

    def release_idle(self, now: float, runs: Iterable[Run]) -> None:
        """Release the replicas no active batch has needed for ``provision_idle_s``."""
        if not self._replicas or self.provisioner is None:
            return
        wanted = {audience(r.workload) for r in runs if r.workload is not None}
        for key, replica in list(self._replicas.items()):
            if replica.name is None:
                continue
            if key in wanted:
                replica.idle_since = None
            elif replica.idle_since is None:
                replica.idle_since = now
            elif now - replica.idle_since >= self.settings.provision_idle_s:
                del self._replicas[key]
                self._spawn(asyncio.to_thread(self.provisioner.release, replica.name))

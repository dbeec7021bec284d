"""On-demand replicas: placed when a request for a model the bundle marks ``on_demand`` finds
no live replica in an allowed home pool; released once no request has used them for a while.

Placing goes through the scheduler like any deployment (a
:class:`~serving.provisioning.Provisioner`): the same rulebook, the same
``placement`` ledger entries, a refusal written when no allowed pool has
capacity. The request that triggered it waits in the admission queue up to
its deadline. The bookkeeping — one placement per audience at a time, a pause
after a refusal, release after ``idle_release_s`` unused — is
:class:`~serving.provisioning.PlacedReplicas`, the same as batch replicas.

**Home first**: while a home placement is in progress or can still finish
before the request's deadline (judged by the start times measured so far),
the request waits for it rather than crossing the border to a replica a crisis
declaration allows; it crosses only once home placement is refused or cannot
be ready in time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Hashable, Sequence
from typing import Any

from policies import Policy, Workload
from scheduler.current_policy import CurrentPolicy, current_of
from serving.provisioning import PlacedReplicas, Provisioner, audience
from serving.routing.settings import OnDemandSettings

log = logging.getLogger(__name__)


class OnDemand:
    """The on-demand replicas of one gateway; :meth:`start` it in the gateway's event loop."""

    def __init__(self, policy: Policy | CurrentPolicy, provisioner: Provisioner | None,
                 settings: OnDemandSettings = OnDemandSettings(), *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.current = current_of(policy)  # the policy in force says which models are on demand
        self.provisioner, self.settings, self.clock = provisioner, settings, clock
        self.expected_start_s = settings.expected_start_s
        self.starts: list[float] = []  # measured: first request to a live home replica, seconds
        self._last_used: dict[Hashable, float] = {}
        self._tasks: set[asyncio.Task] = set()
        self.placed = PlacedReplicas(provisioner, idle_s=settings.idle_release_s,
                                     retry_s=settings.retry_s, clock=clock, spawn=self._spawn)

    def applies(self, model: str | None) -> bool:
        """True when ``model`` is marked ``on_demand`` and this gateway can place replicas."""
        known = self.current.policy.models.get(model or "")
        return self.provisioner is not None and known is not None and known.on_demand

    def in_time(self, workload: Workload, remaining_s: float) -> bool:
        """Whether a home replica for ``workload`` is coming (or can be placed) within
        ``remaining_s``; False after a refusal, until ``retry_s`` has passed."""
        key = audience(workload)
        if self.placed.backing_off(key):
            return False
        replica = self.placed.replicas.get(key)
        started = replica.requested_at if replica is not None else self.clock()
        return started + self.expected_start_s - self.clock() <= remaining_s

    def want(self, workload: Workload) -> None:
        """Place a replica for the workload's audience unless one is placed or coming; a request
        waiting for it keeps it from being released as idle."""
        key = audience(workload)
        self._last_used[key] = self.clock()
        self.placed.want(key, "on-demand", workload)

    def refusal(self, workload: Workload) -> str | None:
        """Why the last placement for the workload's audience was refused, if it was."""
        return self.placed.refusals.get(audience(workload))

    def arrived(self, workload: Workload) -> None:
        """A request that waited for a placement got a home replica: measure the start time."""
        replica = self.placed.replicas.get(audience(workload))
        if replica is None or replica.name is None or replica.served_at is not None:
            return
        replica.served_at = self.clock()
        took = replica.served_at - replica.requested_at
        self.starts.append(took)
        self.expected_start_s = 0.5 * self.expected_start_s + 0.5 * took
        log.info("on-demand replica %s served its first request %.1f s after it was asked for",
                 replica.name, took)

    def used(self, replica_id: str) -> None:
        """A request went to ``replica_id``: the on-demand replica it belongs to is in use.
        (Replica ids are ``<deployment>-r<n>``, as the scheduler names them.)"""
        if not self.placed.replicas:
            return
        now = self.clock()
        for key, replica in self.placed.replicas.items():
            if replica.name is not None and replica_id.startswith(replica.name + "-r"):
                self._last_used[key] = now

    # -- lifecycle --------------------------------------------------------------

    def start(self, busy: Callable[[], Sequence[str]] = tuple) -> None:
        """Start releasing idle replicas; ``busy`` returns replica ids with requests in flight."""
        self._busy = busy
        self._spawn(self._release_idle_loop())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.placed.release_all()

    async def _release_idle_loop(self) -> None:
        period = min(5.0, self.settings.idle_release_s / 4)
        while True:
            await asyncio.sleep(period)
            for replica_id in self._busy():
                self.used(replica_id)
            now = self.clock()
            in_use = {key for key, at in self._last_used.items() if now - at < period * 1.5}
            self.placed.release_idle(now, in_use)
            for key in [k for k in self._last_used if k not in self.placed.replicas]:
                del self._last_used[key]

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

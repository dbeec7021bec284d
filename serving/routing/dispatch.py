"""From a routed request to a replica slot: at once, after a wait in the admission queue, or
once an on-demand replica is up. What the gateway's inference routes call between the
rulebook's route and the upstream request.

For a route whose evaluation allows some pool (refusals are the caller's):

1. **home first**: the candidates are the live replicas of pools allowed without
   crossing the border; replicas only a crisis declaration allows are used
   only when no home replica is live and none can be placed on demand in time;
2. **at once** when nobody waits and a candidate has room (the usual case:
   no queue bookkeeping at all);
3. else the request **waits** in the :class:`~serving.routing.admission.AdmissionQueue`
   under its bundle priority class, up to ``timeout_s`` (``on_demand.wait_s``
   while an on-demand replica is starting for it).

A request the peer site forwarded under a crisis declaration (``declaration``)
may use only the replicas this site's rulebook allows under that declaration;
it waits in this site's queue like any other (its priority class is this
site's bundle's), and never triggers an on-demand placement here.

The endpoint returned is already counted in flight (the router's acquire);
the caller releases it when the upstream request ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry

from policies import Workload
from policies.priority import priority_of
from serving.routing.admission import AdmissionQueue, Ticket
from serving.routing.errors import NoLiveReplica
from serving.routing.load import GatewayLoad, MetricsPoller, MetricsReader
from serving.routing.on_demand import OnDemand
from serving.routing.router import Endpoint, Route, Router
from serving.routing.scoring import RoutingRequest
from serving.routing.settings import QueueSettings


class Dispatch:
    """The admission queue, on-demand replicas and metrics polling of one gateway."""

    def __init__(self, router: Router, settings: QueueSettings = QueueSettings(), *,
                 on_demand: OnDemand | None = None, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.router, self.settings, self.on_demand, self.clock = router, settings, on_demand, clock
        router.replica_concurrency = settings.replica_concurrency
        self.queue = AdmissionQueue(settings, has_room=router.has_room, take=router.acquire,
                                    give_back=router.release, registry=registry, clock=clock)
        router.on_release = self.queue.offer
        self._poller: asyncio.Task | None = None

    def start(self, reader: MetricsReader) -> None:
        """Start polling the replicas' ``/metrics`` (when a scorer reads them) and releasing
        idle on-demand replicas; called in the gateway's event loop."""
        if self.router.scoring.settings.reads_engine_metrics:
            poller = MetricsPoller(self.router.scoring.board, self._choices, reader,
                                   poll_s=self.router.scoring.settings.metrics_poll_s)
            self._poller = asyncio.ensure_future(poller.run())
        if self.on_demand is not None:
            self.on_demand.start(lambda: [r for r, n in self.router.outstanding.items() if n])

    def load(self) -> GatewayLoad:
        """What this gateway holds now: requests in flight per replica, queued per model (a copy,
        safe to take from another thread)."""
        return GatewayLoad(dict(self.router.outstanding), dict(self.queue.queued))

    def _choices(self) -> list[tuple[str, str]]:
        """Replicas worth polling: those of models with more than one live replica (with one,
        there is nothing to choose)."""
        live = self.router.source.endpoints()
        per_model: dict[str, int] = {}
        for e in live:
            per_model[e.model] = per_model.get(e.model, 0) + 1
        return [(e.replica_id, e.url) for e in live if per_model[e.model] > 1]

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self.on_demand is not None:
            await self.on_demand.stop()

    async def acquire(self, route: Route, request: RoutingRequest | None = None, *,
                      disconnected: Callable[[], Awaitable[Any]] | None = None,
                      declaration: str | None = None) -> Endpoint:
        """A replica slot for the routed request (see the module docstring); ``declaration``:
        the request was forwarded by the peer site under it.

        Raises a :class:`~serving.routing.errors.NoSlot`: ``NoLiveReplica``, ``QueueFull``
        (429), ``QueueTimeout`` (503) or ``ClientGone``, each with a ``retry_after``.
        """
        workload = route.evaluation.workload
        started = self.clock()
        on_demand = (declaration is None and self.on_demand is not None
                     and self.on_demand.applies(workload.model))
        deadline = started + (self.on_demand.settings.wait_s if on_demand else self.settings.timeout_s)
        usable = self._usable(route, workload, deadline, declaration)
        if usable is None:
            raise self._none_live(workload, declaration)
        if not self.queue.waiting:
            for endpoint in usable:
                if self.router.has_room(endpoint):
                    self.router.acquire(endpoint, request)
                    self._used(endpoint)
                    return endpoint
        if usable:  # live replicas, all busy: the ordinary wait
            deadline = started + self.settings.timeout_s
        rank, priority = priority_of(self.router.policy, workload,
                                     declarations=tuple(self.router.declarations()))

        allowed_then = {d.pool for d in route.evaluation.decisions if d.allowed}

        def candidates() -> list[Endpoint]:
            # Decided again each time, so a revoked declaration or a new bundle counts at once,
            # and kept within what the request's own decision allowed (its ledger entry
            # names that decision): a wait never widens where the request may go.
            now_usable = self._usable(self.router.route(workload, request), workload, deadline,
                                      declaration)
            if now_usable is None:
                raise self._none_live(workload, declaration)
            return [e for e in now_usable if e.pool in allowed_then]

        ticket = Ticket(workload.tenant, rank, priority, candidates, deadline, started, request,
                        model=workload.model)
        endpoint = await self.queue.wait(ticket, disconnected)
        if self.on_demand is not None and not usable:
            self.on_demand.arrived(workload)
        self._used(endpoint)
        return endpoint

    def _usable(self, route: Route, workload: Workload, deadline: float,
                declaration: str | None = None) -> list[Endpoint] | None:
        """The replicas the request may wait for now: home ones; else none while an on-demand
        home replica is coming in time (placing it if needed); else crossing ones. A forwarded
        request: those its declaration allows. None when nothing is live and nothing is coming."""
        if declaration is not None:
            return [e for e in route.candidates
                    if route.decision_for(e).declaration == declaration] or None
        crossing = {d.pool for d in route.evaluation.decisions if d.declaration}
        home = [e for e in route.candidates if e.pool not in crossing]
        if home:
            return home
        on_demand = self.on_demand
        if on_demand is not None and on_demand.applies(workload.model) and \
                on_demand.in_time(workload, deadline - self.clock()):
            on_demand.want(workload)
            return []
        return list(route.candidates) or None

    def _none_live(self, workload: Workload, declaration: str | None = None) -> NoLiveReplica:
        if declaration is not None:
            return NoLiveReplica(f"no replica allowed under {declaration} is live")
        refusal = None
        if self.on_demand is not None and self.on_demand.applies(workload.model):
            refusal = self.on_demand.refusal(workload)
        return NoLiveReplica("no replica in an allowed pool is live"
                             + (f"; no on-demand replica could be placed: {refusal}" if refusal else ""),
                             placement_refused=refusal)

    def _used(self, endpoint: Endpoint) -> None:
        if self.on_demand is not None:
            self.on_demand.used(endpoint.replica_id)

"""The admission queue: requests wait for a replica slot instead of failing, fairly.

When every replica a request may use holds ``replica_concurrency`` requests
from this gateway, the request waits here (a :class:`Ticket`) until a slot
frees, its deadline passes, or its client leaves. Slots go out in this order:

1. **priority class** (the bundle's ``priority_classes``, e.g. traffic an active
   crisis declaration covers first): a higher class is always served first,
   among the tickets that can use the freed replica;
2. **tenants in turn** within a class: the slot goes to the waiting tenant
   served longest ago, so a tenant flooding the queue gets one slot per turn
   like any other, and a steady tenant's request takes the very next slot that
   frees, not a place behind the flood;
3. **arrival order** within a tenant.

The queue is bounded. A tenant over ``max_waiting_per_tenant`` is refused at
once with **429** (its own share is full); when the whole queue is full, the
newest ticket of the tenant holding most is refused with 429 to make room for
a tenant holding fewer (else the newcomer is). A ticket whose deadline passes
gets **503** (no capacity in time). Both carry ``Retry-After``; their messages
name only the caller's own tenant and counts, never other tenants' load. A
client that disconnects leaves at once (:class:`~serving.routing.errors.ClientGone`).

A request that finds a free slot while nobody waits never enters the queue
and costs nothing here.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from serving.routing.errors import ClientGone, QueueFull, QueueTimeout
from serving.routing.settings import QueueSettings

_WAITS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass(eq=False)
class Ticket:
    """One waiting request. ``candidates`` returns the replicas it may use now (called again
    when the set of live replicas may have changed); an exception it raises ends the wait
    with that exception (e.g. nothing is live and nothing is coming any more)."""

    tenant: str
    rank: int  # 0 is served first
    priority: str  # the class id, for metrics
    candidates: Callable[[], Sequence[Any]]
    deadline: float
    enqueued: float
    request: Any = None  # handed to ``take`` with the endpoint granted
    model: str = ""  # counted in :attr:`AdmissionQueue.queued`
    usable: Sequence[Any] = ()
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class AdmissionQueue:
    """Tickets by class, then tenant (in turn), then arrival; one per gateway event loop.

    ``has_room(endpoint)`` says whether a replica can take one more request;
    ``take(endpoint, request)`` counts a request sent there on a ticket's behalf
    (the router's acquire) and ``give_back(endpoint, request)`` undoes it when
    the ticket's owner is gone before it could use the slot. ``queued`` counts the
    tickets waiting per model (the autoscaler's signal that replicas are short).
    """

    def __init__(self, settings: QueueSettings, *, has_room: Callable[[Any], bool],
                 take: Callable[[Any, Any], None], give_back: Callable[[Any, Any], None],
                 registry: CollectorRegistry | None = None, tick_s: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.has_room, self.take, self.give_back = has_room, take, give_back
        self.tick_s, self.clock = tick_s, clock
        self._classes: dict[int, dict[str, deque[Ticket]]] = {}
        self._per_tenant: dict[str, int] = {}
        self._served: dict[str, int] = {}  # tenant -> number of the last grant it got
        self._grants = 0
        self.waiting = 0
        self.queued: dict[str, int] = {}
        self._recent_wait = 1.0  # seconds; moving average of granted waits, for Retry-After
        self._ticker: asyncio.Task | None = None
        registry = registry if registry is not None else CollectorRegistry()
        self.depth = Gauge("corridor_queue_depth", "Requests waiting for a replica slot.",
                           ["tenant", "priority"], registry=registry)
        self.waits = Histogram("corridor_queue_wait_seconds", "Time waited in the admission queue.",
                               ["tenant", "priority"], buckets=_WAITS, registry=registry)
        self.outcomes = Counter("corridor_queue_outcomes",
                                "Requests that waited, by outcome (admitted, timeout, rejected, gone).",
                                ["tenant", "priority", "outcome"], registry=registry)

    # -- waiting ------------------------------------------------------------

    async def wait(self, ticket: Ticket,
                   disconnected: Callable[[], Awaitable[Any]] | None = None) -> Any:
        """Wait for a slot; return the endpoint, already taken on the ticket's behalf.

        Raises :class:`~serving.routing.errors.QueueFull` (429, at once),
        :class:`~serving.routing.errors.QueueTimeout` (503, at the deadline) or
        :class:`~serving.routing.errors.ClientGone` when ``disconnected()`` completes first.
        """
        self._enqueue(ticket)
        watcher = asyncio.ensure_future(disconnected()) if disconnected is not None else None
        try:
            self.offer()
            pending = {ticket.future} if watcher is None else {ticket.future, watcher}
            timeout = max(0.0, ticket.deadline - self.clock())
            done, _ = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if ticket.future.done() and not ticket.future.cancelled():
                if ticket.future.exception() is not None:
                    raise ticket.future.exception()
                waited = self.clock() - ticket.enqueued
                self._recent_wait = 0.8 * self._recent_wait + 0.2 * waited
                self._finish(ticket, "admitted", waited)
                return ticket.future.result()
            self._remove(ticket)
            if watcher is not None and watcher in done:
                self._finish(ticket, "gone")
                raise ClientGone(f"client left after {self.clock() - ticket.enqueued:.3f} s in the queue",
                                 retry_after=1)
            self._finish(ticket, "timeout")
            raise QueueTimeout(
                f"no replica slot became free within {self.clock() - ticket.enqueued:.1f} s; "
                f"retry later", retry_after=self._retry_after())
        except asyncio.CancelledError:
            if ticket.future.done() and not ticket.future.cancelled() and ticket.future.exception() is None:
                self.give_back(ticket.future.result(), ticket.request)
            else:
                self._remove(ticket)
            raise
        finally:
            if watcher is not None and not watcher.done():
                watcher.cancel()

    def _enqueue(self, ticket: Ticket) -> None:
        settings = self.settings
        if self._per_tenant.get(ticket.tenant, 0) >= settings.max_waiting_per_tenant:
            self._finish(ticket, "rejected")
            raise QueueFull(
                f"tenant {ticket.tenant} already has {self._per_tenant.get(ticket.tenant, 0)} requests "
                f"waiting for a replica (limit {settings.max_waiting_per_tenant}); retry later",
                code="tenant_queue_full", retry_after=self._retry_after())
        if self.waiting >= settings.max_waiting:
            hog = max(self._per_tenant, key=lambda t: self._per_tenant[t], default=None)
            if hog is None or self._per_tenant[hog] <= self._per_tenant.get(ticket.tenant, 0) + 1:
                self._finish(ticket, "rejected")
                raise QueueFull(
                    f"the admission queue is full and tenant {ticket.tenant} holds its share; "
                    f"retry later", retry_after=self._retry_after())
            self._evict_newest(hog)
        ticket.usable = ticket.candidates()
        tenants = self._classes.setdefault(ticket.rank, {})
        tenants.setdefault(ticket.tenant, deque()).append(ticket)
        self._per_tenant[ticket.tenant] = self._per_tenant.get(ticket.tenant, 0) + 1
        self.waiting += 1
        self.queued[ticket.model] = self.queued.get(ticket.model, 0) + 1
        self.depth.labels(ticket.tenant, ticket.priority).inc()
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.ensure_future(self._tick())

    def _evict_newest(self, tenant: str) -> None:
        """Refuse the newest ticket of ``tenant`` in its lowest class (to make room)."""
        for rank in sorted(self._classes, reverse=True):
            queue = self._classes[rank].get(tenant)
            if queue:
                victim = queue[-1]
                self._remove(victim)
                self._finish(victim, "rejected")
                victim.future.set_exception(QueueFull(
                    f"the admission queue is full and tenant {tenant} holds the most waiting "
                    f"requests; retry later", retry_after=self._retry_after()))
                return

    # -- granting -------------------------------------------------------------

    def offer(self) -> None:
        """Give free slots to waiting tickets: higher classes first, tenants in turn.
        Called when a request ends (a slot freed), and on each tick."""
        while self.waiting and self._grant_one():
            pass

    def _grant_one(self) -> bool:
        for rank in sorted(self._classes):
            tenants = self._classes[rank]
            chosen = None
            for tenant, queue in tenants.items():
                if chosen is not None and self._served.get(tenant, 0) >= self._served.get(chosen[0], 0):
                    continue  # served more recently than the one chosen so far
                endpoint = next((e for e in queue[0].usable if self.has_room(e)), None)
                if endpoint is not None:
                    chosen = (tenant, endpoint)
            if chosen is None:
                continue
            tenant, endpoint = chosen
            queue = tenants[tenant]
            ticket = queue.popleft()
            if not queue:
                del tenants[tenant]
            self._grants += 1
            self._served[tenant] = self._grants
            self._forget(ticket)
            self.take(endpoint, ticket.request)
            ticket.future.set_result(endpoint)
            return True
        return False

    async def _tick(self) -> None:
        """While tickets wait: refresh what each may use (replicas come and go) and offer."""
        while self.waiting:
            await asyncio.sleep(self.tick_s)
            failed = []
            for tenants in self._classes.values():
                for queue in tenants.values():
                    for ticket in queue:
                        try:
                            ticket.usable = ticket.candidates()
                        except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                            failed.append((ticket, exc))
            for ticket, exc in failed:
                self._remove(ticket)
                self._finish(ticket, "failed")
                ticket.future.set_exception(exc)
            self.offer()

    # -- bookkeeping ----------------------------------------------------------

    def _remove(self, ticket: Ticket) -> None:
        tenants = self._classes.get(ticket.rank)
        queue = tenants.get(ticket.tenant) if tenants is not None else None
        if queue is None or ticket not in queue:
            return
        queue.remove(ticket)
        if not queue:
            del tenants[ticket.tenant]
        self._forget(ticket)

    def _forget(self, ticket: Ticket) -> None:
        self.waiting -= 1
        if self.queued[ticket.model] > 1:
            self.queued[ticket.model] -= 1
        else:
            del self.queued[ticket.model]
        left = self._per_tenant[ticket.tenant] - 1
        if left:
            self._per_tenant[ticket.tenant] = left
        else:
            del self._per_tenant[ticket.tenant]
        if not self._classes.get(ticket.rank):
            self._classes.pop(ticket.rank, None)
        self.depth.labels(ticket.tenant, ticket.priority).dec()

    def _finish(self, ticket: Ticket, outcome: str, waited: float | None = None) -> None:
        self.outcomes.labels(ticket.tenant, ticket.priority, outcome).inc()
        if waited is not None:
            self.waits.labels(ticket.tenant, ticket.priority).observe(waited)

    def _retry_after(self) -> int:
        return max(1, math.ceil(self._recent_wait))

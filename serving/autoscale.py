"""Autoscaling of deployments declared with ``replicas: {min, max, target_outstanding}``.

The load of a deployment is what the site's gateways hold for it
(:class:`~serving.routing.load.GatewayLoad`): the requests outstanding on its replicas (sent
and not yet answered) plus the requests queued for its model in the admission queue (waiting
because every replica they may use is at its concurrency limit — exactly when more replicas
are needed). A queued request counts toward every autoscaled deployment of its model: which one
will serve it is not known while it waits. With several gateway processes the site's load is
the control process's own plus the workers' reports (:mod:`serving.installation.load_reports`).

Every period, for each such deployment:

- wanted = ceil(load / target_outstanding), kept within [min, max];
- above the running count: one more replica now (placed under the rulebook, as any);
- below it for ``calm_s`` seconds in a row: one replica fewer.

One step per period in either direction, so a burst does not start every replica at
once and a lull does not stop them all. A load that is not complete (a gateway process could
not be heard from) is a lower bound: it may scale up, never down, and the calm restarts.

>>> wanted_replicas(outstanding=9, target=4.0, low=1, high=3)
3
>>> wanted_replicas(outstanding=0, target=4.0, low=1, high=3)
1
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from scheduler.periodic import Periodic
from serving.deployments_file import Autoscale
from serving.routing.load import GatewayLoad

log = logging.getLogger(__name__)


def wanted_replicas(*, outstanding: int, target: float, low: int, high: int) -> int:
    """Replicas for ``outstanding`` requests (in flight on the replicas plus queued for their
    model) at ``target`` per replica, within [low, high]."""
    return max(low, min(high, math.ceil(outstanding / target)))


class Autoscaler:
    """Scales the reconciler's autoscaled deployments on the site's gateway load.

    ``reconciler`` is a :class:`serving.reconcile.Reconciler`; ``load`` returns the site's
    :class:`~serving.routing.load.GatewayLoad` now (called once per period, in the loop's thread).
    """

    def __init__(self, reconciler: Any, load: Callable[[], GatewayLoad], *, period_s: float = 5.0,
                 calm_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.reconciler = reconciler
        self.load = load
        self.calm_s = calm_s
        self.clock = clock
        self._calm_since: dict[str, float] = {}
        self._loop = Periodic(self.tick, period_s, "corridor-autoscale", log, "autoscaling failed")

    def tick(self) -> dict[str, int]:
        """One pass; returns the new replica count of each deployment it scaled."""
        scaled: dict[str, int] = {}
        now = self.clock()
        site = self.load()
        for name, entry in self.reconciler.managed().items():
            bounds = entry.decl.replicas
            if not isinstance(bounds, Autoscale) or entry.rolling():
                continue
            view = self.reconciler.deployments.get(name)
            running = view.spec.replicas
            outstanding = sum(site.outstanding.get(r.id, 0) for r in view.replicas)
            queued = site.queued.get(view.spec.model, 0)
            wanted = wanted_replicas(outstanding=outstanding + queued, target=bounds.target_outstanding,
                                     low=bounds.min, high=bounds.max)
            if wanted > running:
                self._calm_since.pop(name, None)
                scaled[name] = running + 1
            elif wanted < running and site.complete:
                since = self._calm_since.setdefault(name, now)
                if now - since >= self.calm_s:
                    scaled[name] = running - 1
                    self._calm_since.pop(name, None)
            else:
                self._calm_since.pop(name, None)
            if name in scaled:
                log.info("autoscaling %s: %d → %d replicas (%d outstanding, %d queued)", name,
                         running, scaled[name], outstanding, queued)
                self.reconciler.deployments.scale(name, scaled[name])
        return scaled

    def start(self) -> Autoscaler:
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()

"""Autoscaling of deployments declared with ``replicas: {min, max, target_outstanding}``.

The load signal is the gateway router's count of outstanding requests per replica
(requests sent and not yet answered). Every period, for each such deployment:

- wanted = ceil(outstanding / target_outstanding), kept within [min, max];
- above the running count: one more replica now (placed under the rulebook, as any);
- below it for ``calm_s`` seconds in a row: one replica fewer.

One step per period in either direction, so a burst does not start every replica at
once and a lull does not stop them all.

>>> wanted_replicas(outstanding=9, target=4.0, low=1, high=3)
3
>>> wanted_replicas(outstanding=0, target=4.0, low=1, high=3)
1
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from scheduler.periodic import Periodic
from serving.deployments_file import Autoscale

log = logging.getLogger(__name__)


def wanted_replicas(*, outstanding: int, target: float, low: int, high: int) -> int:
    """Replicas for ``outstanding`` requests at ``target`` per replica, within [low, high]."""
    return max(low, min(high, math.ceil(outstanding / target)))


class Autoscaler:
    """Scales the reconciler's autoscaled deployments on the router's outstanding requests.

    ``reconciler`` is a :class:`serving.reconcile.Reconciler`; ``outstanding`` maps a
    replica id to its outstanding requests (``Router.outstanding``).
    """

    def __init__(self, reconciler: Any, outstanding: Mapping[str, int], *, period_s: float = 5.0,
                 calm_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.reconciler = reconciler
        self.outstanding = outstanding
        self.calm_s = calm_s
        self.clock = clock
        self._calm_since: dict[str, float] = {}
        self._loop = Periodic(self.tick, period_s, "corridor-autoscale", log, "autoscaling failed")

    def tick(self) -> dict[str, int]:
        """One pass; returns the new replica count of each deployment it scaled."""
        scaled: dict[str, int] = {}
        now = self.clock()
        for name, entry in self.reconciler.managed().items():
            bounds = entry.decl.replicas
            if not isinstance(bounds, Autoscale) or entry.rolling():
                continue
            view = self.reconciler.deployments.get(name)
            running = view.spec.replicas
            load = sum(self.outstanding.get(r.id, 0) for r in view.replicas)
            wanted = wanted_replicas(outstanding=load, target=bounds.target_outstanding,
                                     low=bounds.min, high=bounds.max)
            if wanted > running:
                self._calm_since.pop(name, None)
                scaled[name] = running + 1
            elif wanted < running:
                since = self._calm_since.setdefault(name, now)
                if now - since >= self.calm_s:
                    scaled[name] = running - 1
                    self._calm_since.pop(name, None)
            else:
                self._calm_since.pop(name, None)
            if name in scaled:
                log.info("autoscaling %s: %d → %d replicas (%d outstanding)", name, running,
                         scaled[name], load)
                self.reconciler.deployments.scale(name, scaled[name])
        return scaled

    def start(self) -> Autoscaler:
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()

"""The scheduler as the gateway sees it: live endpoints for the router, pools and deployments for
operators. Both read :class:`scheduler.deployments.Deployments`; neither changes it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from scheduler.deployments import Deployments
from scheduler.periodic import Periodic
from serving.routing import Endpoint

log = logging.getLogger(__name__)


class DeploymentEndpoints:
    """The gateway's view of live replicas, refreshed from the scheduler every ``period_s``."""

    def __init__(self, deployments: Deployments, period_s: float = 1.0) -> None:
        self.deployments = deployments
        self.period_s = period_s
        self._items: list[Endpoint] = []
        # A failed refresh keeps the last known list (Ray may be restarting).
        self._refresher = Periodic(self.refresh, period_s, "corridor-endpoints", log,
                                   "refreshing the live endpoints failed")

    def endpoints(self) -> list[Endpoint]:
        return self._items

    def refresh(self) -> list[Endpoint]:
        self._items = [Endpoint(r.id, r.model, r.pool, r.jurisdiction, r.node_id, r.endpoint)
                       for view in self.deployments.list() for r in view.replicas
                       if r.endpoint and r.state == "ALIVE"]
        return self._items

    def start(self) -> DeploymentEndpoints:
        self._refresher.start()
        return self

    def stop(self) -> None:
        self._refresher.stop()


@dataclass
class SchedulerView:
    """What operators see (``/admin/pools``, ``/admin/deployments``), read from the scheduler."""

    scheduler: Deployments

    def pools(self) -> dict[str, Any]:
        return self.scheduler.inventory.snapshot(max_age_s=5.0).to_json()

    def deployments(self) -> list[dict[str, Any]]:
        return [view.to_json() for view in self.scheduler.list()]

"""The scheduler as the gateway sees it: live endpoints for the router, pools and deployments for
operators. Both read :class:`scheduler.deployments.Deployments`; neither changes it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from collections.abc import Iterator, Mapping
from typing import Any

from scheduler.current_policy import CurrentPolicy
from scheduler.deployments import Deployments
from scheduler.periodic import Periodic
from serving.models.catalog import ModelCatalog
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


class CatalogConfigs(Mapping[str, Mapping[str, Any]]):
    """Replica configurations for batch replicas: those prepared at start, and any other model
    of the policy in force resolved from the catalog when a batch first asks for it."""

    def __init__(self, catalog: ModelCatalog, current: CurrentPolicy,
                 prepared: Mapping[str, Mapping[str, Any]]) -> None:
        self.catalog, self.current, self._configs = catalog, current, dict(prepared)

    def __getitem__(self, model_id: str) -> Mapping[str, Any]:
        if model_id not in self._configs:
            model = self.current.policy.models.get(model_id)
            if model is None:
                raise KeyError(model_id)
            configs, _ = self.catalog.prepare([model])  # a refused artifact stays absent
            if model_id not in configs:
                raise KeyError(model_id)
            self._configs[model_id] = configs[model_id]
        return self._configs[model_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._configs)

    def __len__(self) -> int:
        return len(self._configs)

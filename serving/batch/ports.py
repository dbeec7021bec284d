"""What the batch domain uses of the serving layer, each by its own type.

The executor routes lines with the same :class:`~serving.routing.Router` as
interactive traffic (so the rulebook decides every line), sends them through
the same :class:`~serving.routing.UpstreamPool`, writes to the ledger and
registers its metrics beside the gateway's. The gateway's batch routes build
this when the app starts; the batch package itself imports no HTTP module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from scheduler.ledger import Ledger
from serving.routing import Router, UpstreamPool
from serving.routing.cache_salt import CacheSalts


@dataclass(frozen=True, slots=True)
class BatchPorts:
    """The router, the upstream pool, the ledger, the registry for batch metrics, model digests."""

    router: Router
    upstream: UpstreamPool
    ledger: Ledger
    registry: CollectorRegistry
    model_digests: Mapping[str, str] = field(default_factory=dict)
    """Digest of each served model's loaded artifact, for the rulebook's ``model-pinned`` rule."""
    cache_salts: CacheSalts = field(default_factory=CacheSalts)
    """The per-tenant ``cache_salt`` each line carries (the gateway's, so a tenant's batch
    lines and interactive requests share its prefix cache and no other tenant's)."""

"""What the gateway's handlers share: policy, ledger, auth, router, upstream client, metrics,
and the optional services (batches, crisis registry, security feed, rate limits), each typed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import Request

from policies import Policy
from scheduler.crisis import CrisisRegistry
from scheduler.database import DatabaseUnavailable
from scheduler.ledger import Ledger
from serving.batch import BatchService
from serving.federation.runtime import Federation
from serving.federation.witnessing import Witness
from serving.feed import SecurityFeed
from serving.gateway.auth import Authenticator, Principal, issuing_site
from serving.gateway.clients import ClientAddresses
from serving.gateway.errors import Forbidden, Unauthenticated
from serving.gateway.limits import RateLimiter
from serving.gateway.metrics import GatewayMetrics
from serving.gateway.requests import single_header
from serving.gateway.token_quota import TokenQuota
from serving.routing import Router, UpstreamPool
from serving.routing.cache_salt import CacheSalts
from serving.routing.dispatch import Dispatch
from serving.routing.on_demand import OnDemand
from serving.routing.settings import QueueSettings

if TYPE_CHECKING:  # both load the scheduler on Ray; the gateway module itself does not
    from serving.policy_switch import PolicySwitch
    from serving.reconcile import Reconciler


class OperatorView(Protocol):
    """What operators see of the scheduler: pools with their nodes, and deployments."""

    def pools(self) -> dict[str, Any]:
        """``{"pools": [...], "quarantined": [...], "unpooled_nodes": [...]}``."""
        ...

    def deployments(self) -> list[dict[str, Any]]: ...


@dataclass
class EmptyOperatorView:
    """An operator view with nothing placed (a gateway without a scheduler)."""

    def pools(self) -> dict[str, Any]:
        return {"pools": [], "quarantined": [], "unpooled_nodes": []}

    def deployments(self) -> list[dict[str, Any]]:
        return []


@dataclass
class Gateway:
    """The gateway's services; one per app, reachable as ``request.app.state.gateway``."""

    policy: Policy
    ledger: Ledger
    auth: Authenticator
    router: Router
    operator_view: OperatorView = field(default_factory=EmptyOperatorView)
    max_body_bytes: int = 8 * 1024 * 1024
    upstream_timeout: float = 600.0
    # Optional services, each owned by its own module and attached by whoever builds the
    # gateway (``serving.installation`` for ``corridor up``); None means the feature is off.
    batches: BatchService | None = None  # the OpenAI Batch API's store and executor
    crisis: CrisisRegistry | None = None  # crisis declarations made at run time
    events: SecurityFeed | None = None  # the security event feed for the defence centre
    limiter: RateLimiter | None = None  # per-tenant rate limits, failed-login throttling
    tokens: TokenQuota | None = None  # per-tenant tokens per minute, from the usage replicas report
    # Per-tenant vLLM cache_salt, so no tenant hits another's cached prefixes (always on).
    cache_salts: CacheSalts = field(default_factory=CacheSalts)
    deploying: Reconciler | None = None  # declared deployments (the deployments API)
    policy_switch: PolicySwitch | None = None  # a new bundle on the running installation
    # Digest of each served model's loaded artifact; request workloads carry it, so the
    # rulebook's ``model-pinned`` rule checks it (required in autarky mode).
    model_digests: dict[str, str] = field(default_factory=dict)
    # Two sites: this site's jurisdiction (responses say X-Corridor-Site), and its link to the
    # peer site (forwarding under crisis declarations, crisis steps, witnessing). None: one site.
    site: str | None = None
    federation: Federation | None = None
    witness: Witness | None = None
    # A gateway worker of a site with several: False while the site's database is unreachable
    # (``/readyz`` then answers 503). None: nothing beyond live replicas decides readiness.
    ready: Callable[[], bool] | None = None
    # Who may read /metrics (it names tenants): these roles, or anyone when None.
    metrics_roles: tuple[str, ...] | None = ("operator", "auditor")
    # The client address behind trusted proxies (rate limits, throttling, the feed).
    clients: ClientAddresses = field(default_factory=ClientAddresses)
    # Requests wait for a replica slot in the admission queue; models the bundle marks
    # ``on_demand`` get a replica placed when none is live (None: never).
    queue: QueueSettings = field(default_factory=QueueSettings)
    on_demand: OnDemand | None = None
    metrics: GatewayMetrics = field(init=False)
    upstream: UpstreamPool = field(init=False)
    dispatch: Dispatch = field(init=False)

    def _ledger_size(self) -> float:
        """The ledger's size for ``/metrics``; NaN while a shared ledger's database is down (on
        PostgreSQL the size is a query, and a scrape must not fail with it)."""
        try:
            return self.ledger.size
        except DatabaseUnavailable:
            return float("nan")

    def __post_init__(self) -> None:
        self.metrics = GatewayMetrics(ledger_size=self._ledger_size)
        self.upstream = UpstreamPool(read_timeout=self.upstream_timeout)
        self.dispatch = Dispatch(self.router, self.queue, on_demand=self.on_demand,
                                 registry=self.metrics.registry)

    async def start(self) -> None:
        """Open the upstream connection pool, the peer link, and start polling replica metrics
        (called by the app's lifespan)."""
        await self.upstream.start()
        self.dispatch.start(self.upstream)
        if self.federation is not None:
            await self.federation.start(*((self.witness.loop,) if self.witness else ()))

    async def stop(self) -> None:
        if self.federation is not None:
            await self.federation.stop()
        await self.dispatch.stop()
        await self.upstream.close()

    def source(self, request: Request) -> str | None:
        """The client address of ``request`` (forwarded only through a trusted proxy)."""
        peer = request.client.host if request.client else None
        return self.clients.resolve(peer, request.headers.getlist("x-forwarded-for"))

    def authenticate(self, request: Request, roles: Sequence[str]) -> Principal:
        """The caller, who must hold one of ``roles``: 401 without valid credentials, else 403.

        A valid credential is always accepted; a failed one counts against its source,
        which after a burst is answered 429 (see :mod:`serving.gateway.limits`)."""
        header = single_header(request, "authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("missing bearer credentials: send 'Authorization: Bearer <api key>'",
                                  code="invalid_api_key")
        principal = self.auth.authenticate(token.strip())
        if principal is None and self.federation is not None:
            home = issuing_site(token.strip())
            if home == self.federation.peer:
                url = self.federation.config.peer_gateway_url or f"the {home} site's gateway"
                raise Unauthenticated(f"this key was issued by site {home}, not by this site "
                                      f"({self.site}): send it to {url}", code="wrong_site")
        if principal is None:
            if self.limiter is not None:
                self.limiter.auth_failed(self.source(request), endpoint=route_template(request))
            raise Unauthenticated("invalid API key or token", code="invalid_api_key")
        if principal.role not in roles:
            raise Forbidden(f"role '{principal.role}' may not call this endpoint "
                            f"(needs {' or '.join(roles)})", code="wrong_role")
        return principal


def route_template(request: Request) -> str:
    """The matched route's template, e.g. ``/v1/files/{file_id}``: what the ledger and the feed
    may record of a path (the raw path is caller text)."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or "(unrouted)"

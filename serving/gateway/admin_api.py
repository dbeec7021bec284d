"""The operator API: pools with their nodes (deployments: :mod:`serving.gateway.deployments_api`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from scheduler.ledger import LedgerEntryDraft
from serving.gateway.errors import Forbidden, NotFound
from serving.gateway.service import Gateway

router = APIRouter(prefix="/admin")


@router.get("/pools")
async def pools(request: Request) -> dict[str, Any]:
    """Pools with their Ray nodes, GPUs free/total and quarantined nodes (role ``operator``)."""
    gateway: Gateway = request.app.state.gateway
    gateway.authenticate(request, ("operator",))
    return gateway.operator_view.pools()


@router.get("/peer")
async def peer(request: Request) -> dict[str, Any]:
    """This site's view of its peer: reachable, bundle digest, whether forwarding is halted and why."""
    gateway: Gateway = request.app.state.gateway
    gateway.authenticate(request, ("operator",))
    federation = gateway.federation
    if federation is None:
        raise NotFound("this gateway has no peer site", code="no_peer")
    state = federation.state
    return {"site": federation.site, "peer": federation.peer, "peer_url": federation.config.peer_url,
            "reachable": state.reachable, "peer_policy_digest": state.policy_digest,
            "policy_digest": federation.own_digest, "halted": state.halted,
            "forwarding": federation.state.forwarding_refusal(federation.own_digest) is None}


@router.post("/peer/clear")
async def clear_peer(request: Request) -> dict[str, Any]:
    """Resume forwarding after a halt, once an operator of this site has investigated (ledger entry)."""
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request, ("operator",))
    federation = gateway.federation
    if federation is None:
        raise NotFound("this gateway has no peer site", code="no_peer")
    if principal.jurisdiction != federation.site:
        raise Forbidden(f"only an operator of site {federation.site} clears its peer state",
                        code="wrong_jurisdiction")
    halted, federation.state.halted = federation.state.halted, None
    await gateway.ledger.append_async(LedgerEntryDraft(
        kind="security", policy_digest=gateway.policy.digest,
        detail={"event": "peer_cleared", "site": federation.peer, "operator": principal.subject,
                "was": halted}))
    if gateway.witness is not None:
        gateway.witness.last = None  # witness afresh from the peer's current head
    return await peer(request)

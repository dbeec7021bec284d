"""The operator API: pools with their nodes, and deployments with where each replica runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from serving.gateway.service import Gateway

router = APIRouter(prefix="/admin")


@router.get("/pools")
async def pools(request: Request) -> dict[str, Any]:
    """Pools with their Ray nodes, GPUs free/total and quarantined nodes (role ``operator``)."""
    gateway: Gateway = request.app.state.gateway
    gateway.authenticate(request, ("operator",))
    return gateway.operator_view.pools()


@router.get("/deployments")
async def deployments(request: Request) -> dict[str, Any]:
    """Per model, each replica's pool, jurisdiction, Ray node id, endpoint and state."""
    gateway: Gateway = request.app.state.gateway
    gateway.authenticate(request, ("operator",))
    return {"data": gateway.operator_view.deployments()}

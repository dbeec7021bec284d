"""The operator API: pools with their nodes (deployments: :mod:`serving.gateway.deployments_api`)."""

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

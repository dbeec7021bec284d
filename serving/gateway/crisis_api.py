"""The operator API for crisis declarations (role ``operator``): declare, approve, revoke, list.

``POST /admin/crisis`` with ``{"scope": {"tenants", "markings", "models",
"directions"}, "reason", "valid_for_hours"}`` → the declaration
(``{"id", "status", …}``, status ``pending``); ``POST /admin/crisis/{id}/approve``
and ``POST /admin/crisis/{id}/revoke`` → the declaration after the step;
``GET /admin/crisis`` → ``{"object": "list", "data": [...]}`` newest first;
``GET /admin/crisis/{id}`` → one. The operator acts for the jurisdiction of
their credentials. Refusals are OpenAI-style errors: 400 a bad body, 403 the
declarer approving their own declaration (``self_approval``), 404 an unknown
id, 409 a step the status no longer allows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from policies.bundle import JURISDICTIONS, Operator, Scope
from scheduler.crisis import CrisisError, CrisisRecord, CrisisRegistry
from serving.gateway.errors import Forbidden, NotFound, from_domain
from serving.gateway.protocol import check_body
from serving.gateway.requests import read_object
from serving.gateway.service import Gateway

router = APIRouter(prefix="/admin/crisis")


class DeclareBody(BaseModel):
    """``POST /admin/crisis``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    scope: Scope = Field(description="What may cross: tenants, markings (any known spelling), "
                         "models, directions ('FR->DE': French data to German pools, 'DE->FR').")
    reason: str = Field(description="Why; shown in the ledger and to the other side.")
    valid_for_hours: float = Field(description="Window from now, at most settings.crisis_max_hours.")


def _context(request: Request) -> tuple[CrisisRegistry, Operator]:
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request, ("operator",))
    if gateway.crisis is None:
        raise NotFound("crisis declarations are not enabled on this gateway", code="crisis_disabled")
    if principal.jurisdiction not in JURISDICTIONS:
        raise Forbidden("this operator credential names no jurisdiction (FR or DE); crisis "
                        "declarations need one", code="operator_without_jurisdiction")
    return gateway.crisis, Operator(operator=principal.subject, jurisdiction=principal.jurisdiction)


async def _step(registry: CrisisRegistry, method: Callable[..., CrisisRecord], *args: Any) -> dict[str, Any]:
    try:
        record = await run_in_threadpool(method, *args)
    except CrisisError as exc:
        raise from_domain(exc) from exc
    return record.to_json(registry.clock())


@router.post("")
async def declare(request: Request) -> dict[str, Any]:
    """Declare mutual assistance; pending until an operator of the other jurisdiction approves."""
    registry, operator = _context(request)
    _, payload = await read_object(request, 64 * 1024)
    body = check_body(DeclareBody, payload)

    def run():
        return registry.declare(operator, scope=body.scope, reason=body.reason,
                                valid_for_hours=body.valid_for_hours)

    return await _step(registry, run)


@router.get("")
async def list_declarations(request: Request) -> dict[str, Any]:
    """Every declaration, newest first, with its status now."""
    registry, _ = _context(request)
    now = registry.clock()
    return {"object": "list", "data": [r.to_json(now) for r in registry.list()], "has_more": False}


@router.get("/{declaration_id}")
async def get_declaration(request: Request, declaration_id: str) -> dict[str, Any]:
    registry, _ = _context(request)
    return await _step(registry, registry.get, declaration_id)


@router.post("/{declaration_id}/approve")
async def approve(request: Request, declaration_id: str) -> dict[str, Any]:
    """Approve as the calling operator; the declarer's own approval is refused (403)."""
    registry, operator = _context(request)
    return await _step(registry, registry.approve, declaration_id, operator)


@router.post("/{declaration_id}/revoke")
async def revoke(request: Request, declaration_id: str) -> dict[str, Any]:
    """Revoke at once (either jurisdiction); crossings stop within seconds."""
    registry, operator = _context(request)
    return await _step(registry, registry.revoke, declaration_id, operator)

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

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from policies.bundle import Operator
from serving.crisis import (CrisisError, CrisisRegistry, InvalidDeclaration, SelfApproval,
                            UnknownDeclaration, WrongState)
from serving.gateway.errors import BadRequest, Conflict, Forbidden, GatewayError, NotFound
from serving.gateway.service import Gateway

router = APIRouter(prefix="/admin/crisis")


class ScopeBody(BaseModel):
    """What may cross: checked against the bundle by the registry (unknown names are a 400)."""

    model_config = ConfigDict(extra="forbid")

    tenants: list[str] = Field(description="Tenant ids, e.g. ['fr-interior'].")
    markings: list[str] = Field(description="Markings, any known spelling, e.g. ['DR'].")
    models: list[str] = Field(description="Model ids, e.g. ['corridor-tiny'].")
    directions: list[str] = Field(description="'FR->DE' (French data to German pools) and/or 'DE->FR'.")


class DeclareBody(BaseModel):
    """``POST /admin/crisis``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    scope: ScopeBody
    reason: str = Field(description="Why; shown in the ledger and to the other side.")
    valid_for_hours: float = Field(description="Window from now, at most settings.crisis_max_hours.")


def _context(request: Request) -> tuple[CrisisRegistry, Operator]:
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request, ("operator",))
    if gateway.crisis is None:
        raise NotFound("crisis declarations are not enabled on this gateway", code="crisis_disabled")
    if principal.jurisdiction not in ("FR", "DE"):
        raise Forbidden("this operator credential names no jurisdiction (FR or DE); crisis "
                        "declarations need one", code="operator_without_jurisdiction")
    return gateway.crisis, Operator(operator=principal.subject, jurisdiction=principal.jurisdiction)


def _translate(exc: CrisisError) -> GatewayError:
    kinds: dict[type, type[GatewayError]] = {InvalidDeclaration: BadRequest, SelfApproval: Forbidden,
                                             UnknownDeclaration: NotFound, WrongState: Conflict}
    kind = next((v for k, v in kinds.items() if isinstance(exc, k)), GatewayError)
    return kind(exc.message, code=exc.code, param=exc.param)


async def _step(registry: CrisisRegistry, method: Any, *args: Any) -> dict[str, Any]:
    try:
        record = await run_in_threadpool(method, *args)
    except CrisisError as exc:
        raise _translate(exc) from exc
    return record.to_json(registry.clock())


@router.post("")
async def declare(request: Request, body: DeclareBody) -> dict[str, Any]:
    """Declare mutual assistance; pending until an operator of the other jurisdiction approves."""
    registry, operator = _context(request)

    def run():
        return registry.declare(operator, scope=body.scope.model_dump(), reason=body.reason,
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

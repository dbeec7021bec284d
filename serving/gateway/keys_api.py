"""The API key API: issue, list and revoke keys (operators; tenant admins for their app keys).

``POST /admin/keys`` with ``{"role", "tenant"?, "jurisdiction"?, "scope"?, "name"?,
"expires_at"?, "minimum_marking"?}`` → the key's record and ``"key"``, the secret,
shown only here; ``expires_at`` is an RFC 3339 time, a date, or ``30d``/``12h``.
``GET /admin/keys`` → ``{"object": "list", "data": [records]}``, never a secret;
``DELETE /admin/keys/{id}`` → the revoked record; the key stops working at once.

Who may do what:

- an operator manages the keys of its jurisdiction: app and admin keys of tenants
  at home there, operator keys of that jurisdiction, auditor keys;
- a tenant admin manages the ``app`` keys of its own tenant only;
- a key outside the caller's reach is a 404 on revoke (it does not say it exists).

Every issue and revocation is a ``security`` ledger entry (``detail.event``
``api_key_issued`` / ``api_key_revoked``) with the key id, never the secret.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from policies import PolicyError
from scheduler.ledger import LedgerEntryDraft
from serving.gateway.auth import ALL_TENANTS, KeyStore, Principal
from serving.gateway.errors import BadRequest, Forbidden, NotFound
from serving.gateway.keys import KeyRecord, parse_expiry
from serving.gateway.protocol import check_body
from serving.gateway.requests import read_object
from serving.gateway.service import Gateway

router = APIRouter(prefix="/admin/keys")
MANAGERS = ("operator", "admin")


class KeyBody(BaseModel):
    """``POST /admin/keys``: the key to issue (an unknown field is a 400 naming it)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["app", "admin", "operator", "auditor"] = Field(
        description="app and admin keys act for a tenant, operator keys for a jurisdiction, "
        "auditor keys for an audit scope; a tenant admin issues app keys only.")
    tenant: str | None = Field(default=None, description="For app and admin keys; an admin's own by default.")
    jurisdiction: str | None = Field(default=None, description="For operator keys; the caller's by default.")
    scope: list[str] = Field(default_factory=list, description="For auditor keys: tenant ids, or ['*'].")
    name: str | None = Field(default=None, max_length=100, description="What it is for, e.g. 'case-triage'.")
    expires_at: str | None = Field(default=None, description="RFC 3339 time, a date, or 30d / 12h.")
    minimum_marking: str | None = Field(default=None, description="Requests are treated at least at this.")


def _store(gateway: Gateway) -> KeyStore:
    return gateway.auth.keys


def _home(gateway: Gateway, tenant: str | None) -> str | None:
    known = gateway.policy.tenants.get(tenant or "")
    return known.home if known else None


def _reaches(gateway: Gateway, principal: Principal, record: KeyRecord) -> bool:
    """Whether ``principal`` may see and revoke the key of ``record``."""
    if principal.role == "admin":
        return record.role == "app" and record.tenant == principal.tenant
    if record.role in ("app", "admin"):
        return _home(gateway, record.tenant) == principal.jurisdiction
    if record.role == "operator":
        return record.jurisdiction == principal.jurisdiction
    return True  # auditor keys


def _check_create(gateway: Gateway, principal: Principal, body: KeyBody) -> KeyBody:
    """Fill the caller's defaults into ``body`` and refuse what it may not issue (403)."""
    if principal.role == "admin":
        tenant = body.tenant or principal.tenant
        if body.role != "app" or tenant != principal.tenant:
            raise Forbidden(f"a tenant admin issues app keys of its own tenant ({principal.tenant}) "
                            f"only; asked for a {body.role} key of {tenant}", code="not_your_tenant")
        return body.model_copy(update={"tenant": tenant})
    if body.role in ("app", "admin"):
        home = _home(gateway, body.tenant)
        if home is None:
            raise BadRequest(f"unknown tenant {body.tenant!r}", code="unknown_tenant", param="tenant")
        if home != principal.jurisdiction:
            raise Forbidden(f"tenant {body.tenant} belongs to {home}: its keys are issued by an "
                            f"operator of {home} (at the {home} site)", code="other_jurisdiction")
    if body.role == "operator":
        jurisdiction = body.jurisdiction or principal.jurisdiction
        if jurisdiction != principal.jurisdiction:
            raise Forbidden(f"an operator of {principal.jurisdiction} issues operator keys of "
                            f"{principal.jurisdiction} only", code="other_jurisdiction")
        return body.model_copy(update={"jurisdiction": jurisdiction})
    if body.role == "auditor":
        unknown = [t for t in body.scope if t != ALL_TENANTS and t not in gateway.policy.tenants]
        if not body.scope or unknown:
            raise BadRequest(f"auditor keys need a scope of known tenants or ['*'] (unknown: "
                             f"{', '.join(unknown) or 'none given'})", code="invalid_scope", param="scope")
    return body


async def _record(gateway: Gateway, event: str, record: KeyRecord, by: str) -> None:
    jurisdiction = record.jurisdiction or _home(gateway, record.tenant)
    await gateway.ledger.append_async(LedgerEntryDraft(
        kind="security", tenant=record.tenant, jurisdiction=jurisdiction,
        policy_digest=gateway.policy.digest,
        detail={"event": event, "key_id": record.id, "name": record.name, "role": record.role,
                "scope": list(record.scope), "expires_at": record.expires_at,
                "minimum_marking": record.minimum_marking, "by": by}))


@router.post("")
async def create_key(request: Request) -> dict[str, Any]:
    """Issue a key; the answer holds the secret, which is never shown again."""
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request, MANAGERS)
    _, payload = await read_object(request, 64 * 1024)
    body = _check_create(gateway, principal, check_body(KeyBody, payload))
    try:
        expires = parse_expiry(body.expires_at) if body.expires_at else None
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_key_request", param="expires_at") from exc
    try:
        record, key = await run_in_threadpool(
            _store(gateway).create, body.role, tenant=body.tenant, jurisdiction=body.jurisdiction,
            scope=tuple(body.scope), name=body.name, expires_at=expires,
            minimum_marking=body.minimum_marking, created_by=principal.subject)
    except (ValueError, PolicyError) as exc:
        field = str(exc).split(":", 1)[0] if ":" in str(exc) else None
        raise BadRequest(str(exc), code="invalid_key_request",
                         param=field if field in KeyBody.model_fields else None) from exc
    await _record(gateway, "api_key_issued", record, principal.subject)
    return {**record.to_json(), "key": key}


@router.get("")
async def list_keys(request: Request, tenant: str | None = None) -> dict[str, Any]:
    """The keys the caller manages (``?tenant=`` narrows), without secrets."""
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request, MANAGERS)
    now = dt.datetime.now(dt.UTC)
    records = [r for r in _store(gateway).list() if _reaches(gateway, principal, r)
               and (tenant is None or r.tenant == tenant)]
    return {"object": "list", "data": [r.to_json(now) for r in records], "has_more": False}


@router.delete("/{key_id}")
async def revoke_key(request: Request, key_id: str) -> dict[str, Any]:
    """Revoke a key at once; revoking it again changes nothing and answers the same."""
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request, MANAGERS)
    store = _store(gateway)
    record = store.get(key_id)
    if record is None or not _reaches(gateway, principal, record):
        raise NotFound(f"no API key {key_id!r} that you manage", code="key_not_found", param="id")
    first = record.revoked_at is None
    revoked = await run_in_threadpool(store.revoke, key_id, by=principal.subject)
    assert revoked is not None
    if first:
        await _record(gateway, "api_key_revoked", revoked, principal.subject)
    return revoked.to_json()

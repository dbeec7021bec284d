"""The auditor API: ledger entries, signed tree heads, proofs and exports (role ``auditor``).

Shapes are those of DESIGN.md ("Auditor API"), served straight from the
ledger's own dicts so that what an auditor verifies is what the ledger stored.
An auditor scoped to some tenants sees only their entries; tree heads, the
public key and proofs carry only hashes and are open to every auditor.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from scheduler.ledger import NotFoundError, ProofInputError
from serving.gateway.auth import Principal
from serving.gateway.errors import BadRequest, Forbidden, NotFound
from serving.gateway.service import Gateway

router = APIRouter(prefix="/audit")

#: Ledger indexes and sizes are SQLite integers: anything outside is a 400, not an overflow.
Index = Annotated[int, Query(ge=0, le=2**63 - 1)]


def _tenant_filter(principal: Principal, tenant: str | None) -> str | None:
    """The tenant filter an auditor may use: theirs, or any with the global scope."""
    scope = principal.audit_scope
    if scope is None:
        return tenant
    if tenant is None:
        if len(scope) == 1:
            return scope[0]
        raise BadRequest(f"your audit scope covers several tenants ({', '.join(scope)}): "
                         f"name one with ?tenant=", code="missing_required_parameter", param="tenant")
    if tenant not in scope:
        raise Forbidden(f"tenant '{tenant}' is outside your audit scope", code="outside_audit_scope",
                        param="tenant")
    return tenant


_RFC3339 = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                      r"(?:\.([0-9]+))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))$")
_EARLIEST = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
_LATEST = dt.datetime.max.replace(tzinfo=dt.timezone.utc)


def _time(name: str, value: str | None) -> dt.datetime | None:
    """An RFC 3339 time as UTC; one outside the years 1..9999 once in UTC is the earliest or
    latest time there is (a filter from 0001-01-01T00:00:00+14:00 means "from the start").

    >>> _time("since", "2026-11-28T12:00:00+01:00").isoformat()
    '2026-11-28T11:00:00+00:00'
    >>> _time("until", "9999-12-31T23:59:59-10:00") == _LATEST
    True
    """
    if value is None:
        return None
    match = _RFC3339.match(value)
    if match is None:
        raise BadRequest(f"'{name}' must be an RFC 3339 time with a time zone, e.g. "
                         f"2026-11-28T12:00:00Z, got {value[:64]!r}", param=name, code="invalid_time")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    micro = int((match.group(7) or "0")[:6].ljust(6, "0"))
    sign, off_h, off_m = match.group(9), int(match.group(10) or 0), int(match.group(11) or 0)
    if off_h > 23 or off_m > 59:
        raise BadRequest(f"'{name}': time zone offset out of range in {value!r}", param=name,
                         code="invalid_time")
    offset = dt.timedelta(hours=off_h, minutes=off_m) * (-1 if sign == "-" else 1)
    if year == 0:
        return _EARLIEST
    try:
        local = dt.datetime(year, month, day, hour, minute, min(second, 59), micro)
    except ValueError as exc:
        raise BadRequest(f"'{name}': {exc} in {value!r}", param=name, code="invalid_time") from exc
    try:
        return (local - offset).replace(tzinfo=dt.timezone.utc)
    except OverflowError:
        return _EARLIEST if offset > dt.timedelta(0) else _LATEST


def _auditor(request: Request) -> tuple[Gateway, Principal]:
    gateway: Gateway = request.app.state.gateway
    return gateway, gateway.authenticate(request, ("auditor",))


@router.get("/entries")
async def entries(request: Request, tenant: str | None = None, kind: str | None = None,
                  jurisdiction: str | None = None, since: str | None = None,
                  until: str | None = None,
                  after: Annotated[int | None, Query(ge=-1, le=2**63 - 1)] = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  decision_id: str | None = None) -> dict[str, Any]:
    """Entries matching every filter, by index; ``decision_id`` finds the entries of one decision
    (the ``X-Corridor-Decision`` of a response)."""
    gateway, principal = _auditor(request)
    try:
        return gateway.ledger.entries(tenant=_tenant_filter(principal, tenant), kind=kind,
                                      jurisdiction=jurisdiction, since=_time("since", since),
                                      until=_time("until", until), after=after, limit=limit,
                                      decision_id=decision_id)
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_parameter") from exc


@router.get("/tree-head")
def tree_head(request: Request) -> dict[str, Any]:
    """Signs a new head when the log grew: may wait for a commit, so it runs in the threadpool."""
    gateway, _ = _auditor(request)
    return gateway.ledger.latest_tree_head()


@router.get("/public-key")
async def public_key(request: Request) -> dict[str, str]:
    gateway, _ = _auditor(request)
    return gateway.ledger.public_key()


@router.get("/proof/inclusion")
async def inclusion(request: Request, index: Index, tree_size: Index) -> dict[str, Any]:
    gateway, _ = _auditor(request)
    try:
        return gateway.ledger.inclusion_proof(index, tree_size)
    except (ProofInputError, ValueError) as exc:
        raise BadRequest(str(exc), code="invalid_proof_request") from exc
    except NotFoundError as exc:
        raise NotFound(str(exc), code="not_found") from exc


@router.get("/proof/consistency")
async def consistency(request: Request, first: Index, second: Index) -> dict[str, Any]:
    gateway, _ = _auditor(request)
    try:
        return gateway.ledger.consistency_proof(first, second)
    except (ProofInputError, ValueError) as exc:
        raise BadRequest(str(exc), code="invalid_proof_request") from exc
    except NotFoundError as exc:
        raise NotFound(str(exc), code="not_found") from exc


@router.get("/export")
async def export(request: Request, tenant: str | None = None,
                 tree_size: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None) -> StreamingResponse:
    """JSON lines of entries; with ``tree_size`` each line carries its inclusion proof in the
    tree of that size, so a tenant's export verifies offline against a signed tree head."""
    gateway, principal = _auditor(request)
    chosen = _tenant_filter(principal, tenant)
    if tree_size is not None and not 0 < tree_size <= gateway.ledger.size:
        raise BadRequest(f"tree_size: got {tree_size}, want 1..{gateway.ledger.size}",
                         param="tree_size", code="invalid_parameter")

    def lines() -> Iterator[bytes]:
        for item in gateway.ledger.export(tenant=chosen, tree_size=tree_size):
            yield json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/witness")
async def witness(request: Request, after: Annotated[int | None, Query(ge=-1, le=2**31)] = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    """The peer's signed tree heads this site countersigned, oldest first: ``{"data": [{"site",
    "tree_head", "cosignature", "checkpoint"}], "has_more"}`` (empty without a peer)."""
    gateway, _ = _auditor(request)
    if gateway.witness is None:
        return {"data": [], "has_more": False}
    return gateway.witness.page(after, limit)


@router.get("/checkpoint")
def checkpoint(request: Request) -> Response:
    """This site's newest checkpoint the peer witnessed, as a C2SP signed note (``text/plain``): this
    site's ledger signature and the peer's ``cosignature/v1`` line; before any, the latest own one."""
    gateway, _ = _auditor(request)
    if gateway.witness is not None:
        return PlainTextResponse(gateway.witness.checkpoint())
    if gateway.site is None:
        raise NotFound("this gateway is not a site of the corridor; its checkpoint origin would have no "
                       "site (corridor.eu/<site>/ledger)", code="no_site")
    raise NotFound("this site has no signing key for checkpoints", code="no_checkpoint")

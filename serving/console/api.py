"""The three small read-only APIs the console needs and the gateway does not (yet) offer.

Each authenticates exactly like the gateway's own APIs (``Authorization:
Bearer <api key or OIDC JWT>``; 401 without valid credentials, 403 for a role
that may not call it) and answers OpenAI-style errors:

- ``GET /console/api/whoami`` (any role) → the caller's own identity:
  ``{"subject", "role", "tenant", "jurisdiction", "audit_scope"}``
  (``audit_scope``: a list of tenant ids, ``"*"`` for every tenant, or null).
  The console uses it to greet the user and to know an operator's
  jurisdiction; which views it shows still follows what each API answers.
- ``GET /console/api/corridor`` (roles ``auditor``, ``operator``) → the
  corridor as the policy bundle declares it: ``{"policy_digest", "bundle":
  {"name", "version"}, "pools": [{"id", "jurisdiction", "operator", "site",
  "gpu": {"type", "count"}, "accreditations": [{"id", "valid_until", "issuer",
  "expired"}]}], "tenants": [{"id", "name", "home", "residency", "markings"}],
  "models": [id], "markings": [name]}``. ``GET /admin/pools`` gives live GPU
  numbers but not accreditations, and only to operators; auditors draw the
  corridor diagram from this. A scoped auditor sees only its tenants.
- ``GET /console/api/security-events?limit=&min_severity=`` (role
  ``operator``) → ``{"object": "list", "data": [record], "has_more"}``: the
  newest ``limit`` (1..1000, default 100) records of the gateway's security
  event feed (:mod:`serving.events`, OCSF-style), newest first, keeping only
  those with ``severity_id >= min_severity``. 404 ``security_feed_disabled``
  when the gateway has no feed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

MAX_EVENTS = 1000
_BLOCK = 64 * 1024


class ConsolePrincipal(Protocol):
    """What the console reads of an authenticated caller (``serving.gateway.auth.Principal``)."""

    subject: str
    role: str
    tenant: str | None
    jurisdiction: str | None
    scope: tuple[str, ...]

    @property
    def audit_scope(self) -> tuple[str, ...] | None: ...


class ConsoleGateway(Protocol):
    """The narrow port of the gateway these routes use (``request.app.state.gateway``)."""

    policy: Any  # policies.Policy
    events: Any  # serving.events.SecurityFeed, or None when the feed is off

    def authenticate(self, request: Request, roles: Sequence[str]) -> ConsolePrincipal:
        """The caller holding one of ``roles``; raises the gateway's 401/403 errors otherwise."""
        ...


def _gateway(request: Request) -> ConsoleGateway:
    return request.app.state.gateway


def _error(status: int, kind: str, code: str, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": code, "param": param}},
                        status_code=status)


def read_tail(path: Path, limit: int, keep=lambda record: True) -> tuple[list[dict[str, Any]], bool]:
    """The newest ``limit`` JSON-lines records of ``path`` that ``keep`` accepts, newest first,
    and whether older ones remain. Reads backwards in blocks, so a long feed costs little.

    A torn or unparsable line (a writer mid-append) is skipped.
    """
    found: list[dict[str, Any]] = []
    for line in _lines_backwards(path):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or not keep(record):
            continue
        if len(found) == limit:
            return found, True
        found.append(record)
    return found, False


def _lines_backwards(path: Path) -> Iterator[bytes]:
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        position = handle.seek(0, os.SEEK_END)
        rest = b""
        while position > 0:
            step = min(_BLOCK, position)
            position -= step
            handle.seek(position)
            lines = (handle.read(step) + rest).split(b"\n")
            rest = lines.pop(0)  # may continue in the previous block
            for line in reversed(lines):
                if line.strip():
                    yield line
        if rest.strip():
            yield rest


def console_api_router() -> APIRouter:
    """``/console/api/whoami``, ``/console/api/corridor`` and ``/console/api/security-events``."""
    router = APIRouter(prefix="/console/api", include_in_schema=False)

    @router.get("/whoami")
    async def whoami(request: Request) -> dict[str, Any]:
        principal = _gateway(request).authenticate(request, ("app", "admin", "operator", "auditor"))
        scope: str | list[str] | None = None
        if principal.role == "auditor":
            scope = "*" if "*" in principal.scope else list(principal.scope)
        return {"subject": principal.subject, "role": principal.role, "tenant": principal.tenant,
                "jurisdiction": principal.jurisdiction, "audit_scope": scope}

    @router.get("/corridor")
    async def corridor(request: Request) -> dict[str, Any]:
        gateway = _gateway(request)
        principal = gateway.authenticate(request, ("auditor", "operator"))
        policy = gateway.policy
        bundle = policy.bundle
        today = dt.datetime.now(dt.timezone.utc).date()
        pools = [{"id": pool.id, "jurisdiction": pool.jurisdiction, "operator": pool.operator,
                  "site": pool.site, "gpu": {"type": pool.gpu.type, "count": pool.gpu.count},
                  "accreditations": [{"id": a.id, "valid_until": a.valid_until.isoformat(),
                                      "issuer": a.issuer, "expired": a.valid_until < today}
                                     for a in pool.accreditations]}
                 for pool in bundle.pools]
        tenants = [{"id": t.id, "name": t.name, "home": t.home, "residency": list(t.residency),
                    "markings": list(t.markings)}
                   for t in bundle.tenants
                   if principal.role == "operator" or principal.audit_scope is None
                   or t.id in principal.audit_scope]
        markings = sorted({m for t in bundle.tenants for m in t.markings})
        return {"policy_digest": policy.digest,
                "bundle": {"name": bundle.name, "version": bundle.version},
                "pools": pools, "tenants": tenants, "models": [m.id for m in bundle.models],
                "markings": markings}

    @router.get("/security-events")
    async def security_events(request: Request, limit: int = 100, min_severity: int = 0):
        gateway = _gateway(request)
        gateway.authenticate(request, ("operator",))
        if not 1 <= limit <= MAX_EVENTS:
            return _error(400, "invalid_request_error", "invalid_parameter",
                          f"limit: got {limit}, want 1 <= limit <= {MAX_EVENTS}", "limit")
        feed = gateway.events
        if feed is None:
            return _error(404, "invalid_request_error", "security_feed_disabled",
                          "the security event feed is not enabled on this gateway")

        def keep(record: dict[str, Any]) -> bool:
            severity = record.get("severity_id")
            return isinstance(severity, int) and severity >= min_severity

        records, more = await run_in_threadpool(read_tail, Path(feed.path), limit, keep)
        return {"object": "list", "data": records, "has_more": more}

    return router

"""The deployments API: deploy, change, scale and remove models (operators; tenant admins).

``GET /admin/deployments`` (and ``/{name}``): per deployment, each replica's pool,
jurisdiction, Ray node, endpoint and state, and for declared ones the declaration.
``POST /admin/deployments`` with a :class:`serving.deployments_file.DeploymentDecl`
creates one; ``PATCH /admin/deployments/{name}`` changes fields of it (the replica
count: a scale; anything else: a rolling update in the background); ``DELETE``
removes it; ``POST /admin/deployments/apply`` with ``{"deployments": [...],
"prune": bool}`` reconciles to a whole file. ``?dry_run=true`` on the last three
and on POST answers the plan — each new replica's intended pool, or the rulebook's
tally — and changes nothing.

Who may do what:

- an operator deploys in its own jurisdiction's pools: a new or changed deployment
  without pins is pinned to it; one pinned to the other jurisdiction (or its pools) is
  a 403 (scaling an unpinned one, e.g. of ``corridor up``'s file, leaves it unpinned);
- a tenant admin deploys only for audiences of its own tenant (else 403), within the
  tenant's ``quotas.max_gpus`` over every deployment that serves only it (else 403
  ``gpu_quota_exceeded``, also written to the ledger as a refusal).

A placement the rulebook refuses is a 403 ``placement_refused`` naming the tally
("0/4 pools: 2 RESIDENCY, …"); no capacity in allowed pools is a 409 ``no_capacity``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from policies import Workload
from scheduler.exceptions import (BindError, DuplicateDeploymentError, PlacementError, SchedulerError,
                                  SpecError, UnknownDeploymentError)
from scheduler.ledger.decisions import refusal_entry
from serving.deployments_file import DeploymentDecl, check_names, untagged
from serving.gateway.auth import Principal
from serving.gateway.errors import (BadRequest, Conflict, Forbidden, GatewayError, NotFound,
                                    Unavailable)
from serving.gateway.requests import parse_object, read_body
from serving.gateway.service import Gateway
from serving.models.catalog import ArtifactError

if TYPE_CHECKING:
    from serving.reconcile import Reconciler

router = APIRouter(prefix="/admin/deployments")
ROLES = ("operator", "admin")
QUOTA_CODE = "GPU_QUOTA_EXCEEDED"
CAPACITY_CODES = frozenset({"NO_CAPACITY", "NO_LIVE_NODES", "QUARANTINED"})


def _context(request: Request) -> tuple[Gateway, Principal, Reconciler]:
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request, ROLES)
    if gateway.deploying is None:
        raise NotFound("deployments are not managed by this gateway", code="deployments_disabled")
    return gateway, principal, gateway.deploying


def _translate(exc: Exception) -> GatewayError:
    """The OpenAI-style error for what stopped a deployment change."""
    from serving.reconcile import ReconcileError

    if isinstance(exc, PlacementError):
        if any(codes and set(codes) <= CAPACITY_CODES for codes in exc.pools.values()):
            return Conflict(str(exc), code="no_capacity")  # a pool the rules allow is full
        return Forbidden(str(exc), code="placement_refused")
    if isinstance(exc, UnknownDeploymentError):
        return NotFound(str(exc), code="deployment_not_found", param="name")
    if isinstance(exc, DuplicateDeploymentError):
        return Conflict(f"{exc}; PATCH /admin/deployments/<name> changes it", code="deployment_exists")
    if isinstance(exc, ArtifactError):
        return BadRequest(str(exc), code="artifact_unavailable", param="model")
    if isinstance(exc, (SpecError, ValueError)):
        return BadRequest(str(exc), code="invalid_deployment")
    if isinstance(exc, ReconcileError):
        return Conflict(str(exc), code=exc.code)
    if isinstance(exc, BindError):
        return Unavailable(f"{exc}; retry later", code="replica_start_failed")
    return GatewayError(str(exc), code="scheduler_error")


async def _run(function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await run_in_threadpool(function, *args, **kwargs)
    except (SchedulerError, ValueError) as exc:
        raise _translate(exc) from exc
    except Exception as exc:
        from serving.reconcile import ReconcileError

        if isinstance(exc, ReconcileError):
            raise _translate(exc) from exc
        raise


def _decl(gateway: Gateway, value: Any, where: str = "") -> DeploymentDecl:
    """A validated declaration, or a 400 naming the parameter (its path) and the problem."""
    try:
        decl = DeploymentDecl.model_validate(value, strict=True)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        path = untagged(".".join(str(p) for p in (where, *first["loc"]) if p != ""))
        raise BadRequest(f"invalid parameter '{path}': {first['msg']}", code="invalid_parameter",
                         param=path or None) from exc
    issues = check_names([decl], gateway.policy, "request", prefix=where)
    if issues:
        raise BadRequest("; ".join(f"{i.path}: {i.message}" for i in issues),
                         code="invalid_parameter", param=issues[0].path)
    return decl


async def _body(request: Request) -> Any:
    return parse_object(await read_body(request, 1024 * 1024))


def _visible(principal: Principal, item: dict[str, Any]) -> bool:
    if principal.role == "operator":
        return True
    return any(a.split("/", 1)[0] == principal.tenant for a in item.get("audiences", []))


def authorize(gateway: Gateway, principal: Principal, decl: DeploymentDecl,
              reconciler: Reconciler) -> DeploymentDecl:
    """``decl`` as ``principal`` may deploy it (pinned to an operator's jurisdiction), or the
    403 that says why not. Called for every create, change and each item of an apply."""
    if principal.role == "operator":
        own = principal.jurisdiction
        pool = gateway.policy.pools.get(decl.pool or "")
        if (decl.jurisdiction not in (None, own)) or (pool is not None and pool.jurisdiction != own):
            raise Forbidden(f"an operator of {own} deploys in {own}'s pools only; deployment "
                            f"{decl.name} asks for {decl.pool or decl.jurisdiction}",
                            code="other_jurisdiction", param="jurisdiction")
        if decl.jurisdiction:
            return decl
        held = reconciler.managed().get(decl.name)
        if held is not None and held.decl.runtime() == decl.runtime():
            return decl  # unchanged but for its count (e.g. from corridor up's file): no new pin
        return decl.model_copy(update={"jurisdiction": own})
    tenant = principal.tenant
    strangers = sorted({a.tenant for a in decl.audiences} - {tenant})
    if strangers:
        raise Forbidden(f"a tenant admin of {tenant} deploys only for its own tenant's audiences; "
                        f"deployment {decl.name} serves {', '.join(strangers)}",
                        code="not_your_tenant", param="audiences")
    _check_quota(gateway, decl, reconciler, tenant)
    return decl


def _check_quota(gateway: Gateway, decl: DeploymentDecl, reconciler: Reconciler, tenant: str) -> None:
    known = gateway.policy.tenants.get(tenant)
    limit = known.quotas.max_gpus if known else 0
    held = reconciler.tenant_gpus(tenant, without=[decl.name])
    if held + decl.gpus() <= limit:
        return
    audience = decl.audiences[0]
    workload = Workload.create(audience.tenant, audience.marking, kind="replica",
                               data_flags=audience.data_flags, model=decl.model,
                               gpus=decl.tensor_parallel_size)
    evaluation = gateway.policy.decide_all(workload)
    message = (f"tenant {tenant} may hold {limit} GPUs (quotas.max_gpus); it holds {held} and "
               f"deployment {decl.name} asks for {decl.gpus()}")
    gateway.ledger.append(refusal_entry(
        "placement", evaluation, reasons=[QUOTA_CODE],
        detail={"action": "quota", "deployment": decl.name, "message": message,
                "max_gpus": limit, "held": held, "asked": decl.gpus()}))
    raise Forbidden(message, code="gpu_quota_exceeded", param="replicas",
                    headers={"X-Corridor-Decision": evaluation.id})


def _owns(principal: Principal, reconciler: Reconciler, name: str) -> None:
    entry = reconciler.managed().get(name)
    if principal.role == "operator":
        if entry is not None and entry.decl.jurisdiction not in (None, principal.jurisdiction):
            raise Forbidden(f"deployment {name} runs in {entry.decl.jurisdiction}'s pools; an "
                            f"operator of {principal.jurisdiction} does not change it",
                            code="other_jurisdiction")
        return
    if entry is None or {a.tenant for a in entry.decl.audiences} != {principal.tenant}:
        raise Forbidden(f"deployment {name} does not serve only {principal.tenant}; a tenant admin "
                        f"changes its own tenant's deployments only", code="not_your_tenant")


@router.get("")
async def list_deployments(request: Request) -> dict[str, Any]:
    """Every deployment the caller may see (operators: all; admins: its tenant's)."""
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request, ROLES)
    if gateway.deploying is None:
        items = gateway.operator_view.deployments()
    else:
        items = await run_in_threadpool(gateway.deploying.describe)
    return {"object": "list", "data": [i for i in items if _visible(principal, i)]}


@router.get("/{name}")
async def get_deployment(request: Request, name: str) -> dict[str, Any]:
    gateway, principal, reconciler = _context(request)
    (item,) = await _run(reconciler.describe, name)
    if not _visible(principal, item):
        raise NotFound(f"no deployment {name!r} that you may see", code="deployment_not_found")
    return item


@router.post("")
async def create_deployment(request: Request, dry_run: bool = False) -> dict[str, Any]:
    """Deploy: placed all or none, where the rulebook allows every audience."""
    gateway, principal, reconciler = _context(request)
    decl = authorize(gateway, principal, _decl(gateway, await _body(request)), reconciler)
    if decl.name in reconciler.managed():
        raise Conflict(f"deployment {decl.name!r} exists; PATCH /admin/deployments/{decl.name} "
                       f"changes it", code="deployment_exists", param="name")
    if dry_run:
        (step,) = await _run(reconciler.plan, [decl])
        return {"dry_run": True, "steps": [step.to_json()]}
    step = await _run(reconciler.apply_one, decl, owner=principal.tenant)
    (item,) = await _run(reconciler.describe, decl.name)
    return {**item, "step": step.to_json()}


@router.patch("/{name}")
async def change_deployment(request: Request, name: str, dry_run: bool = False) -> dict[str, Any]:
    """Change fields: ``replicas`` scales; anything else is a rolling update."""
    gateway, principal, reconciler = _context(request)
    _owns(principal, reconciler, name)
    entry = reconciler.managed().get(name)
    if entry is None:
        await _run(reconciler.describe, name)  # 404 for an unknown name
        raise Conflict(f"deployment {name!r} was not declared; it is not changed here",
                       code="deployment_not_managed")
    changes = await _body(request)
    if "name" in changes and changes["name"] != name:
        raise BadRequest("a deployment cannot be renamed; create one under the new name",
                         code="invalid_parameter", param="name")
    merged = {**entry.decl.model_dump(mode="json"), **changes}
    decl = authorize(gateway, principal, _decl(gateway, merged), reconciler)
    if dry_run:
        (step,) = await _run(reconciler.plan, [decl])
        return {"dry_run": True, "steps": [step.to_json()]}
    step = await _run(reconciler.apply_one, decl, owner=entry.owner)
    (item,) = await _run(reconciler.describe, name)
    return {**item, "step": step.to_json()}


@router.delete("/{name}")
async def remove_deployment(request: Request, name: str) -> dict[str, Any]:
    """Stop every replica and forget the deployment."""
    gateway, principal, reconciler = _context(request)
    _owns(principal, reconciler, name)
    await _run(reconciler.remove, name)
    return {"name": name, "deleted": True}


@router.post("/apply")
async def apply_deployments(request: Request, dry_run: bool = False) -> dict[str, Any]:
    """Reconcile to a deployments file: ``{"deployments": [...], "prune": false}``."""
    gateway, principal, reconciler = _context(request)
    body = await _body(request)
    unknown = sorted(set(body) - {"deployments", "prune"})
    if unknown or not isinstance(body.get("deployments"), list) or not isinstance(body.get("prune", False), bool):
        raise BadRequest("want {\"deployments\": [...], \"prune\": false}"
                         + (f"; unknown field {unknown[0]!r}" if unknown else ""),
                         code="invalid_parameter", param=unknown[0] if unknown else "deployments")
    decls = [authorize(gateway, principal, _decl(gateway, item, f"deployments[{i}]"), reconciler)
             for i, item in enumerate(body["deployments"])]
    names = [d.name for d in decls]
    if len(set(names)) != len(names):
        raise BadRequest("a deployment name is listed twice", code="invalid_parameter", param="deployments")

    def may_remove(name: str) -> bool:
        try:
            _owns(principal, reconciler, name)
        except Forbidden:
            return False
        return principal.role == "operator" or name in reconciler.managed()

    prune = body.get("prune", False)
    if dry_run:
        steps = await _run(reconciler.plan, decls, prune=prune, may_remove=may_remove)
    else:
        steps = await _run(reconciler.apply, decls, prune=prune, owner=principal.tenant,
                           may_remove=may_remove)
    return {"dry_run": dry_run, "steps": [s.to_json() for s in steps]}

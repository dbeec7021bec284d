"""The policy API (role ``operator``): the bundle in force, and a new one applied without restart.

``GET /admin/policy`` → ``{"policy_digest", "bundle": {"name", "version"}}``.
``POST /admin/policy`` with ``{"bundle": "<YAML text>", "signature": "<.sig text>"?,
"source": "<file name>"?}`` and ``?dry_run=true`` → the plan (:class:`serving.policy_switch.SwitchPlan`:
changes, replicas no longer allowed); without ``dry_run`` the bundle is activated and the
answer also says what healing evicted and placed. A bundle that fails validation is a 400
listing every problem (``invalid_bundle``) and changes nothing; a missing or bad signature
where one is required is a 403 (``bundle_signature``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from policies import BundleError
from policies.exceptions import BundleSignatureError
from serving.gateway.errors import BadRequest, Forbidden, NotFound
from serving.gateway.requests import parse_object, read_body
from serving.gateway.service import Gateway

router = APIRouter(prefix="/admin/policy")


@router.get("")
async def policy_in_force(request: Request) -> dict[str, Any]:
    gateway: Gateway = request.app.state.gateway
    gateway.authenticate(request, ("operator", "auditor"))
    bundle = gateway.policy.bundle
    return {"policy_digest": gateway.policy.digest,
            "bundle": {"name": bundle.name, "version": bundle.version}}


@router.post("")
async def apply_policy(request: Request, dry_run: bool = False) -> dict[str, Any]:
    """Validate a bundle and show its effect; without ``dry_run``, activate it."""
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request, ("operator",))
    switch = gateway.policy_switch
    if switch is None:
        raise NotFound("policy changes are not enabled on this gateway", code="policy_switch_disabled")
    body = parse_object(await read_body(request, 16 * 1024 * 1024))
    unknown = sorted(set(body) - {"bundle", "signature", "source"})
    if unknown or not isinstance(body.get("bundle"), str):
        raise BadRequest("want {\"bundle\": \"<YAML text>\", \"signature\": \"<.sig text>\"?, "
                         "\"source\": \"<file name>\"?}" + (f"; unknown field {unknown[0]!r}" if unknown else ""),
                         code="invalid_parameter", param=unknown[0] if unknown else "bundle")
    for field in ("signature", "source"):
        if body.get(field) is not None and not isinstance(body[field], str):
            raise BadRequest(f"parameter '{field}' must be a string", code="invalid_type", param=field)
    options = {"source": body.get("source") or "bundle.yaml", "signature": body.get("signature")}
    try:
        if dry_run:
            plan = await run_in_threadpool(switch.plan, body["bundle"], **options)
        else:
            plan = await run_in_threadpool(switch.apply, body["bundle"], by=principal.subject, **options)
    except BundleError as exc:
        problems = "; ".join(str(issue) for issue in exc.issues)
        raise BadRequest(f"invalid policy bundle ({len(exc.issues)} problem(s)): {problems}; "
                         f"nothing changed", code="invalid_bundle", param="bundle") from exc
    except BundleSignatureError as exc:
        raise Forbidden(f"{exc}; nothing changed", code="bundle_signature", param="signature") from exc
    return {"dry_run": dry_run, **plan.to_json()}

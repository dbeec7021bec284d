"""The OpenAI-compatible inference API: models, chat completions, completions, embeddings.

A request becomes a :class:`policies.Workload` (tenant from the credentials,
marking from ``X-Corridor-Marking`` or the tenant's default, flags from
``X-Corridor-Data``, the model from the body), the router picks an allowed
live replica, and the body is proxied unchanged, streaming chunk by chunk.
Every routed or refused request writes a ``routing`` entry to the ledger —
tenant, workload attributes, pool, node, decision; never the prompt — which is
durable before the response completes.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from policies import Workload, parse_marking
from scheduler.ledger.decisions import decision_entry, refusal_entry
from serving.feed import policy_refusal_record
from serving.gateway.errors import Forbidden, NotFound, Unavailable
from serving.gateway.requests import data_flags_of, marking_of, parse_object, read_body, require_field
from serving.gateway.service import Gateway
from serving.routing import Endpoint, Route, UpstreamBroken, UpstreamResponse, UpstreamUnreachable

router = APIRouter()

INFERENCE_ROLES = ("app", "admin")


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """The models the caller's tenant may use."""
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request, INFERENCE_ROLES)
    tenant = gateway.policy.tenants.get(principal.tenant or "")
    models = [m for m in gateway.policy.bundle.models if tenant and m.id in tenant.models]
    return {"object": "list", "data": [{"id": m.id, "object": "model", "created": 0,
                                        "owned_by": "corridor"} for m in models]}


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await _inference(request, "/v1/chat/completions", "messages", list)


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await _inference(request, "/v1/completions", "prompt", (str, list))


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    return await _inference(request, "/v1/embeddings", "input", (str, list))


async def _inference(request: Request, path: str, field: str, kind: type | tuple[type, ...]) -> Response:
    received = time.perf_counter()
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request, INFERENCE_ROLES)
    if gateway.limiter is not None:
        gateway.limiter.admit(principal.tenant or "", endpoint=path,
                              source=request.client.host if request.client else None)
    body = await read_body(request, gateway.max_body_bytes)
    payload = parse_object(body)
    model = require_field(payload, "model", str)
    require_field(payload, field, kind)
    tenant = gateway.policy.tenants.get(principal.tenant or "")
    marking = marking_of(request, tenant.default_marking if tenant else "PUBLIC")
    if principal.minimum_marking and parse_marking(principal.minimum_marking).level > marking.level:
        marking = parse_marking(principal.minimum_marking)  # the key's downgrade guard
    workload = Workload(tenant=principal.tenant or "", marking=marking, kind="request",
                        data_flags=data_flags_of(request), model=model,
                        model_digest=gateway.model_digests.get(model),
                        id="req_" + secrets.token_hex(8))
    if model not in gateway.policy.models:
        raise NotFound(f"the model '{model}' does not exist", code="model_not_found", param="model")
    route = gateway.router.route(workload)
    decision_id = route.decision_id
    if not route.evaluation.allowed:
        await _refuse(gateway, route, path)
    if not route.candidates:
        await gateway.ledger.append_async(refusal_entry(
            "routing", route.evaluation, reasons=["NO_LIVE_REPLICA"], detail={"endpoint": path}))
        gateway.metrics.requests.labels(workload.tenant, model, "", "503").inc()
        raise Unavailable(f"the policy allows this request but no replica of '{model}' in an allowed "
                          f"pool ({', '.join(d.pool for d in route.evaluation.allowed)}) is live; "
                          f"retry later", code="no_replica_available",
                          headers={"Retry-After": "5", "X-Corridor-Decision": decision_id})
    stream = payload.get("stream") is True
    # The routing entry's durable write overlaps the upstream call; the response completes
    # only once it is durable. A retry on another replica is a second entry, same decision id.
    first = route.candidates[0]
    record = asyncio.ensure_future(_record(gateway, route, first, path))
    try:
        upstream, endpoint = await _open_upstream(gateway, route, path, body, received)
    except Unavailable:
        await record
        raise
    if endpoint is not first:
        retried = _record(gateway, route, endpoint, path, attempt=2)
        record = asyncio.gather(record, retried)
    decision = route.decision_for(endpoint)
    headers = {"X-Corridor-Pool": endpoint.pool, "X-Corridor-Jurisdiction": endpoint.jurisdiction,
               "X-Corridor-Decision": decision_id}
    if decision.declaration:
        headers["X-Corridor-Declaration"] = decision.declaration
        gateway.metrics.crossings.labels(decision.declaration).inc()
    gateway.metrics.requests.labels(workload.tenant, model, endpoint.jurisdiction,
                                    str(upstream.status)).inc()
    if stream and upstream.status == 200:
        relay = _relay(gateway, upstream, endpoint, record, received)
        return StreamingResponse(relay, status_code=200, media_type=upstream.content_type,
                                 headers=headers)
    try:
        content = await upstream.read()
    except UpstreamBroken as exc:
        gateway.router.mark_failed(endpoint)
        raise Unavailable(f"the replica failed while answering ({exc}); retry later",
                          code="upstream_unavailable", headers={"Retry-After": "2"}) from exc
    finally:
        upstream.release()
        gateway.router.release(endpoint)
        await record
    return Response(content, status_code=upstream.status, media_type=upstream.content_type,
                    headers=headers)


async def _open_upstream(gateway: Gateway, route: Route, path: str, body: bytes,
                         received: float) -> tuple[UpstreamResponse, Endpoint]:
    """Send to the best candidate; if it fails before answering, once more to the next one."""
    last_error: Exception | None = None
    for endpoint in route.candidates[:2]:
        gateway.router.acquire(endpoint)
        sent = time.perf_counter()
        gateway.metrics.overhead.observe(sent - received)
        try:
            upstream = await gateway.upstream.post(endpoint.url + path, body)
        except UpstreamUnreachable as exc:
            gateway.router.release(endpoint)
            gateway.router.mark_failed(endpoint)
            last_error = exc
            continue
        gateway.metrics.upstream.observe(time.perf_counter() - sent)
        if upstream.status >= 500 and endpoint is not route.candidates[-1] and last_error is None:
            upstream.release()
            gateway.router.release(endpoint)
            last_error = RuntimeError(f"upstream answered {upstream.status}")
            continue
        return upstream, endpoint
    raise Unavailable(f"no replica answered ({type(last_error).__name__}: {last_error}); retry later",
                      code="upstream_unavailable", headers={"Retry-After": "2"})


async def _relay(gateway: Gateway, upstream: UpstreamResponse, endpoint: Endpoint,
                 record: asyncio.Future, received: float) -> AsyncIterator[bytes]:
    """Pass the upstream stream through chunk by chunk; a failure mid-stream ends it with an
    error event (the caller has already received the first bytes, so no retry)."""
    first = True
    try:
        async for chunk in upstream.chunks():
            if first:
                gateway.metrics.ttft.observe(time.perf_counter() - received)
                first = False
            yield chunk
    except UpstreamBroken as exc:
        error = {"error": {"message": f"the replica failed mid-stream: {exc}",
                           "type": "server_error", "code": "upstream_stream_error", "param": None}}
        yield f"data: {json.dumps(error)}\n\n".encode()
        gateway.router.mark_failed(endpoint)
    finally:
        upstream.release()
        gateway.router.release(endpoint)
        await record


async def _refuse(gateway: Gateway, route: Route, path: str) -> None:
    """Write the refusal to the ledger, count it, and raise the 403 that names the rules."""
    evaluation = route.evaluation
    workload = evaluation.workload
    draft = refusal_entry("routing", evaluation, detail={"endpoint": path})
    for code in draft.reasons:
        gateway.metrics.denials.labels(code).inc()
    item = await gateway.ledger.append_async(draft)
    if gateway.events is not None:
        gateway.events.emit(policy_refusal_record(item, endpoint=path))
    gateway.metrics.requests.labels(workload.tenant, workload.model or "", "", "403").inc()
    raise Forbidden(evaluation.refusal(), code="policy_denied",
                    headers={"X-Corridor-Decision": route.decision_id})


async def _record(gateway: Gateway, route: Route, endpoint: Endpoint, path: str,
                  attempt: int = 1) -> None:
    """The ``routing`` entry of the request sent to ``endpoint``, under the request's decision id
    (a retry on another replica is a second entry with the same id)."""
    await gateway.ledger.append_async(decision_entry(
        "routing", route.decision_for(endpoint), decision_id=route.decision_id,
        node_id=endpoint.node_id, summary=route.evaluation.summary(),
        detail={"endpoint": path, "replica": endpoint.replica_id, "attempt": attempt}))

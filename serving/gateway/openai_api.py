"""The OpenAI-compatible inference API: models, chat completions, completions, embeddings.

A request becomes a :class:`policies.Workload` (tenant from the credentials,
marking from ``X-Corridor-Marking`` or the tenant's default, flags from
``X-Corridor-Data``, the model from the body), the router picks an allowed
live replica, and the body is proxied with every field the caller sent, plus
the tenant's ``cache_salt`` (:mod:`serving.routing.cache_salt`; a salt the
caller sent is replaced) and, when streaming, ``stream_options.include_usage``
so the tenant's tokens per minute can be counted (the usage event is not
relayed to a client that did not ask for it). Streams are relayed event by
event (:mod:`serving.gateway.sse`). Every routed or refused request writes a
``routing`` entry to the ledger — tenant, workload attributes, pool, node,
decision; never the prompt — which is durable before the response completes.
Errors that reach the caller never carry replica addresses.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from policies import Workload
from scheduler.ledger.decisions import decision_entry, refusal_entry
from serving.feed import policy_refusal_record
from serving.gateway.errors import Forbidden, NotFound, Unavailable
from serving.gateway.protocol import (ChatCompletionRequest, CompletionRequest, EmbeddingRequest,
                                      check_body)
from serving.gateway.requests import data_flags_of, marking_of, read_object
from serving.gateway.service import Gateway
from serving.gateway.sse import EventSplitter, error_event, is_usage_only, total_tokens
from serving.routing import Endpoint, Route, UpstreamBroken, UpstreamResponse, UpstreamUnreachable

log = logging.getLogger(__name__)

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
    return await _inference(request, "/v1/chat/completions", ChatCompletionRequest)


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await _inference(request, "/v1/completions", CompletionRequest)


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    return await _inference(request, "/v1/embeddings", EmbeddingRequest)


async def _inference(request: Request, path: str, body_model: type[BaseModel]) -> Response:
    received = time.perf_counter()
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request, INFERENCE_ROLES)
    tenant_id = principal.tenant or ""
    if gateway.limiter is not None:
        gateway.limiter.admit(tenant_id, endpoint=path, source=gateway.source(request))
    if gateway.tokens is not None:
        gateway.tokens.admit(tenant_id)
    _, payload = await read_object(request, gateway.max_body_bytes)
    model = check_body(body_model, payload).model
    tenant = gateway.policy.tenants.get(principal.tenant or "")
    marking = marking_of(request, tenant.default_marking if tenant else "PUBLIC")
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
    stream = path != "/v1/embeddings" and payload.get("stream") is True
    hide_usage = stream and _ask_for_usage(payload)
    body = gateway.cache_salts.salted(payload, workload.tenant)
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
        relay = _relay(gateway, upstream, endpoint, record, received, workload.tenant, hide_usage)
        return StreamingResponse(relay, status_code=200, media_type=upstream.content_type,
                                 headers=headers)
    try:
        content = await upstream.read()
    except UpstreamBroken as exc:
        gateway.router.mark_failed(endpoint)
        log.warning("replica %s failed while answering: %s", endpoint.replica_id, exc)
        raise Unavailable("the replica failed while answering; retry later",
                          code="upstream_unavailable", headers={"Retry-After": "2"}) from exc
    finally:
        upstream.release()
        gateway.router.release(endpoint)
        await record
    if gateway.tokens is not None and upstream.status == 200:
        gateway.tokens.charge(workload.tenant, total_tokens(content))
    return Response(content, status_code=upstream.status, media_type=upstream.content_type,
                    headers=headers)


def _ask_for_usage(payload: dict[str, Any]) -> bool:
    """Make a streaming request report its usage; True when the caller did not ask for it
    (so the usage-only event is not relayed to them)."""
    options = payload.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False
    payload["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                 "include_usage": True}
    return True


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
            log.warning("replica %s unreachable: %s", endpoint.replica_id, exc)
            last_error = exc
            continue
        gateway.metrics.upstream.observe(time.perf_counter() - sent)
        if upstream.status >= 500 and endpoint is not route.candidates[-1] and last_error is None:
            upstream.release()
            gateway.router.release(endpoint)
            last_error = RuntimeError(f"upstream answered {upstream.status}")
            continue
        return upstream, endpoint
    raise Unavailable("no replica answered; retry later", code="upstream_unavailable",
                      headers={"Retry-After": "2"})


async def _relay(gateway: Gateway, upstream: UpstreamResponse, endpoint: Endpoint,
                 record: asyncio.Future, received: float, tenant: str,
                 hide_usage: bool) -> AsyncIterator[bytes]:
    """Pass the upstream stream through event by event; a failure mid-stream drops the
    unfinished event and ends the stream with a well-formed error event (the caller has
    already received the first events, so no retry). The usage event is counted against the
    tenant's tokens, and not relayed when only the gateway asked for it."""
    first = True
    used: int | None = None
    splitter = EventSplitter()
    try:
        async for chunk in upstream.chunks():
            if first:
                gateway.metrics.ttft.observe(time.perf_counter() - received)
                first = False
            events = splitter.feed(chunk)
            for event in events:
                if b'"usage"' in event:
                    used = total_tokens(event) or used
                    if hide_usage and is_usage_only(event):
                        continue
                yield event
        rest = splitter.finish()
        if rest:
            yield rest
    except UpstreamBroken as exc:
        log.warning("replica %s failed mid-stream: %s", endpoint.replica_id, exc)
        yield error_event("the replica failed mid-stream; the answer is incomplete",
                          "upstream_stream_error")
        gateway.router.mark_failed(endpoint)
    finally:
        upstream.release()
        gateway.router.release(endpoint)
        if gateway.tokens is not None:
            gateway.tokens.charge(tenant, used)
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

"""The OpenAI-compatible inference API: models, chat completions, completions, embeddings.

A request becomes a :class:`policies.Workload` (tenant from the credentials,
marking from ``X-Corridor-Marking`` or the tenant's default, flags from
``X-Corridor-Data``, the model from the body), the router ranks the allowed
live replicas (prefix affinity and load, :mod:`serving.routing.scoring`), the
request gets a slot on one (at once, after a wait in the admission queue, or
once an on-demand replica is up: :func:`serving.gateway.proxy.admit`) — or,
with nothing live at home and nothing coming, goes to the peer site under a
crisis declaration that allows it — and the body is proxied with every field the caller sent, plus
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

import logging
import secrets
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from policies import Workload
from policies.workload import apply_minimum_marking
from scheduler.ledger.decisions import refusal_entry
from serving.feed import policy_refusal_record
from serving.gateway.errors import Forbidden, NotFound
from serving.gateway.protocol import (ChatCompletionRequest, CompletionRequest, EmbeddingRequest,
                                      check_body)
from serving.gateway.requests import caveats_of, data_flags_of, marking_of, read_object
from serving.gateway.spillage import refuse_spillage
from serving.gateway.forwarding import crossing_declaration, forward
from serving.gateway.proxy import admit, serve_route, unserved
from serving.gateway.service import Gateway
from serving.routing import Route
from serving.routing.errors import NoLiveReplica

log = logging.getLogger(__name__)

router = APIRouter()

INFERENCE_ROLES = ("app", "admin")
INFERENCE_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
"""Served the short way (:mod:`serving.gateway.direct_routes`) when sent without a query string."""


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
                        id="req_" + secrets.token_hex(8), caveats=caveats_of(request))
    if principal.minimum_marking:  # the key's downgrade guard: the decision says it was raised
        workload = apply_minimum_marking(workload, principal.minimum_marking, key_id=principal.subject)
    if model not in gateway.policy.models:
        raise NotFound(f"the model '{model}' does not exist", code="model_not_found", param="model")
    await refuse_spillage(gateway, workload, path, payload)
    routing = gateway.router.scoring.request(model, workload.tenant, payload)
    route = gateway.router.route(workload, routing)  # the rulebook filters, then the scorers rank
    if not route.evaluation.allowed:
        await _refuse(gateway, route, path)
    stream = path != "/v1/embeddings" and payload.get("stream") is True  # embeddings never stream
    hide_usage = stream and _ask_for_usage(payload)
    body = gateway.cache_salts.salted(payload, workload.tenant)
    try:
        first = await admit(gateway, route, routing, path, request)
    except NoLiveReplica as exc:
        # Nothing live at home and no home replica coming in time: the peer site, if a
        # declaration lets this request cross; else 503.
        if declaration := crossing_declaration(gateway, route):
            return await forward(gateway, route, declaration, path, body, stream=stream,
                                 hide_usage=hide_usage)
        placement = (f"; no on-demand replica could be placed: {exc.placement_refused}"
                     if exc.placement_refused else "")
        raise await unserved(gateway, route, path, NoLiveReplica(
            f"the policy allows this request but no replica of '{model}' in an allowed pool "
            f"({', '.join(d.pool for d in route.evaluation.allowed)}) is live{placement}; "
            f"retry later")) from exc
    return await serve_route(gateway, route, path, body, stream=stream, received=received,
                             hide_usage=hide_usage, first=first, routing=routing)


def _ask_for_usage(payload: dict[str, Any]) -> bool:
    """Make a streaming request report its usage; True when the caller did not ask for it
    (so the usage-only event is not relayed to them)."""
    options = payload.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False
    payload["stream_options"] = {**(options if isinstance(options, dict) else {}),
                                 "include_usage": True}
    return True


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

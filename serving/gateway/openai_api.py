"""The OpenAI-compatible inference API: models, chat completions, completions, embeddings.

A request becomes a :class:`policies.Workload` (tenant from the credentials,
marking from ``X-Corridor-Marking`` or the tenant's default, flags from
``X-Corridor-Data``, the model from the body), the router ranks the allowed
live replicas (prefix affinity and load), the dispatch gives it a slot on one
(at once, after a wait in the admission queue, or once an on-demand replica is
up), and the body is proxied unchanged, streaming chunk by chunk.
Every routed or refused request writes a ``routing`` entry to the ledger —
tenant, workload attributes, pool, node, decision; never the prompt — which is
durable before the response completes.
"""

from __future__ import annotations

import itertools
import secrets
import time
from typing import Any

from fastapi import APIRouter, Request, Response

from policies import Workload
from scheduler.ledger.decisions import refusal_entry
from serving.feed import policy_refusal_record
from serving.gateway.errors import Forbidden, NotFound, RateLimited, Unavailable
from serving.gateway.requests import data_flags_of, marking_of, parse_object, read_body, require_field
from serving.gateway.forwarding import crossing_declaration, forward
from serving.gateway.proxy import serve_route
from serving.gateway.service import Gateway
from serving.routing import Endpoint, Route
from serving.routing.dispatch import ClientGone, NoLiveReplica, QueueRefusal
from serving.routing.scoring import RoutingRequest

router = APIRouter()

INFERENCE_ROLES = ("app", "admin")

# Request ids: a random per-process prefix and a counter (unique, and no system call per request).
_REQUEST_PREFIX = "req_" + secrets.token_hex(4)
_request_serial = itertools.count()


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """The models the caller's tenant may use."""
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request, INFERENCE_ROLES)
    tenant = gateway.policy.tenants.get(principal.tenant or "")
    models = [m for m in gateway.policy.bundle.models if tenant and m.id in tenant.models]
    return {"object": "list", "data": [{"id": m.id, "object": "model", "created": 0,
                                        "owned_by": "corridor"} for m in models]}


async def chat_completions(request: Request) -> Response:
    return await _inference(request, "/v1/chat/completions", "messages", list)


async def completions(request: Request) -> Response:
    return await _inference(request, "/v1/completions", "prompt", (str, list))


async def embeddings(request: Request) -> Response:
    return await _inference(request, "/v1/embeddings", "input", (str, list))


# Plain Starlette routes: the handlers read the request themselves, so FastAPI's dependency
# resolution and response validation would be pure per-request cost.
router.add_route("/v1/chat/completions", chat_completions, methods=["POST"])
router.add_route("/v1/completions", completions, methods=["POST"])
router.add_route("/v1/embeddings", embeddings, methods=["POST"])


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
    workload = Workload(tenant=principal.tenant or "", marking=marking, kind="request",
                        data_flags=data_flags_of(request), model=model,
                        model_digest=gateway.model_digests.get(model),
                        id=f"{_REQUEST_PREFIX}{next(_request_serial) & 0xFFFFFFFF:08x}")
    if model not in gateway.policy.models:
        raise NotFound(f"the model '{model}' does not exist", code="model_not_found", param="model")
    routing = gateway.router.scoring.request(model, workload.tenant, payload)
    route = gateway.router.route(workload, routing)
    if not route.evaluation.allowed:
        await _refuse(gateway, route, path)
    stream = payload.get("stream") is True
    try:
        first = await _admit(gateway, route, routing, path, request)
    except NoLiveReplica as exc:
        # Nothing live at home and no home replica coming in time: the peer site, if a
        # declaration lets this request cross; else 503.
        if declaration := crossing_declaration(gateway, route):
            return await forward(gateway, route, declaration, path, body, stream=stream)
        await _unavailable(gateway, route, routing, path, "NO_LIVE_REPLICA", Unavailable(
            f"the policy allows this request but no replica of '{model}' in an allowed pool "
            f"({', '.join(d.pool for d in route.evaluation.allowed)}) is live ({exc}); retry later",
            code="no_replica_available"), retry_after=5)
    return await serve_route(gateway, route, path, body, stream=stream, received=received,
                             first=first, routing=routing)


async def _admit(gateway: Gateway, route: Route, routing: RoutingRequest, path: str,
                 request: Request) -> Endpoint:
    """A slot on an allowed replica (already counted in flight): at once, after a wait in the
    admission queue, or once an on-demand replica is up. A request the queue refuses, or whose
    client leaves while it waits, is written to the ledger and answered 429/503."""
    try:
        return await gateway.dispatch.acquire(route, routing,
                                              disconnected=lambda: _client_gone(request))
    except QueueRefusal as exc:
        kind = RateLimited if exc.status == 429 else Unavailable
        await _unavailable(gateway, route, routing, path,
                           "QUEUE_FULL" if exc.status == 429 else "QUEUE_TIMEOUT",
                           kind(str(exc), code=exc.code), retry_after=exc.retry_after)
    except ClientGone as exc:
        await _unavailable(gateway, route, routing, path, "CLIENT_GONE",
                           Unavailable(str(exc), code="client_gone"), retry_after=1)
    raise AssertionError("unreachable")


async def _unavailable(gateway: Gateway, route: Route, routing: RoutingRequest, path: str,
                       reason: str, error: Unavailable | RateLimited, *, retry_after: int) -> None:
    """Write the routing refusal (allowed by policy, not served) to the ledger and raise ``error``
    with ``Retry-After`` and the decision id."""
    error.headers = {**(error.headers or {}), "Retry-After": str(retry_after),
                     "X-Corridor-Decision": route.decision_id}
    await gateway.ledger.append_async(refusal_entry(
        "routing", route.evaluation, reasons=[reason], detail={"endpoint": path}))
    gateway.metrics.requests.labels(routing.namespace, routing.model, "", str(error.status)).inc()
    raise error


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so only that can come)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


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

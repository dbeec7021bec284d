"""Sending an admitted request to a replica of its route and relaying the answer.

Called by the OpenAI routes for a request of this site's own tenants, and by the peer API
for a request the peer site forwarded under a crisis declaration: both have been decided
by this site's rulebook (:class:`~serving.routing.Route`), both are recorded in this site's
ledger under the request's decision id. The routing entry's durable write overlaps the
upstream call; the response completes only once it is durable. A replica that fails before
answering is retried once on the next candidate (a second entry, same decision id); one that
fails mid-stream ends the stream with an error event. The routing entry carries the chosen
replica's score components when the router ranked candidates.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import Response
from fastapi.responses import StreamingResponse

from scheduler.ledger.decisions import decision_entry
from serving.gateway.errors import Unavailable
from serving.gateway.service import Gateway
from serving.routing import Endpoint, Route, UpstreamBroken, UpstreamResponse, UpstreamUnreachable
from serving.routing.scoring import RoutingRequest


async def serve_route(gateway: Gateway, route: Route, path: str, body: bytes, *, stream: bool,
                      received: float, detail: Mapping[str, Any] | None = None,
                      decision_id: str | None = None, first: Endpoint | None = None,
                      routing: RoutingRequest | None = None) -> Response:
    """Proxy ``body`` to ``first`` (a slot the dispatch granted, already counted in flight), or
    else to the best live candidate of ``route`` (which must then have one).

    ``detail`` adds facts to the routing entries (e.g. ``forwarded_from``); ``decision_id``
    overrides the route's own (a forwarded request keeps the id its home site gave it);
    ``routing`` is the request as the scorers saw it (its tokens are released with it).
    """
    decision_id = decision_id or route.decision_id
    workload = route.evaluation.workload
    model = workload.model or ""
    # The routing entry's durable write overlaps the upstream call; the response completes
    # only once it is durable. A retry on another replica is a second entry, same decision id.
    if first is None:
        first = route.candidates[0]
        gateway.router.acquire(first, routing)
    record = asyncio.ensure_future(record_routing(gateway, route, first, path, decision_id, detail))
    try:
        upstream, endpoint = await _open_upstream(gateway, route, path, body, received, first, routing)
    except Unavailable:
        await record
        raise
    if endpoint is not first:
        retried = record_routing(gateway, route, endpoint, path, decision_id, detail, attempt=2)
        record = asyncio.gather(record, retried)
    decision = route.decision_for(endpoint)
    headers = {"X-Corridor-Pool": endpoint.pool, "X-Corridor-Jurisdiction": endpoint.jurisdiction,
               "X-Corridor-Decision": decision_id}
    if gateway.site:
        headers["X-Corridor-Site"] = gateway.site
    if decision.declaration:
        headers["X-Corridor-Declaration"] = decision.declaration
        gateway.metrics.crossings.labels(decision.declaration).inc()
    gateway.metrics.requests.labels(workload.tenant, model, endpoint.jurisdiction,
                                    str(upstream.status)).inc()
    if stream and upstream.status == 200:
        relay = _relay(gateway, upstream, endpoint, record, received, routing)
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
        gateway.router.release(endpoint, routing)
        await record
    return Response(content, status_code=upstream.status, media_type=upstream.content_type,
                    headers=headers)


async def _open_upstream(gateway: Gateway, route: Route, path: str, body: bytes, received: float,
                         first: Endpoint, routing: RoutingRequest | None
                         ) -> tuple[UpstreamResponse, Endpoint]:
    """Send to ``first`` (counted in flight already); if it fails before answering, once more
    to the next candidate."""
    last_error: Exception | None = None
    attempts = [first, *[e for e in route.candidates if e.replica_id != first.replica_id][:1]]
    for endpoint in attempts:
        if endpoint is not first:
            gateway.router.acquire(endpoint, routing)
        sent = time.perf_counter()
        gateway.metrics.overhead.observe(sent - received)
        try:
            upstream = await gateway.upstream.post(endpoint.url + path, body)
        except UpstreamUnreachable as exc:
            gateway.router.release(endpoint, routing)
            gateway.router.mark_failed(endpoint)
            last_error = exc
            continue
        gateway.metrics.upstream.observe(time.perf_counter() - sent)
        if upstream.status >= 500 and endpoint is not attempts[-1] and last_error is None:
            upstream.release()
            gateway.router.release(endpoint, routing)
            last_error = RuntimeError(f"upstream answered {upstream.status}")
            continue
        return upstream, endpoint
    raise Unavailable(f"no replica answered ({type(last_error).__name__}: {last_error}); retry later",
                      code="upstream_unavailable", headers={"Retry-After": "2"})


async def _relay(gateway: Gateway, upstream: UpstreamResponse, endpoint: Endpoint,
                 record: asyncio.Future, received: float,
                 routing: RoutingRequest | None = None) -> AsyncIterator[bytes]:
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
        gateway.router.release(endpoint, routing)
        await record


async def record_routing(gateway: Gateway, route: Route, endpoint: Endpoint, path: str,
                         decision_id: str, detail: Mapping[str, Any] | None = None,
                         attempt: int = 1) -> None:
    """The ``routing`` entry of the request sent to ``endpoint``, under the request's decision id
    (a retry on another replica is a second entry with the same id)."""
    scores = route.scores.get(endpoint.replica_id)
    await gateway.ledger.append_async(decision_entry(
        "routing", route.decision_for(endpoint), decision_id=decision_id,
        node_id=endpoint.node_id, summary=route.summary or route.evaluation.summary(),
        detail={"endpoint": path, "replica": endpoint.replica_id, "attempt": attempt,
                **({"scores": dict(scores)} if scores is not None else {}),
                **({"site": gateway.site} if gateway.site else {}), **(detail or {})}))

"""Admitting a routed request to a replica slot, sending it there and relaying the answer.

Called by the OpenAI routes for a request of this site's own tenants, and by the peer API
for a request the peer site forwarded under a crisis declaration: both have been decided
by this site's rulebook (:class:`~serving.routing.Route`), both wait for a slot in this
site's admission queue (:func:`admit`), both are recorded in this site's ledger under the
request's decision id. A request that gets no slot is recorded as a routing refusal (allowed
by policy, not served) and answered 429/503 with ``Retry-After``.

The routing entry's durable write overlaps the upstream call; the response completes only
once it is durable. It carries the chosen replica's score components when the router ranked
candidates. A replica that fails before answering is retried once on the next candidate (a
second entry, same decision id); one that fails mid-stream ends the stream with an error event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from scheduler.ledger.decisions import decision_entry, refusal_entry
from serving.gateway.errors import GatewayError, Unavailable, from_domain
from serving.gateway.service import Gateway
from serving.gateway.sse import UsageRelay, error_event, total_tokens
from serving.routing import Endpoint, Route, UpstreamBroken, UpstreamResponse, UpstreamUnreachable
from serving.routing.errors import NoLiveReplica, NoSlot
from serving.routing.scoring import RoutingRequest

log = logging.getLogger(__name__)


async def admit(gateway: Gateway, route: Route, routing: RoutingRequest, path: str,
                request: Request, *, decision_id: str | None = None,
                detail: Mapping[str, Any] | None = None, declaration: str | None = None) -> Endpoint:
    """A slot on an allowed replica of ``route``, already counted in flight: at once, after a
    wait in the admission queue, or once an on-demand replica is up
    (:class:`serving.routing.dispatch.Dispatch`). ``declaration``: a request the peer site
    forwarded under it (only the replicas it allows here).

    :class:`~serving.routing.errors.NoLiveReplica` is raised as it is (the home site may then
    forward the request); any other refusal is recorded and raised as the gateway's 429/503.
    """
    try:
        return await gateway.dispatch.acquire(route, routing, declaration=declaration,
                                              disconnected=lambda: _client_gone(request))
    except NoLiveReplica:
        raise
    except NoSlot as exc:
        raise await unserved(gateway, route, path, exc, decision_id=decision_id,
                             detail=detail) from exc


async def unserved(gateway: Gateway, route: Route, path: str, refusal: NoSlot, *,
                   decision_id: str | None = None,
                   detail: Mapping[str, Any] | None = None) -> GatewayError:
    """Record a request the policy allows but no replica served (a ``routing`` refusal whose
    reason is ``refusal.reason``), count it, and return the error to answer: 429 or 503 with
    ``Retry-After`` and the decision id."""
    decision_id = decision_id or route.decision_id
    workload = route.evaluation.workload
    await gateway.ledger.append_async(refusal_entry(
        "routing", route.evaluation, decision_id=decision_id, reasons=[refusal.reason],
        detail={"endpoint": path, **(detail or {})}))
    error = from_domain(refusal)
    error.headers["X-Corridor-Decision"] = decision_id
    gateway.metrics.requests.labels(workload.tenant, workload.model or "", "", str(error.status)).inc()
    return error


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so only that can come)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def serve_route(gateway: Gateway, route: Route, path: str, body: bytes, *, stream: bool,
                      received: float, detail: Mapping[str, Any] | None = None,
                      decision_id: str | None = None, hide_usage: bool = False,
                      first: Endpoint | None = None, routing: RoutingRequest | None = None
                      ) -> Response:
    """Proxy ``body`` to ``first`` (a slot :func:`admit` granted, already counted in flight),
    or else to the best live candidate of ``route`` (which must then have one).

    ``detail`` adds facts to the routing entries (e.g. ``forwarded_from``); ``decision_id``
    overrides the route's own (a forwarded request keeps the id its home site gave it);
    ``hide_usage``: the gateway asked for the stream's usage event (to count tokens), the
    caller did not, so it is not relayed. The tokens used count against the tenant.
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
        upstream, endpoint = await _open_upstream(gateway, route, path, body, received, first,
                                                  routing)
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
        relay = _relay(gateway, upstream, endpoint, record, received, workload.tenant, hide_usage,
                       routing)
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
        gateway.router.release(endpoint, routing)
        await record
    if gateway.tokens is not None and upstream.status == 200:
        gateway.tokens.charge(workload.tenant, total_tokens(content))
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
            log.warning("replica %s unreachable: %s", endpoint.replica_id, exc)
            last_error = exc
            continue
        gateway.metrics.upstream.observe(time.perf_counter() - sent)
        if upstream.status >= 500 and endpoint is not attempts[-1] and last_error is None:
            upstream.release()
            gateway.router.release(endpoint, routing)
            last_error = RuntimeError(f"upstream answered {upstream.status}")
            continue
        return upstream, endpoint
    raise Unavailable("no replica answered; retry later", code="upstream_unavailable",
                      headers={"Retry-After": "2"})


async def _relay(gateway: Gateway, upstream: UpstreamResponse, endpoint: Endpoint,
                 record: asyncio.Future, received: float, tenant: str,
                 hide_usage: bool, routing: RoutingRequest | None) -> AsyncIterator[bytes]:
    """Pass the upstream stream through event by event; a failure mid-stream drops the
    unfinished event and ends the stream with a well-formed error event (the caller has
    already received the first events, so no retry). The usage event is counted against the
    tenant's tokens, and not relayed when only the gateway asked for it."""
    first = True
    relay = UsageRelay(hide_usage)
    try:
        async for chunk in upstream.chunks():
            if first:
                gateway.metrics.ttft.observe(time.perf_counter() - received)
                first = False
            for event in relay.feed(chunk):
                yield event
        rest = relay.finish()
        if rest:
            yield rest
    except UpstreamBroken as exc:
        log.warning("replica %s failed mid-stream: %s", endpoint.replica_id, exc)
        yield error_event("the replica failed mid-stream; the answer is incomplete",
                          "upstream_stream_error")
        gateway.router.mark_failed(endpoint)
    finally:
        upstream.release()
        gateway.router.release(endpoint, routing)
        if gateway.tokens is not None:
            gateway.tokens.charge(tenant, relay.used)
        await record


async def record_routing(gateway: Gateway, route: Route, endpoint: Endpoint, path: str,
                         decision_id: str, detail: Mapping[str, Any] | None = None,
                         attempt: int = 1) -> None:
    """The ``routing`` entry of the request sent to ``endpoint``, under the request's decision id
    (a retry on another replica is a second entry with the same id), with the replica's score
    components when the router ranked the candidates."""
    scores = route.scores.get(endpoint.replica_id)
    await gateway.ledger.append_async(decision_entry(
        "routing", route.decision_for(endpoint), decision_id=decision_id,
        node_id=endpoint.node_id, summary=route.summary or route.evaluation.summary(),
        detail={"endpoint": path, "replica": endpoint.replica_id, "attempt": attempt,
                **({"scores": dict(scores)} if scores is not None else {}),
                **({"site": gateway.site} if gateway.site else {}), **(detail or {})}))

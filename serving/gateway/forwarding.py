"""Crossing the border under a crisis declaration: the home site forwards, the peer re-decides.

**Home side** (:func:`forward`): a request of this site's tenant whose rulebook allows only
pools of the peer's jurisdiction, under an active declaration, when this site has no allowed
live replica. It goes over the mutual-TLS peer link with the request's decision id, tenant,
marking, flags and declaration; the peer's answer says which pool served, and that pool must
be one this site's rulebook allowed (else the answer is dropped and a ``violation`` entry
written). Without a declaration nothing is forwarded, whatever the load; with the peer down the
caller gets 503 ``peer_unavailable`` and nothing is served anywhere else.

**Peer side** (:func:`serve_forwarded`): the peer re-decides with its own copy of the rulebook
and the same declaration — both must allow (two keys to cross) — and serves from its own
replica, chosen by its own routing among those the declaration allows there (ranked by its
scorers, waiting in its admission queue when they are busy; no on-demand placement for it);
both ledgers record the request under the one decision id, each naming its site.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from policies import PolicyError, Workload, parse_data_flags, parse_marking
from policies.workload import parse_caveats
from scheduler.ledger import LedgerEntryDraft
from scheduler.ledger.decisions import decision_entry, refusal_entry
from serving.federation.link import PeerUnavailable
from serving.gateway.errors import BadRequest, Conflict, Forbidden, Unavailable
from serving.gateway.proxy import admit, serve_route, unserved
from serving.gateway.service import Gateway
from serving.gateway.sse import UsageRelay, error_event, total_tokens
from serving.routing import Route, UpstreamBroken, UpstreamResponse
from serving.routing.errors import NoLiveReplica

#: Headers the home site sets on a forwarded request (the peer trusts them: mutual TLS).
FORWARD_HEADERS = ("X-Corridor-Tenant", "X-Corridor-Marking", "X-Corridor-Data", "X-Corridor-Caveats",
                   "X-Corridor-Decision",
                   "X-Corridor-Declaration", "X-Corridor-Policy-Digest", "X-Corridor-Origin-Site")


def crossing_declaration(gateway: Gateway, route: Route) -> str | None:
    """The declaration under which the rulebook allows a pool of the peer's jurisdiction, if any."""
    if gateway.federation is None:
        return None
    peer = gateway.federation.peer
    return next((d.declaration for d in route.evaluation.allowed
                 if d.jurisdiction == peer and d.declaration), None)


async def forward(gateway: Gateway, route: Route, declaration: str, path: str, body: bytes,
                  stream: bool, hide_usage: bool = False) -> Response:
    """Send the request to the peer site and relay its answer (see the module docstring).

    The tokens the peer reports are charged to the tenant here too (its home limits hold
    wherever it is served); ``hide_usage``: only this gateway asked for the stream's usage event,
    so it is not relayed to the caller.
    """
    federation = gateway.federation
    assert federation is not None
    workload = route.evaluation.workload
    refusal = federation.state.forwarding_refusal(federation.own_digest)
    if refusal is not None:
        code, message = refusal
        await _record_refusal(gateway, route, path, code.upper())
        raise Unavailable(message, code=code, headers={"Retry-After": "5",
                                                          "X-Corridor-Decision": route.decision_id})
    headers = {"X-Corridor-Tenant": workload.tenant, "X-Corridor-Marking": workload.marking.id,
               "X-Corridor-Data": ",".join(sorted(workload.data_flags)),
               "X-Corridor-Caveats": ",".join(sorted(workload.caveats)),
               "X-Corridor-Decision": route.decision_id, "X-Corridor-Declaration": declaration,
               "X-Corridor-Policy-Digest": federation.own_digest,
               "X-Corridor-Origin-Site": federation.site}
    try:
        answer = await federation.link.forward("/peer/v1/forward" + path, body, headers)
    except PeerUnavailable as exc:
        await _record_refusal(gateway, route, path, "PEER_UNAVAILABLE")
        raise Unavailable(f"the request needs the peer site {federation.peer}, which is not reachable "
                          f"({exc}); retry later", code="peer_unavailable",
                          headers={"Retry-After": "5", "X-Corridor-Decision": route.decision_id}) from exc
    pool = answer.headers.get("X-Corridor-Pool")
    if answer.status >= 400 or pool is None:
        return await _relay_error(answer, route)
    allowed = {d.pool: d for d in route.evaluation.allowed}
    if pool not in allowed:
        answer.release()
        await gateway.ledger.append_async(refusal_entry(
            "violation", route.evaluation, reasons=["PEER_SERVED_ELSEWHERE"],
            detail={"endpoint": path, "forwarded_to": federation.peer, "served_pool": pool}))
        raise Unavailable(f"the peer site answered from pool {pool}, which this site's rulebook does not "
                          f"allow for this request; the answer was dropped", code="peer_violation")
    await gateway.ledger.append_async(decision_entry(
        "routing", allowed[pool]._replace(workload=workload), decision_id=route.decision_id,
        summary=route.evaluation.summary(),
        detail={"endpoint": path, "site": federation.site, "forwarded_to": federation.peer}))
    gateway.metrics.crossings.labels(declaration).inc()
    out = {name: answer.headers[name] for name in ("X-Corridor-Pool", "X-Corridor-Jurisdiction",
                                                   "X-Corridor-Site") if name in answer.headers}
    out.update({"X-Corridor-Decision": route.decision_id, "X-Corridor-Declaration": declaration})
    if stream and answer.status == 200:
        return StreamingResponse(_relay(answer, gateway, workload.tenant, hide_usage), status_code=200,
                                 media_type=answer.content_type, headers=out)
    try:
        content = await answer.read()
    except UpstreamBroken as exc:
        raise Unavailable(f"the peer site failed while answering ({exc}); retry later",
                          code="peer_unavailable", headers={"Retry-After": "2"}) from exc
    finally:
        answer.release()
    if gateway.tokens is not None:
        gateway.tokens.charge(workload.tenant, total_tokens(content))
    return Response(content, status_code=answer.status, media_type=answer.content_type, headers=out)


async def serve_forwarded(gateway: Gateway, request: Request, path: str, body: bytes) -> Response:
    """The peer side: re-decide with this site's rulebook under the named declaration, then serve."""
    federation = gateway.federation
    assert federation is not None
    received = time.perf_counter()
    fields = {name: request.headers.get(name) for name in FORWARD_HEADERS}
    missing = [name for name in ("X-Corridor-Tenant", "X-Corridor-Marking", "X-Corridor-Decision",
                                 "X-Corridor-Declaration") if not fields[name]]
    if missing:
        raise BadRequest(f"a forwarded request needs the headers {', '.join(missing)}",
                         code="invalid_forward")
    if fields["X-Corridor-Policy-Digest"] != federation.own_digest:
        await gateway.ledger.append_async(LedgerEntryDraft(
            kind="security", allowed=False, reasons=["PEER_POLICY_MISMATCH"], policy_digest=federation.own_digest,
            detail={"event": "peer_policy_mismatch", "site": federation.peer,
                    "peer_digest": fields["X-Corridor-Policy-Digest"],
                    "message": f"site {federation.peer} forwarded a request decided under another bundle; "
                               f"refused"}))
        raise Conflict(f"this site runs policy {federation.own_digest}, the request was decided under "
                       f"{fields['X-Corridor-Policy-Digest']}; nothing is served across until both sites "
                       f"load the same joint bundle", code="peer_policy_mismatch")
    try:
        payload = json.loads(body)
        marking = parse_marking(fields["X-Corridor-Marking"])
        flags = parse_data_flags(fields["X-Corridor-Data"] or None)
        caveats = parse_caveats(fields["X-Corridor-Caveats"] or None)
    except (ValueError, PolicyError) as exc:
        raise BadRequest(f"invalid forwarded request: {exc}", code="invalid_forward") from exc
    model = payload.get("model") if isinstance(payload, dict) else None
    if not isinstance(model, str):
        raise BadRequest("a forwarded request names its model", code="invalid_forward", param="model")
    decision_id = fields["X-Corridor-Decision"]
    declaration = fields["X-Corridor-Declaration"]
    workload = Workload(tenant=fields["X-Corridor-Tenant"] or "", marking=marking, kind="request",
                        data_flags=flags, model=model, model_digest=gateway.model_digests.get(model),
                        id="fwd_" + secrets.token_hex(8), caveats=caveats)
    routing = gateway.router.scoring.request(model, workload.tenant, payload)
    route = gateway.router.route(workload, routing)  # this site's rulebook filters, its scorers rank
    under = [e for e in route.candidates if route.decision_for(e).declaration == declaration]
    detail = {"forwarded_from": fields["X-Corridor-Origin-Site"], "declaration_asked": declaration}
    if not under:
        reasons = None if not route.evaluation.allowed else ["NO_LIVE_REPLICA"]
        await gateway.ledger.append_async(refusal_entry(
            "routing", route.evaluation, decision_id=decision_id, reasons=reasons,
            detail={"endpoint": path, "site": federation.site, **detail}))
        if not any(d.declaration == declaration for d in route.evaluation.allowed):
            raise Forbidden(f"site {federation.site} does not allow this request under {declaration}: "
                            f"{route.evaluation.refusal()}", code="policy_denied",
                            headers={"X-Corridor-Decision": decision_id})
        raise Unavailable(f"site {federation.site} has no live replica of '{model}' allowed under "
                          f"{declaration}; retry later", code="no_replica_available",
                          headers={"Retry-After": "5", "X-Corridor-Decision": decision_id})
    here = {"site": federation.site, **detail}
    try:
        first = await admit(gateway, route, routing, path, request, decision_id=decision_id,
                            detail=here, declaration=declaration)
    except NoLiveReplica as exc:  # its replicas went while it waited
        raise await unserved(gateway, route, path, exc, decision_id=decision_id, detail=here) from exc
    narrowed = Route(under, route.evaluation, route.scores, route.summary)
    salted = gateway.cache_salts.salted(payload, workload.tenant)  # this site's salt, not the home's
    return await serve_route(gateway, narrowed, path, salted, stream=payload.get("stream") is True,
                             received=received, detail=detail, decision_id=decision_id,
                             first=first, routing=routing)


async def _record_refusal(gateway: Gateway, route: Route, path: str, code: str) -> None:
    await gateway.ledger.append_async(refusal_entry(
        "routing", route.evaluation, reasons=[code], detail={"endpoint": path, "site": gateway.site}))


async def _relay_error(answer: UpstreamResponse, route: Route) -> Response:
    """The peer's refusal or error, passed on as it is (OpenAI error body), with our decision id."""
    try:
        content = await answer.read()
    finally:
        answer.release()
    headers: dict[str, Any] = {"X-Corridor-Decision": route.decision_id}
    if "Retry-After" in answer.headers:
        headers["Retry-After"] = answer.headers["Retry-After"]
    return Response(content, status_code=answer.status, media_type=answer.content_type, headers=headers)


async def _relay(answer: UpstreamResponse, gateway: Gateway, tenant: str,
                 hide_usage: bool) -> AsyncIterator[bytes]:
    """The peer's stream, event by event; a break drops the unfinished event and ends the stream
    with a well-formed error event (never a retry: bytes have reached the caller). The usage
    event is charged to the tenant, and dropped when only this gateway asked for it."""
    relay = UsageRelay(hide_usage)
    try:
        async for chunk in answer.chunks():
            for event in relay.feed(chunk):
                yield event
        rest = relay.finish()
        if rest:
            yield rest
    except UpstreamBroken:
        yield error_event("the peer site failed mid-stream; the answer is incomplete", "peer_stream_error")
    finally:
        answer.release()
        if gateway.tokens is not None:
            gateway.tokens.charge(tenant, relay.used)

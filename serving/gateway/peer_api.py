"""The peer API: what one site serves the other, on its own port, over mutual TLS only.

Served by a second listener (``corridor up --site``) whose TLS context admits only a client
certificate of the configured peer site (:func:`serving.federation.tls.server_context`), so
every caller here is the peer; nothing of it is reachable on the public gateway port.

``GET /peer/v1/hello`` (site, ledger key, bundle digest) · ``POST /peer/v1/forward/v1/…``
(a request forwarded under a crisis declaration) · ``POST /peer/v1/crisis/steps`` (a signed
crisis step) · ``GET /peer/v1/tree-head`` and ``GET /peer/v1/proof/consistency`` (for the
peer's witness) · ``POST /peer/v1/cosignatures`` (the peer's cosignature of our head).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from scheduler.crisis import CrisisError
from scheduler.ledger import ProofInputError
from serving.gateway.errors import BadRequest, NotFound, answer_errors, from_domain
from serving.gateway.forwarding import serve_forwarded
from serving.gateway.requests import parse_object, read_body
from serving.gateway.service import Gateway

router = APIRouter(prefix="/peer/v1")

FORWARDED_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    if gateway.federation is None:
        raise NotFound("this site has no peer", code="no_peer")
    return gateway


@router.get("/hello")
async def hello(request: Request) -> dict[str, Any]:
    federation = _gateway(request).federation
    assert federation is not None
    return federation.hello_body()


@router.post("/forward/v1/{endpoint:path}")
async def forwarded(request: Request, endpoint: str) -> Response:
    gateway = _gateway(request)
    path = "/v1/" + endpoint
    if path not in FORWARDED_PATHS:
        raise NotFound(f"no forwarded route {path}", code="unknown_route")
    body = await read_body(request, gateway.max_body_bytes)
    return await serve_forwarded(gateway, request, path, body)


@router.post("/crisis/steps")
async def crisis_step(request: Request) -> dict[str, Any]:
    gateway = _gateway(request)
    if gateway.crisis is None:
        raise NotFound("crisis declarations are not enabled on this site", code="crisis_disabled")
    step = parse_object(await read_body(request, 64 * 1024))
    try:
        record = await run_in_threadpool(gateway.crisis.receive, step)
    except CrisisError as exc:
        raise from_domain(exc) from exc
    return {"id": record.id, "status": record.status(gateway.crisis.clock())}


@router.get("/tree-head")
def tree_head(request: Request) -> dict[str, Any]:
    """This site's latest signed head and checkpoint (signs a new head if the log grew)."""
    gateway = _gateway(request)
    if gateway.witness is None:
        raise NotFound("this site does not witness", code="no_witness")
    return gateway.witness.own_head()


@router.get("/proof/consistency")
async def consistency(request: Request, first: int, second: int) -> dict[str, Any]:
    gateway = _gateway(request)
    try:
        return gateway.ledger.consistency_proof(first, second)
    except (ProofInputError, ValueError) as exc:
        raise BadRequest(str(exc), code="invalid_proof_request") from exc


@router.post("/cosignatures")
async def cosignature(request: Request) -> dict[str, str]:
    gateway = _gateway(request)
    if gateway.witness is None:
        raise NotFound("this site does not witness", code="no_witness")
    item = parse_object(await read_body(request, 64 * 1024))
    try:
        await run_in_threadpool(gateway.witness.receive_cosignature, item)
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_cosignature") from exc
    return {"status": "stored"}


def create_peer_app(gateway: Gateway) -> FastAPI:
    """The peer API app around the same gateway (the public app's lifespan opens its pools)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield

    app = FastAPI(title="Corridor peer API", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.gateway = gateway
    app.include_router(router)

    answer_errors(app)

    return app

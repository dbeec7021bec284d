"""The OpenAI Files and Batch API on the gateway (role ``admin``, scoped to the caller's tenant).

``POST /v1/files`` (multipart: ``file``, ``purpose=batch``), ``GET /v1/files``,
``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``;
``POST /v1/batches``, ``GET /v1/batches``, ``GET /v1/batches/{id}``,
``POST /v1/batches/{id}/cancel``. Lists page with ``after`` (an id) and
``limit``. The marking and data flags of a batch come from
``X-Corridor-Marking`` / ``X-Corridor-Data`` as for inference, or from
``metadata.corridor_marking`` / ``metadata.corridor_data``.

Every call takes one request from the tenant's ``requests_per_minute``, as
inference does. Uploads are received as a stream into the batch store's
directory, the size limit enforced while reading (:mod:`serving.gateway.uploads`).

The router's lifespan starts the gateway's batch service (resuming unfinished
batches) after the gateway itself, and stops it first. The service's refusals
(:mod:`serving.batch.errors`) become OpenAI-style errors in the app's handler.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool

from serving.batch import BatchPorts, BatchService
from serving.gateway.errors import Forbidden, NotFound
from serving.gateway.requests import DATA_HEADER, MARKING_HEADER, read_object, single_header
from serving.gateway.service import Gateway, route_template
from serving.gateway.uploads import receive_upload

BATCH_ROLES = ("admin",)


@asynccontextmanager
async def _lifespan(app: FastAPI):
    gateway: Gateway | None = getattr(app.state, "gateway", None)
    service: BatchService | None = gateway.batches if gateway is not None else None
    if service is not None:
        await service.start(BatchPorts(router=gateway.router, upstream=gateway.upstream,
                                       ledger=gateway.ledger, registry=gateway.metrics.registry,
                                       model_digests=gateway.model_digests,
                                       cache_salts=gateway.cache_salts))
    try:
        yield
    finally:
        if service is not None:
            await service.stop()


router = APIRouter(lifespan=_lifespan)


def _service(request: Request) -> tuple[BatchService, str]:
    """The batch service and the caller's tenant; 404 when the gateway has no batch service."""
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request, BATCH_ROLES)
    if gateway.batches is None:
        raise NotFound("the Batch API is not enabled on this gateway", code="batches_disabled")
    if not principal.tenant:
        raise Forbidden("this key belongs to no tenant", code="wrong_role")
    if gateway.limiter is not None:
        gateway.limiter.admit(principal.tenant, endpoint=route_template(request),
                              source=gateway.source(request))
    return gateway.batches, principal.tenant


def _page(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": items, "has_more": has_more,
            "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None}


@router.post("/v1/files")
async def create_file(request: Request) -> dict[str, Any]:
    service, tenant = _service(request)
    staged = service.staging_path()
    upload = await receive_upload(request, staged, service.settings.max_file_bytes)
    record = await service.adopt_upload(tenant, upload.filename, upload.fields.get("purpose"),
                                        staged, upload.size)
    return record.to_openai()


@router.get("/v1/files")
async def list_files(request: Request, after: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
                     order: Literal["asc", "desc"] = "desc",
                     purpose: str | None = None) -> dict[str, Any]:
    service, tenant = _service(request)
    records, has_more = service.files(tenant, after=after, limit=limit, order=order,
                                      purpose=purpose)
    return _page([r.to_openai() for r in records], has_more)


@router.get("/v1/files/{file_id}")
async def retrieve_file(request: Request, file_id: str) -> dict[str, Any]:
    service, tenant = _service(request)
    return service.file(tenant, file_id).to_openai()


@router.get("/v1/files/{file_id}/content")
async def file_content(request: Request, file_id: str) -> Response:
    service, tenant = _service(request)
    record, path = service.content(tenant, file_id)
    if path is not None:
        return FileResponse(path, media_type="application/jsonl")
    return StreamingResponse(iterate_in_threadpool(service.read(record.id)),
                             media_type="application/jsonl",
                             headers={"Content-Length": str(record.bytes)})


@router.delete("/v1/files/{file_id}")
async def delete_file(request: Request, file_id: str) -> dict[str, Any]:
    service, tenant = _service(request)
    service.delete_file(tenant, file_id)
    return {"id": file_id, "object": "file", "deleted": True}


@router.post("/v1/batches")
async def create_batch(request: Request) -> dict[str, Any]:
    service, tenant = _service(request)
    _, payload = await read_object(request, 64 * 1024)
    record = await service.create(tenant, payload,
                                  marking_header=single_header(request, MARKING_HEADER),
                                  data_header=single_header(request, DATA_HEADER))
    return service.to_openai(record)


@router.get("/v1/batches")
async def list_batches(request: Request, after: str | None = None,
                       limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict[str, Any]:
    service, tenant = _service(request)
    records, has_more = service.batches(tenant, after=after, limit=limit)
    return _page([service.to_openai(r) for r in records], has_more)


@router.get("/v1/batches/{batch_id}")
async def retrieve_batch(request: Request, batch_id: str) -> dict[str, Any]:
    service, tenant = _service(request)
    return service.to_openai(service.batch(tenant, batch_id))


@router.post("/v1/batches/{batch_id}/cancel")
async def cancel_batch(request: Request, batch_id: str) -> dict[str, Any]:
    service, tenant = _service(request)
    return service.to_openai(service.cancel(tenant, batch_id))

"""The OpenAI Files and Batch API on the gateway (role ``admin``, scoped to the caller's tenant).

``POST /v1/files`` (multipart: ``file``, ``purpose=batch``), ``GET /v1/files``,
``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``;
``POST /v1/batches``, ``GET /v1/batches``, ``GET /v1/batches/{id}``,
``POST /v1/batches/{id}/cancel``. Lists page with ``after`` (an id) and
``limit``. The marking and data flags of a batch come from
``X-Corridor-Marking`` / ``X-Corridor-Data`` as for inference, or from
``metadata.corridor_marking`` / ``metadata.corridor_data``.

The router's lifespan starts the gateway's batch service (resuming unfinished
batches) after the gateway itself, and stops it first. The service's refusals
(:mod:`serving.batch.errors`) become OpenAI-style errors in the app's handler.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile

from serving.batch import BatchPorts, BatchService
from serving.gateway.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge
from serving.gateway.requests import DATA_HEADER, MARKING_HEADER, parse_object, read_body
from serving.gateway.service import Gateway

BATCH_ROLES = ("admin",)


@asynccontextmanager
async def _lifespan(app: FastAPI):
    gateway: Gateway | None = getattr(app.state, "gateway", None)
    service: BatchService | None = gateway.batches if gateway is not None else None
    if service is not None:
        await service.start(BatchPorts(router=gateway.router, upstream=gateway.upstream,
                                       ledger=gateway.ledger, registry=gateway.metrics.registry,
                                       model_digests=gateway.model_digests))
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
    return gateway.batches, principal.tenant


def _page(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": items, "has_more": has_more,
            "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None}


@router.post("/v1/files")
async def create_file(request: Request) -> dict[str, Any]:
    service, tenant = _service(request)
    limit = service.settings.max_file_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise PayloadTooLarge(f"the upload of {declared} bytes exceeds the limit of {limit} bytes",
                              code="file_too_large", param="file")
    form = await request.form(max_files=1, max_fields=8)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadRequest("missing the multipart field 'file'", code="missing_required_parameter",
                             param="file")
        record = await service.upload(tenant, upload.filename or "input.jsonl",
                                      form.get("purpose"), upload.file)
    finally:
        await form.close()
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
async def file_content(request: Request, file_id: str) -> FileResponse:
    service, tenant = _service(request)
    return FileResponse(service.content(tenant, file_id), media_type="application/jsonl")


@router.delete("/v1/files/{file_id}")
async def delete_file(request: Request, file_id: str) -> dict[str, Any]:
    service, tenant = _service(request)
    service.delete_file(tenant, file_id)
    return {"id": file_id, "object": "file", "deleted": True}


@router.post("/v1/batches")
async def create_batch(request: Request) -> dict[str, Any]:
    service, tenant = _service(request)
    payload = parse_object(await read_body(request, 64 * 1024))
    record = await service.create(tenant, payload,
                                  marking_header=request.headers.get(MARKING_HEADER),
                                  data_header=request.headers.get(DATA_HEADER))
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

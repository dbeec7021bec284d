"""Reading what a caller sent: bounded bodies, JSON objects, query parameters, marking and
data-flag headers.

Every JSON body goes through :func:`parse_object` (size already bounded by
:func:`read_body`, depth by :mod:`serving.bounded_json`); every Corridor header
through :func:`single_header` and every query string through
:class:`KnownQueryParameters`, so a header or query parameter sent twice is a 400
naming it, never "the first (or last) one wins".
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.dependencies.utils import get_flat_dependant
from starlette.datastructures import QueryParams
from starlette.routing import Match, Router

from policies import Marking, PolicyError, parse_data_flags, parse_marking
from policies.workload import parse_caveats
from serving.bounded_json import JsonRejected, loads_bounded
from serving.gateway.errors import BadRequest, PayloadTooLarge

MARKING_HEADER = "x-corridor-marking"
DATA_HEADER = "x-corridor-data"
CAVEATS_HEADER = "x-corridor-caveats"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes",
                              code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes",
                                  code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_object(body: bytes) -> dict[str, Any]:
    """Parse a JSON object; anything else is a 400 naming what is wrong."""
    try:
        value = loads_bounded(body)
    except JsonRejected as exc:
        raise BadRequest(f"the body is not acceptable JSON: {exc}", code=exc.code) from exc
    if not isinstance(value, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(value).__name__}",
                         code="invalid_json")
    return value


def require_field(payload: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """A required field of the given JSON type, or a 400 naming it."""
    if name not in payload:
        raise BadRequest(f"missing required parameter '{name}'", code="missing_required_parameter",
                         param=name)
    value = payload[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise BadRequest(f"parameter '{name}' must be {names}, got {type(value).__name__}",
                         code="invalid_type", param=name)
    return value


async def read_object(request: Request, limit: int) -> tuple[bytes, dict[str, Any]]:
    """The body (at most ``limit`` bytes) and the JSON object it holds, or a 400/413."""
    body = await read_body(request, limit)
    return body, parse_object(body)


def single_header(request: Request, name: str) -> str | None:
    """The one value of header ``name``, or None; sent twice it is a 400 naming the header."""
    values = request.headers.getlist(name)
    if len(values) > 1:
        title = "-".join(part.capitalize() for part in name.split("-"))
        raise BadRequest(f"header {title} sent {len(values)} times; send it once",
                         code="duplicate_header", param=title)
    return values[0] if values else None


def marking_of(request: Request, default: str) -> Marking:
    """The marking header, or the tenant's default; an unknown marking is a 400."""
    value = single_header(request, MARKING_HEADER) or default
    try:
        return parse_marking(value)
    except PolicyError as exc:
        raise BadRequest(str(exc), code="unknown_marking", param="X-Corridor-Marking") from exc


def caveats_of(request: Request) -> frozenset[str]:
    """The national-only caveats header (comma-separated, any known spelling); unknown is a 400."""
    try:
        return parse_caveats(single_header(request, CAVEATS_HEADER))
    except PolicyError as exc:
        raise BadRequest(str(exc), code="unknown_caveat", param="X-Corridor-Caveats") from exc


def data_flags_of(request: Request) -> frozenset[str]:
    """The data-flag header (comma-separated); an unknown flag is a 400."""
    try:
        return parse_data_flags(single_header(request, DATA_HEADER))
    except PolicyError as exc:
        raise BadRequest(str(exc), code="unknown_data_flag", param="X-Corridor-Data") from exc


class KnownQueryParameters:
    """ASGI middleware: a query parameter the matched route does not take, or one sent more than
    once (no route takes a list), is a 400 naming it, never silently ignored.

    A request without a query string (every inference request) passes straight through; one
    with a query string finds its route as the router will and is checked against the query
    parameters that route declares. A middleware rather than an app-wide FastAPI dependency:
    solving that dependency cost every request about a tenth of the gateway's CPU.
    """

    def __init__(self, app: Any, router: Router) -> None:
        self.app, self.router = app, router

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            problem = self._unknown_parameter(scope)
            if problem is not None:
                await problem.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _unknown_parameter(self, scope: dict[str, Any]) -> BadRequest | None:
        route = next((route for route in self.router.routes
                      if route.matches(scope)[0] == Match.FULL), None)
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            return None
        known = {field.alias for field in get_flat_dependant(dependant).query_params}
        params = QueryParams(scope["query_string"])
        for name in params:
            if name not in known:
                return BadRequest(f"unknown query parameter {name[:64]!r}"
                                  + (f"; this route takes {', '.join(sorted(known))}" if known else
                                     "; this route takes none"),
                                  code="unknown_parameter", param=name[:64])
            sent = len(params.getlist(name))
            if sent > 1:
                return BadRequest(f"query parameter {name!r} sent {sent} times; send it once",
                                  code="duplicate_parameter", param=name)
        return None

"""The sovereign gateway as a FastAPI app: OpenAI, batch, audit, operator and crisis APIs, health,
metrics; every error leaves in the OpenAI error format."""

from __future__ import annotations

from contextlib import asynccontextmanager
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from serving.batch import BatchSettings
from serving.console import console_router
from serving.gateway import (admin_api, audit_api, batch_api, crisis_api, deployments_api, keys_api,
                             openai_api, openapi, policy_api)
from serving.gateway.boundary import ErrorBoundary
from serving.gateway.direct_routes import DirectRoutes
from serving.gateway.errors import BadRequest, GatewayError, NotFound, answer_errors
from serving.gateway.requests import KnownQueryParameters
from serving.gateway.service import Gateway


def create_app(gateway: Gateway) -> FastAPI:
    """Build the app around ``gateway``; the upstream client opens and closes with the app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = FastAPI(title="Corridor sovereign gateway", lifespan=lifespan, docs_url=None,
                  redoc_url=None)
    app.state.gateway = gateway
    # Innermost first. The inference requests' short way, inside the error boundary; built on
    # the first request, when every route and exception handler below is in place.
    app.add_middleware(DirectRoutes, routes=app.router.routes, paths=openai_api.INFERENCE_PATHS,
                       exception_handlers=app.exception_handlers)
    app.add_middleware(KnownQueryParameters, router=app.router)
    app.add_middleware(ErrorBoundary)
    openapi.install(app, gateway.policy, metrics_open=gateway.metrics_roles is None,
                    max_window_s=lambda: (gateway.batches.settings if gateway.batches is not None
                                          else BatchSettings()).max_window_s)
    app.include_router(openai_api.router)
    app.include_router(audit_api.router)
    app.include_router(admin_api.router)
    app.include_router(deployments_api.router)
    app.include_router(keys_api.router)
    app.include_router(policy_api.router)
    app.include_router(crisis_api.router)
    app.include_router(batch_api.router)
    app.include_router(console_router())

    answer_errors(app)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        param = str(first["loc"][-1]) if first.get("loc") else None
        return BadRequest(f"invalid parameter '{param}': {first['msg']}", param=param,
                          code="invalid_parameter").response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return NotFound(f"no route {request.method} {request.url.path}",
                            code="unknown_route").response()
        error = GatewayError(str(exc.detail), code=f"http_{exc.status_code}",
                             headers=dict(exc.headers or {}))
        error.status, error.type = exc.status_code, "invalid_request_error"
        if exc.status_code == 405:
            error.code = "method_not_allowed"
            error.headers["Allow"] = ", ".join(_allowed_methods(app, request))
        return error.response()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        """Ready or not, nothing more: replica counts and the policy digest are for operators."""
        live = bool(gateway.router.source.endpoints()) and (gateway.ready is None or gateway.ready())
        return JSONResponse({"status": "ready" if live else "waiting"},
                            status_code=200 if live else 503)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus metrics; by default for operators and auditors only (they name tenants)."""
        if gateway.metrics_roles is not None:
            gateway.authenticate(request, gateway.metrics_roles)
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route serves at the request's path (Starlette names only the first
    route's, and one path may have several routes). A literal path (``/admin/deployments/apply``)
    answers for itself, not for the templated one it also matches (``…/{name}``), as the schema
    documents it."""
    matching = []
    for route in app.routes:
        match, _ = route.matches({**request.scope, "method": "GET", "type": "http"})
        if match != Match.NONE and getattr(route, "methods", None):
            matching.append(route)
    literal = [route for route in matching if "{" not in getattr(route, "path", "{")]
    return sorted({method for route in (literal or matching) for method in route.methods})

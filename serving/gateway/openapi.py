"""The gateway's OpenAPI schema, describing the API as it behaves: every request body, the
bearer credentials, every error response in the OpenAI error shape, the real status codes.

FastAPI documents what it parses itself; the gateway reads bodies with its own bounded
reader (:mod:`serving.gateway.requests`) and answers validation errors 400, not 422. So
the generated schema is completed here, once per app: request bodies from the models
that check them (:mod:`serving.gateway.protocol`, the key request of
:mod:`serving.gateway.keys_api`, the crisis declaration with the bundle's names), the
statuses each route really returns, and the media types of streams, exports and
metrics. :func:`install` replaces ``app.openapi``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from policies import Policy
from policies.markings import catalogue
from serving.batch.records import ENDPOINTS
from serving.gateway.keys_api import KeyBody
from serving.gateway.protocol import (ChatCompletionRequest, CompletionRequest, EmbeddingRequest,
                                      ErrorResponse)

_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_WHY = {"400": "Invalid input (the message and `param` name it)",
        "401": "Missing or invalid credentials", "403": "Wrong role or tenant, or refused by the "
        "rulebook (the message names the rules)", "404": "Unknown model, file, batch or declaration",
        "409": "Not possible in the current state", "413": "Body or file over the limit",
        "429": "Request, token or failed-login limit reached, or the tenant's share of the "
        "admission queue is full (see Retry-After)",
        "500": "Unexpected failure (the message carries an error id for the operator)",
        "503": "Allowed, but no replica can answer now or before the request's deadline in the "
        "admission queue (see Retry-After)"}
_AUTHENTICATED = ("400", "401", "403", "429", "500")
_OPEN = {"/healthz", "/readyz", "/console", "/console/", "/console/static/{name}"}


def _upto(limit: int) -> str:
    """A regular expression for the integers 1..``limit`` without leading zeros.

    >>> import re; pattern = re.compile(f"^({_upto(168)})$")
    >>> [n for n in range(0, 1000) if pattern.match(str(n))] == list(range(1, 169))
    True
    """
    digits = str(limit)
    options = [f"[1-9][0-9]{{0,{len(digits) - 2}}}"] if len(digits) > 1 else []
    for i, digit in enumerate(digits):
        low = 1 if i == 0 else 0
        if int(digit) > low:
            rest = len(digits) - i - 1
            options.append(digits[:i] + f"[{low}-{int(digit) - 1}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    options.append(digits)
    return "|".join(options)


def _batch_body(max_window_s: int) -> dict[str, Any]:
    window = "|".join(f"(?:{_upto(max_window_s // unit)}){suffix}"
                      for unit, suffix in ((1, "s"), (60, "m"), (3600, "h")) if max_window_s >= unit)
    markings = [m.id for m in catalogue().values()]
    return {"type": "object", "additionalProperties": False,
            "required": ["input_file_id", "endpoint", "completion_window"],
            "properties": {
                "input_file_id": {"type": "string", "minLength": 1},
                "endpoint": {"enum": list(ENDPOINTS)},
                "completion_window": {"type": "string", "pattern": f"^(?:{window})$"},
                "metadata": {"anyOf": [{"type": "null"}, {
                    "type": "object", "maxProperties": 16, "propertyNames": {"maxLength": 64},
                    "additionalProperties": {"type": "string", "maxLength": 512},
                    "properties": {"corridor_marking": {"enum": markings},
                                   "corridor_data": {"enum": ["health", "personal", "sensitive"]}}}]}}}


def _crisis_body(policy: Policy) -> dict[str, Any]:
    """Tenants and models are the bundle's ids (unknown ones are a 400); the schema is public,
    so it does not list them."""
    def names(items: dict[str, Any]) -> dict[str, Any]:
        return {"type": "array", "minItems": 1, "items": items}

    identifier = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]*$", "maxLength": 64}
    placeable = [m.id for m in catalogue().values() if m.placeable]
    return {"type": "object", "additionalProperties": False,
            "required": ["scope", "reason", "valid_for_hours"],
            "properties": {
                "scope": {"type": "object", "additionalProperties": False,
                          "required": ["tenants", "markings", "models", "directions"],
                          "properties": {"tenants": names(identifier),
                                         "markings": names({"enum": placeable}),
                                         "models": names(identifier),
                                         "directions": names({"enum": ["FR->DE", "DE->FR"]})}},
                "reason": {"type": "string", "pattern": r"\S"},
                "valid_for_hours": {"type": "number", "exclusiveMinimum": 0,
                                    "maximum": policy.bundle.settings.crisis_max_hours}}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _extra_statuses(method: str, path: str) -> tuple[str, ...]:
    if path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        return ("404", "413", "503")
    if path == "/v1/files" and method == "post":
        return ("404", "413")
    if path.startswith("/admin/crisis") and method == "post":
        return ("404", "409")
    if path == "/v1/batches/{batch_id}/cancel":
        return ("404", "409")
    if path.startswith(("/admin/deployments", "/admin/keys", "/admin/policy", "/admin/peer",
                        "/audit/checkpoint", "/console")):
        return ("404", "409", "503")  # not enabled on this gateway, state conflicts, no capacity now
    if path.startswith(("/v1/files", "/v1/batches", "/admin/crisis", "/audit/proof")):
        return ("404",)
    return ()


def build_schema(app: FastAPI, policy: Policy, *, max_window_s: int,
                 metrics_open: bool) -> dict[str, Any]:
    """The completed schema of ``app`` (see the module docstring)."""
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                         description="Corridor's sovereign gateway: the OpenAI API admitted by the "
                         "rulebook, the Batch API, and the audit, operator and crisis APIs. Send "
                         "`X-Corridor-Marking` (any known spelling of a marking) and "
                         "`X-Corridor-Data` (health, personal, sensitive) at most once each.")
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    models: list[type[BaseModel]] = [ChatCompletionRequest, CompletionRequest, EmbeddingRequest,
                                     ErrorResponse, KeyBody]
    for model in models:
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(found.pop("$defs", {}))
        schemas[model.__name__] = found
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer",
                                                "description": "An API key (cor_…) or an OIDC token"}}
    bodies = {("post", "/v1/chat/completions"): _json({"$ref": "#/components/schemas/ChatCompletionRequest"}),
              ("post", "/v1/completions"): _json({"$ref": "#/components/schemas/CompletionRequest"}),
              ("post", "/v1/embeddings"): _json({"$ref": "#/components/schemas/EmbeddingRequest"}),
              ("post", "/v1/batches"): _json(_batch_body(max_window_s)),
              ("post", "/admin/crisis"): _json(_crisis_body(policy)),
              ("post", "/admin/keys"): _json({"$ref": "#/components/schemas/KeyBody"}),
              ("post", "/v1/files"): {"required": True, "content": {"multipart/form-data": {"schema": {
                  "type": "object", "required": ["file", "purpose"],
                  "properties": {"file": {"type": "string", "format": "binary"},
                                 "purpose": {"enum": ["batch"]}}}}}}}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if (method, path) in bodies:
                operation["requestBody"] = bodies[(method, path)]
            for parameter in operation.get("parameters", []):
                if parameter["name"] in ("since", "until") and path == "/audit/entries":
                    parameter["schema"] = {"type": "string", "format": "date-time",
                                           "description": "RFC 3339, with a time zone"}
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            _success(responses, path)
            if path in _OPEN or (path == "/metrics" and metrics_open):
                if path == "/readyz":
                    responses["503"] = {"description": "Not ready: no live replica",
                                        "content": {"application/json": {"schema": {"type": "object"}}}}
                continue
            operation["security"] = [{"bearer": []}]
            for status in sorted(set(_AUTHENTICATED + _extra_statuses(method, path))):
                responses[status] = {"description": _WHY[status],
                                     "content": {"application/json": {"schema": _ERROR_REF}}}
    return schema


def _success(responses: dict[str, Any], path: str) -> None:
    """The media types of the 200 answers that are not plain JSON objects."""
    if path in ("/v1/chat/completions", "/v1/completions"):
        content = {"application/json": {"schema": {"type": "object"}},
                   "text/event-stream": {"schema": {"type": "string"}}}
    elif path == "/v1/embeddings":
        content = {"application/json": {"schema": {"type": "object"}}}
    elif path == "/v1/files/{file_id}/content":
        content = {"application/jsonl": {"schema": {"type": "string"}}}
    elif path == "/audit/export":
        content = {"application/x-ndjson": {"schema": {"type": "string"}}}
    elif path == "/metrics":
        content = {"text/plain": {"schema": {"type": "string"}}}
    else:
        return
    responses["200"] = {"description": "Successful Response", "content": content}


def install(app: FastAPI, policy: Policy, *, max_window_s: Callable[[], int],
            metrics_open: bool) -> None:
    """Serve :func:`build_schema` as ``app.openapi()`` (built on first use, then kept)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_schema(app, policy, max_window_s=max_window_s(),
                                              metrics_open=metrics_open)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

"""Gateway errors in the OpenAI wire format: ``{"error": {"message", "type", "code", "param"}}``.

Every refusal and every bad input leaves the gateway as one of these, with the
HTTP status the official SDK maps to its own exception classes (400
BadRequestError, 401 AuthenticationError, 403 PermissionDeniedError, 404
NotFoundError, 413, 429 RateLimitError, 503 InternalServerError)::

    GatewayError
    ├── BadRequest          400 invalid_request_error
    ├── PayloadTooLarge     413 invalid_request_error
    ├── Unauthenticated     401 authentication_error
    ├── Forbidden           403 permission_error (also policy refusals)
    ├── NotFound            404 not_found_error
    ├── Conflict            409 invalid_request_error (not possible in the current state)
    ├── RateLimited         429 requests (quota used up, or too many failed logins)
    └── Unavailable         503 service_unavailable (allowed, but no live replica; or the
                            site's database is down: ``Retry-After``, nothing served unlogged)

The domain packages raise their own errors (:mod:`serving.batch.errors`,
:mod:`scheduler.crisis.errors`, and :mod:`serving.routing.errors` when a request
gets no replica slot); :func:`from_domain` translates them here, at the
boundary, so a handler never builds HTTP errors from domain code.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from scheduler.crisis import (CrisisError, InvalidDeclaration, SelfApproval, UnknownDeclaration,
                              WrongState)
from scheduler.crisis.peering import InvalidStep
from scheduler.database import DatabaseUnavailable
from serving.batch.errors import (BatchConflict, BatchError, BatchForbidden, BatchNotFound,
                                  FileTooLarge, InvalidBatchRequest)
from serving.routing.errors import NoSlot, QueueFull


class GatewayError(Exception):
    """An error answered to the caller in OpenAI's format."""

    status = 500
    type = "server_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code,
                          "param": self.param}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


class BadRequest(GatewayError):
    """Malformed or invalid input."""

    status, type = 400, "invalid_request_error"


class PayloadTooLarge(GatewayError):
    """A request body over the configured limit."""

    status, type = 413, "invalid_request_error"


class Unauthenticated(GatewayError):
    """Missing or invalid credentials."""

    status, type = 401, "authentication_error"


class Forbidden(GatewayError):
    """Authenticated, but not allowed: wrong role or tenant, or refused by the policy."""

    status, type = 403, "permission_error"


class NotFound(GatewayError):
    """An unknown model, file, batch or route."""

    status, type = 404, "not_found_error"


class Conflict(GatewayError):
    """A valid request that the resource's current state does not allow (e.g. approving a
    revoked declaration); the caller reads the state and decides anew."""

    status, type = 409, "invalid_request_error"


class RateLimited(GatewayError):
    """Too many requests; retry after the ``Retry-After`` header's seconds."""

    status, type = 429, "requests"


class Unavailable(GatewayError):
    """The policy allows the request but no live replica can take it now; retry later."""

    status, type = 503, "service_unavailable"


_DOMAIN: dict[type[Exception], type[GatewayError]] = {
    InvalidBatchRequest: BadRequest, BatchForbidden: Forbidden, BatchNotFound: NotFound,
    BatchConflict: Conflict, FileTooLarge: PayloadTooLarge,
    InvalidDeclaration: BadRequest, SelfApproval: Forbidden, UnknownDeclaration: NotFound,
    WrongState: Conflict, InvalidStep: Forbidden,
    QueueFull: RateLimited, NoSlot: Unavailable,  # the subclass first
}
DOMAIN_ERRORS: tuple[type[Exception], ...] = (BatchError, CrisisError, NoSlot)
"""The domain error bases the app answers through :func:`from_domain`."""


def from_domain(exc: BatchError | CrisisError | NoSlot) -> GatewayError:
    """The OpenAI-style error for a domain refusal (with ``Retry-After`` when it says when to
    retry); an unmapped one is a 500 (a bug)."""
    kind = next((v for k, v in _DOMAIN.items() if isinstance(exc, k)), GatewayError)
    retry_after = getattr(exc, "retry_after", None)
    return kind(exc.message, code=exc.code, param=exc.param,
                headers={"Retry-After": str(retry_after)} if retry_after is not None else None)


#: Seconds a caller waits before retrying while the site's database is unreachable.
DATABASE_RETRY_AFTER_S = 2


def database_down(exc: DatabaseUnavailable) -> Unavailable:
    """503 with ``Retry-After``: the ledger (or another shared store) cannot be written now, so the
    request is refused rather than served unrecorded; the stores reconnect on their own."""
    return Unavailable("the site's database is unreachable; nothing is served that the ledger "
                       "cannot record: retry shortly", code="database_unavailable",
                       headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)})


def answer_errors(app: Any) -> None:
    """Answer :class:`GatewayError` and the domain refusals of ``app`` (a FastAPI app) in the
    OpenAI error format; both the public app and the peer API install them."""

    @app.exception_handler(GatewayError)
    async def gateway_error(request: Any, exc: GatewayError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(DatabaseUnavailable)
    async def database_unavailable(request: Any, exc: DatabaseUnavailable) -> JSONResponse:
        return database_down(exc).response()

    for domain_error in DOMAIN_ERRORS:
        @app.exception_handler(domain_error)
        async def domain_refusal(request: Any, exc: Exception) -> JSONResponse:
            return from_domain(exc).response()  # type: ignore[arg-type]

"""The last line of defence: an exception no handler answered becomes a 500 in the OpenAI error
format, logged with a correlation id the caller can quote; never a traceback or plain text.

Installed by :func:`serving.gateway.app.create_app` around every route (inside
Starlette's own error middleware, outside the routers). An exception raised after
the response started (a stream) cannot change the status any more: it is logged
with its id and the connection ends.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

log = logging.getLogger("serving.gateway")

ERROR_ID_HEADER = "X-Corridor-Error-Id"


def internal_error_body(error_id: str) -> dict[str, Any]:
    """The body of an unexpected failure, e.g. for id ``err_0a1b``::

        {"error": {"message": "internal error (err_0a1b); …", "type": "server_error",
                   "code": "internal_error", "param": null}}
    """
    return {"error": {"message": f"internal error ({error_id}); the operator's log has the "
                                 f"details under this id", "type": "server_error",
                      "code": "internal_error", "param": None}}


class ErrorBoundary:
    """ASGI middleware answering unhandled exceptions with a logged, well-formed 500."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:  # noqa: BLE001 - the boundary: every failure leaves as a 500
            error_id = "err_" + secrets.token_hex(8)
            route = scope.get("route")
            log.exception("%s %s failed (%s)", scope.get("method"),
                          getattr(route, "path", "(unrouted)"), error_id)
            if started:
                return
            body = json.dumps(internal_error_body(error_id)).encode()
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()),
                                    (ERROR_ID_HEADER.lower().encode(), error_id.encode())]})
            await send({"type": "http.response.body", "body": body})

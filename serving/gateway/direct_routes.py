"""The inference requests' short way through the app: straight to their handler.

Every inference request is a ``POST`` to one of a few fixed paths with no query string. For
those, :class:`DirectRoutes` calls the route's own handler at once, with the route set in the
scope as the router would set it, and answers what it raises with the app's own exception
handlers. What it skips is the framework's per-request machinery the handlers do not use
(exception middleware, exit stack, route matching, dependency solving): about a tenth of the
gateway's CPU per request. Anything else (another method or path, a query string to check)
takes the app's normal way; so the routes stay declared once, in the app, and the OpenAPI
schema still describes them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Awaitable[Response]]
ErrorAnswer = Callable[[Request, Exception], Awaitable[Response]]


class DirectRoutes:
    """ASGI middleware: a ``POST`` to one of ``paths`` without a query string goes straight to
    its route's handler; every other request goes to ``app``."""

    def __init__(self, app: Any, routes: Iterable[Any], paths: Iterable[str],
                 exception_handlers: Mapping[Any, ErrorAnswer]) -> None:
        self.app = app
        wanted = set(paths)
        self.routes: dict[str, APIRoute] = {
            route.path: route for route in routes
            if isinstance(route, APIRoute) and route.path in wanted and "POST" in route.methods}
        missing = wanted - self.routes.keys()
        if missing:
            raise ValueError(f"no POST route for {', '.join(sorted(missing))}")
        for route in self.routes.values():
            if not takes_the_request_only(route):
                raise ValueError(f"the route {route.path} takes more than the request (parameters or "
                                 f"dependencies), which the short way would not supply")
        self.exception_handlers = exception_handlers

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        route = (self.routes.get(scope["path"]) if scope["type"] == "http"
                 and scope["method"] == "POST" and not scope.get("query_string") else None)
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        request = Request(scope, receive)
        handler: Handler = route.endpoint
        try:
            response = await handler(request)
        except Exception as exc:
            answer = self._answer_for(exc)
            if answer is None:
                raise  # the error boundary outside answers it: a logged 500
            response = await answer(request, exc)
        await response(scope, receive, send)

    def _answer_for(self, exc: Exception) -> ErrorAnswer | None:
        """The app's handler for ``exc``'s class or its nearest base, as Starlette looks it up."""
        for kind in type(exc).__mro__:
            if kind in self.exception_handlers:
                return self.exception_handlers[kind]
        return None


def takes_the_request_only(route: APIRoute) -> bool:
    """Whether the route's handler takes the request and nothing the framework would resolve."""
    dependant = route.dependant
    return (dependant.request_param_name is not None and not route.dependencies
            and not any([dependant.dependencies, dependant.path_params, dependant.query_params,
                         dependant.header_params, dependant.cookie_params, dependant.body_params]))

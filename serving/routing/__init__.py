"""Which replica serves a request, and the connections that carry it there.

- :mod:`~serving.routing.router`: live replicas filtered by the rulebook, then ordered by load;
- :mod:`~serving.routing.upstream`: the keep-alive connection pool to the replicas.

No HTTP server code lives here: the gateway's routes and the batch executor both
route through a :class:`~serving.routing.router.Router` and send through an
:class:`~serving.routing.upstream.UpstreamPool`.
"""

from serving.routing.router import Endpoint, EndpointSource, Route, Router, StaticEndpoints
from serving.routing.upstream import UpstreamBroken, UpstreamPool, UpstreamResponse, UpstreamUnreachable

__all__ = ["Endpoint", "EndpointSource", "Route", "Router", "StaticEndpoints", "UpstreamBroken",
           "UpstreamPool", "UpstreamResponse", "UpstreamUnreachable"]
